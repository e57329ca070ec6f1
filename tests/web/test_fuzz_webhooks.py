"""Bad input on every webhook route: generated bodies (arbitrary JSON, each provider's
real payloads with mutated fields, random bytes, absurd nesting, huge strings and
numbers), generated header bytes, oversized bodies and slow clients.

What a provider or an attacker can observe: never a 5xx, never a dead process, nothing
stored for what was refused, 413 for what is too big, and a slow client never holds up
anybody else. Each route's bodies go through one bot (built once per test, hypothesis
drives the requests), correctly authenticated so the parsers are what gets exercised;
at the end the bot answers what it accepted without a crashed turn.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.models import contact_key_for
from tests.conftest import zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FIXTURES, load_fixture
from tests.helpers.logs import logging_for
from tests.helpers.loopback import (
    chatwoot_signature,
    loopback_settings,
    meta_signature,
    raw_request,
    waha_signature,
)
from tests.helpers.provider_server import ProviderServer, ProviderState
from web.app import create_app
from web.keys import STORE

ZAPI_SECRET = "zapi-hook-8d7c6b5a4f3e2d1c"
WAHA_HMAC_KEY = "waha-hmac-key-1a2b3c4d5e6f"
META_APP_SECRET = "meta-app-secret-9f8e7d6c5b4a"
CHATWOOT_SECRET = "cw-hook-secret-2b3c4d5e6f7a"
CRM_SECRET = "crm-hook-secret-7a6b5c4d3e2f"
LEAD_PHONE = "5544999999999"  # the `phone` of tests/fixtures/zapi/received_*.json
CONVERSATION = 318  # the conversation id in tests/fixtures/chatwoot/webhook_*.json

EXAMPLES = 100  # per route; about a second each
# No example database: nothing written into the repository; a failure prints its example.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

CRASH_EVENTS = ("unhandled_error", "turn_crashed", "never retrieved", "outbox_failure_not_recorded")


# Media links in the payloads point at a closed local port: the bot tries to download
# what it accepted, and the test must never reach the internet.
OFFLINE = "http://127.0.0.1:9/media/"


def _offline(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _offline(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_offline(v) for v in value]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return OFFLINE + value.split("://", 1)[1].split("/", 1)[-1]
    return value


def _fixtures(directory: str, key: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted((FIXTURES / directory).glob("*.json")):
        data = load_fixture(f"{directory}/{path.name}")
        if isinstance(data, dict) and key in data:
            out.append(_offline(data))
    assert out, directory
    return out


CRM_EVENTS = [
    {
        "event": "deal.won",
        "phone": "+55 (44) 99999-9999",
        "value": 15990.5,
        "currency": "BRL",
        "occurred_at": "2026-11-20T14:00:00Z",
    },
    {"event": "deal.lost", "deal_id": 4521},
    {"event": "meeting.scheduled", "contact_key": contact_key_for("zapi", LEAD_PHONE)},
]


@dataclass(frozen=True)
class Route:
    path: str
    payloads: list[dict[str, Any]]
    # body -> (query, headers) that authenticate it
    auth: Callable[[bytes], tuple[dict[str, str], dict[str, str]]]


def _zapi_auth(body: bytes) -> tuple[dict[str, str], dict[str, str]]:
    return {"token": ZAPI_SECRET}, {}


ZAPI_PAYLOADS = _fixtures("zapi", "type")
ROUTES: dict[str, Route] = {
    "zapi": Route("/webhooks/zapi", ZAPI_PAYLOADS, _zapi_auth),
    "webhook_text": Route("/webhook/text", ZAPI_PAYLOADS, _zapi_auth),
    "webhook_audio": Route("/webhook/audio", ZAPI_PAYLOADS, _zapi_auth),
    "waha": Route(
        "/webhooks/waha", _fixtures("waha", "event"), lambda body: ({}, waha_signature(WAHA_HMAC_KEY, body))
    ),
    "meta": Route(
        "/webhooks/meta",
        _fixtures("whatsapp_cloud", "object") + _fixtures("instagram", "object"),
        lambda body: ({}, meta_signature(META_APP_SECRET, body)),
    ),
    "chatwoot": Route(
        "/webhooks/chatwoot",
        _fixtures("chatwoot", "event"),
        lambda body: ({}, chatwoot_signature(CHATWOOT_SECRET, body)),
    ),
    "crm": Route("/webhooks/crm", CRM_EVENTS, lambda body: ({}, {"X-Webhook-Secret": CRM_SECRET})),
}


# --- generated bodies --------------------------------------------------------------------

TRICKY_STRINGS = [
    "",
    " ",
    "null",
    "0",
    "-1",
    "1e309",
    "NaN",
    "\x00",
    "\ud83d",
    "\u202e",
    "😀" * 3,
    "ReceivedCallback",
    "message",
    "message.any",
    "session.status",
    "message_created",
    "conversation_status_changed",
    "outgoing",
    "incoming",
    "whatsapp_business_account",
    "instagram",
    "page",
    "deal.won",
    "deal.lost",
    LEAD_PHONE,
    f"{LEAD_PHONE}@c.us",
    f"{LEAD_PHONE}@g.us",
    "status@broadcast",
    "120363000000000000@newsletter",
    OFFLINE + "a.ogg",
    "file:///etc/passwd",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
]
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(TRICKY_STRINGS)
)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Fixed depths, so a failure is not at the edge of the interpreter's recursion limit.
DEPTHS = st.sampled_from([3, 40, 400, 3_000, 30_000])
OPERATIONS = ["delete", "replace", "null", "wrong_type", "huge_text", "huge_number", "deep", "empty"]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _parent(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        value = value[key]
    return value


def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return {"0": value[0]} if value else {}
    if isinstance(value, dict):
        return list(value.values())
    return 0


def _encode(data: Any, ascii_only: bool) -> bytes:
    # Not ASCII-only: lone surrogates become invalid UTF-8, as a broken client sends them.
    return json.dumps(data, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: st.DrawFn, payloads: list[dict[str, Any]]) -> bytes:
    """A real payload of the provider with one to four fields deleted or replaced."""
    data = copy.deepcopy(draw(st.sampled_from(payloads)))
    inserts: dict[str, str] = {}
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(data))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        operation = draw(st.sampled_from(OPERATIONS))
        if operation == "delete":
            del parent[key]
        elif operation == "replace":
            parent[key] = draw(JSON_VALUES)
        elif operation == "null":
            parent[key] = None
        elif operation == "wrong_type":
            parent[key] = _wrong_type(parent[key])
        elif operation == "huge_text":
            parent[key] = draw(st.sampled_from("x9 ç😀")) * draw(st.integers(1_000, 300_000))
        elif operation == "empty":
            parent[key] = draw(st.sampled_from(["", [], {}]))
        else:  # huge_number, deep: spliced into the JSON text (Python refuses to build them)
            marker = f"__splice_{len(inserts)}__"
            if operation == "huge_number":
                inserts[marker] = draw(st.sampled_from(["", "-"])) + "9" * draw(st.integers(20, 6_000))
            else:
                depth = draw(DEPTHS)
                inserts[marker] = "[" * depth + "]" * depth
            parent[key] = marker
    body = _encode(data, draw(st.booleans()))
    for marker, raw in inserts.items():
        body = body.replace(f'"{marker}"'.encode(), raw.encode())
    return body


@st.composite
def pristine(draw: st.DrawFn, payloads: list[dict[str, Any]]) -> bytes:
    """A real payload, maybe with fields the provider added in a later release."""
    data = copy.deepcopy(draw(st.sampled_from(payloads)))
    data.update(draw(st.dictionaries(st.text(min_size=1, max_size=12), JSON_VALUES, max_size=2)))
    return _encode(data, draw(st.booleans()))


def _deep(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def bodies(route: Route) -> st.SearchStrategy[bytes]:
    return st.one_of(
        pristine(route.payloads),
        mutated(route.payloads),
        mutated(route.payloads),  # twice the weight: the shape that reaches the parsers
        st.builds(_encode, JSON_VALUES, st.booleans()),
        st.binary(max_size=3_000),
        st.builds(_deep, DEPTHS, st.sampled_from(["list", "dict"])),
        st.integers(1_000, 600_000).map(lambda n: json.dumps({"type": "x" * n}).encode()),
    )


def _with(fixture: str, path: tuple[Any, ...], value: Any) -> bytes:
    data = copy.deepcopy(load_fixture(fixture))
    _parent(data, path)[path[-1]] = value
    return json.dumps(data).encode()


# Bodies hypothesis found (or could find only by luck) that once got a 5xx: always tried
# first, whatever the random run explores.
HUGE = 10**309  # valid JSON, beyond a float
_ZAPI_HUGE_TIME = _with("zapi/received_text.json", ("momment",), HUGE)
REGRESSIONS: dict[str, list[bytes]] = {
    "zapi": [_ZAPI_HUGE_TIME],
    "webhook_text": [_ZAPI_HUGE_TIME],
    "webhook_audio": [_ZAPI_HUGE_TIME],
    "waha": [_with("waha/message_text.json", ("payload", "timestamp"), HUGE)],
    "meta": [
        _with(
            "whatsapp_cloud/text.json", ("entry", 0, "changes", 0, "value", "messages", 0, "timestamp"), HUGE
        ),
        _with("instagram/message_text.json", ("entry", 0, "messaging", 0, "timestamp"), HUGE),
    ],
    "chatwoot": [
        b"[" * 3_000 + b"]" * 3_000,  # RecursionError in the JSON decoder
        _with(
            "chatwoot/webhook_message_created_account.json", ("conversation", "id"), 2**64
        ),  # > SQLite INTEGER
        _with("chatwoot/webhook_message_created_account.json", ("id",), 2**64),
        _with("chatwoot/webhook_conversation_status_changed.json", ("id",), -(2**64)),
    ],
    "crm": [
        json.dumps({"event": "deal.won", "deal_id": 2**64}).encode(),
        json.dumps({"event": "deal.lost", "deal_id": -(2**63) - 1}).encode(),
    ],
}


# --- one bot per test, driven synchronously by hypothesis -----------------------------------


class FuzzBot:
    """Every channel configured, with its secret; providers on the loopback fake; a
    known lead with a Chatwoot conversation, so relays and CRM events reach the store."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.Runner()
        self.provider = ProviderServer(
            ProviderState(reply_text="Olá! Obrigado pelo contato.", capi_enabled=True)
        )
        self.loop.run(self.provider.start())
        url = self.provider.url
        self.settings = loopback_settings(
            tmp_path,
            self.provider,
            zapi_webhook_secret=ZAPI_SECRET,
            waha_url=f"{url}/waha",
            waha_webhook_hmac_key=WAHA_HMAC_KEY,
            meta_app_secret=META_APP_SECRET,
            meta_verify_token="meta-verify-token-1234",
            meta_graph_url=url,
            whatsapp_phone_number_id="106540352242922",
            whatsapp_access_token="EAAG-wa-token-fuzz-0001",
            instagram_account_id="17841400008460056",
            instagram_access_token="IGQ-ig-token-fuzz-0001",
            chatwoot_api_url=url,
            chatwoot_api_token="cw-api-token-fuzz-0001",
            chatwoot_account_id="7",
            chatwoot_inbox_id="3",
            chatwoot_webhook_secret=CHATWOOT_SECRET,
            crm_webhook_secret=CRM_SECRET,
            meta_pixel_id="123456789012345",
            meta_access_token="EAAB-capi-token-fuzz-0001",
        )
        self.client: TestClient = self.loop.run(self._start())
        self.app: web.Application = self.client.app  # type: ignore[assignment]

    async def _start(self) -> TestClient:
        client = TestClient(TestServer(create_app(logging_for(self.settings), clock=TestClock())))
        await client.start_server()
        # A lead the Chatwoot fixtures' conversation belongs to.
        response = await client.post(
            "/webhooks/zapi", params={"token": ZAPI_SECRET}, json=zapi_message(message_id="3EB0FUZZSEED0001")
        )
        assert response.status == 200
        store = client.app[STORE]
        key = contact_key_for("zapi", LEAD_PHONE)
        deadline = time.monotonic() + 10
        while await store.get_lead(key) is None:
            assert time.monotonic() < deadline, "the seed lead was never answered"
            await asyncio.sleep(0.02)
        await store.save_chatwoot_link(
            key,
            contact_id=1042,
            source_id="8f3c2a71-5d4e-4b8a-9c1f-2e7d6b5a4c39",
            conversation_id=CONVERSATION,
        )
        return client

    def counts(self) -> tuple[int, ...]:
        """What a refused request must not change (turns running meanwhile do not touch these)."""
        db = self.app[STORE].db  # type: ignore[attr-defined]
        return db.execute(
            "SELECT (SELECT COUNT(*) FROM inbound),"
            " (SELECT COUNT(*) FROM outbox WHERE idempotency_key LIKE 'chatwoot-reply:%'),"
            " (SELECT COUNT(*) FROM outbox WHERE kind = 'meta_capi'"
            "   AND json_extract(payload, '$.stage') IN ('Purchase', 'lead_lost', 'Schedule'))"
        ).fetchone()

    def post(self, route: Route, body: bytes) -> tuple[int, str]:
        async def send() -> tuple[int, str]:
            query, headers = route.auth(body)
            response = await self.client.post(
                route.path, params=query, data=body, headers={"Content-Type": "application/json", **headers}
            )
            return response.status, (await response.text())[:300]

        return self.loop.run(send())

    def settle(self, timeout: float = 20.0) -> list[tuple]:
        """Let the bot answer what it accepted; returns what is still pending after `timeout`."""

        async def wait() -> list[tuple]:
            store = self.app[STORE]
            deadline = time.monotonic() + timeout
            while True:
                pending = store.db.execute(  # type: ignore[attr-defined]
                    "SELECT channel, contact_key, attempts, last_error FROM inbound WHERE status = 'pending'"
                ).fetchall()
                if not pending or time.monotonic() > deadline:
                    return pending
                await asyncio.sleep(0.05)

        return self.loop.run(wait())

    def health(self) -> int:
        async def get() -> int:
            response = await self.client.get("/api/health")
            return response.status

        return self.loop.run(get())

    def close(self) -> None:
        self.loop.run(self.client.close())
        self.loop.run(self.provider.stop())
        self.loop.close()


@contextmanager
def fuzz_bot(tmp_path: Path) -> Iterator[FuzzBot]:
    """Built inside the test, so its logs go to the test's own capture (capsys)."""
    bot = FuzzBot(tmp_path)
    try:
        yield bot
    finally:
        bot.close()


@pytest.mark.parametrize("name", list(ROUTES))
def test_generated_bodies_never_get_a_5xx_and_refused_ones_store_nothing(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    route = ROUTES[name]
    seen: dict[int, int] = {}
    with fuzz_bot(tmp_path) as bot:

        @FUZZ
        @given(body=bodies(route))
        def check(body: bytes) -> None:
            before = bot.counts()
            status, text = bot.post(route, body)
            seen[status] = seen.get(status, 0) + 1
            assert status < 500, (status, text)
            if status >= 400:
                assert bot.counts() == before, f"a {status} stored something: {text}"

        for body in REGRESSIONS.get(name, []):
            check = example(body=body)(check)
        check()
        with capsys.disabled():
            print(f"\n{name}: statuses {sorted(seen.items())}")
        assert any(200 <= s < 300 for s in seen) and any(400 <= s < 500 for s in seen), seen
        # Whatever was accepted is answered (or deliberately given up on), without a crash.
        assert bot.settle() == []
        assert bot.health() == 200
    output = capsys.readouterr()
    logs = output.err + output.out
    assert "turn_committed" in logs  # the capture saw the bot's logs
    crashes = [line[:300] for line in logs.splitlines() if any(event in line for event in CRASH_EVENTS)]
    assert crashes == []


# --- generated header bytes -------------------------------------------------------------

HEADER_NAMES = [
    b"Authorization",
    b"X-Webhook-Token",
    b"X-Hub-Signature-256",
    b"X-Webhook-Hmac",
    b"X-Webhook-Hmac-Algorithm",
    b"X-Chatwoot-Signature",
    b"X-Chatwoot-Timestamp",
    b"X-Chatwoot-Webhook-Token",
    b"X-Webhook-Secret",
    b"X-Api-Key",
    b"X-Request-Id",
]
# Anything a client can put in a header value: every byte but CR, LF and NUL.
HEADER_VALUES = st.binary(max_size=80).map(lambda b: bytes(c for c in b if c not in (0, 10, 13)))
PREFIXES = st.sampled_from([b"", b"sha256=", b"Bearer ", b"sha512="])


def test_generated_credential_headers_never_get_a_5xx(tmp_path: Path, restore_logging: None) -> None:
    """Forged credentials in any encoding, for every route: refused with a 4xx."""
    with fuzz_bot(tmp_path) as bot:
        port = bot.client.port
        assert port is not None

        @FUZZ
        @given(
            name=st.sampled_from(list(ROUTES)),
            headers=st.lists(
                st.tuples(st.sampled_from(HEADER_NAMES), st.tuples(PREFIXES, HEADER_VALUES)),
                min_size=1,
                max_size=4,
            ),
        )
        def check(name: str, headers: list[tuple[bytes, tuple[bytes, bytes]]]) -> None:
            route = ROUTES[name]
            raw_headers = [(header, prefix + value) for header, (prefix, value) in headers]
            before = bot.counts()
            body = json.dumps(route.payloads[0]).encode()
            status, payload = bot.loop.run(
                raw_request(port, "POST", route.path, headers=raw_headers, body=body)
            )
            assert status < 500, (name, raw_headers, payload[:200])
            if status >= 400:
                assert bot.counts() == before

        check()

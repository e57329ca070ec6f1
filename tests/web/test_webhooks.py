"""The Z-API webhook as a provider and an attacker see it: authentication (bad bodies
are tests/web/test_webhook_bodies.py), size limits, an unavailable store, duplicates, request ids and wrong methods.

Everything is observed from the outside: HTTP status and JSON body, what landed in the
SQLite `inbound` table, whether OpenAI was called and whether the lead got a reply.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.errors import StoreUnavailable
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from tests.web.support import LEAD_PHONE, WEBHOOK_SECRET, error_body, inbound_count, rows
from web.app import create_app
from web.keys import SETTINGS, STORE

WEBHOOK_PATHS = ["/webhooks/zapi", "/webhook/text", "/webhook/audio"]
JSON_HEADERS = {"Content-Type": "application/json"}


async def answered_once(client: TestClient, zapi_fake: FakeZapi, message_id: str, **kw: Any) -> None:
    """A valid lead message is accepted and exactly one reply reaches the lead."""
    before = len(zapi_fake.sent)
    response = await client.post("/webhooks/zapi", json=zapi_message(message_id=message_id, text="Oi"), **kw)
    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == 1
    await settled(client)
    assert [sent["phone"] for sent in zapi_fake.sent[before:]] == [LEAD_PHONE]


# --- authentication -------------------------------------------------------------------


@pytest.fixture
async def guarded(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> TestClient:
    """A bot with ZAPI_WEBHOOK_SECRET set."""
    return await aiohttp_client(
        create_app(fast_settings(tmp_path, zapi_webhook_secret=WEBHOOK_SECRET), clock=clock)
    )


BAD_CREDENTIALS: dict[str, dict[str, Any]] = {
    "no_token": {},
    "empty_query_token": {"params": {"token": ""}},
    "wrong_token_same_length": {"params": {"token": "x" * len(WEBHOOK_SECRET)}},
    "wrong_token_shorter": {"params": {"token": WEBHOOK_SECRET[:-1]}},
    "wrong_token_longer": {"params": {"token": WEBHOOK_SECRET + "0"}},
    "prefix_only": {"params": {"token": WEBHOOK_SECRET[:4]}},
    "different_case": {"params": {"token": WEBHOOK_SECRET.upper()}},
    "non_ascii_token": {"params": {"token": "çãõ-" + WEBHOOK_SECRET}},
    "token_under_other_query_name": {"params": {"secret": WEBHOOK_SECRET}},
    "wrong_header": {"headers": {"X-Webhook-Token": "nope"}},
    "bearer_wrong": {"headers": {"Authorization": "Bearer nope"}},
    "basic_scheme_with_secret": {"headers": {"Authorization": f"Basic {WEBHOOK_SECRET}"}},
    "secret_in_client_token_header": {"headers": {"Client-Token": WEBHOOK_SECRET}},
}


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
async def test_requests_without_the_right_token_get_401_and_change_nothing(
    guarded: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, case: str, path: str
) -> None:
    response = await guarded.post(
        path, json=zapi_message(message_id=f"3EB0UNAUTH{case}"), **BAD_CREDENTIALS[case]
    )
    assert response.status == 401
    body = await error_body(response)
    assert WEBHOOK_SECRET not in json.dumps(body)

    await settled(guarded)  # anything wrongly accepted would have had its turn by now
    assert inbound_count(guarded) == 0
    assert openai_fake.calls_started == 0
    assert zapi_fake.attempts == 0


async def test_authentication_comes_before_parsing(guarded: TestClient) -> None:
    """An unauthenticated caller learns nothing about what the parser accepts."""
    for body in (b"not json", b"[]", b"", json.dumps({"type": "ReceivedCallback"}).encode()):
        response = await guarded.post("/webhooks/zapi", data=body, headers=JSON_HEADERS)
        assert response.status == 401, body
        await error_body(response)
    assert inbound_count(guarded) == 0


@pytest.mark.parametrize(
    "credentials",
    [
        {"params": {"token": WEBHOOK_SECRET}},
        {"headers": {"X-Webhook-Token": WEBHOOK_SECRET}},
        {"headers": {"Authorization": f"Bearer {WEBHOOK_SECRET}"}},
        # A proxy that adds the header must not be defeated by a stale query token.
        {"params": {"token": "stale"}, "headers": {"X-Webhook-Token": WEBHOOK_SECRET}},
    ],
    ids=["query", "x_webhook_token", "bearer", "wrong_query_right_header"],
)
async def test_the_right_token_is_accepted_and_the_lead_is_answered(
    guarded: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, credentials: dict[str, Any]
) -> None:
    await answered_once(guarded, zapi_fake, "3EB0AUTHOK0000001", **credentials)
    assert rows(guarded, "SELECT status FROM inbound") == [("done",)]
    assert openai_fake.chat_calls == 1


async def test_without_a_configured_secret_no_token_is_needed(bot: TestClient, zapi_fake: FakeZapi) -> None:
    await answered_once(bot, zapi_fake, "3EB0NOSECRET00001")


# --- body size ------------------------------------------------------------------------


@pytest.fixture
async def small_limit(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> TestClient:
    return await aiohttp_client(create_app(fast_settings(tmp_path, max_body_bytes=4096), clock=clock))


def _padded(size: int, message_id: str) -> bytes:
    payload = zapi_message(message_id=message_id, text="Oi")
    payload["padding"] = ""
    base = len(json.dumps(payload).encode())
    payload["padding"] = "p" * (size - base)
    body = json.dumps(payload).encode()
    assert len(body) == size
    return body


async def test_a_body_over_the_limit_gets_413_json_and_is_not_stored(
    small_limit: TestClient, openai_fake: FakeOpenAI
) -> None:
    response = await small_limit.post(
        "/webhooks/zapi", data=_padded(4097, "3EB0BIG000001"), headers=JSON_HEADERS
    )
    assert response.status == 413
    await error_body(response)
    await settled(small_limit)
    assert inbound_count(small_limit) == 0
    assert openai_fake.calls_started == 0


async def test_a_body_just_under_the_limit_is_accepted(small_limit: TestClient, zapi_fake: FakeZapi) -> None:
    # aiohttp's client_max_size rejects a body of exactly the limit (it compares with >=).
    response = await small_limit.post(
        "/webhooks/zapi", data=_padded(4095, "3EB0EDGE00001"), headers=JSON_HEADERS
    )
    assert response.status == 200, await response.text()
    await settled(small_limit)
    assert [sent["phone"] for sent in zapi_fake.sent] == [LEAD_PHONE]


async def test_a_chunked_body_over_the_limit_gets_413(small_limit: TestClient) -> None:
    body = _padded(20_000, "3EB0CHUNKED01")

    async def chunks():  # no Content-Length: the limit must hold while streaming
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = await small_limit.post("/webhooks/zapi", data=chunks(), headers=JSON_HEADERS)
    assert response.status == 413
    await error_body(response)
    assert inbound_count(small_limit) == 0


async def test_the_default_limit_rejects_a_multi_megabyte_body(bot: TestClient, zapi_fake: FakeZapi) -> None:
    assert bot.app[SETTINGS].max_body_bytes == 1_048_576  # the documented default
    response = await bot.post(
        "/webhooks/zapi", data=_padded(2 * 1_048_576, "3EB0HUGE00001"), headers=JSON_HEADERS
    )
    assert response.status == 413
    await error_body(response)
    await answered_once(bot, zapi_fake, "3EB0AFTERHUGE")


# --- store unavailable ----------------------------------------------------------------


async def test_store_refusing_writes_gets_503_then_the_retry_is_accepted(
    bot: TestClient, monkeypatch: pytest.MonkeyPatch, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    store = bot.app[STORE]

    async def unavailable(*_a: Any, **_kw: Any) -> bool:
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(store, "add_inbound", unavailable)
    payload = zapi_message(message_id="3EB0STORE0000001", text="Oi, tudo bem?")
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 503
    await error_body(response)
    await settled(bot)
    assert openai_fake.calls_started == 0
    assert inbound_count(bot) == 0

    monkeypatch.undo()  # the store is back; Z-API retries the same delivery
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200
    assert (await response.json())["accepted"] == 1
    await settled(bot)
    assert zapi_fake.texts_to(LEAD_PHONE) == [openai_fake.default_reply]
    assert openai_fake.calls_started == 1


async def test_a_closed_store_gets_503_and_reopening_it_recovers(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    store = bot.app[STORE]
    await store.close()
    payload = zapi_message(message_id="3EB0CLOSED000001", text="Oi")
    try:
        response = await bot.post("/webhooks/zapi", json=payload)
        assert response.status == 503
        await error_body(response)
        # fromMe events are stored too: same answer, nothing silently dropped.
        response = await bot.post("/webhooks/zapi", json=zapi_message("received_from_me.json"))
        assert response.status == 503
    finally:
        await store.open()
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200
    assert (await response.json())["accepted"] == 1
    await settled(bot)
    assert zapi_fake.texts_to(LEAD_PHONE) == [openai_fake.default_reply]


async def test_a_read_only_database_gets_503_not_500(bot: TestClient, zapi_fake: FakeZapi) -> None:
    """What a full or read-only disk looks like to SQLite ("attempt to write a readonly database")."""
    store = bot.app[STORE]
    store.db.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
    payload = zapi_message(message_id="3EB0READONLY0001", text="Oi")
    try:
        response = await bot.post("/webhooks/zapi", json=payload)
        assert response.status == 503
        await error_body(response)
    finally:
        store.db.execute("PRAGMA query_only = OFF")  # type: ignore[attr-defined]
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200
    await settled(bot)
    assert [sent["phone"] for sent in zapi_fake.sent] == [LEAD_PHONE]


# --- duplicates, request ids, methods -------------------------------------------------


async def test_a_duplicate_delivery_is_acknowledged_and_does_nothing_else(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    payload = zapi_message(message_id="3EB0DUP000000001", text="Oi")
    first = await bot.post("/webhooks/zapi", json=payload)
    await settled(bot)
    assert zapi_fake.texts_to(LEAD_PHONE) == [openai_fake.default_reply]
    # Z-API retries after the turn already finished, on another of the accepted paths.
    second = await bot.post("/webhook/text", json=payload)
    assert first.status == second.status == 200
    assert (await first.json())["accepted"] == 1
    body = await second.json()
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    await settled(bot)
    assert openai_fake.calls_started == 1
    assert len(zapi_fake.sent) == 1
    assert rows(bot, "SELECT COUNT(*) FROM inbound") == [(1,)]


async def test_request_id_is_echoed_on_success_and_on_errors(bot: TestClient) -> None:
    cases = [
        ("post", "/webhooks/zapi", {"json": zapi_message(message_id="3EB0REQID0001")}, 200),
        ("post", "/webhooks/zapi", {"data": b"nope"}, 400),
        ("get", "/webhooks/zapi", {}, 405),
        ("get", "/no/such/route", {}, 404),
        ("get", "/api/health", {}, 200),
    ]
    for index, (method, path, kwargs, status) in enumerate(cases):
        request_id = f"req-{index}-7f3a9c"
        response = await getattr(bot, method)(path, headers={"X-Request-Id": request_id}, **kwargs)
        assert response.status == status, path
        assert response.headers.get("X-Request-Id") == request_id, path


async def test_a_request_id_is_generated_when_the_caller_sends_none(bot: TestClient) -> None:
    ids = set()
    for _ in range(3):
        response = await bot.post("/webhooks/zapi", data=b"{}", headers=JSON_HEADERS)
        assert response.status == 422
        ids.add(response.headers.get("X-Request-Id"))
    assert None not in ids and "" not in ids
    assert len(ids) == 3


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_on_a_webhook_gets_405_json(bot: TestClient, path: str, method: str) -> None:
    response = await bot.request(method, path)
    assert response.status == 405
    await error_body(response)
    assert inbound_count(bot) == 0


async def test_405_says_which_method_is_allowed(bot: TestClient) -> None:
    """RFC 9110 15.5.6: a 405 response MUST carry an Allow header listing the methods."""
    response = await bot.get("/webhooks/zapi")
    assert response.status == 405
    assert "POST" in response.headers.get("Allow", "")


async def test_unknown_route_gets_404_json(bot: TestClient) -> None:
    response = await bot.post("/webhooks/nope", json=zapi_message())
    assert response.status == 404
    await error_body(response)

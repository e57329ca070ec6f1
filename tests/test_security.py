"""Security: what an attacker or a log reader can get out of the bot.

- A whole conversation with every integration configured (and several of them failing)
  leaves no configured secret, and no lead's full phone number or e-mail, in the logs.
- Every webhook route refuses unauthenticated and forged requests (401/403), whatever
  bytes the forged credential is made of, and accepts correctly signed ones.
- The Chatwoot relay only ever writes to the lead a conversation belongs to: an unknown
  conversation, or one whose contact is not our lead, sends nothing.
- Secrets are compared in constant time (hmac.compare_digest), checked by watching the
  calls the routes make, and by reading their source as a complement.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import hmac
import inspect
import json
import logging
import sqlite3
import textwrap
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import structlog
from aiohttp.test_utils import TestClient

from channels import meta_common, waha, zapi
from core.settings import Settings
from integrations import chatwoot
from store.sqlite import SqliteStore
from tests.conftest import zapi_message
from tests.helpers.clock import INSTANTS, NEXT_OPENING, TestClock
from tests.helpers.fakes import load_fixture
from tests.helpers.logs import logging_for
from tests.helpers.loopback import (
    chatwoot_signature,
    db_rows,
    loopback_settings,
    meta_signature,
    raw_request,
    waha_signature,
)
from tests.helpers.provider_server import Fault, ProviderServer
from tests.helpers.settle import settled
from web import crm_webhook
from web.app import create_app
from web.keys import STORE

ZAPI_WEBHOOK_SECRET = "zwh_7Qp2Lx9Vb4Nc8Rt1zKd3"
WAHA_API_KEY = "waha-api-key-3f9a1c7e5b2d"
WAHA_HMAC_KEY = "waha-hmac-Xk29vLq7Zp41"
META_APP_SECRET = "6f1d2c3b4a5968778695a4b3c2d1e0f9"
META_VERIFY_TOKEN = "verify-me-8b7a6c5d4e"
WHATSAPP_TOKEN = "EAAGm0PX4ZCpsBAKZCwa1234567890abcdef"
INSTAGRAM_TOKEN = "IGQWRPcjdUZAHN3ig0987654321fedcba"
CHATWOOT_API_TOKEN = "cwApiTok3nR7q9W2e4T6"
CHATWOOT_WEBHOOK_SECRET = "cwHookS3cretM5n7B9v1"
SUPABASE_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXNlcnZpY2Utcm9sZQ"
)
DATABASE_URL = "postgresql://postgres:Pg-pass-w0rd-91@db.abcdefghijkl.supabase.co:5432/postgres"
PIPERUN_TOKEN = "piperun-token-a8b7c6d5e4f3"
META_CAPI_TOKEN = "EAABcapiToken5566778899aabbccdd"
CRM_WEBHOOK_SECRET = "crm-hook-s3cret-4e5f6a7b"

LEAD_PHONE = "5544999999999"  # the `phone` of tests/fixtures/zapi/received_*.json
LEAD_EMAIL = "maria.souza@agrosouza.com.br"
WAHA_LEAD = "5511999999999"  # tests/fixtures/waha/message_text.json
META_LEAD = "5511987654321"  # tests/fixtures/whatsapp_cloud/text.json
ATTACKER = "5521987650000"


def phone_forms(digits: str) -> list[str]:
    """How a Brazilian mobile number can be written in full (E.164, national, formatted)."""
    ddd, local = digits[2:4], digits[4:]
    return [
        digits,
        f"+{digits}",
        digits[2:],
        f"+55 ({ddd}) {local[:5]}-{local[5:]}",
        f"({ddd}) {local[:5]}-{local[5:]}",
        f"{ddd} {local[:5]}-{local[5:]}",
        f"{ddd}{local[:5]}-{local[5:]}",
    ]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The app points structlog and the root logger at pytest's capture: put them back."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers, root.level = handlers, level


@pytest.fixture
async def provider() -> ProviderServer:
    server = ProviderServer()
    server.state.chatwoot.token = CHATWOOT_API_TOKEN
    server.state.echo_unknown = True  # WAHA, Graph, PipeRun, CAPI: refused, quoting our request
    await server.start()
    yield server
    await server.stop()


def everything_configured(tmp_path: Path, provider: ProviderServer, **overrides: Any) -> Settings:
    url = provider.url
    values: dict[str, Any] = {
        "log_format": "json",
        "log_level": "DEBUG",
        "zapi_webhook_secret": ZAPI_WEBHOOK_SECRET,
        "waha_url": f"{url}/waha",
        "waha_api_key": WAHA_API_KEY,
        "waha_webhook_hmac_key": WAHA_HMAC_KEY,
        "meta_app_secret": META_APP_SECRET,
        "meta_verify_token": META_VERIFY_TOKEN,
        "meta_graph_url": url,
        "whatsapp_phone_number_id": "106540352242922",
        "whatsapp_access_token": WHATSAPP_TOKEN,
        "instagram_account_id": "17841400008460056",
        "instagram_access_token": INSTAGRAM_TOKEN,
        "chatwoot_api_url": url,
        "chatwoot_api_token": CHATWOOT_API_TOKEN,
        "chatwoot_account_id": "7",
        "chatwoot_inbox_id": "3",
        "chatwoot_webhook_secret": CHATWOOT_WEBHOOK_SECRET,
        "supabase_url": "https://abcdefghijkl.supabase.co",
        "supabase_service_role_key": SUPABASE_KEY,
        "database_url": DATABASE_URL,
        "piperun_api_url": f"{url}/piperun/v1",
        "piperun_api_token": PIPERUN_TOKEN,
        "piperun_pipeline_id": 12,
        "piperun_stage_id": 34,
        "meta_pixel_id": "123456789012345",
        "meta_access_token": META_CAPI_TOKEN,
        "crm_webhook_secret": CRM_WEBHOOK_SECRET,
        "http_timeout_s": 2.0,
        "openai_timeout_s": 2.0,
    }
    values.update(overrides)
    return loopback_settings(tmp_path, provider, **values)


def sqlite_store(settings: Settings) -> SqliteStore:
    """Supabase is configured (its key must be scrubbed too) but the test runs on SQLite."""
    return SqliteStore(settings.sqlite_path)


@pytest.fixture
async def bot(
    provider: ProviderServer,
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    restore_logging: None,
    clock: TestClock,
) -> TestClient:
    return await aiohttp_client(
        create_app(
            logging_for(everything_configured(tmp_path, provider)), store_factory=sqlite_store, clock=clock
        )
    )


# --- requests as each provider signs them -------------------------------------------------


def zapi_body(message_id: str, text: str, phone: str = LEAD_PHONE) -> bytes:
    return json.dumps(zapi_message(message_id=message_id, phone=phone, text=text)).encode()


def waha_body() -> bytes:
    return json.dumps(load_fixture("waha/message_text.json")).encode()


def meta_body() -> bytes:
    return json.dumps(load_fixture("whatsapp_cloud/text.json")).encode()


def chatwoot_contact(
    phone: str, contact_id: int = 1042, source_id: str = "8f3c2a71-5d4e-4b8a-9c1f-2e7d6b5a4c39"
) -> dict[str, Any]:
    """Who a Chatwoot conversation is with, as its webhooks describe them."""
    return {"id": contact_id, "phone": phone, "source_id": source_id}


def stored_contact(client: TestClient) -> tuple[int, dict[str, Any]]:
    """The lead's Chatwoot conversation and contact, as the bot stored them."""
    path = client.app[STORE].path  # type: ignore[attr-defined]
    [(conversation, contact_id, source_id, phone)] = db_rows(
        path, "SELECT chatwoot_conversation_id, chatwoot_contact_id, chatwoot_source_id, phone FROM leads"
    )
    return conversation, chatwoot_contact(phone, contact_id, source_id)


def chatwoot_reply(conversation_id: int, message_id: int, content: str, contact: dict[str, Any]) -> bytes:
    """An agent's public reply (tests/fixtures/chatwoot/webhook_message_created_account.json)
    in `conversation_id`, whose contact is `contact` everywhere the payload names it."""
    payload = copy.deepcopy(load_fixture("chatwoot/webhook_message_created_account.json"))
    payload.update(id=message_id, content=content)
    conversation = payload["conversation"]
    conversation["id"] = conversation_id
    conversation["messages"][0].update(id=message_id, content=content, conversation_id=conversation_id)
    conversation["messages"][0]["conversation"]["contact_inbox"]["source_id"] = contact["source_id"]
    conversation["contact_inbox"].update(contact_id=contact["id"], source_id=contact["source_id"])
    conversation["meta"]["sender"].update(
        id=contact["id"], phone_number=f"+{contact['phone']}", identifier=f"whatsapp:{contact['phone']}"
    )
    return json.dumps(payload).encode()


ATTACKER_CONTACT = chatwoot_contact(ATTACKER, 4242, "0b1e4f2c-7a9d-4e3b-8c5f-1d2a3b4c5d6e")


def crm_body() -> bytes:
    return json.dumps(
        {"event": "deal.won", "phone": f"+{LEAD_PHONE}", "value": 15990.5, "currency": "BRL"}
    ).encode()


# --- 1. nothing secret or personal in the logs ------------------------------------------------


def chat_reply(
    reply: str, lead: dict[str, Any] | None = None, tools: list[dict[str, Any]] | None = None
) -> dict:
    return {"reply": reply, "lead": lead or {}, "tool_calls": tools or [], "summary": "Lead em qualificação."}


@pytest.mark.parametrize("instant", list(INSTANTS))
async def test_a_full_conversation_with_every_integration_leaves_no_secret_phone_or_email_in_the_logs(
    instant: str,
    provider: ProviderServer,
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    capsys.readouterr()
    settings = everything_configured(tmp_path, provider)
    client = await aiohttp_client(
        create_app(logging_for(settings), store_factory=sqlite_store, clock=TestClock(INSTANTS[instant]))
    )
    port = client.port
    assert port is not None
    state = provider.state

    # Attackers knock on every door first.
    for path in ("/webhooks/zapi", "/webhooks/waha", "/webhooks/meta", "/webhooks/chatwoot", "/webhooks/crm"):
        await raw_request(
            port,
            "POST",
            f"{path}?token=guess",
            headers=[(b"Authorization", b"Bearer guess")],
            body=zapi_body("3EB0SEC0000000FF", "forged"),
        )
    await client.get(
        "/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    )

    # The lead introduces herself; OpenAI is rate-limited once, Z-API fails once.
    state.chat_faults = deque([Fault(429, retry_after="1")])
    state.send_faults = deque([Fault(500)])
    state.chat_replies.append(
        chat_reply(
            f"Prazer, Maria! Anotei seu e-mail {LEAD_EMAIL} e o WhatsApp +55 (44) 99999-9999. "
            "Quantas unidades por dia vocês precisam?",
            {
                "name": "Maria Souza",
                "company": "Agro Souza",
                "city": "Maringá",
                "state": "PR",
                "email": LEAD_EMAIL,
                "phone": "+55 (44) 99999-9999",
            },
        )
    )
    text = (
        f"Oi! Sou a Maria Souza, da Agro Souza. Meu e-mail é {LEAD_EMAIL} "
        "e meu WhatsApp é +55 (44) 99999-9999, CPF 123.456.789-09"
    )
    response = await client.post(
        "/webhooks/zapi", params={"token": ZAPI_WEBHOOK_SECRET}, data=zapi_body("3EB0SEC000000001", text)
    )
    assert response.status == 200
    await settled(client, timeout=15)
    assert len(state.sent) == 1

    # She is hot and asks for a person: CRM deal, CAPI QualifiedLead, Chatwoot handoff.
    state.chat_replies.append(
        chat_reply(
            "Perfeito, Maria! Vou passar você agora para o nosso time comercial.",
            {
                "volume": "500 hambúrgueres/dia",
                "volume_per_day": 500,
                "urgency": "imediata",
                "decision_role": "decisor",
                "product_interest": "formadora de hambúrguer",
                "segment": "frigorífico",
            },
            [
                {
                    "tool": "handoff_to_human",
                    "reason": "lead_quente",
                    "summary": f"Maria ({LEAD_EMAIL}, +55 44 99999-9999) quer 500/dia, urgente.",
                }
            ],
        )
    )
    response = await client.post(
        "/webhooks/zapi",
        params={"token": ZAPI_WEBHOOK_SECRET},
        data=zapi_body("3EB0SEC000000002", "Preciso de 500 por dia, é urgente e eu decido a compra."),
    )
    assert response.status == 200
    await settled(client, timeout=15)
    # Out of hours the lead is also told when a person will answer.
    opening = NEXT_OPENING[instant]
    assert len(state.sent) == (2 if opening is None else 3)
    if opening is not None:
        assert opening in json.dumps(state.sent[-1], ensure_ascii=False)

    # An agent answers from Chatwoot; the CRM reports the deal won.
    conversation_id, contact = stored_contact(client)
    assert conversation_id is not None
    body = chatwoot_reply(conversation_id, 97001, "Oi Maria, aqui é o Carlos. Posso te ligar?", contact)
    response = await client.post(
        "/webhooks/chatwoot", data=body, headers=chatwoot_signature(CHATWOOT_WEBHOOK_SECRET, body)
    )
    assert response.status == 200
    response = await client.post(
        "/webhooks/crm", data=crm_body(), headers={"X-Webhook-Secret": CRM_WEBHOOK_SECRET}
    )
    assert response.status == 200

    # Two more leads on WAHA and the Cloud API, whose providers refuse the replies.
    body = waha_body()
    assert (
        await client.post("/webhooks/waha", data=body, headers=waha_signature(WAHA_HMAC_KEY, body))
    ).status == 200
    body = meta_body()
    assert (
        await client.post("/webhooks/meta", data=body, headers=meta_signature(META_APP_SECRET, body))
    ).status == 200
    await client.get(
        "/webhooks/meta",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": META_VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    await client.get("/api/health")
    await client.get("/metrics")
    await settled(client, timeout=15)
    await client.close()  # shutdown lines are part of the output too

    captured = capsys.readouterr()
    output = captured.err + captured.out
    lines = [line for line in output.splitlines() if line.strip()]
    not_json = [line[:200] for line in lines if not line.startswith("{")]
    assert not_json == [], "output that bypassed the log pipeline (and its scrubber)"
    events = {json.loads(line).get("event") for line in lines}
    # The run really went through the paths that log: it proves the scan saw something.
    for expected in (
        "webhook_rejected",
        "turn_committed",
        "outbox_retry",
        "agent_reply_relayed",
        "crm_event",
    ):
        assert expected in events, f"{expected} never logged: the scenario did not run as designed"
    assert state.unknown_requests, "no provider refused anything: the error paths were not exercised"

    leaks = []
    secrets = settings.secret_values()
    assert len(secrets) >= 14
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form in output:
                leaks.append(f"secret {secret[:6]}... as {form[:12]}...")
    for digits in (LEAD_PHONE, WAHA_LEAD, META_LEAD):
        for form in phone_forms(digits):
            if form in output:
                leaks.append(f"phone {form}")
    if LEAD_EMAIL.lower() in output.lower():
        context = output[
            max(0, output.lower().index(LEAD_EMAIL) - 300) : output.lower().index(LEAD_EMAIL) + 60
        ]
        leaks.append(f"e-mail, e.g. in: ...{context}")
    assert leaks == []


# --- 2. every webhook route authenticated ---------------------------------------------------

Headers = list[tuple[bytes, bytes]]


def forged_requests() -> list[tuple[str, str, bytes, Headers]]:
    """(case id, target, body, headers): each is refused with 401 or 403."""
    z = zapi_body("3EB0FORGED000001", "Oi")
    w = waha_body()
    m = meta_body()
    c = chatwoot_reply(318, 97002, "Me manda seu CPF", chatwoot_contact(LEAD_PHONE))
    k = crm_body()
    zero = b"0" * 64
    stale = chatwoot_signature(CHATWOOT_WEBHOOK_SECRET, c, at=int(time.time()) - 3600)
    cases: list[tuple[str, str, bytes, Headers]] = []
    for path in ("/webhooks/zapi", "/webhook/text", "/webhook/audio"):
        cases += [
            (f"{path}-no-token", path, z, []),
            (f"{path}-wrong-query-token", f"{path}?token=zwh_guess", z, []),
            (f"{path}-wrong-header", path, z, [(b"X-Webhook-Token", b"zwh_guess")]),
            (f"{path}-wrong-bearer", path, z, [(b"Authorization", b"Bearer zwh_guess")]),
            (
                f"{path}-non-utf8-header",
                path,
                z,
                [(b"X-Webhook-Token", b"\xff\xfe" + ZAPI_WEBHOOK_SECRET.encode())],
            ),
            (f"{path}-non-utf8-bearer", path, z, [(b"Authorization", b"Bearer \xc3\x28")]),
        ]
    other_body = json.dumps({"event": "message", "session": "default"}).encode()
    cases += [
        ("waha-no-signature", "/webhooks/waha", w, []),
        ("waha-forged-signature", "/webhooks/waha", w, [(b"X-Webhook-Hmac", zero * 2)]),
        (
            "waha-signature-of-another-body",
            "/webhooks/waha",
            w,
            [(b"X-Webhook-Hmac", waha_signature(WAHA_HMAC_KEY, other_body)["X-Webhook-Hmac"].encode())],
        ),
        (
            "waha-downgraded-algorithm",
            "/webhooks/waha",
            w,
            [
                (b"X-Webhook-Hmac", hmac.new(WAHA_HMAC_KEY.encode(), w, hashlib.sha256).hexdigest().encode()),
                (b"X-Webhook-Hmac-Algorithm", b"sha256"),
            ],
        ),
        ("waha-url-token-instead-of-signature", f"/webhooks/waha?token={WAHA_HMAC_KEY}", w, []),
        ("waha-non-utf8-signature", "/webhooks/waha", w, [(b"X-Webhook-Hmac", b"\xff" * 128)]),
        ("meta-no-signature", "/webhooks/meta", m, []),
        ("meta-forged-signature", "/webhooks/meta", m, [(b"X-Hub-Signature-256", b"sha256=" + zero)]),
        (
            "meta-signed-with-the-verify-token",
            "/webhooks/meta",
            m,
            [(b"X-Hub-Signature-256", meta_signature(META_VERIFY_TOKEN, m)["X-Hub-Signature-256"].encode())],
        ),
        (
            "meta-sha1-header-only",
            "/webhooks/meta",
            m,
            [
                (
                    b"X-Hub-Signature",
                    b"sha1=" + hmac.new(META_APP_SECRET.encode(), m, hashlib.sha1).hexdigest().encode(),
                )
            ],
        ),
        (
            "meta-non-ascii-signature",
            "/webhooks/meta",
            m,
            [(b"X-Hub-Signature-256", "sha256=é".encode() + zero)],
        ),
        ("meta-non-utf8-signature", "/webhooks/meta", m, [(b"X-Hub-Signature-256", b"sha256=\xff" + zero)]),
        ("chatwoot-no-credentials", "/webhooks/chatwoot", c, []),
        (
            "chatwoot-forged-signature",
            "/webhooks/chatwoot",
            c,
            [
                (b"X-Chatwoot-Signature", b"sha256=" + zero),
                (b"X-Chatwoot-Timestamp", str(int(time.time())).encode()),
            ],
        ),
        (
            "chatwoot-stale-signature",
            "/webhooks/chatwoot",
            c,
            [(k.encode(), v.encode()) for k, v in stale.items()],
        ),
        ("chatwoot-wrong-token", "/webhooks/chatwoot?token=cwHook-guess", c, []),
        ("chatwoot-api-token-as-webhook-token", f"/webhooks/chatwoot?token={CHATWOOT_API_TOKEN}", c, []),
        ("chatwoot-non-utf8-token", "/webhooks/chatwoot", c, [(b"X-Chatwoot-Webhook-Token", b"\xff")]),
        (
            "chatwoot-non-utf8-signature",
            "/webhooks/chatwoot",
            c,
            [
                (b"X-Chatwoot-Signature", b"sha256=\xff"),
                (b"X-Chatwoot-Timestamp", str(int(time.time())).encode()),
            ],
        ),
        ("crm-no-secret", "/webhooks/crm", k, []),
        ("crm-wrong-secret", "/webhooks/crm", k, [(b"X-Webhook-Secret", b"crm-guess")]),
        ("crm-wrong-query-token", "/webhooks/crm?token=crm-guess", k, []),
        (
            "crm-non-utf8-secret",
            "/webhooks/crm",
            k,
            [(b"X-Webhook-Secret", b"\xff" + CRM_WEBHOOK_SECRET.encode())],
        ),
    ]
    return cases


FORGED = forged_requests()


def counts(path: Path) -> tuple[int, int, int]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT (SELECT COUNT(*) FROM inbound), (SELECT COUNT(*) FROM outbox),"
            " (SELECT COUNT(*) FROM messages)"
        ).fetchone()


@pytest.mark.parametrize(("target", "body", "headers"), [c[1:] for c in FORGED], ids=[c[0] for c in FORGED])
async def test_unauthenticated_or_forged_webhooks_are_refused_and_change_nothing(
    bot: TestClient, provider: ProviderServer, target: str, body: bytes, headers: Headers
) -> None:
    path = bot.app[STORE].path  # type: ignore[attr-defined]
    before = counts(path)
    assert bot.port is not None
    status, payload = await raw_request(bot.port, "POST", target, headers=headers, body=body)
    assert status in (401, 403), (status, payload[:200])
    assert "error" in json.loads(payload)
    await settled(bot)  # had anything been stored, a turn would have run by now
    assert counts(path) == before
    assert provider.state.sent == [] and provider.state.chat_started == 0


@pytest.mark.parametrize(
    "token", ["", "guess", META_APP_SECRET, META_VERIFY_TOKEN.upper(), META_VERIFY_TOKEN + "x"]
)
async def test_the_meta_subscription_handshake_needs_the_verify_token(bot: TestClient, token: str) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    response = await bot.get("/webhooks/meta", params=query)
    assert response.status == 403
    assert "1158201444" not in await response.text()
    query["hub.verify_token"] = META_VERIFY_TOKEN
    response = await bot.get("/webhooks/meta", params=query)
    assert (response.status, await response.text()) == (200, "1158201444")


def signed_requests() -> list[tuple[str, str, bytes, dict[str, str]]]:
    z = zapi_body("3EB0SIGNED000001", "Oi, tudo bem?")
    return [
        ("zapi-query-token", f"/webhooks/zapi?token={ZAPI_WEBHOOK_SECRET}", z, {}),
        ("zapi-header-token", "/webhooks/zapi", z, {"X-Webhook-Token": ZAPI_WEBHOOK_SECRET}),
        ("zapi-bearer", "/webhooks/zapi", z, {"Authorization": f"Bearer {ZAPI_WEBHOOK_SECRET}"}),
        ("webhook-text", f"/webhook/text?token={ZAPI_WEBHOOK_SECRET}", z, {}),
        ("webhook-audio", f"/webhook/audio?token={ZAPI_WEBHOOK_SECRET}", z, {}),
        ("waha-hmac", "/webhooks/waha", waha_body(), waha_signature(WAHA_HMAC_KEY, waha_body())),
        ("meta-signature", "/webhooks/meta", meta_body(), meta_signature(META_APP_SECRET, meta_body())),
    ]


@pytest.mark.parametrize(
    ("target", "body", "headers"), [c[1:] for c in signed_requests()], ids=[c[0] for c in signed_requests()]
)
async def test_correctly_signed_messages_are_accepted_and_stored(
    bot: TestClient, target: str, body: bytes, headers: dict[str, str]
) -> None:
    path = bot.app[STORE].path  # type: ignore[attr-defined]
    response = await bot.post(target, data=body, headers={"Content-Type": "application/json", **headers})
    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == 1
    assert (
        db_rows(path, "SELECT COUNT(*) FROM inbound WHERE status = 'pending' OR status = 'done'")[0][0] == 1
    )


async def test_correctly_signed_chatwoot_and_crm_calls_are_accepted(bot: TestClient) -> None:
    body = chatwoot_reply(999999, 97003, "Oi", chatwoot_contact(LEAD_PHONE))
    for headers, query in (
        (chatwoot_signature(CHATWOOT_WEBHOOK_SECRET, body), {}),
        ({"X-Chatwoot-Webhook-Token": CHATWOOT_WEBHOOK_SECRET}, {}),
        ({"Authorization": f"Bearer {CHATWOOT_WEBHOOK_SECRET}"}, {}),
        ({}, {"token": CHATWOOT_WEBHOOK_SECRET}),
    ):
        response = await bot.post("/webhooks/chatwoot", data=body, headers=headers, params=query)
        assert response.status == 200, await response.text()
    for headers, query in (
        ({"X-Webhook-Secret": CRM_WEBHOOK_SECRET}, {}),
        ({}, {"token": CRM_WEBHOOK_SECRET}),
    ):
        response = await bot.post("/webhooks/crm", data=crm_body(), headers=headers, params=query)
        assert response.status == 200, await response.text()


async def test_without_their_secrets_the_meta_chatwoot_and_crm_routes_accept_nothing(
    provider: ProviderServer, aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    """These routes can make the bot write to anyone (or teach the ads a lie): with no
    secret configured they refuse everything instead of trusting everyone."""
    client = await aiohttp_client(create_app(loopback_settings(tmp_path, provider), clock=TestClock()))
    for target, body in (
        ("/webhooks/meta", meta_body()),
        ("/webhooks/chatwoot", chatwoot_reply(318, 97004, "Oi", chatwoot_contact(LEAD_PHONE))),
        ("/webhooks/crm", crm_body()),
    ):
        response = await client.post(target, data=body, headers={"Content-Type": "application/json"})
        assert response.status in (401, 403), (target, response.status)


# --- 3. the Chatwoot relay cannot message an arbitrary number -------------------------------------


async def lead_with_a_chatwoot_conversation(bot: TestClient, provider: ProviderServer) -> tuple[int, dict]:
    """A lead who wrote once: the bot answered and mirrored the conversation to Chatwoot."""
    response = await bot.post(
        "/webhooks/zapi", params={"token": ZAPI_WEBHOOK_SECRET}, data=zapi_body("3EB0RELAY0000001", "Oi")
    )
    assert response.status == 200
    await settled(bot)
    assert len(provider.state.sent) == 1
    return stored_contact(bot)


async def relay(bot: TestClient, body: bytes) -> str:
    response = await bot.post(
        "/webhooks/chatwoot", data=body, headers=chatwoot_signature(CHATWOOT_WEBHOOK_SECRET, body)
    )
    assert response.status == 200, await response.text()
    return (await response.json())["outcome"]


def sent_to(provider: ProviderServer) -> list[tuple[str, str]]:
    return [(s["phone"], s["message"]) for s in provider.state.sent]


async def test_a_chatwoot_reply_for_an_unknown_conversation_sends_nothing(
    bot: TestClient, provider: ProviderServer
) -> None:
    conversation, _lead = await lead_with_a_chatwoot_conversation(bot, provider)
    before = sent_to(provider)
    outcome = await relay(
        bot, chatwoot_reply(conversation + 1000, 97010, "Seu boleto: http://golpe.example", ATTACKER_CONTACT)
    )
    assert outcome == "unknown_conversation"
    await settled(bot)
    assert sent_to(provider) == before


async def test_a_chatwoot_reply_whose_contact_is_not_the_stored_lead_sends_nothing(
    bot: TestClient, provider: ProviderServer
) -> None:
    """The conversation id is ours but its contact is someone else (Chatwoot contacts
    merged or edited, or a forged payload): the agent's words are not for our lead, and
    must not reach anybody."""
    conversation, _lead = await lead_with_a_chatwoot_conversation(bot, provider)
    before = sent_to(provider)
    await relay(
        bot,
        chatwoot_reply(conversation, 97011, "Oi João, segue o orçamento da sua empresa", ATTACKER_CONTACT),
    )
    await settled(bot)
    assert sent_to(provider) == before


async def test_a_chatwoot_reply_reaches_only_the_lead_the_conversation_belongs_to(
    bot: TestClient, provider: ProviderServer
) -> None:
    conversation, lead = await lead_with_a_chatwoot_conversation(bot, provider)
    before = sent_to(provider)
    assert (
        await relay(bot, chatwoot_reply(conversation, 97012, "Oi Maria, aqui é o Carlos.", lead)) == "relayed"
    )
    await settled(bot)
    assert sent_to(provider)[len(before) :] == [(LEAD_PHONE, "Oi Maria, aqui é o Carlos.")]
    assert all(phone == LEAD_PHONE for phone, _ in sent_to(provider))


# --- 4. constant-time comparisons ----------------------------------------------------------


async def test_every_route_compares_credentials_with_hmac_compare_digest(
    bot: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behaviour: each route, given a wrong credential, reaches hmac.compare_digest with
    the expected value (so the comparison takes the same time however much matches)."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    def compared(expected: str) -> bool:
        want = expected.lower()
        for a, b in calls:
            for side in (a, b):
                value = side.decode("utf-8", "replace") if isinstance(side, bytes) else str(side)
                if want in value.lower():
                    return True
        return False

    m, w, c = meta_body(), waha_body(), chatwoot_reply(318, 97020, "Oi", chatwoot_contact(LEAD_PHONE))
    checks = [
        (
            "/webhooks/zapi",
            {"token": "zwh_guess"},
            {},
            zapi_body("3EB0CT0000000001", "Oi"),
            ZAPI_WEBHOOK_SECRET,
        ),
        (
            "/webhooks/waha",
            {},
            {"X-Webhook-Hmac": "00" * 64},
            w,
            hmac.new(WAHA_HMAC_KEY.encode(), w, hashlib.sha512).hexdigest(),
        ),
        (
            "/webhooks/meta",
            {},
            {"X-Hub-Signature-256": "sha256=" + "0" * 64},
            m,
            hmac.new(META_APP_SECRET.encode(), m, hashlib.sha256).hexdigest(),
        ),
        ("/webhooks/chatwoot", {"token": "cwHook-guess"}, {}, c, CHATWOOT_WEBHOOK_SECRET),
        ("/webhooks/crm", {}, {"X-Webhook-Secret": "crm-guess"}, crm_body(), CRM_WEBHOOK_SECRET),
    ]
    for target, query, headers, body, expected in checks:
        calls.clear()
        response = await bot.post(target, params=query, data=body, headers=headers)
        assert response.status in (401, 403), target
        assert compared(expected), f"{target} never compared its credential with hmac.compare_digest"
    calls.clear()
    query = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    assert (await bot.get("/webhooks/meta", params=query)).status == 403
    assert compared(META_VERIFY_TOKEN)


AUTH_FUNCTIONS = [
    zapi.ZapiChannel.authenticate,
    waha.WahaChannel._verify_hmac,
    waha.WahaChannel._verify_token,
    meta_common.verify_signature,
    meta_common.verify_subscription,
    chatwoot.verify_webhook,
    crm_webhook._authenticated,
]
SECRETISH = {
    "secret",
    "expected",
    "token",
    "candidate",
    "provided",
    "given",
    "signature",
    "digest",
    "key",
    "header",
}


def _resolve(node: ast.expr, scope: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, scope)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def _reaches_compare_digest(function: Callable[..., Any], depth: int = 2) -> bool:
    """Whether `function` calls hmac.compare_digest, itself or through a helper it calls."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _resolve(node.func, function.__globals__)
        if target is hmac.compare_digest:
            return True
        if depth and inspect.isfunction(target) and _reaches_compare_digest(target, depth - 1):
            return True
    return False


@pytest.mark.parametrize("function", AUTH_FUNCTIONS, ids=lambda f: f.__qualname__)
def test_credential_checks_use_compare_digest_and_never_equality(function: Callable[..., Any]) -> None:
    """Complement to the behaviour test: the code that checks credentials reaches
    hmac.compare_digest, and has no `==`, `!=` or `in` between values that hold secrets
    or what the caller sent."""
    assert _reaches_compare_digest(function)
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    offenders = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            continue
        names = {n.id.lower() for n in ast.walk(node) if isinstance(n, ast.Name)}
        if any(part in name for name in names for part in SECRETISH):
            offenders.append(ast.unparse(node))
    assert offenders == []

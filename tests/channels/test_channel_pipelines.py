"""Each channel end to end: the provider's webhook in, the bot's reply out through that
provider, with the routes' authentication, the 24-hour window and delivery statuses.

Providers are faked at the HTTP boundary with the fixtures in tests/fixtures/<provider>/.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aioresponses import CallbackResult, aioresponses

from core.settings import Settings
from tests.conftest import fast_settings
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, load_fixture
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import RUNNER, STORE

WAHA_URL = "http://waha.local:3000"
WAHA_KEY = "waha-api-key-5f1e2d3c4b5a"
WAHA_HMAC = "waha-hmac-key-0a9b8c7d6e5f"
APP_SECRET = "meta-app-secret-1a2b3c4d5e6f7a8b"
VERIFY_TOKEN = "meta-verify-token-9z8y7x"
PHONE_NUMBER_ID = "106540352242922"
WA_TOKEN = "EAAGwhatsapp-token-1234567890"
IG_ACCOUNT = "17841400008460056"
IG_TOKEN = "IGQVJinstagram-token-0987654321"
GRAPH = "https://graph.facebook.com/v21.0"


def channel_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "waha_url": WAHA_URL,
        "waha_api_key": WAHA_KEY,
        "waha_webhook_hmac_key": WAHA_HMAC,
        "meta_app_secret": APP_SECRET,
        "meta_verify_token": VERIFY_TOKEN,
        "whatsapp_phone_number_id": PHONE_NUMBER_ID,
        "whatsapp_access_token": WA_TOKEN,
        "instagram_account_id": IG_ACCOUNT,
        "instagram_access_token": IG_TOKEN,
        "typing_chars_per_s": 10_000,
    }
    values.update(overrides)
    return fast_settings(tmp_path, **values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return channel_settings(tmp_path)


def meta_signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def waha_signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(WAHA_HMAC.encode(), body, hashlib.sha512).hexdigest()
    return {
        "X-Webhook-Hmac": digest,
        "X-Webhook-Hmac-Algorithm": "sha512",
        "Content-Type": "application/json",
    }


def rows(bot: TestClient, sql: str) -> list[tuple]:
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        return db.execute(sql).fetchall()


class Recorder:
    """Records provider calls and answers with a fixture (or a Meta error)."""

    def __init__(self, response: dict[str, Any], *, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        # Cloud API read receipts (status: read) share the messages endpoint; kept apart
        # so `bodies` are the messages the lead receives.
        self.receipts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.response = response
        self.status = status

    async def handle(self, url: Any, **kwargs: Any) -> CallbackResult:
        data = kwargs.get("json")
        if data is None and kwargs.get("data") is not None:
            data = json.loads(kwargs["data"])
        (self.receipts if data.get("status") == "read" else self.bodies).append(data)
        self.headers.append(dict(kwargs.get("headers") or {}))
        return CallbackResult(status=self.status, payload=self.response)

    def texts(self) -> list[str]:
        out = []
        for body in self.bodies:
            if "text" in body and isinstance(body["text"], str):
                out.append(body["text"])  # WAHA
            elif isinstance(body.get("text"), dict):
                out.append(body["text"]["body"])  # Cloud API
            elif isinstance(body.get("message"), dict) and "text" in body["message"]:
                out.append(body["message"]["text"])  # Instagram
        return out


# --- WAHA -------------------------------------------------------------------------------


async def test_waha_message_is_answered_through_waha(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    send = Recorder(load_fixture("waha/send_text_response_gows.json"), status=201)
    http_mock.post(f"{WAHA_URL}/api/sendText", callback=send.handle, repeat=True)
    seen = Recorder({}, status=200)
    http_mock.post(f"{WAHA_URL}/api/sendSeen", callback=seen.handle, repeat=True)
    http_mock.post(f"{WAHA_URL}/api/startTyping", payload={}, repeat=True)
    openai_fake.then(reply="Oi! Sou da Seleto. Qual é o seu nome?")

    inbound = load_fixture("waha/message_text.json")
    body = json.dumps(inbound).encode()
    response = await bot.post("/webhooks/waha", data=body, headers=waha_signed(body))
    assert response.status == 200, await response.text()
    await settled(bot)
    # Seen names the lead's message the reply answers (SendSeenRequest.messageIds).
    assert seen.bodies == [
        {"chatId": "5511999999999@c.us", "session": "default", "messageIds": [inbound["payload"]["id"]]}
    ]
    assert send.bodies == [
        {
            "chatId": "5511999999999@c.us",
            "text": "Oi! Sou da Seleto. Qual é o seu nome?",
            "session": "default",
        }
    ]
    assert send.headers[0]["X-Api-Key"] == WAHA_KEY


async def test_waha_forged_or_altered_signature_is_refused_and_nothing_is_stored(
    bot: TestClient, openai_fake: FakeOpenAI
) -> None:
    body = json.dumps(load_fixture("waha/message_text.json")).encode()
    altered = body.replace(b"Ol", b"Al", 1)
    for data, headers in ((body, {}), (altered, waha_signed(body)), (body, {"X-Webhook-Hmac": "0" * 128})):
        response = await bot.post("/webhooks/waha", data=data, headers=headers)
        assert response.status in (401, 403)
        assert "error" in await response.json()
    assert rows(bot, "SELECT COUNT(*) FROM inbound") == [(0,)]
    assert openai_fake.calls_started == 0


async def test_waha_session_status_shows_in_health(bot: TestClient) -> None:
    body = json.dumps(load_fixture("waha/session_status_scan_qr.json")).encode()
    assert (await bot.post("/webhooks/waha", data=body, headers=waha_signed(body))).status == 200
    health = await (await bot.get("/api/health")).json()
    assert health["services"]["waha"] == "error"
    body = json.dumps(load_fixture("waha/session_status_working.json")).encode()
    await bot.post("/webhooks/waha", data=body, headers=waha_signed(body))
    health = await (await bot.get("/api/health")).json()
    assert health["services"]["waha"] == "configured"


# --- WhatsApp Cloud API ----------------------------------------------------------------------


async def test_cloud_api_message_is_answered_and_statuses_are_stored(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    send = Recorder(load_fixture("whatsapp_cloud/send_text_response.json"))
    http_mock.post(f"{GRAPH}/{PHONE_NUMBER_ID}/messages", callback=send.handle, repeat=True)
    openai_fake.then(reply="Entregamos em todo o Brasil! Qual produto te interessa?")

    inbound = load_fixture("whatsapp_cloud/text.json")
    body = json.dumps(inbound).encode()
    response = await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))
    assert response.status == 200, await response.text()
    await settled(bot)
    assert send.texts() == ["Entregamos em todo o Brasil! Qual produto te interessa?"]
    # While the model thought, the lead saw blue ticks and "typing..." on their message.
    lead_message = inbound["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert send.receipts == [
        {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": lead_message,
            "typing_indicator": {"type": "text"},
        }
    ]
    assert send.bodies[0]["to"] == "5511987654321"
    assert all(h["Authorization"] == f"Bearer {WA_TOKEN}" for h in send.headers)
    assert rows(bot, "SELECT status FROM messages WHERE direction = 'out'") == [("sent",)]

    # Meta reports the message read: stored on our message.
    sent_id = load_fixture("whatsapp_cloud/send_text_response.json")["messages"][0]["id"]
    status = load_fixture("whatsapp_cloud/status_read.json")
    status["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = sent_id
    body = json.dumps(status).encode()
    assert (await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))).status == 200
    assert rows(bot, "SELECT status FROM messages WHERE direction = 'out'") == [("read",)]


async def test_meta_signature_valid_forged_missing_and_altered(
    bot: TestClient, openai_fake: FakeOpenAI
) -> None:
    body = json.dumps(load_fixture("whatsapp_cloud/text.json")).encode()
    one_byte_changed = body.replace(b"Campinas", b"Campinaz")
    cases = [
        ({}, body, 401),
        (meta_signed(body, secret="not-the-app-secret"), body, 403),
        (meta_signed(body), one_byte_changed, 403),
    ]
    for headers, data, expected in cases:
        response = await bot.post("/webhooks/meta", data=data, headers=headers)
        assert response.status == expected
    assert rows(bot, "SELECT COUNT(*) FROM inbound") == [(0,)]
    assert openai_fake.calls_started == 0


async def test_meta_hub_verification(bot: TestClient) -> None:
    ok = await bot.get(
        "/webhooks/meta",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
    )
    assert ok.status == 200 and await ok.text() == "1158201444"
    wrong = await bot.get(
        "/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    )
    assert wrong.status == 403


async def _lead_goes_quiet(bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI) -> Recorder:
    send = Recorder(load_fixture("whatsapp_cloud/send_text_response.json"))
    http_mock.post(f"{GRAPH}/{PHONE_NUMBER_ID}/messages", callback=send.handle, repeat=True)
    body = json.dumps(load_fixture("whatsapp_cloud/text.json")).encode()
    await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))
    await settled(bot)
    assert len(send.bodies) == 1  # the bot's first answer, inside the window
    return send


async def _reply_after(bot: TestClient, clock: TestClock, hours: float, *, text: str) -> None:
    """The bot writes (e.g. a human's message through the outbox) `hours` after the lead."""
    runner = bot.app[RUNNER]
    clock.advance(hours=hours)
    lead = await bot.app[STORE].get_lead("whatsapp:5511987654321")
    assert lead is not None
    commit = runner.builder.build("t-late", lead.contact_key, [], lead, reply=text, at=runner.clock())
    commit.lead_wrote = False
    await bot.app[STORE].commit_turn(commit)
    runner.on_commit()


async def test_inside_the_window_free_text_goes_out(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI, clock: TestClock
) -> None:
    send = await _lead_goes_quiet(bot, http_mock, openai_fake)
    await _reply_after(bot, clock, 23, text="Ainda por aí? Posso ajudar com a FB300.")
    await settled(bot)
    assert len(send.bodies) == 2
    assert send.bodies[1]["type"] == "text"
    assert send.texts()[1] == "Ainda por aí? Posso ajudar com a FB300."


async def test_outside_the_window_the_approved_template_goes_instead(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    http_mock: aioresponses,
    openai_fake: FakeOpenAI,
    clock: TestClock,
) -> None:
    bot = await aiohttp_client(
        create_app(channel_settings(tmp_path, whatsapp_reengage_template="retomar_contato"), clock=clock)
    )
    send = await _lead_goes_quiet(bot, http_mock, openai_fake)
    await _reply_after(bot, clock, 25, text="Ainda por aí?")
    await settled(bot)
    assert send.bodies[1]["type"] == "template"
    assert send.bodies[1]["template"]["name"] == "retomar_contato"
    failed = rows(bot, "SELECT status, error FROM messages WHERE direction = 'out' ORDER BY id")[-1]
    assert failed[0] == "failed" and "window" in failed[1]
    assert len(send.bodies) == 2  # the free text never went out, one template did


async def test_outside_the_window_without_a_template_a_person_takes_over(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI, clock: TestClock
) -> None:
    send = await _lead_goes_quiet(bot, http_mock, openai_fake)
    await _reply_after(bot, clock, 25, text="Ainda por aí?")
    await settled(bot)
    assert rows(bot, "SELECT handoff_state FROM leads") == [("requested",)]
    assert len(send.bodies) == 1  # nothing sent outside the window
    assert rows(bot, "SELECT handoff_reason FROM leads") == [("fora_da_janela_24h",)]


async def test_a_revoked_token_turns_the_channel_red_in_health(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    http_mock.post(
        f"{GRAPH}/{PHONE_NUMBER_ID}/messages",
        status=401,
        payload=load_fixture("whatsapp_cloud/error_190.json"),
        repeat=True,
    )
    body = json.dumps(load_fixture("whatsapp_cloud/text.json")).encode()
    await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))
    await settled(bot)
    assert rows(bot, "SELECT status FROM outbox") == [("dead",)]
    health = await (await bot.get("/api/health")).json()
    assert health["services"]["whatsapp_cloud"] == "error"


async def test_an_invalid_recipient_is_recorded_on_the_message(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    http_mock.post(
        f"{GRAPH}/{PHONE_NUMBER_ID}/messages",
        status=400,
        payload=load_fixture("whatsapp_cloud/error_131030.json"),
        repeat=True,
    )
    body = json.dumps(load_fixture("whatsapp_cloud/text.json")).encode()
    await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))
    await settled(bot)
    assert rows(bot, "SELECT status FROM outbox") == [("dead",)]
    status, error = rows(bot, "SELECT status, error FROM messages WHERE direction = 'out'")[0]
    assert status == "failed" and "invalid recipient" in error


async def test_a_recipient_not_on_whatsapp_is_recorded_and_handed_to_the_sellers(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    # 131026 "Message undeliverable": retrying cannot help, a person can call instead.
    http_mock.post(
        f"{GRAPH}/{PHONE_NUMBER_ID}/messages",
        status=400,
        payload=load_fixture("whatsapp_cloud/error_131026.json"),
        repeat=True,
    )
    body = json.dumps(load_fixture("whatsapp_cloud/text.json")).encode()
    await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))
    await settled(bot)
    assert rows(bot, "SELECT status FROM outbox") == [("done",)]
    status, error = rows(bot, "SELECT status, error FROM messages WHERE direction = 'out'")[0]
    assert status == "failed" and "not on WhatsApp" in error
    assert rows(bot, "SELECT handoff_state, handoff_reason FROM leads") == [
        ("requested", "numero_sem_whatsapp")
    ]


# --- Instagram ----------------------------------------------------------------------------------


async def test_instagram_message_is_answered_through_the_graph_api(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    send_ok = load_fixture("instagram/send_text_response.json")
    send = Recorder(send_ok)
    http_mock.post(f"{GRAPH}/me/messages", callback=send.handle, repeat=True)
    http_mock.get(
        f"{GRAPH}/1254459154682919?fields=name,username",
        payload=load_fixture("instagram/user_profile.json"),
        repeat=True,
    )
    openai_fake.then(reply="Entregamos em Curitiba, sim! Qual equipamento você procura?")

    body = json.dumps(load_fixture("instagram/message_text.json")).encode()
    response = await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))
    assert response.status == 200, await response.text()
    await settled(bot)
    assert send.texts() == ["Entregamos em Curitiba, sim! Qual equipamento você procura?"]
    message = [b for b in send.bodies if "message" in b][0]
    assert message["recipient"] == {"id": "1254459154682919"}
    assert "tag" not in message
    # The lead is keyed by IGSID and got its name from the profile API.
    lead = rows(bot, "SELECT contact_key, name FROM leads")[0]
    assert lead[0] == "instagram:1254459154682919"
    assert lead[1]


async def test_a_lead_back_in_the_thread_from_an_ad_is_credited_to_that_ad(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    http_mock.post(
        f"{GRAPH}/me/messages", payload=load_fixture("instagram/send_text_response.json"), repeat=True
    )
    http_mock.get(
        f"{GRAPH}/1254459154682919?fields=name,username",
        payload=load_fixture("instagram/user_profile.json"),
        repeat=True,
    )
    body = json.dumps(load_fixture("instagram/message_text.json")).encode()
    assert (await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))).status == 200
    await settled(bot)
    assert rows(bot, "SELECT referral FROM leads") == [(None,)]

    referral = load_fixture("instagram/messaging_referral_ad.json")
    body = json.dumps(referral).encode()
    response = await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))
    assert response.status == 200 and (await response.json())["referrals"] == 1
    await settled(bot)
    [(stored,)] = rows(bot, "SELECT referral FROM leads")
    ad_id = referral["entry"][0]["messaging"][0]["referral"]["ad_id"]
    assert json.loads(stored)["source_id"] == ad_id
    assert openai_fake.chat_calls == 1  # an ad click is not a message to answer


async def test_instagram_echo_is_recorded_and_never_answered(
    bot: TestClient, openai_fake: FakeOpenAI
) -> None:
    body = json.dumps(load_fixture("instagram/message_echo.json")).encode()
    response = await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))
    assert response.status == 200
    assert (await response.json())["accepted"] == 0
    assert rows(bot, "SELECT status FROM inbound") == [("ignored",)]
    assert openai_fake.calls_started == 0


async def test_a_split_reply_outside_the_window_sends_one_template_not_one_per_bubble(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    http_mock: aioresponses,
    openai_fake: FakeOpenAI,
    clock: TestClock,
) -> None:
    bot = await aiohttp_client(
        create_app(channel_settings(tmp_path, whatsapp_reengage_template="retomar_contato"), clock=clock)
    )
    send = await _lead_goes_quiet(bot, http_mock, openai_fake)
    await _reply_after(bot, clock, 25, text="Primeiro.\n\nSegundo.\n\nTerceiro.")
    await settled(bot)
    assert rows(bot, "SELECT COUNT(*) FROM outbox WHERE status != 'done'") == [(0,)]
    templates = [b for b in send.bodies if b.get("type") == "template"]
    assert len(templates) == 1
    assert len(send.bodies) == 2  # the first answer and one template: no bubble went out as text


async def test_a_click_to_whatsapp_ad_is_kept_on_the_lead_for_attribution(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    http_mock.post(
        f"{GRAPH}/{PHONE_NUMBER_ID}/messages",
        payload=load_fixture("whatsapp_cloud/send_text_response.json"),
        repeat=True,
    )
    fixture = load_fixture("whatsapp_cloud/referral_ctwa.json")
    body = json.dumps(fixture).encode()
    assert (await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))).status == 200
    await settled(bot)
    referral = json.loads(rows(bot, "SELECT referral FROM leads")[0][0])
    sent = fixture["entry"][0]["changes"][0]["value"]["messages"][0]["referral"]
    assert referral["ctwa_clid"] == sent["ctwa_clid"]
    assert referral["source_id"] == sent["source_id"]

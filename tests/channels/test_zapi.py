"""Z-API channel: webhook parsing (from documented payloads), auth, send and media download."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from aioresponses import aioresponses
from yarl import URL

from channels.base import ParsedWebhook
from channels.zapi import ZapiChannel, ZapiConfig
from core.errors import ProviderError, WebhookRejected
from core.models import InboundMessage, MessageKind
from core.settings import Settings
from web.configs.channels import zapi_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "zapi"

INSTANCE_ID = "3C0FFEE1234INSTANCE"
INSTANCE_TOKEN = "inst-tok-SECRET-9f8e7d"
CLIENT_TOKEN = "client-tok-SECRET-1a2b3c"
WEBHOOK_SECRET = "hook-secret-XYZ-123"
BASE_URL = "https://api.z-api.io"
SEND_URL = f"{BASE_URL}/instances/{INSTANCE_ID}/token/{INSTANCE_TOKEN}/send-text"
PHONE = "5544999999999"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "zapi_base_url": BASE_URL,
        "zapi_instance_id": INSTANCE_ID,
        "zapi_instance_token": INSTANCE_TOKEN,
        "zapi_client_token": CLIENT_TOKEN,
        "zapi_webhook_secret": None,
        "http_timeout_s": 7.5,
    }
    values.update(overrides)
    return Settings(**values)


def make_config(**overrides: Any) -> ZapiConfig:
    """The adapter's config as the app maps it, so blank values read as unset like in production."""
    return zapi_config(make_settings(**overrides))


@pytest.fixture
def channel() -> ZapiChannel:
    return ZapiChannel(make_config())


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def only_message(result: ParsedWebhook) -> InboundMessage:
    assert result.ignored == []
    assert len(result.messages) == 1
    return result.messages[0]


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


# --- fixtures are sourced ----------------------------------------------------------


def test_every_fixture_cites_its_source() -> None:
    files = sorted(FIXTURES.glob("*.json"))
    assert len(files) >= 16
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data.get("_source"), str) and "z-api" in data["_source"].lower(), path.name


# --- parsing: received messages ----------------------------------------------------


def test_channel_identity(channel: ZapiChannel) -> None:
    assert channel.name == "zapi"
    assert channel.configured is True
    assert ZapiChannel(make_config(zapi_instance_id=None)).configured is False
    assert ZapiChannel(make_config(zapi_instance_token=None)).configured is False


def test_text(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_text.json")))
    assert msg.channel == "zapi"
    assert msg.contact_id == PHONE
    assert msg.phone == PHONE
    assert msg.contact_key == f"whatsapp:{PHONE}"  # one lead per phone across WhatsApp providers
    assert msg.name == "Maria Souza"
    assert msg.kind is MessageKind.TEXT
    assert msg.text == "Olá, quero saber o preço do plano anual"
    assert msg.provider_message_id == "3EB0A1B2C3D4E5F60001"
    assert msg.timestamp == ms(1632228638000)
    assert msg.from_me is False and msg.is_group is False
    assert msg.referral is None and msg.media_url is None


def test_audio_voice_note_is_transcribable(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_audio_ptt.json")))
    assert msg.kind is MessageKind.AUDIO
    assert msg.media_url == "https://example.com/zapi-media/3EB0A1B2C3D4E5F60002.ogg"
    assert msg.media_mime == "audio/ogg; codecs=opus"
    assert msg.text is None
    assert msg.contact_id == PHONE
    assert msg.timestamp == ms(1632228849000)


def test_image(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_image.json")))
    assert msg.kind is MessageKind.IMAGE
    assert msg.media_url == "https://example.com/zapi-media/3EB0A1B2C3D4E5F60003.jpeg"
    assert msg.media_mime == "image/jpeg"
    assert msg.media_caption == "Essa é a fachada da loja"
    assert msg.name == "Maria Souza"


def test_document(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_document.json")))
    assert msg.kind is MessageKind.DOCUMENT
    assert msg.media_url == "https://example.com/zapi-media/3EB0A1B2C3D4E5F60004.pdf"
    assert msg.media_mime == "application/pdf"
    assert msg.file_name == "orcamento.pdf"


def test_video_with_empty_caption(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_video.json")))
    assert msg.kind is MessageKind.VIDEO
    assert msg.media_url == "https://example.com/zapi-media/3EB0A1B2C3D4E5F60005.mp4"
    assert msg.media_mime == "video/mp4"
    assert msg.media_caption is None  # "" means no caption


def test_sticker(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_sticker.json")))
    assert msg.kind is MessageKind.STICKER
    assert msg.media_url == "https://example.com/zapi-media/3EB0A1B2C3D4E5F60006.webp"
    assert msg.media_mime == "image/webp"


def test_location(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_location.json")))
    assert msg.kind is MessageKind.LOCATION
    assert msg.text == "Localização: Escritório Centro - Praça da Sé, São Paulo - SP (-23.55052, -46.633308)"


def test_location_without_name_keeps_coordinates(channel: ZapiChannel) -> None:
    payload = load("received_location.json")
    payload["location"] = {"longitude": -46.6, "latitude": -23.5, "address": "", "url": ""}
    msg = only_message(channel.parse(payload))
    assert msg.text == "Localização: (-23.5, -46.6)"


def test_contact(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_contact.json")))
    assert msg.kind is MessageKind.CONTACT
    assert msg.text == "Contato compartilhado: Cesar Baleco 5544988887777"


def test_contact_phone_from_vcard_when_phones_missing(channel: ZapiChannel) -> None:
    payload = load("received_contact.json")
    del payload["contact"]["phones"]
    msg = only_message(channel.parse(payload))
    assert msg.text == "Contato compartilhado: Cesar Baleco 5544988887777"


def test_button_reply(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_button_reply.json")))
    assert msg.kind is MessageKind.BUTTON_REPLY
    assert msg.text == "Ótimo"
    assert msg.reply_to_provider_id == "3EB0FFEEDDCCBBAA0001"


def test_list_reply_uses_chosen_option_title(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_list_reply.json")))
    assert msg.kind is MessageKind.LIST_REPLY
    assert msg.text == "Z-API"
    assert msg.reply_to_provider_id == "3EB0FFEEDDCCBBAA0002"


def test_reaction(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_reaction.json")))
    assert msg.kind is MessageKind.REACTION
    assert msg.text == "❤️"
    assert msg.reply_to_provider_id == "3EB0796DC6B777C0C7CD"


def test_ad_referral(channel: ZapiChannel) -> None:
    msg = only_message(channel.parse(load("received_text_from_ad.json")))
    assert msg.kind is MessageKind.TEXT
    assert msg.text == "Olá! Tenho interesse e queria mais informações."
    assert msg.referral is not None
    assert msg.referral.source_id == "23722824350495506"
    assert msg.referral.source_url == "https://fb.me/1a2b3c4d5"
    assert msg.referral.source_type == "ad"
    assert msg.referral.headline == "Plano Anual com 30% OFF"
    assert msg.referral.ctwa_clid is None  # Z-API does not document one
    assert msg.timestamp == ms(1657209752000)


def test_ad_referral_keeps_ctwa_clid_if_present(channel: ZapiChannel) -> None:
    payload = load("received_text_from_ad.json")
    payload["externalAdReply"]["ctwaClid"] = "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0"
    msg = only_message(channel.parse(payload))
    assert msg.referral is not None and msg.referral.ctwa_clid.startswith("ARAkLkA8")


def test_null_external_ad_reply_is_no_referral(channel: ZapiChannel) -> None:
    payload = load("received_text.json")
    payload["externalAdReply"] = None
    assert only_message(channel.parse(payload)).referral is None


def test_from_me_is_ignored_but_keeps_the_message(channel: ZapiChannel) -> None:
    result = channel.parse(load("received_from_me.json"))
    assert result.messages == []
    assert len(result.ignored) == 1
    event = result.ignored[0]
    assert event.reason == "from_me"
    assert event.provider_message_id == "3EB0A1B2C3D4E5F6000D"
    assert event.message is not None
    assert event.message.from_me is True
    assert event.message.contact_id == PHONE
    assert event.message.text == "Oi Maria, aqui é o João da loja, já te ligo"
    # senderName is the business on our own messages; the lead is the chat.
    assert event.message.name == "Maria Souza"


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("received_group.json", "group"),
        ("received_newsletter.json", "newsletter"),
        ("received_status_broadcast.json", "broadcast"),
        ("received_missed_call.json", "notification"),
        ("delivery_callback.json", "delivery"),
        ("connected.json", "connection"),
        ("disconnected.json", "connection"),
    ],
)
def test_not_answerable_events_are_ignored_without_message(
    channel: ZapiChannel, fixture: str, reason: str
) -> None:
    result = channel.parse(load(fixture))
    assert result.messages == []
    assert result.ignored
    assert all(event.reason == reason for event in result.ignored)
    assert all(event.message is None for event in result.ignored)


def test_status_callback_is_a_delivery_status_per_id(channel: ZapiChannel) -> None:
    result = channel.parse(load("message_status_read.json"))
    assert result.messages == [] and result.ignored == []
    assert [(s.provider_message_id, s.status) for s in result.statuses] == [("999999999999999999999", "read")]


@pytest.mark.parametrize(
    "mutation",
    [
        {"isGroup": False, "phone": "120363019502650977-group"},
        {"isGroup": False, "phone": "120363019502650977@g.us"},
        {"isGroup": True},
    ],
)
def test_group_detected_by_flag_or_phone(channel: ZapiChannel, mutation: dict[str, Any]) -> None:
    payload = load("received_text.json") | mutation
    assert [e.reason for e in channel.parse(payload).ignored] == ["group"]


def test_group_message_from_me_is_still_a_group(channel: ZapiChannel) -> None:
    payload = load("received_group.json") | {"fromMe": True}
    result = channel.parse(payload)
    assert [e.reason for e in result.ignored] == ["group"]
    assert result.ignored[0].message is None


def test_newsletter_detected_by_phone_suffix(channel: ZapiChannel) -> None:
    payload = load("received_text.json") | {"phone": "120363200015845017@newsletter"}
    assert [e.reason for e in channel.parse(payload).ignored] == ["newsletter"]


def test_type_is_case_insensitive(channel: ZapiChannel) -> None:
    # The docs' field table spells it "ReceivedCallBack".
    payload = load("received_text.json") | {"type": "ReceivedCallBack"}
    assert only_message(channel.parse(payload)).text


def test_unknown_event_type_is_not_a_message(channel: ZapiChannel) -> None:
    result = channel.parse({"type": "SomethingNewCallback", "foo": 1})
    assert [e.reason for e in result.ignored] == ["not_a_message"]


def test_phone_is_reduced_to_digits(channel: ZapiChannel) -> None:
    payload = load("received_text.json") | {"phone": "+55 (44) 99999-9999"}
    assert only_message(channel.parse(payload)).contact_id == PHONE
    payload = load("received_text.json") | {"phone": f"{PHONE}@c.us"}
    assert only_message(channel.parse(payload)).contact_id == PHONE


def test_lid_contact_is_kept_whole_without_phone(channel: ZapiChannel) -> None:
    payload = load("received_text.json") | {"phone": "81896604192873@lid"}
    msg = only_message(channel.parse(payload))
    assert msg.contact_id == "81896604192873@lid"
    assert msg.phone is None


def test_name_falls_back_to_chat_name(channel: ZapiChannel) -> None:
    payload = load("received_text.json") | {"senderName": "", "chatName": "Maria S."}
    assert only_message(channel.parse(payload)).name == "Maria S."
    payload = load("received_text.json") | {"senderName": PHONE, "chatName": None}
    assert only_message(channel.parse(payload)).name is None


def test_timestamp_in_seconds_and_missing(channel: ZapiChannel) -> None:
    payload = load("received_text.json")
    del payload["momment"]
    payload["timestamp"] = 1704456000  # the design doc's sample uses epoch seconds
    assert only_message(channel.parse(payload)).timestamp == datetime(2024, 1, 5, 12, 0, tzinfo=UTC)
    del payload["timestamp"]
    before = datetime.now(UTC)
    assert only_message(channel.parse(payload)).timestamp >= before


def test_absurd_timestamp_falls_back_to_now(channel: ZapiChannel) -> None:
    payload = load("received_text.json") | {"momment": 10**30}
    before = datetime.now(UTC)
    assert only_message(channel.parse(payload)).timestamp >= before


def test_waiting_message_without_content_is_ignored(channel: ZapiChannel) -> None:
    payload = load("received_text.json") | {"waitingMessage": True}
    del payload["text"]
    assert [e.reason for e in channel.parse(payload).ignored] == ["waiting_message"]


def test_unknown_content_is_kind_other(channel: ZapiChannel) -> None:
    payload = load("received_text.json")
    del payload["text"]
    payload["product"] = {"title": "name", "price": 1}
    msg = only_message(channel.parse(payload))
    assert msg.kind is MessageKind.OTHER


def test_poll_vote(channel: ZapiChannel) -> None:
    payload = load("received_text.json")
    del payload["text"]
    payload["pollVote"] = {"pollMessageId": "X", "options": [{"name": "Z-API"}]}
    msg = only_message(channel.parse(payload))
    assert msg.kind is MessageKind.OTHER
    assert msg.text == "Resposta de enquete: Z-API"


# --- parsing: malformed bodies -----------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ([], 400),
        ([{"type": "ReceivedCallback"}], 400),
        ("ReceivedCallback", 400),
        (None, 400),
        (42, 400),
        ({}, 422),
        ({"phone": PHONE}, 422),
        ({"type": 5}, 422),
        ({"type": None}, 422),
    ],
)
def test_not_a_zapi_body_is_rejected(channel: ZapiChannel, payload: object, status: int) -> None:
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == status
    assert exc_info.value.message


@pytest.mark.parametrize(
    "mutation",
    [
        {"messageId": None},
        {"messageId": ""},
        {"messageId": 123},
        {"text": 5},
        {"text": "hello"},
        {"text": {"message": 5}},
        {"phone": None},
        {"phone": ""},
        {"phone": "sem numero"},
        {"phone": 5544999999999},
        {"fromMe": "maybe"},
        {"isGroup": {"a": 1}},
        {"momment": "yesterday"},
        {"audio": []},
        {"location": {"latitude": "north"}},
        {"externalAdReply": "ad"},
        {"contact": {"phones": "5544"}},
    ],
)
def test_wrong_types_are_rejected_with_422(channel: ZapiChannel, mutation: dict[str, Any]) -> None:
    payload = load("received_text.json") | mutation
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == 422


def test_missing_message_id_is_rejected(channel: ZapiChannel) -> None:
    payload = load("received_text.json")
    del payload["messageId"]
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == 422
    assert "messageId" in exc_info.value.message


_WRONG_VALUES: list[Any] = [None, 5, -1.5, True, "x", [], ["a"], {}, {"k": "v"}, 10**40]


def _mutations() -> list[tuple[str, dict[str, Any]]]:
    """Deterministic damage to documented payloads: every key deleted or given odd types."""
    out: list[tuple[str, dict[str, Any]]] = []
    for fixture in (
        "received_text.json",
        "received_audio_ptt.json",
        "received_location.json",
        "received_contact.json",
        "received_reaction.json",
        "received_text_from_ad.json",
        "message_status_read.json",
    ):
        original = load(fixture)
        for key in original:
            broken = copy.deepcopy(original)
            del broken[key]
            out.append((f"{fixture}:-{key}", broken))
            for i, value in enumerate(_WRONG_VALUES):
                broken = copy.deepcopy(original)
                broken[key] = copy.deepcopy(value)
                out.append((f"{fixture}:{key}={i}", broken))
            inner = original[key]
            if isinstance(inner, dict):
                for sub in inner:
                    for value in (None, 7, [], {"x": 1}, float("nan")):
                        broken = copy.deepcopy(original)
                        broken[key][sub] = copy.deepcopy(value)
                        out.append((f"{fixture}:{key}.{sub}={value!r}", broken))
    return out


MUTATIONS = _mutations()


def test_mutation_corpus_is_large() -> None:
    assert len(MUTATIONS) >= 50


def test_mutated_payloads_parse_or_are_rejected_cleanly(channel: ZapiChannel) -> None:
    outcomes = {"parsed": 0, "rejected": 0}
    for label, payload in MUTATIONS:
        try:
            result = channel.parse(payload)
        except WebhookRejected as exc:
            assert 400 <= exc.status < 500, label
            assert isinstance(exc.message, str) and exc.message, label
            outcomes["rejected"] += 1
            continue
        except Exception as exc:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"{label}: {type(exc).__name__}: {exc}")
        assert isinstance(result, ParsedWebhook), label
        for msg in result.messages:
            assert msg.contact_id and msg.provider_message_id, label
        outcomes["parsed"] += 1
    # Both paths are exercised, otherwise the corpus proves nothing.
    assert outcomes["parsed"] > 0 and outcomes["rejected"] > 0


# --- authentication ----------------------------------------------------------------


def _request(path: str = "/webhooks/zapi", headers: dict[str, str] | None = None):
    return make_mocked_request("POST", path, headers=headers or {})


@pytest.mark.parametrize("path", ["/webhooks/zapi", "/webhooks/zapi?token=whatever", "/webhook/text?token="])
def test_without_a_secret_every_request_is_refused(channel: ZapiChannel, path: str) -> None:
    """Closed by default: an open route lets a stranger message any number from the
    company's WhatsApp, spend LLM turns and pause leads."""
    assert channel.missing_webhook_secret == "ZAPI_WEBHOOK_SECRET"
    with pytest.raises(WebhookRejected) as refused:
        channel.authenticate(_request(path, headers={"Authorization": "Bearer whatever"}), b"{}")
    assert refused.value.status == 403 and "ZAPI_WEBHOOK_SECRET" in refused.value.message


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (f"/webhooks/zapi?token={WEBHOOK_SECRET}", {}),
        ("/webhooks/zapi", {"X-Webhook-Token": WEBHOOK_SECRET}),
        ("/webhooks/zapi", {"Authorization": f"Bearer {WEBHOOK_SECRET}"}),
        ("/webhook/audio?token=wrong", {"X-Webhook-Token": WEBHOOK_SECRET}),
    ],
)
def test_auth_accepts_the_secret(path: str, headers: dict[str, str]) -> None:
    channel = ZapiChannel(make_config(zapi_webhook_secret=WEBHOOK_SECRET))
    channel.authenticate(_request(path, headers), b"{}")


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/webhooks/zapi", {}),
        ("/webhooks/zapi?token=", {}),
        ("/webhooks/zapi?token=wrong", {}),
        (f"/webhooks/zapi?token={WEBHOOK_SECRET}x", {}),
        ("/webhooks/zapi", {"X-Webhook-Token": "wrong"}),
        ("/webhooks/zapi", {"Authorization": "Bearer wrong"}),
        ("/webhooks/zapi", {"Authorization": f"Basic {WEBHOOK_SECRET}"}),
        ("/webhooks/zapi?token=%C3%A9", {}),
    ],
)
def test_auth_rejects_missing_or_wrong_secret(path: str, headers: dict[str, str]) -> None:
    channel = ZapiChannel(make_config(zapi_webhook_secret=WEBHOOK_SECRET))
    with pytest.raises(WebhookRejected) as exc_info:
        channel.authenticate(_request(path, headers), b"{}")
    assert exc_info.value.status == 401
    assert WEBHOOK_SECRET not in exc_info.value.message


def test_blank_secret_means_unset_and_refuses() -> None:
    channel = ZapiChannel(make_config(zapi_webhook_secret="  "))
    assert channel.missing_webhook_secret == "ZAPI_WEBHOOK_SECRET"
    with pytest.raises(WebhookRejected):
        channel.authenticate(_request("/webhooks/zapi?token=++"), b"{}")


# --- send_text ---------------------------------------------------------------------


def _sent_request(mocked: aioresponses, url: str = SEND_URL):
    calls = mocked.requests[("POST", URL(url))]
    assert len(calls) == 1
    return calls[0]


async def test_send_text_posts_documented_request(channel: ZapiChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_text_response.json"))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, PHONE, "Olá! Como posso ajudar?", typing_s=3)
        call = _sent_request(mocked)
    assert sent.provider_message_id == "D241XXXX732339502B68"
    assert call.kwargs["json"] == {"phone": PHONE, "message": "Olá! Como posso ajudar?", "delayTyping": 3}
    assert call.kwargs["headers"]["Client-Token"] == CLIENT_TOKEN
    timeout = call.kwargs["timeout"]
    assert isinstance(timeout, aiohttp.ClientTimeout) and timeout.total == 7.5


@pytest.mark.parametrize(("typing_s", "expected"), [(0, None), (-2, None), (1, 1), (15, 15), (40, 15)])
async def test_send_text_clamps_typing_delay(typing_s: int, expected: int | None) -> None:
    channel = ZapiChannel(make_config())
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload={"zaapId": "z", "messageId": "m", "id": "m"})
        async with aiohttp.ClientSession() as session:
            await channel.send_text(session, PHONE, "oi", typing_s=typing_s)
        body = _sent_request(mocked).kwargs["json"]
    assert body.get("delayTyping") == expected


async def test_send_text_without_client_token_sends_no_header() -> None:
    channel = ZapiChannel(make_config(zapi_client_token=None))
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload={"messageId": "m"})
        async with aiohttp.ClientSession() as session:
            await channel.send_text(session, PHONE, "oi", typing_s=0)
        assert "Client-Token" not in _sent_request(mocked).kwargs["headers"]


async def test_send_text_base_url_trailing_slash() -> None:
    channel = ZapiChannel(make_config(zapi_base_url=BASE_URL + "/"))
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload={"messageId": "m"})
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, PHONE, "oi", typing_s=1)
    assert sent.provider_message_id == "m"


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (429, {"error": "Too many requests"}, True),
        (500, {"error": "internal"}, True),
        (502, "<html>Bad Gateway</html>", True),
        (503, "", True),
        (400, {"error": "your client-token is not configured"}, False),
        (401, {"error": "unauthorized"}, False),
        (403, {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}, False),
        (404, {"error": f"Instance {INSTANCE_ID} with token {INSTANCE_TOKEN} not found"}, False),
    ],
)
async def test_send_text_http_errors(channel: ZapiChannel, status: int, body: Any, retryable: bool) -> None:
    with aioresponses() as mocked:
        if isinstance(body, dict):
            mocked.post(SEND_URL, status=status, payload=body)
        else:
            mocked.post(SEND_URL, status=status, body=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, PHONE, "oi", typing_s=2)
    err = exc_info.value
    assert err.status == status
    assert err.retryable is retryable
    text = str(err)
    assert str(status) in text
    assert INSTANCE_TOKEN not in text and CLIENT_TOKEN not in text and SEND_URL not in text
    if isinstance(body, dict) and status == 400:
        assert "client-token is not configured" in text


async def test_send_text_2xx_with_error_is_permanent(channel: ZapiChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload={"error": "You need to be connected"})
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, PHONE, "oi", typing_s=2)
    assert exc_info.value.retryable is False


# --- fetch_media -------------------------------------------------------------------

MEDIA_URL = "https://example.com/zapi-media/3EB0A1B2C3D4E5F60002.ogg"


async def test_fetch_media_returns_bytes(channel: ZapiChannel) -> None:
    with aioresponses() as mocked:
        mocked.get(MEDIA_URL, body=b"OggS" + b"\x00" * 1000, content_type="audio/ogg")
        async with aiohttp.ClientSession() as session:
            data = await channel.fetch_media(session, MEDIA_URL, max_bytes=2048)
        call = mocked.requests[("GET", URL(MEDIA_URL))][0]
    assert data.startswith(b"OggS") and len(data) == 1004
    assert "Client-Token" not in (call.kwargs.get("headers") or {})


# --- identifiers of absurd length (issue 13) ---------------------------------------------


@pytest.mark.parametrize(
    ("mutation", "field"),
    [
        ({"phone": "55" + "9" * 10_000}, "contact_id"),
        ({"phone": "9" * 200 + "@lid"}, "contact_id"),
        ({"messageId": "3EB0" + "A" * 960_000}, "provider_message_id"),
        ({"referenceMessageId": "3EB0" + "B" * 10_000}, "reply_to_provider_id"),
        ({"fromMe": True, "phone": "55" + "9" * 10_000}, "contact_id"),
    ],
)
def test_an_id_of_absurd_length_is_refused_at_the_edge(
    channel: ZapiChannel, mutation: dict[str, Any], field: str
) -> None:
    payload = load("received_text.json") | mutation
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == 422
    assert field in exc_info.value.message
    assert len(exc_info.value.message) < 200  # says which field, never echoes the value


def test_ids_as_long_as_real_ones_are_accepted(channel: ZapiChannel) -> None:
    # E.164 allows 15 digits; Instagram mids run to ~90 characters.
    payload = load("received_text.json") | {"phone": "9" * 20, "messageId": "aWdf" + "Z" * 200}
    message = only_message(channel.parse(payload))
    assert message.contact_id == "9" * 20
    assert message.provider_message_id == "aWdf" + "Z" * 200


def test_an_absurdly_long_profile_name_is_cut_not_a_reason_to_lose_the_message(channel: ZapiChannel) -> None:
    payload = load("received_text.json") | {"senderName": "Maria " + "M" * 100_000}
    message = only_message(channel.parse(payload))
    assert message.name == ("Maria " + "M" * 100_000)[:128]
    assert message.text == "Olá, quero saber o preço do plano anual"


async def test_the_webhook_answers_422_for_an_absurd_id_and_stores_nothing(bot: Any) -> None:
    import sqlite3

    from tests.conftest import zapi_message
    from web.keys import STORE

    response = await bot.post("/webhooks/zapi", json=zapi_message(phone="55" + "9" * 10_000))
    assert response.status == 422
    body = await response.json()
    assert "contact_id" in json.dumps(body)
    with sqlite3.connect(bot.app[STORE].path) as db:
        assert db.execute("SELECT COUNT(*) FROM inbound").fetchone() == (0,)

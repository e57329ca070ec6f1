"""WAHA channel: webhook parsing (from documented payloads), auth, send and media download."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from aioresponses import aioresponses
from yarl import URL

from channels.base import DeliveryStatus, ParsedWebhook
from channels.waha import WahaChannel, WahaConfig
from core.errors import ProviderError, WebhookRejected
from core.models import InboundMessage, MessageKind, contact_key_for
from core.settings import Settings
from web.configs.channels import waha_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "waha"

WAHA_URL = "http://waha:3000"
API_KEY = "waha-key-SECRET-7f6e5d4c"
HMAC_KEY = "hmac-key-SECRET-0a9b8c"
WEBHOOK_SECRET = "hook-secret-XYZ-123"
PHONE = "5511999999999"
CHAT_ID = f"{PHONE}@c.us"
SEND_URL = f"{WAHA_URL}/api/sendText"
SEEN_URL = f"{WAHA_URL}/api/sendSeen"
TYPING_URL = f"{WAHA_URL}/api/startTyping"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "waha_url": WAHA_URL,
        "waha_api_key": API_KEY,
        "waha_session": "default",
        "waha_webhook_hmac_key": None,
        "waha_webhook_secret": None,
        "http_timeout_s": 7.5,
    }
    values.update(overrides)
    return Settings(**values)


def make_config(**overrides: Any) -> WahaConfig:
    """The adapter's config as the app maps it, so blank values read as unset like in production."""
    return waha_config(make_settings(**overrides))


@pytest.fixture
def channel() -> WahaChannel:
    return WahaChannel(make_config())


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def only_message(result: ParsedWebhook) -> InboundMessage:
    assert result.ignored == [] and result.statuses == []
    assert len(result.messages) == 1
    return result.messages[0]


def only_ignored(result: ParsedWebhook) -> tuple[str, str | None, InboundMessage | None]:
    assert result.messages == [] and result.statuses == []
    assert len(result.ignored) == 1
    event = result.ignored[0]
    return event.reason, event.provider_message_id, event.message


def seconds(value: int) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


# --- fixtures are sourced ----------------------------------------------------------


def test_every_fixture_cites_its_source() -> None:
    files = sorted(FIXTURES.glob("*.json"))
    assert len(files) >= 20
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        source = data.get("_source")
        assert isinstance(source, str) and "waha" in source.lower(), path.name


def test_channel_identity(channel: WahaChannel) -> None:
    assert channel.name == "waha"
    assert channel.window_hours is None
    assert channel.rate_per_s == 10.0
    assert WahaChannel(make_config(waha_rate_per_s=3.5)).rate_per_s == 3.5
    assert channel.configured is True
    assert WahaChannel(make_config(waha_url=None)).configured is False
    assert WahaChannel(make_config(waha_url="  ")).configured is False


# --- parsing: messages -------------------------------------------------------------


def test_text(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_text.json")))
    assert msg.channel == "waha"
    assert msg.contact_id == PHONE and msg.phone == PHONE
    # One phone is one lead whichever WhatsApp provider carried the message.
    assert msg.contact_key == contact_key_for("zapi", PHONE)
    assert msg.name == "Maria Souza"
    assert msg.kind is MessageKind.TEXT
    assert msg.text == "Olá, quero saber o preço do plano anual"
    assert msg.provider_message_id == "false_5511999999999@c.us_3EB0A1B2C3D4E5F60001"
    assert msg.timestamp == seconds(1667561485)
    assert msg.from_me is False and msg.is_group is False
    assert msg.referral is None and msg.media_url is None


def test_voice_note_is_transcribable(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_voice.json")))
    assert msg.kind is MessageKind.AUDIO
    assert msg.media_url == (
        "http://localhost:3000/api/files/default/false_5511999999999@c.us_3EB0A1B2C3D4E5F60002.oga"
    )
    assert msg.media_mime == "audio/ogg; codecs=opus"
    assert msg.text is None and msg.media_caption is None
    assert msg.name == "Maria Souza"


def test_audio_kind_from_mimetype_alone(channel: WahaChannel) -> None:
    # Engines without a `_data.type` still say what the file is through the mimetype.
    payload = load("message_voice.json")
    payload["payload"]["_data"] = {}
    assert only_message(channel.parse(payload)).kind is MessageKind.AUDIO


def test_image_with_caption(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_image.json")))
    assert msg.kind is MessageKind.IMAGE
    assert msg.media_url.endswith("3EB0A1B2C3D4E5F60003.jpg")
    assert msg.media_mime == "image/jpeg"
    assert msg.media_caption == "Essa é a fachada da loja"
    assert msg.text is None


def test_document_keeps_file_name(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_document.json")))
    assert msg.kind is MessageKind.DOCUMENT
    assert msg.file_name == "orcamento.pdf"
    assert msg.media_mime == "application/pdf"
    assert msg.media_caption == "Segue o orçamento do concorrente"
    assert msg.name is None  # no `_data` in the documented sample


def test_video_noweb(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_video.json")))
    assert msg.kind is MessageKind.VIDEO
    assert (
        msg.media_url
        == "https://waha.example.com/api/files/false_5511999999999@c.us_3EB0A1B2C3D4E5F60005.mp4"
    )
    assert msg.media_mime == "video/mp4"
    assert msg.media_caption is None
    assert msg.name == "Maria Souza"  # NOWEB pushName


def test_media_not_downloaded_keeps_kind(channel: WahaChannel) -> None:
    # "hasMedia: true but media.url: null - WAHA didn't download media due to configuration".
    payload = load("message_image.json")
    payload["payload"]["media"]["url"] = None
    msg = only_message(channel.parse(payload))
    assert msg.kind is MessageKind.IMAGE and msg.media_url is None


def test_location(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_location.json")))
    assert msg.kind is MessageKind.LOCATION
    assert msg.text == "Localização: Escritório Centro - Praça da Sé, São Paulo - SP (-23.55052, -46.633308)"


def test_location_numbers_without_description(channel: WahaChannel) -> None:
    payload = load("message_location.json")
    payload["payload"]["location"] = {"latitude": -23.5, "longitude": -46.6}
    assert only_message(channel.parse(payload)).text == "Localização: (-23.5, -46.6)"


def test_vcard(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_vcard.json")))
    assert msg.kind is MessageKind.CONTACT
    assert msg.text == "Contato compartilhado: Cesar Baleco 5544988887777"


def test_hidden_lid_contact_gows(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_lid.json")))
    assert msg.contact_id == "81896604192873@lid"
    assert msg.phone is None
    assert msg.name == "João Lima"  # GOWS Info.PushName
    assert msg.text == "Oi, vi o anúncio"


def test_button_reply(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_button_reply.json")))
    assert msg.kind is MessageKind.BUTTON_REPLY
    assert msg.text == "Sim, quero"
    assert msg.reply_to_provider_id == "3EB0FFEEDDCCBBAA0001"


def test_list_reply(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_list_reply.json")))
    assert msg.kind is MessageKind.LIST_REPLY
    assert msg.text == "Plano Anual"


def test_webjs_button_reply_uses_body(channel: WahaChannel) -> None:
    payload = load("message_text.json")
    payload["payload"]["body"] = "Sim, quero"
    payload["payload"]["_data"]["type"] = "buttons_response"
    payload["payload"]["_data"]["selectedButtonId"] = "quero_proposta"
    msg = only_message(channel.parse(payload))
    assert msg.kind is MessageKind.BUTTON_REPLY and msg.text == "Sim, quero"


def test_ad_referral(channel: WahaChannel) -> None:
    msg = only_message(channel.parse(load("message_from_ad.json")))
    assert msg.kind is MessageKind.TEXT
    assert msg.text == "Olá! Tenho interesse e queria mais informações."
    assert msg.referral is not None
    assert msg.referral.ctwa_clid.startswith("ARAkLkA8rmlFeiCkt")
    assert msg.referral.source_id == "23722824350495506"
    assert msg.referral.source_url == "https://fb.me/1a2b3c4d5"
    assert msg.referral.source_type == "ad"
    assert msg.referral.headline == "Plano Anual com 30% OFF"


def test_webjs_ctwa_context_referral(channel: WahaChannel) -> None:
    payload = load("message_text.json")
    payload["payload"]["_data"]["ctwaContext"] = {
        "sourceUrl": "https://fb.me/abc",
        "sourceId": "120210000000000001",
        "sourceType": "ad",
        "title": "Promo",
    }
    referral = only_message(channel.parse(payload)).referral
    assert (
        referral is not None and referral.source_id == "120210000000000001" and referral.headline == "Promo"
    )


def test_s_whatsapp_net_and_device_suffix_are_phone_digits(channel: WahaChannel) -> None:
    payload = load("message_text.json")
    payload["payload"]["from"] = "5511999999999:12@s.whatsapp.net"
    assert only_message(channel.parse(payload)).contact_id == PHONE


def test_millisecond_and_broken_timestamps(channel: WahaChannel) -> None:
    payload = load("message_text.json")
    payload["payload"]["timestamp"] = 1667561485000
    assert only_message(channel.parse(payload)).timestamp == seconds(1667561485)
    payload["payload"]["timestamp"] = "not a time"
    stamp = only_message(channel.parse(payload)).timestamp
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_notification_types_are_ignored(channel: WahaChannel) -> None:
    payload = load("message_text.json")
    payload["payload"]["_data"]["type"] = "e2e_notification"
    reason, message_id, _ = only_ignored(channel.parse(payload))
    assert reason == "notification" and message_id == payload["payload"]["id"]


# --- parsing: ignored events ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("message_group.json", "group"),
        ("message_status_broadcast.json", "broadcast"),
        ("message_newsletter.json", "newsletter"),
        ("message_any_incoming.json", "message_any"),
        ("message_reaction.json", "not_a_message"),
        ("message_ack_group.json", "group"),
    ],
)
def test_ignored_events(channel: WahaChannel, fixture: str, reason: str) -> None:
    payload = load(fixture)
    got_reason, message_id, message = only_ignored(channel.parse(payload))
    assert got_reason == reason
    assert message is None
    if reason != "not_a_message":
        assert message_id == payload["payload"]["id"]


def test_from_me_on_message_is_kept_for_bookkeeping(channel: WahaChannel) -> None:
    reason, message_id, message = only_ignored(channel.parse(load("message_from_me.json")))
    assert reason == "from_me"
    assert message_id == "true_5511999999999@c.us_3EB0A1B2C3D4E5F6000C"
    assert message is not None and message.from_me is True
    # WEBJS: we are `from`, the lead is `to`.
    assert message.contact_id == PHONE
    assert message.name is None  # the push name on our own message is the business's
    assert message.text == "Oi Maria, aqui é o Carlos, vou te atender pessoalmente"


def test_from_me_on_message_any_noweb(channel: WahaChannel) -> None:
    reason, _, message = only_ignored(channel.parse(load("message_any_from_me.json")))
    assert reason == "from_me"
    assert message is not None and message.from_me is True
    assert message.contact_id == PHONE  # NOWEB keeps the chat in `from`
    assert message.text == "Já te mando o contrato"


def test_from_me_in_a_group_is_a_group(channel: WahaChannel) -> None:
    payload = load("message_group.json")
    payload["payload"]["fromMe"] = True
    assert only_ignored(channel.parse(payload))[0] == "group"


def test_unknown_chat_server_is_ignored(channel: WahaChannel) -> None:
    payload = load("message_text.json")
    payload["payload"]["from"] = "13135550002@bot"
    assert only_ignored(channel.parse(payload))[0] == "unsupported_chat"


def test_other_session_is_ignored(channel: WahaChannel) -> None:
    for fixture in ("message_text.json", "session_status_working.json", "message_ack_read.json"):
        payload = load(fixture)
        payload["session"] = "wpp-org-2-user-9"
        result = channel.parse(payload)
        assert result.messages == [] and result.statuses == [] and result.connection is None
        assert [e.reason for e in result.ignored] == ["other_session"]
    configured = WahaChannel(make_config(waha_session="wpp-org-2-user-9"))
    payload = load("message_text.json")
    payload["session"] = "wpp-org-2-user-9"
    assert only_message(configured.parse(payload)).contact_id == PHONE


@pytest.mark.parametrize(
    "event",
    [
        "message.revoked",
        "message.edited",
        "message.waiting",
        "state.change",
        "call.received",
    ],
)
def test_other_events_are_not_messages(channel: WahaChannel, event: str) -> None:
    payload = load("message_text.json")
    payload["event"] = event
    reason, message_id, _ = only_ignored(channel.parse(payload))
    assert reason == "not_a_message"
    assert message_id == payload["payload"]["id"]


# --- parsing: acks and session status ----------------------------------------------------


@pytest.mark.parametrize(
    ("ack", "ack_name", "expected"),
    [
        (1, "SERVER", "sent"),
        (2, "DEVICE", "delivered"),
        (3, "READ", "read"),
        (4, "PLAYED", "played"),
        (-1, "ERROR", "failed"),
        (3, None, "read"),  # ackName missing: the number still says it
        (None, "DEVICE", "delivered"),
        (2, "device", "delivered"),
    ],
)
def test_acks_become_delivery_statuses(
    channel: WahaChannel, ack: int | None, ack_name: str | None, expected: str
) -> None:
    payload = load("message_ack_read.json")
    payload["payload"]["ack"] = ack
    payload["payload"]["ackName"] = ack_name
    result = channel.parse(payload)
    assert result.messages == [] and result.ignored == []
    assert result.statuses == [
        DeliveryStatus(
            provider_message_id="true_5511999999999@c.us_4CC5EDD64BC22EBA6D639F2AF571346C",
            status=expected,  # type: ignore[arg-type]
            error="WhatsApp reported ack ERROR" if expected == "failed" else None,
            timestamp=datetime.fromtimestamp(1741249702.485, tz=UTC),
        )
    ]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"ack": 0, "ackName": "PENDING"}, "ack_pending"),
        ({"ack": None, "ackName": "UNKNOWN"}, "ack_unknown"),
        ({"ack": 9, "ackName": None}, "ack_unknown"),
        ({"fromMe": False}, "ack_inbound"),
    ],
)
def test_acks_that_are_not_statuses(channel: WahaChannel, changes: dict[str, Any], reason: str) -> None:
    payload = load("message_ack_read.json")
    payload["payload"].update(changes)
    assert only_ignored(channel.parse(payload))[0] == reason


@pytest.mark.parametrize(
    ("fixture", "status"),
    [("session_status_working.json", "WORKING"), ("session_status_scan_qr.json", "SCAN_QR_CODE")],
)
def test_session_status_is_the_connection(channel: WahaChannel, fixture: str, status: str) -> None:
    result = channel.parse(load(fixture))
    assert result.connection == status
    assert result.messages == [] and result.ignored == [] and result.statuses == []


# --- parsing: malformed bodies ----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ([], 400),
        ("message", 400),
        (None, 400),
        ({}, 422),
        ({"event": 7, "payload": {}}, 422),
        ({"event": "message", "payload": []}, 422),
        ({"event": "message", "payload": "hi"}, 422),
        ({"event": "message", "payload": {"from": CHAT_ID, "body": "oi"}}, 422),
        ({"event": "message", "payload": {"id": "x", "body": "oi"}}, 422),
        ({"event": "message", "payload": {"id": "x", "from": "maria@c.us", "body": "oi"}}, 422),
        ({"event": "message", "payload": {"id": "x", "from": "@lid", "body": "oi"}}, 422),
        ({"event": "message.ack", "payload": {"ack": 3}}, 422),
        ({"event": "session.status", "payload": {}}, 422),
        ({"event": "session.status", "payload": {"status": 5}}, 422),
        ({"event": "message", "session": ["default"], "payload": {}}, 422),
    ],
)
def test_malformed_bodies_are_rejected(channel: WahaChannel, payload: Any, status: int) -> None:
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == status
    assert exc_info.value.message


_WRONG_VALUES: list[Any] = [
    None,
    "",
    0,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    True,
    [],
    [None, 1],
    {},
    {"nested": {"deep": []}},
    "x" * 3,
    "\u0000",
    "status@broadcast",
    "1@g.us",
]


def _mutations() -> list[tuple[str, Any]]:
    """Documented payloads with every field (envelope, payload, nested) deleted or given odd types."""
    out: list[tuple[str, Any]] = []
    for fixture in (
        "message_text.json",
        "message_voice.json",
        "message_location.json",
        "message_from_ad.json",
        "message_button_reply.json",
        "message_from_me.json",
        "message_ack_read.json",
        "session_status_working.json",
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
        inner = original.get("payload")
        if not isinstance(inner, dict):
            continue
        for key in inner:
            broken = copy.deepcopy(original)
            del broken["payload"][key]
            out.append((f"{fixture}:payload.-{key}", broken))
            for i, value in enumerate(_WRONG_VALUES):
                broken = copy.deepcopy(original)
                broken["payload"][key] = copy.deepcopy(value)
                out.append((f"{fixture}:payload.{key}={i}", broken))
            nested = inner[key]
            if isinstance(nested, dict):
                for sub in nested:
                    for value in (None, 7, [], {"x": 1}, float("nan"), "🙏"):
                        broken = copy.deepcopy(original)
                        broken["payload"][key][sub] = copy.deepcopy(value)
                        out.append((f"{fixture}:payload.{key}.{sub}={value!r}", broken))
    return out


MUTATIONS = _mutations()


def test_mutation_corpus_is_large() -> None:
    assert len(MUTATIONS) >= 50


def test_mutated_payloads_parse_or_are_rejected_cleanly(channel: WahaChannel) -> None:
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
            json.dumps(msg.model_dump(mode="json"))  # storable as it is
        for event in result.ignored:
            if event.message is not None:
                assert event.message.from_me, label
        for status in result.statuses:
            assert status.provider_message_id and status.status in {
                "sent",
                "delivered",
                "read",
                "played",
                "failed",
            }
        outcomes["parsed"] += 1
    # Both paths are exercised, otherwise the corpus proves nothing.
    assert outcomes["parsed"] > 0 and outcomes["rejected"] > 0


# --- authentication ----------------------------------------------------------------


def _request(path: str = "/webhooks/waha", headers: dict[str, str] | None = None):
    return make_mocked_request("POST", path, headers=headers or {})


def _sign(body: bytes, key: str = HMAC_KEY) -> str:
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


BODY = json.dumps(load("message_text.json"), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("path", ["/webhooks/waha", "/webhooks/waha?token=whatever", "/webhooks/waha?token="])
def test_without_a_secret_or_hmac_key_every_request_is_refused(channel: WahaChannel, path: str) -> None:
    """Closed by default: an unauthenticated route would let anyone drive the bot."""
    assert channel.missing_webhook_secret == "WAHA_WEBHOOK_HMAC_KEY"
    with pytest.raises(WebhookRejected) as refused:
        channel.authenticate(_request(path, headers={"X-Webhook-Token": "whatever"}), BODY)
    assert refused.value.status == 403 and "WAHA_WEBHOOK_HMAC_KEY" in refused.value.message


def test_hmac_matches_wahas_documented_example() -> None:
    example = load("hmac_example.json")
    channel = WahaChannel(make_config(waha_webhook_hmac_key=example["key"]))
    headers = {"X-Webhook-Hmac": example["hmac"], "X-Webhook-Hmac-Algorithm": example["algorithm"]}
    channel.authenticate(_request(headers=headers), example["body"].encode())


@pytest.mark.parametrize("algorithm", ["sha512", "SHA512", None])
def test_hmac_valid_signature(algorithm: str | None) -> None:
    channel = WahaChannel(make_config(waha_webhook_hmac_key=HMAC_KEY))
    headers = {"X-Webhook-Hmac": _sign(BODY)}
    if algorithm is not None:
        headers["X-Webhook-Hmac-Algorithm"] = algorithm
    channel.authenticate(_request(headers=headers), BODY)
    # Hex case is not part of the signature.
    channel.authenticate(_request(headers={"X-Webhook-Hmac": _sign(BODY).upper()}), BODY)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Webhook-Hmac": ""}, 401),
        ({"X-Webhook-Hmac": "   "}, 401),
        ({"X-Webhook-Hmac": _sign(BODY, "wrong-key")}, 403),
        ({"X-Webhook-Hmac": _sign(BODY)[:-2]}, 403),
        ({"X-Webhook-Hmac": "sha512=" + _sign(BODY)}, 403),
        ({"X-Webhook-Hmac": hmac.new(HMAC_KEY.encode(), BODY, hashlib.sha256).hexdigest()}, 403),
        ({"X-Webhook-Hmac": _sign(BODY), "X-Webhook-Hmac-Algorithm": "sha256"}, 403),
        ({"X-Webhook-Hmac": "é" * 128}, 403),
    ],
)
def test_hmac_forged_or_missing(headers: dict[str, str], status: int) -> None:
    channel = WahaChannel(make_config(waha_webhook_hmac_key=HMAC_KEY))
    with pytest.raises(WebhookRejected) as exc_info:
        channel.authenticate(_request(headers=headers), BODY)
    assert exc_info.value.status == status
    assert HMAC_KEY not in exc_info.value.message


@pytest.mark.parametrize("position", [0, 1, len(BODY) // 2, len(BODY) - 1])
def test_hmac_body_altered_by_one_byte(position: int) -> None:
    channel = WahaChannel(make_config(waha_webhook_hmac_key=HMAC_KEY))
    signature = _sign(BODY)
    altered = bytearray(BODY)
    altered[position] ^= 0x01
    with pytest.raises(WebhookRejected) as exc_info:
        channel.authenticate(_request(headers={"X-Webhook-Hmac": signature}), bytes(altered))
    assert exc_info.value.status == 403
    appended = BODY + b" "
    with pytest.raises(WebhookRejected):
        channel.authenticate(_request(headers={"X-Webhook-Hmac": signature}), appended)


def test_hmac_takes_precedence_over_url_secret() -> None:
    channel = WahaChannel(make_config(waha_webhook_hmac_key=HMAC_KEY, waha_webhook_secret=WEBHOOK_SECRET))
    with pytest.raises(WebhookRejected) as exc_info:
        channel.authenticate(_request(f"/webhooks/waha?token={WEBHOOK_SECRET}"), BODY)
    assert exc_info.value.status == 401
    channel.authenticate(_request(headers={"X-Webhook-Hmac": _sign(BODY)}), BODY)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (f"/webhooks/waha?token={WEBHOOK_SECRET}", {}),
        ("/webhooks/waha", {"X-Webhook-Token": WEBHOOK_SECRET}),
        ("/webhooks/waha?token=wrong", {"X-Webhook-Token": WEBHOOK_SECRET}),
    ],
)
def test_url_secret_accepted(path: str, headers: dict[str, str]) -> None:
    channel = WahaChannel(make_config(waha_webhook_secret=WEBHOOK_SECRET))
    channel.authenticate(_request(path, headers), BODY)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/webhooks/waha", {}),
        ("/webhooks/waha?token=", {}),
        ("/webhooks/waha?token=wrong", {}),
        (f"/webhooks/waha?token={WEBHOOK_SECRET}x", {}),
        ("/webhooks/waha", {"X-Webhook-Token": "wrong"}),
        ("/webhooks/waha", {"Authorization": f"Bearer {WEBHOOK_SECRET}"}),
        ("/webhooks/waha?token=%C3%A9", {}),
    ],
)
def test_url_secret_rejected(path: str, headers: dict[str, str]) -> None:
    channel = WahaChannel(make_config(waha_webhook_secret=WEBHOOK_SECRET))
    with pytest.raises(WebhookRejected) as exc_info:
        channel.authenticate(_request(path, headers), BODY)
    assert exc_info.value.status == 401
    assert WEBHOOK_SECRET not in exc_info.value.message


# --- send_text ---------------------------------------------------------------------


def _calls(mocked: aioresponses, url: str) -> list[Any]:
    return mocked.requests.get(("POST", URL(url)), [])


def _one_call(mocked: aioresponses, url: str) -> Any:
    calls = _calls(mocked, url)
    assert len(calls) == 1, url
    return calls[0]


async def test_send_text_posts_documented_requests(channel: WahaChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, status=201, body="")
        mocked.post(TYPING_URL, status=201, payload=True)
        mocked.post(SEND_URL, status=201, payload=load("send_text_response_gows.json"))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, PHONE, "Olá! Como posso ajudar?", typing_s=3)
        send = _one_call(mocked, SEND_URL)
        seen = _one_call(mocked, SEEN_URL)
        typing = _one_call(mocked, TYPING_URL)
    assert sent.provider_message_id == "true_5511999999999@c.us_3EB0C0FFEE0123456789"
    assert send.kwargs["json"] == {"chatId": CHAT_ID, "text": "Olá! Como posso ajudar?", "session": "default"}
    assert seen.kwargs["json"] == {"chatId": CHAT_ID, "session": "default"}
    assert typing.kwargs["json"] == {"chatId": CHAT_ID, "session": "default"}
    for call in (send, seen, typing):
        assert call.kwargs["headers"]["X-Api-Key"] == API_KEY
        assert call.kwargs["headers"]["Content-Type"] == "application/json"
    timeout = send.kwargs["timeout"]
    assert isinstance(timeout, aiohttp.ClientTimeout) and timeout.total == 7.5
    assert typing.kwargs["timeout"].total <= 5.0


async def test_send_text_does_not_wait_for_typing(channel: WahaChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, status=201)
        mocked.post(TYPING_URL, status=201)
        mocked.post(SEND_URL, status=201, payload={"id": "true_x"})
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await channel.send_text(session, PHONE, "oi", typing_s=15)
            assert loop.time() - started < 2


async def test_send_text_without_typing_wish_skips_typing(channel: WahaChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, status=201)
        mocked.post(SEND_URL, status=201, payload={"id": "true_x"})
        async with aiohttp.ClientSession() as session:
            await channel.send_text(session, PHONE, "oi", typing_s=0)
        assert _calls(mocked, TYPING_URL) == []
        _one_call(mocked, SEND_URL)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("send_text_response_gows.json", "true_5511999999999@c.us_3EB0C0FFEE0123456789"),
        ("send_text_response_webjs.json", "true_5511999999999@c.us_3EB02B7F3ADEB1A8F8E4A1"),
        ("send_text_response_noweb.json", "true_5511999999999@c.us_BAE5F2EF5C69001E"),
    ],
)
async def test_send_text_reads_each_engines_id(channel: WahaChannel, fixture: str, expected: str) -> None:
    response = load(fixture)
    response.pop("_source")
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, status=201)
        mocked.post(SEND_URL, status=201, payload=response)
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, PHONE, "oi", typing_s=0)
    assert sent.provider_message_id == expected


async def test_sent_id_matches_the_ack_id(channel: WahaChannel) -> None:
    # The id we store for a send is the one message.ack reports back.
    ack = load("message_ack_read.json")
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, status=201)
        mocked.post(SEND_URL, status=201, payload={"id": ack["payload"]["id"]})
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, PHONE, "oi", typing_s=0)
    assert channel.parse(ack).statuses[0].provider_message_id == sent.provider_message_id


@pytest.mark.parametrize(
    ("contact_id", "chat_id"),
    [
        ("81896604192873@lid", "81896604192873@lid"),
        ("5511999999999@s.whatsapp.net", CHAT_ID),
        ("5511999999999@c.us", CHAT_ID),
        ("+55 (11) 99999-9999", CHAT_ID),
    ],
)
async def test_send_text_chat_ids(channel: WahaChannel, contact_id: str, chat_id: str) -> None:
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, status=201)
        mocked.post(SEND_URL, status=201, payload={"id": "true_x"})
        async with aiohttp.ClientSession() as session:
            await channel.send_text(session, contact_id, "oi", typing_s=0)
        assert _one_call(mocked, SEND_URL).kwargs["json"]["chatId"] == chat_id


@pytest.mark.parametrize(
    "contact_id", ["120363025246125486@g.us", "status@broadcast", "1203@newsletter", "", "abc"]
)
async def test_send_text_refuses_non_user_chats(channel: WahaChannel, contact_id: str) -> None:
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, contact_id, "oi", typing_s=1)
        assert mocked.requests == {}
    assert exc_info.value.retryable is False and exc_info.value.invalid_recipient is True


async def test_send_text_without_api_key_sends_no_header() -> None:
    channel = WahaChannel(make_config(waha_api_key=None))
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, status=201)
        mocked.post(SEND_URL, status=201, payload={"id": "true_x"})
        async with aiohttp.ClientSession() as session:
            await channel.send_text(session, PHONE, "oi", typing_s=0)
        assert "X-Api-Key" not in _one_call(mocked, SEND_URL).kwargs["headers"]


async def test_send_text_custom_session_and_base_path() -> None:
    channel = WahaChannel(make_config(waha_url="https://host.example.com/waha/", waha_session="vendas"))
    with aioresponses() as mocked:
        mocked.post("https://host.example.com/waha/api/sendSeen", status=201)
        mocked.post("https://host.example.com/waha/api/sendText", status=201, payload={"id": "true_x"})
        async with aiohttp.ClientSession() as session:
            await channel.send_text(session, PHONE, "oi", typing_s=0)
        call = _one_call(mocked, "https://host.example.com/waha/api/sendText")
    assert call.kwargs["json"]["session"] == "vendas"


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "payload": {"statusCode": 500, "exception": {"message": "boom"}}},
        {"status": 401, "payload": {"message": "Unauthorized"}},
        {"exception": TimeoutError()},
        {"exception": aiohttp.ClientConnectionError("refused")},
        {"exception": RuntimeError("unexpected")},
    ],
)
async def test_typing_and_seen_failures_do_not_prevent_the_send(
    channel: WahaChannel, failure: dict[str, Any]
) -> None:
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, **failure)
        mocked.post(TYPING_URL, **failure)
        mocked.post(SEND_URL, status=201, payload={"id": "true_ok"})
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, PHONE, "oi", typing_s=4)
        _one_call(mocked, SEND_URL)
    assert sent.provider_message_id == "true_ok"


@pytest.mark.parametrize(
    ("status", "body", "retryable", "auth_failed", "invalid_recipient"),
    [
        (429, {"message": "Too Many Requests"}, True, False, False),
        (
            500,
            {"statusCode": 500, "exception": {"message": "2 UNKNOWN: server returned error 463"}},
            True,
            False,
            False,
        ),
        (502, "<html>Bad Gateway</html>", True, False, False),
        (503, "", True, False, False),
        (401, {"message": "Unauthorized", "statusCode": 401}, False, True, False),
        (403, {"message": f"Forbidden key {API_KEY}"}, False, True, False),
        (
            422,
            {
                "error": "Session status is not as expected. Try again later or restart the session",
                "session": "default",
                "status": "SCAN_QR_CODE",
                "expected": ["WORKING"],
            },
            True,
            False,
            False,
        ),
        (
            400,
            {"statusCode": 400, "message": ["chatId must be a string"], "error": "Bad Request"},
            False,
            False,
            True,
        ),
        (
            500,
            {"statusCode": 500, "exception": {"message": "Evaluation failed: Error: wid error: invalid wid"}},
            False,
            False,
            True,
        ),
        (
            422,
            {"error": "PHONE_NOT_ON_WHATSAPP", "message": "The number is not registered on WhatsApp."},
            False,
            False,
            True,
        ),
        (
            404,
            {"statusCode": 404, "message": 'Session "default" does not exist', "error": "Not Found"},
            False,
            False,
            False,
        ),
        (400, {"statusCode": 400, "message": "text should not be empty"}, False, False, False),
    ],
)
async def test_send_text_http_errors(
    channel: WahaChannel, status: int, body: Any, retryable: bool, auth_failed: bool, invalid_recipient: bool
) -> None:
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, status=201)
        if isinstance(body, dict):
            mocked.post(SEND_URL, status=status, payload=body)
        else:
            mocked.post(SEND_URL, status=status, body=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, PHONE, "oi", typing_s=0)
    err = exc_info.value
    assert err.status == status
    assert err.retryable is retryable
    assert err.auth_failed is auth_failed
    assert err.invalid_recipient is invalid_recipient
    text = str(err)
    assert str(status) in text
    assert API_KEY not in text


async def test_api_key_echoed_by_waha_is_redacted(channel: WahaChannel) -> None:
    # WAHA's 500 filter echoes the request (body, query) back.
    body = {
        "statusCode": 500,
        "exception": {"message": f"failed with x-api-key={API_KEY}"},
        "request": {"query": {"x-api-key": API_KEY}},
    }
    with aioresponses() as mocked:
        mocked.post(SEEN_URL, status=201)
        mocked.post(SEND_URL, status=500, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, PHONE, "oi", typing_s=0)
    assert API_KEY not in str(exc_info.value)
    assert "[REDACTED]" in str(exc_info.value)


# --- fetch_media -------------------------------------------------------------------

LOCAL_MEDIA = "http://localhost:3000/api/files/default/false_5511999999999@c.us_3EB0A1B2C3D4E5F60002.oga"
REWRITTEN = f"{WAHA_URL}/api/files/default/false_5511999999999@c.us_3EB0A1B2C3D4E5F60002.oga"


def _get_calls(mocked: aioresponses, url: str) -> list[Any]:
    return mocked.requests.get(("GET", URL(url)), [])


async def test_fetch_media_rewrites_wahas_localhost_url_and_sends_key(channel: WahaChannel) -> None:
    with aioresponses() as mocked:
        mocked.get(REWRITTEN, body=b"OggS" + b"\x00" * 1000, content_type="audio/ogg")
        async with aiohttp.ClientSession() as session:
            data = await channel.fetch_media(session, LOCAL_MEDIA, max_bytes=2048)
        calls = _get_calls(mocked, REWRITTEN)
    assert data.startswith(b"OggS") and len(data) == 1004
    assert len(calls) == 1 and calls[0].kwargs["headers"]["X-Api-Key"] == API_KEY


async def test_fetch_media_keeps_a_public_waha_url() -> None:
    channel = WahaChannel(make_config(waha_url="https://waha.example.com"))
    url = "https://waha.example.com/api/files/false_5511999999999@c.us_3EB0A1B2C3D4E5F60005.mp4"
    with aioresponses() as mocked:
        mocked.get(url, body=b"video")
        async with aiohttp.ClientSession() as session:
            assert await channel.fetch_media(session, url, max_bytes=100) == b"video"
        assert _get_calls(mocked, url)[0].kwargs["headers"]["X-Api-Key"] == API_KEY


async def test_fetch_media_never_sends_the_key_elsewhere(channel: WahaChannel) -> None:
    url = "https://bucket.s3.amazonaws.com/waha/file.jpg"
    with aioresponses() as mocked:
        mocked.get(url, body=b"img")
        async with aiohttp.ClientSession() as session:
            assert await channel.fetch_media(session, url, max_bytes=100) == b"img"
        assert "X-Api-Key" not in _get_calls(mocked, url)[0].kwargs["headers"]

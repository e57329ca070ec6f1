"""WhatsApp Cloud API channel: webhook parsing (from documented payloads), signature,
sends (text, template, read/typing), Meta error mapping and two-step media download."""

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
from channels.whatsapp_cloud import (
    MEDIA_SCHEME,
    MediaTooLarge,
    MetaApiError,
    OutsideWindow,
    WhatsAppCloudChannel,
    WhatsAppCloudConfig,
)
from core.errors import ProviderError, WebhookRejected
from core.models import InboundMessage, MessageKind
from core.settings import Settings
from web.configs.channels import whatsapp_cloud_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "whatsapp_cloud"

PHONE_NUMBER_ID = "106540352242922"
ACCESS_TOKEN = "EAAGm0PX4ZCpsBA-SECRET-TOKEN-9f8e7d6c5b4a"
APP_SECRET = "app-secret-0123456789abcdef"
GRAPH = "https://graph.facebook.com"
VERSION = "v21.0"
SEND_URL = f"{GRAPH}/{VERSION}/{PHONE_NUMBER_ID}/messages"
LEAD = "5511987654321"
BSUID = "BR.1502576394655843"
BIZ_MSG = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjZCRDg4QjM5RjA0QjFCOUE2NgA="
MEDIA_ID = "1003383421387256"
# The lookup names our number, so Meta answers only for media that number received.
MEDIA_INFO_URL = f"{GRAPH}/{VERSION}/{MEDIA_ID}?phone_number_id={PHONE_NUMBER_ID}"
DOWNLOAD_URL = (
    "https://lookaside.fbsbx.com/whatsapp_business/attachments/"
    "?mid=1003383421387256&ext=1749420100&hash=ATuExample"
)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "meta_graph_url": GRAPH,
        "meta_graph_version": VERSION,
        "meta_app_secret": APP_SECRET,
        "whatsapp_phone_number_id": PHONE_NUMBER_ID,
        "whatsapp_access_token": ACCESS_TOKEN,
        "whatsapp_template_language": "pt_BR",
        "whatsapp_rate_per_s": 50.0,
        "http_timeout_s": 7.5,
    }
    values.update(overrides)
    return Settings(**values)


def make_config(**overrides: Any) -> WhatsAppCloudConfig:
    """The adapter's config as the app maps it, so blank values read as unset like in production."""
    return whatsapp_cloud_config(make_settings(**overrides))


@pytest.fixture
def channel() -> WhatsAppCloudChannel:
    return WhatsAppCloudChannel(make_config())


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def only_message(result: ParsedWebhook) -> InboundMessage:
    assert result.ignored == [] and result.statuses == []
    assert len(result.messages) == 1
    return result.messages[0]


def first_value(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["entry"][0]["changes"][0]["value"]


def first_message(payload: dict[str, Any]) -> dict[str, Any]:
    return first_value(payload)["messages"][0]


def secs(value: int) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


# --- fixtures are sourced ----------------------------------------------------------


def test_every_fixture_cites_its_source() -> None:
    files = sorted(FIXTURES.glob("*.json"))
    assert len(files) >= 30
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        source = data.get("_source")
        assert isinstance(source, str) and "meta" in source.lower(), path.name


# --- identity ----------------------------------------------------------------------


def test_channel_identity(channel: WhatsAppCloudChannel) -> None:
    assert channel.name == "whatsapp_cloud"
    assert channel.window_hours == 24
    assert channel.rate_per_s == 50.0
    assert channel.configured is True
    assert WhatsAppCloudChannel(make_config(whatsapp_access_token=None)).configured is False
    assert WhatsAppCloudChannel(make_config(whatsapp_phone_number_id="  ")).configured is False
    assert WhatsAppCloudChannel(make_config(whatsapp_rate_per_s=7)).rate_per_s == 7


# --- parsing: received messages ----------------------------------------------------


def test_text(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("text.json")))
    assert msg.channel == "whatsapp_cloud"
    assert msg.contact_id == LEAD and msg.phone == LEAD
    # One phone is one lead whichever WhatsApp provider carried it (core.models decides the key).
    assert msg.contact_key.endswith(f":{LEAD}")
    assert msg.name == "Maria Souza"
    assert msg.kind is MessageKind.TEXT
    assert msg.text == "Oi! Vocês entregam em Campinas?"
    assert msg.provider_message_id == "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBNEE2NTk5QUVFMDM4MTAxNDRGAA=="
    assert msg.timestamp == secs(1749416383)
    assert msg.from_me is False and msg.is_group is False
    assert msg.referral is None and msg.media_url is None and msg.reply_to_provider_id is None


def test_voice_note_carries_media_id_not_the_tokened_url(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("audio_voice.json")))
    assert msg.kind is MessageKind.AUDIO
    assert msg.media_url == f"{MEDIA_SCHEME}{MEDIA_ID}"
    assert msg.media_mime == "audio/ogg; codecs=opus"
    assert msg.text is None
    assert msg.timestamp == secs(1749416500)


def test_image(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("image.json")))
    assert msg.kind is MessageKind.IMAGE
    assert msg.media_url == "whatsapp-media:2754859441498128"
    assert msg.media_mime == "image/jpeg"
    assert msg.media_caption == "Essa é a fachada da loja"
    assert msg.name == "Maria Souza"


def test_document(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("document.json")))
    assert msg.kind is MessageKind.DOCUMENT
    assert msg.media_url == "whatsapp-media:1209087543876301"
    assert msg.media_mime == "application/pdf"
    assert msg.file_name == "orcamento.pdf"
    assert msg.media_caption == "Segue o orçamento do concorrente"


def test_video_with_empty_caption(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("video.json")))
    assert msg.kind is MessageKind.VIDEO
    assert msg.media_url == "whatsapp-media:1166846181421424"
    assert msg.media_mime == "video/mp4"
    assert msg.media_caption is None


def test_sticker(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("sticker.json")))
    assert msg.kind is MessageKind.STICKER
    assert msg.media_url == "whatsapp-media:1154497495891425"
    assert msg.media_mime == "image/webp"


def test_location(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("location.json")))
    assert msg.kind is MessageKind.LOCATION
    assert msg.text == "Localização: Escritório Centro - Praça da Sé, São Paulo - SP (-23.55052, -46.633308)"


def test_location_without_type_is_inferred(channel: WhatsAppCloudChannel) -> None:
    # One of Meta's own payload examples omits "type" on a location message.
    payload = load("location.json")
    del first_message(payload)["type"]
    assert only_message(channel.parse(payload)).kind is MessageKind.LOCATION


def test_shared_contact(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("contacts.json")))
    assert msg.kind is MessageKind.CONTACT
    assert msg.text == "Contato compartilhado: Cesar Baleco +55 44 98888-7777"
    # The message's "contacts" is the shared card; the lead's name comes from value.contacts.
    assert msg.name == "Maria Souza"


def test_template_quick_reply_button(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("button.json")))
    assert msg.kind is MessageKind.BUTTON_REPLY
    assert msg.text == "Quero continuar"
    assert msg.reply_to_provider_id == BIZ_MSG


def test_button_payload_used_when_text_missing(channel: WhatsAppCloudChannel) -> None:
    payload = load("button.json")
    first_message(payload)["button"] = {"payload": "QUERO_CONTINUAR"}
    assert only_message(channel.parse(payload)).text == "QUERO_CONTINUAR"


def test_interactive_button_reply(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("interactive_button_reply.json")))
    assert msg.kind is MessageKind.BUTTON_REPLY
    assert msg.text == "Plano anual"
    assert msg.reply_to_provider_id == BIZ_MSG


def test_interactive_list_reply(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("interactive_list_reply.json")))
    assert msg.kind is MessageKind.LIST_REPLY
    assert msg.text == "51 a 200 funcionários"
    assert msg.reply_to_provider_id == BIZ_MSG


def test_interactive_flow_reply_is_kept_as_other(channel: WhatsAppCloudChannel) -> None:
    payload = load("interactive_button_reply.json")
    first_message(payload)["interactive"] = {
        "type": "nfm_reply",
        "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{}"},
    }
    assert only_message(channel.parse(payload)).kind is MessageKind.OTHER


def test_reaction(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("reaction.json")))
    assert msg.kind is MessageKind.REACTION
    assert msg.text == "❤️"
    assert msg.reply_to_provider_id == BIZ_MSG


def test_reaction_removed_has_no_text(channel: WhatsAppCloudChannel) -> None:
    payload = load("reaction.json")
    first_message(payload)["reaction"]["emoji"] = ""
    msg = only_message(channel.parse(payload))
    assert msg.kind is MessageKind.REACTION and msg.text is None


def test_click_to_whatsapp_referral(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("referral_ctwa.json")))
    assert msg.kind is MessageKind.TEXT
    assert msg.text == "Olá! Tenho interesse e queria mais informações."
    assert msg.referral is not None
    assert msg.referral.ctwa_clid == "Aff-n8ZTODiE79d22KtAwQKj9e_mIEOOj27vDVwFjN80dp4_0N"
    assert msg.referral.source_id == "120210000000000001"
    assert msg.referral.source_url == "https://fb.me/3cr4Wqqkv"
    assert msg.referral.source_type == "ad"
    assert msg.referral.headline == "Plano Anual com 30% OFF"


def test_status_ad_referral_without_ctwa_clid(channel: WhatsAppCloudChannel) -> None:
    # Meta omits ctwa_clid for ads shown in WhatsApp Status.
    payload = load("referral_ctwa.json")
    del first_message(payload)["referral"]["ctwa_clid"]
    msg = only_message(channel.parse(payload))
    assert msg.referral is not None and msg.referral.ctwa_clid is None
    assert msg.referral.source_id == "120210000000000001"


def test_empty_referral_is_no_referral(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    first_message(payload)["referral"] = {"source_url": " ", "welcome_message": {"text": "x"}}
    assert only_message(channel.parse(payload)).referral is None


def test_username_user_is_keyed_by_bsuid(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("bsuid_text.json")))
    assert msg.contact_id == BSUID
    assert msg.phone is None
    assert msg.name == "Joana"
    assert msg.text == "Oi, vi o anúncio de vocês"


def test_phone_wins_over_bsuid_when_both_present(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    first_message(payload)["from_user_id"] = BSUID
    first_value(payload)["contacts"][0]["user_id"] = BSUID
    msg = only_message(channel.parse(payload))
    assert msg.contact_id == LEAD and msg.phone == LEAD and msg.name == "Maria Souza"


def test_phone_is_reduced_to_digits(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    first_message(payload)["from"] = "+55 (11) 98765-4321"
    msg = only_message(channel.parse(payload))
    assert msg.contact_id == LEAD and msg.phone == LEAD
    assert msg.name == "Maria Souza"


def test_name_matches_the_sender_among_several_contacts(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    first_value(payload)["contacts"] = [
        {"profile": {"name": "Outra Pessoa"}, "wa_id": "5521900000000"},
        {"profile": {"name": "Maria Souza"}, "wa_id": LEAD},
    ]
    assert only_message(channel.parse(payload)).name == "Maria Souza"


@pytest.mark.parametrize(
    "contacts",
    [None, [], [{"profile": {"name": "  "}, "wa_id": LEAD}], [{"profile": {"name": LEAD}, "wa_id": LEAD}]],
)
def test_missing_or_useless_name_is_none(channel: WhatsAppCloudChannel, contacts: Any) -> None:
    payload = load("text.json")
    if contacts is None:
        del first_value(payload)["contacts"]
    else:
        first_value(payload)["contacts"] = contacts
    assert only_message(channel.parse(payload)).name is None


def test_forwarded_message_context_is_not_a_reply(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    first_message(payload)["context"] = {"forwarded": True}
    assert only_message(channel.parse(payload)).reply_to_provider_id is None


def test_several_messages_and_entries_in_one_webhook(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    second = copy.deepcopy(first_message(payload))
    second["id"] = "wamid.SECOND"
    first_value(payload)["messages"].append(second)
    payload["entry"].append(copy.deepcopy(load("image.json")["entry"][0]))
    result = channel.parse(payload)
    assert [m.kind for m in result.messages] == [MessageKind.TEXT, MessageKind.TEXT, MessageKind.IMAGE]
    assert result.messages[1].provider_message_id == "wamid.SECOND"


def test_timestamp_missing_is_now_and_absurd_is_now(channel: WhatsAppCloudChannel) -> None:
    before = datetime.now(UTC)
    payload = load("text.json")
    del first_message(payload)["timestamp"]
    assert only_message(channel.parse(payload)).timestamp >= before
    first_message(payload)["timestamp"] = str(10**30)
    assert only_message(channel.parse(payload)).timestamp >= before
    first_message(payload)["timestamp"] = 1749416383  # a number instead of a string
    assert only_message(channel.parse(payload)).timestamp == secs(1749416383)


def test_unknown_type_is_kept_as_other(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    message = first_message(payload)
    del message["text"]
    message["type"] = "order"
    message["order"] = {"catalog_id": "1", "product_items": []}
    assert only_message(channel.parse(payload)).kind is MessageKind.OTHER


# --- parsing: what is not answered -------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("unsupported.json", "unsupported"),
        ("system_changed_number.json", "system"),
        ("template_status_update.json", "not_a_message"),
        ("errors_webhook.json", "error"),
    ],
)
def test_not_answerable_events_are_ignored(channel: WhatsAppCloudChannel, fixture: str, reason: str) -> None:
    result = channel.parse(load(fixture))
    assert result.messages == [] and result.statuses == []
    assert [e.reason for e in result.ignored] == [reason]
    assert all(e.message is None for e in result.ignored)


def test_unknown_message_type_from_older_payloads_is_unsupported(channel: WhatsAppCloudChannel) -> None:
    payload = load("unsupported.json")
    first_message(payload)["type"] = "unknown"
    assert [e.reason for e in channel.parse(payload).ignored] == ["unsupported"]


def test_group_message_is_ignored(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    first_message(payload)["group_id"] = "120363019502650977"
    result = channel.parse(payload)
    assert [e.reason for e in result.ignored] == ["group"]


def test_message_for_another_phone_number_is_ignored(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    first_value(payload)["metadata"]["phone_number_id"] = "999999999999999"
    result = channel.parse(payload)
    assert result.messages == []
    assert [(e.reason, e.provider_message_id) for e in result.ignored] == [
        ("other_number", first_message(payload)["id"])
    ]


def test_status_for_another_phone_number_is_ignored(channel: WhatsAppCloudChannel) -> None:
    payload = load("status_read.json")
    first_value(payload)["metadata"]["phone_number_id"] = "999999999999999"
    result = channel.parse(payload)
    assert result.statuses == []
    assert [(e.reason, e.provider_message_id) for e in result.ignored] == [("other_number", BIZ_MSG)]


def test_without_configured_number_every_number_is_accepted() -> None:
    channel = WhatsAppCloudChannel(make_config(whatsapp_phone_number_id=None))
    payload = load("text.json")
    first_value(payload)["metadata"]["phone_number_id"] = "999999999999999"
    assert only_message(channel.parse(payload)).contact_id == LEAD


def test_business_app_echo_is_recorded_as_from_me(channel: WhatsAppCloudChannel) -> None:
    result = channel.parse(load("smb_message_echo.json"))
    assert result.messages == []
    assert len(result.ignored) == 1
    event = result.ignored[0]
    assert event.reason == "from_me"
    assert event.message is not None
    assert event.message.from_me is True
    assert event.message.contact_id == LEAD  # the lead is the recipient ("to")
    assert event.message.text == "Oi Maria, aqui é o João da loja, já te ligo"
    assert event.message.timestamp == secs(1749418400)


# --- parsing: statuses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "state", "stamp"),
    [
        ("status_sent.json", "sent", 1749418000),
        ("status_delivered.json", "delivered", 1749418002),
        ("status_read.json", "read", 1749418010),
    ],
)
def test_delivery_statuses(channel: WhatsAppCloudChannel, fixture: str, state: str, stamp: int) -> None:
    result = channel.parse(load(fixture))
    assert result.messages == [] and result.ignored == []
    assert result.statuses == [
        DeliveryStatus(provider_message_id=BIZ_MSG, status=state, error=None, timestamp=secs(stamp))  # type: ignore[arg-type]
    ]


def test_failed_outside_window_names_the_window(channel: WhatsAppCloudChannel) -> None:
    [status] = channel.parse(load("status_failed_131047.json")).statuses
    assert status.status == "failed"
    assert status.error is not None
    assert status.error.startswith(
        "131047 Re-engagement message: Message failed to send because more than 24 hours"
    )
    assert "window" in status.error


def test_the_closed_window_is_a_typed_flag_on_the_status_not_a_word_to_search(
    channel: WhatsAppCloudChannel,
) -> None:
    [closed] = channel.parse(load("status_failed_131047.json")).statuses
    [undeliverable] = channel.parse(load("status_failed_131026.json")).statuses
    assert closed.outside_window is True
    assert undeliverable.outside_window is False


def test_failed_undeliverable(channel: WhatsAppCloudChannel) -> None:
    [status] = channel.parse(load("status_failed_131026.json")).statuses
    assert status.status == "failed"
    assert status.error == "131026 Message undeliverable: Message Undeliverable."


def test_played_voice_status_and_unknown_states(channel: WhatsAppCloudChannel) -> None:
    payload = load("status_read.json")
    first_value(payload)["statuses"][0]["status"] = "played"
    assert channel.parse(payload).statuses[0].status == "played"
    first_value(payload)["statuses"][0]["status"] = "deleted"
    result = channel.parse(payload)
    assert result.statuses == [] and [e.reason for e in result.ignored] == ["status"]


def test_failed_status_without_errors_has_no_error_text(channel: WhatsAppCloudChannel) -> None:
    payload = load("status_failed_131026.json")
    del first_value(payload)["statuses"][0]["errors"]
    assert channel.parse(payload).statuses[0].error is None


def test_long_status_error_is_truncated(channel: WhatsAppCloudChannel) -> None:
    payload = load("status_failed_131026.json")
    first_value(payload)["statuses"][0]["errors"][0]["error_data"]["details"] = "x" * 5000
    assert len(channel.parse(payload).statuses[0].error or "") <= 300


# --- parsing: malformed bodies -----------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ([], 400),
        ("whatsapp_business_account", 400),
        (None, 400),
        (42, 400),
        ({}, 422),
        ({"object": "instagram", "entry": []}, 422),
        ({"object": "page", "entry": []}, 422),
        ({"object": "whatsapp_business_account"}, 422),
        ({"object": "whatsapp_business_account", "entry": {}}, 422),
        ({"object": "whatsapp_business_account", "entry": ["x"]}, 422),
        ({"object": "whatsapp_business_account", "entry": [{"changes": {}}]}, 422),
        ({"object": "whatsapp_business_account", "entry": [{"changes": [5]}]}, 422),
        ({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}, 422),
    ],
)
def test_not_a_whatsapp_body_is_rejected(channel: WhatsAppCloudChannel, payload: object, status: int) -> None:
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == status
    assert exc_info.value.message


def test_empty_entry_list_is_an_empty_result(channel: WhatsAppCloudChannel) -> None:
    result = channel.parse({"object": "whatsapp_business_account", "entry": []})
    assert result == ParsedWebhook()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("id",), None),
        (("id",), ""),
        (("id",), 123),
        (("from",), ""),
        (("from",), "sem numero"),
        (("from",), 5511987654321),
        (("timestamp",), "yesterday"),
        (("timestamp",), True),
        (("timestamp",), [1]),
        (("text",), "hello"),
        (("text", "body"), 5),
        (("type",), 7),
        (("referral",), "ad"),
        (("context",), []),
    ],
)
def test_wrong_message_fields_are_rejected_with_422(
    channel: WhatsAppCloudChannel, path: tuple[str, ...], value: Any
) -> None:
    payload = load("text.json")
    target = first_message(payload)
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == 422


def test_message_without_any_sender_is_rejected(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    del first_message(payload)["from"]
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == 422 and "sender" in exc_info.value.message


def test_media_id_that_could_escape_the_graph_path_is_rejected(channel: WhatsAppCloudChannel) -> None:
    payload = load("audio_voice.json")
    first_message(payload)["audio"]["id"] = "../me/accounts"
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == 422


def test_messages_without_metadata_are_rejected(channel: WhatsAppCloudChannel) -> None:
    payload = load("text.json")
    del first_value(payload)["metadata"]
    with pytest.raises(WebhookRejected) as exc_info:
        channel.parse(payload)
    assert exc_info.value.status == 422 and "phone_number_id" in exc_info.value.message


_WRONG_VALUES: list[Any] = [None, 5, -1.5, True, "x", [], ["a"], {}, {"k": "v"}, 10**40]
_MUTATED_FIXTURES = (
    "text.json",
    "audio_voice.json",
    "document.json",
    "location.json",
    "contacts.json",
    "interactive_list_reply.json",
    "reaction.json",
    "referral_ctwa.json",
    "bsuid_text.json",
    "status_failed_131047.json",
    "smb_message_echo.json",
)


def _mutations() -> list[tuple[str, Any]]:
    """Deterministic damage to documented payloads, at every level of the envelope."""
    out: list[tuple[str, Any]] = []

    def variants(label: str, original: dict[str, Any], locate: Any) -> None:
        target = locate(original)
        for key in list(target):
            broken = copy.deepcopy(original)
            del locate(broken)[key]
            out.append((f"{label}:-{key}", broken))
            for i, value in enumerate(_WRONG_VALUES):
                broken = copy.deepcopy(original)
                locate(broken)[key] = copy.deepcopy(value)
                out.append((f"{label}:{key}={i}", broken))
            inner = target[key]
            if isinstance(inner, dict):
                for sub in inner:
                    for value in (None, 7, [], {"x": 1}, float("nan")):
                        broken = copy.deepcopy(original)
                        locate(broken)[key][sub] = copy.deepcopy(value)
                        out.append((f"{label}:{key}.{sub}={value!r}", broken))

    for fixture in _MUTATED_FIXTURES:
        original = load(fixture)
        value = first_value(original)
        events = next(k for k in ("messages", "statuses", "message_echoes") if k in value)
        variants(f"{fixture}:root", original, lambda p: p)
        variants(f"{fixture}:entry", original, lambda p: p["entry"][0])
        variants(f"{fixture}:change", original, lambda p: p["entry"][0]["changes"][0])
        variants(f"{fixture}:value", original, lambda p: p["entry"][0]["changes"][0]["value"])
        variants(
            f"{fixture}:event",
            original,
            lambda p, k=events: p["entry"][0]["changes"][0]["value"][k][0],
        )
    return out


MUTATIONS = _mutations()


def test_mutation_corpus_is_large() -> None:
    assert len(MUTATIONS) >= 500


def test_mutated_payloads_parse_or_are_rejected_cleanly(channel: WhatsAppCloudChannel) -> None:
    outcomes = {"parsed": 0, "rejected": 0}
    for label, payload in MUTATIONS:
        try:
            result = channel.parse(payload)
        except WebhookRejected as exc:
            assert exc.status in (400, 422), label
            assert isinstance(exc.message, str) and exc.message, label
            outcomes["rejected"] += 1
            continue
        except Exception as exc:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"{label}: {type(exc).__name__}: {exc}")
        assert isinstance(result, ParsedWebhook), label
        for msg in result.messages:
            assert msg.contact_id and msg.provider_message_id, label
            if msg.media_url is not None:
                assert msg.media_url.startswith(MEDIA_SCHEME), label
        for status in result.statuses:
            assert status.provider_message_id and status.status, label
        outcomes["parsed"] += 1
    # Both paths are exercised, otherwise the corpus proves nothing.
    assert outcomes["parsed"] > 0 and outcomes["rejected"] > 0


# --- authentication ----------------------------------------------------------------


def _sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _request(headers: dict[str, str] | None = None):
    return make_mocked_request("POST", "/webhooks/meta", headers=headers or {})


def _raw(fixture: str = "text.json") -> bytes:
    return json.dumps(load(fixture), ensure_ascii=False).encode("utf-8")


def test_valid_signature_is_accepted(channel: WhatsAppCloudChannel) -> None:
    body = _raw()
    channel.authenticate(_request({"X-Hub-Signature-256": _sign(body)}), body)
    # Header names are case-insensitive and Meta's hex may come in upper case.
    channel.authenticate(_request({"x-hub-signature-256": "sha256=" + _sign(body)[7:].upper()}), body)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Hub-Signature-256": ""}, 401),
        ({"X-Hub-Signature": "sha1=0123"}, 401),
        ({"X-Hub-Signature-256": "md5=abc"}, 401),
        ({"X-Hub-Signature-256": "sha256="}, 403),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 403),
    ],
)
def test_missing_or_forged_signature_is_rejected(
    channel: WhatsAppCloudChannel, headers: dict[str, str], status: int
) -> None:
    with pytest.raises(WebhookRejected) as exc_info:
        channel.authenticate(_request(headers), _raw())
    assert exc_info.value.status == status
    assert APP_SECRET not in exc_info.value.message


def test_body_altered_by_one_byte_is_rejected(channel: WhatsAppCloudChannel) -> None:
    body = _raw()
    signature = _sign(body)
    index = body.index(b"Campinas")
    altered = body[:index] + b"c" + body[index + 1 :]
    assert len(altered) == len(body) and altered != body
    with pytest.raises(WebhookRejected) as exc_info:
        channel.authenticate(_request({"X-Hub-Signature-256": signature}), altered)
    assert exc_info.value.status == 403
    with pytest.raises(WebhookRejected):
        channel.authenticate(_request({"X-Hub-Signature-256": signature}), body + b" ")


def test_without_app_secret_nothing_is_accepted() -> None:
    channel = WhatsAppCloudChannel(make_config(meta_app_secret=None))
    body = _raw()
    with pytest.raises(WebhookRejected) as exc_info:
        channel.authenticate(_request({"X-Hub-Signature-256": _sign(body)}), body)
    assert exc_info.value.status == 401
    blank = WhatsAppCloudChannel(make_config(meta_app_secret="  "))
    with pytest.raises(WebhookRejected):
        blank.authenticate(_request({"X-Hub-Signature-256": _sign(body, "  ")}), body)


# --- send_text / send_template / mark_read -----------------------------------------


def _sent_request(mocked: aioresponses, url: str = SEND_URL, method: str = "POST"):
    # aioresponses keys requests by URL with its query sorted; compare query as a mapping.
    wanted = URL(url)
    keys = [
        key
        for key in mocked.requests
        if key[0] == method
        and key[1].with_query(None) == wanted.with_query(None)
        and dict(key[1].query) == dict(wanted.query)
    ]
    assert len(keys) == 1, list(mocked.requests)
    calls = mocked.requests[keys[0]]
    assert len(calls) == 1
    return calls[0]


def _meta_error(name: str) -> tuple[int, dict[str, Any]]:
    data = load(name)
    status = data.pop("_http_status")
    data.pop("_source")
    return status, data


async def test_send_text_posts_documented_request(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_text_response.json"))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, LEAD, "Olá! Como posso ajudar?", typing_s=3)
        call = _sent_request(mocked)
    assert sent.provider_message_id == "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjI4NkY0N0JGQkQ5RjQxMTJGMQA="
    assert call.kwargs["json"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": LEAD,
        "type": "text",
        "text": {"preview_url": False, "body": "Olá! Como posso ajudar?"},
    }
    headers = call.kwargs["headers"]
    assert headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert headers["Content-Type"] == "application/json"
    timeout = call.kwargs["timeout"]
    assert isinstance(timeout, aiohttp.ClientTimeout) and timeout.total == 7.5


async def test_send_text_to_a_username_user_uses_recipient(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_text_response.json"))
        async with aiohttp.ClientSession() as session:
            await channel.send_text(session, BSUID, "Oi Joana!", typing_s=0)
        body = _sent_request(mocked).kwargs["json"]
    assert body["recipient"] == BSUID and "to" not in body


async def test_send_text_honours_graph_url_and_version() -> None:
    channel = WhatsAppCloudChannel(
        make_config(meta_graph_url="http://127.0.0.1:9999/graph/", meta_graph_version="v99.0")
    )
    url = f"http://127.0.0.1:9999/graph/v99.0/{PHONE_NUMBER_ID}/messages"
    with aioresponses() as mocked:
        mocked.post(url, payload={"messages": [{"id": "wamid.X"}]})
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, "+55 11 98765-4321", "oi", typing_s=0)
        assert _sent_request(mocked, url).kwargs["json"]["to"] == LEAD
    assert sent.provider_message_id == "wamid.X"


async def test_send_template_posts_documented_request(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_template_response.json"))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_template(session, LEAD, name="retomar_conversa", language="pt_BR")
        call = _sent_request(mocked)
    assert sent.provider_message_id == "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjQ1QTc5NjlCRkQ0RTQ4QUZGOAA="
    assert call.kwargs["json"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": LEAD,
        "type": "template",
        "template": {"name": "retomar_conversa", "language": {"code": "pt_BR"}},
    }
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_send_template_language_defaults_to_settings() -> None:
    channel = WhatsAppCloudChannel(make_config(whatsapp_template_language="es_MX"))
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_template_response.json"))
        async with aiohttp.ClientSession() as session:
            await channel.send_template(session, LEAD, name="retomar_conversa")
        body = _sent_request(mocked).kwargs["json"]
    assert body["template"]["language"] == {"code": "es_MX"}


@pytest.mark.parametrize("typing", [False, True])
async def test_mark_read_with_and_without_typing(channel: WhatsAppCloudChannel, typing: bool) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("mark_read_response.json"))
        async with aiohttp.ClientSession() as session:
            assert await channel.mark_read(session, "wamid.IN", typing=typing) is None
        call = _sent_request(mocked)
    expected: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN"}
    if typing:
        expected["typing_indicator"] = {"type": "text"}
    assert call.kwargs["json"] == expected
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_send_text_does_not_sleep_for_typing(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, payload=load("send_text_response.json"))
        async with aiohttp.ClientSession() as session:
            await asyncio.wait_for(channel.send_text(session, LEAD, "oi", typing_s=60), timeout=2)


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("send_text", {"contact_id": LEAD, "text": "oi", "typing_s": 0}),
        ("send_template", {"contact_id": LEAD, "name": "retomar_conversa"}),
        ("mark_read", {"message_id": "wamid.IN"}),
    ],
)
async def test_not_configured_is_permanent(call: str, kwargs: dict[str, Any]) -> None:
    channel = WhatsAppCloudChannel(make_config(whatsapp_access_token=None))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as exc_info:
            await getattr(channel, call)(session, **kwargs)
    assert exc_info.value.retryable is False


@pytest.mark.parametrize(
    ("contact_id", "text", "invalid_recipient"),
    [
        ("not a number", "oi", True),
        ("123", "oi", True),
        (LEAD, "   ", False),
        (LEAD, "x" * 4097, False),
    ],
)
async def test_unsendable_input_fails_before_any_request(
    channel: WhatsAppCloudChannel, contact_id: str, text: str, invalid_recipient: bool
) -> None:
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, contact_id, text, typing_s=0)
        assert not mocked.requests
    assert exc_info.value.retryable is False
    assert exc_info.value.invalid_recipient is invalid_recipient


async def test_send_template_requires_a_name(channel: WhatsAppCloudChannel) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as exc_info:
            await channel.send_template(session, LEAD, name="  ", language="pt_BR")
    assert exc_info.value.retryable is False


# --- Meta error mapping ------------------------------------------------------------

_ERROR_CASES = [
    # fixture, retryable, auth_failed, invalid_recipient
    ("error_131047.json", False, False, False),
    ("error_131026.json", False, False, True),
    ("error_131030.json", False, False, True),
    ("error_190.json", False, True, False),
    ("error_10.json", False, True, False),
    ("error_130429.json", True, False, False),
    ("error_131056.json", True, False, False),
    ("error_80007.json", True, False, False),
    ("error_4.json", True, False, False),
    ("error_131000.json", True, False, False),
    ("error_100_invalid_parameter.json", False, False, False),
    ("error_132001.json", False, False, False),
]


@pytest.mark.parametrize(("fixture", "retryable", "auth_failed", "invalid_recipient"), _ERROR_CASES)
@pytest.mark.parametrize("op", ["send_text", "send_template"])
async def test_meta_errors_are_mapped(
    channel: WhatsAppCloudChannel,
    fixture: str,
    retryable: bool,
    auth_failed: bool,
    invalid_recipient: bool,
    op: str,
) -> None:
    status, body = _meta_error(fixture)
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=status, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                if op == "send_text":
                    await channel.send_text(session, LEAD, "oi", typing_s=0)
                else:
                    await channel.send_template(session, LEAD, name="retomar_conversa")
    err = exc_info.value
    assert isinstance(err, MetaApiError)
    assert err.status == status
    assert err.code == body["error"]["code"]
    assert (err.retryable, err.auth_failed, err.invalid_recipient) == (
        retryable,
        auth_failed,
        invalid_recipient,
    )
    text = str(err)
    assert f"code {body['error']['code']}" in text
    assert body["error"]["fbtrace_id"] in text and err.fbtrace_id == body["error"]["fbtrace_id"]
    assert ACCESS_TOKEN not in text and APP_SECRET not in text
    assert len(text) < 600


async def test_outside_window_says_window_and_is_its_own_type(channel: WhatsAppCloudChannel) -> None:
    status, body = _meta_error("error_131047.json")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=status, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(OutsideWindow) as exc_info:
                await channel.send_text(session, LEAD, "oi", typing_s=0)
    err = exc_info.value
    assert "window" in str(err) and "template" in str(err)
    assert err.retryable is False and err.auth_failed is False and err.invalid_recipient is False


async def test_expired_token_subcode_is_kept(channel: WhatsAppCloudChannel) -> None:
    status, body = _meta_error("error_190.json")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=status, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(MetaApiError) as exc_info:
                await channel.send_text(session, LEAD, "oi", typing_s=0)
    assert exc_info.value.subcode == 463
    assert "code 190/463" in str(exc_info.value)
    assert "Session has expired" in str(exc_info.value)


async def test_expired_token_with_http_400_is_still_auth(channel: WhatsAppCloudChannel) -> None:
    # Older Graph versions answer OAuthException 190 with 400, not 401.
    _, body = _meta_error("error_190.json")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=400, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, LEAD, "oi", typing_s=0)
    assert exc_info.value.auth_failed is True and exc_info.value.retryable is False


async def test_rate_limit_code_beats_http_status(channel: WhatsAppCloudChannel) -> None:
    # Meta reports its rate limits with 400/403; the code decides, not the status.
    _, body = _meta_error("error_130429.json")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=400, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, LEAD, "oi", typing_s=0)
    assert exc_info.value.retryable is True and exc_info.value.auth_failed is False


async def test_is_transient_flag_is_retryable(channel: WhatsAppCloudChannel) -> None:
    body = {"error": {"message": "An unexpected error has occurred.", "type": "OAuthException",
                      "code": 999999, "is_transient": True, "fbtrace_id": "Zz1"}}  # fmt: skip
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=400, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, LEAD, "oi", typing_s=0)
    assert exc_info.value.retryable is True


@pytest.mark.parametrize(
    ("status", "body", "retryable", "auth_failed"),
    [
        (429, "", True, False),
        (500, "<html>Internal</html>", True, False),
        (502, "<html>Bad Gateway</html>", True, False),
        (503, "", True, False),
        (401, "", False, True),
        (403, "Forbidden", False, True),
        (400, "bad", False, False),
        (404, "", False, False),
    ],
)
async def test_http_errors_without_meta_json(
    channel: WhatsAppCloudChannel, status: int, body: str, retryable: bool, auth_failed: bool
) -> None:
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=status, body=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, LEAD, "oi", typing_s=0)
    err = exc_info.value
    assert (err.status, err.retryable, err.auth_failed) == (status, retryable, auth_failed)
    assert f"HTTP {status}" in str(err)


async def test_token_echoed_by_the_server_is_redacted(channel: WhatsAppCloudChannel) -> None:
    body = {"error": {"message": f"Malformed access token {ACCESS_TOKEN}", "type": "OAuthException",
                      "code": 190, "fbtrace_id": "Tr4ce"}}  # fmt: skip
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=401, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, LEAD, "oi", typing_s=0)
    assert ACCESS_TOKEN not in str(exc_info.value)
    assert "[REDACTED]" in str(exc_info.value)


async def test_error_detail_is_truncated(channel: WhatsAppCloudChannel) -> None:
    body = {"error": {"message": "x" * 5000, "code": 100, "fbtrace_id": "T"}}
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=400, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, LEAD, "oi", typing_s=0)
    assert len(str(exc_info.value)) < 450


async def test_2xx_carrying_an_error_is_an_error(channel: WhatsAppCloudChannel) -> None:
    _, body = _meta_error("error_131026.json")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=200, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.send_text(session, LEAD, "oi", typing_s=0)
    assert exc_info.value.invalid_recipient is True


async def test_mark_read_errors_use_the_same_mapping(channel: WhatsAppCloudChannel) -> None:
    status, body = _meta_error("error_190.json")
    with aioresponses() as mocked:
        mocked.post(SEND_URL, status=status, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.mark_read(session, "wamid.IN", typing=True)
    assert exc_info.value.auth_failed is True


# --- fetch_media -------------------------------------------------------------------

MEDIA_URL = f"{MEDIA_SCHEME}{MEDIA_ID}"


def _media_info(**changes: Any) -> dict[str, Any]:
    info = load("media_url_response.json")
    info.pop("_source")
    info.update(changes)
    return {k: v for k, v in info.items() if v is not None}


async def test_fetch_media_two_steps_with_bearer(channel: WhatsAppCloudChannel) -> None:
    audio = b"OggS" + b"\x00" * 1000
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, payload=_media_info(file_size=str(len(audio))))
        mocked.get(DOWNLOAD_URL, body=audio, content_type="audio/ogg")
        async with aiohttp.ClientSession() as session:
            data = await channel.fetch_media(session, MEDIA_URL, max_bytes=2048)
        lookup = _sent_request(mocked, MEDIA_INFO_URL, "GET")
        download = _sent_request(mocked, DOWNLOAD_URL, "GET")
    assert data == audio
    assert lookup.kwargs["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert download.kwargs["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_fetch_media_exactly_at_limit(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, payload=_media_info(file_size=100))
        mocked.get(DOWNLOAD_URL, body=b"a" * 100)
        async with aiohttp.ClientSession() as session:
            assert len(await channel.fetch_media(session, MEDIA_URL, max_bytes=100)) == 100


async def test_fetch_media_refuses_declared_size_before_downloading(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, payload=_media_info(file_size="16777217"))
        async with aiohttp.ClientSession() as session:
            with pytest.raises(MediaTooLarge) as exc_info:
                await channel.fetch_media(session, MEDIA_URL, max_bytes=16 * 1024 * 1024)
        assert [key[1].host for key in mocked.requests] == ["graph.facebook.com"]
    assert isinstance(exc_info.value, ProviderError) and exc_info.value.retryable is False


@pytest.mark.parametrize(
    "headers", [{"Content-Length": "10"}, {}], ids=["lying-content-length", "no-content-length"]
)
async def test_fetch_media_counts_while_streaming(
    channel: WhatsAppCloudChannel, headers: dict[str, str]
) -> None:
    # Neither a missing file_size nor a lying Content-Length lets a huge body through.
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, payload=_media_info(file_size=None))
        mocked.get(DOWNLOAD_URL, body=b"a" * 300_000, headers=headers)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(MediaTooLarge):
                await channel.fetch_media(session, MEDIA_URL, max_bytes=100_000)


async def test_fetch_media_refuses_declared_content_length(channel: WhatsAppCloudChannel) -> None:
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, payload=_media_info(file_size=None))
        mocked.get(DOWNLOAD_URL, body=b"a" * 10, headers={"Content-Length": "999999"})
        async with aiohttp.ClientSession() as session:
            with pytest.raises(MediaTooLarge):
                await channel.fetch_media(session, MEDIA_URL, max_bytes=1000)


@pytest.mark.parametrize(
    ("fixture", "retryable", "auth_failed"),
    [("error_190.json", False, True), ("error_131000.json", True, False), ("error_80007.json", True, False)],
)
async def test_fetch_media_lookup_errors(
    channel: WhatsAppCloudChannel, fixture: str, retryable: bool, auth_failed: bool
) -> None:
    status, body = _meta_error(fixture)
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, status=status, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.fetch_media(session, MEDIA_URL, max_bytes=1000)
    assert (exc_info.value.retryable, exc_info.value.auth_failed) == (retryable, auth_failed)
    assert ACCESS_TOKEN not in str(exc_info.value)


async def test_fetch_media_expired_media_id_is_permanent(channel: WhatsAppCloudChannel) -> None:
    # Webhook media ids live 7 days; after that Meta answers 100/33 "does not exist".
    body = {"error": {"message": "Unsupported get request. Object with ID '1003383421387256' does not exist",
                      "type": "GraphMethodException", "code": 100, "error_subcode": 33, "fbtrace_id": "Ex1"}}  # fmt: skip
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, status=400, payload=body)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.fetch_media(session, MEDIA_URL, max_bytes=1000)
    assert exc_info.value.retryable is False and exc_info.value.auth_failed is False


@pytest.mark.parametrize(
    ("status", "retryable", "auth_failed"),
    [(500, True, False), (503, True, False), (429, True, False), (404, False, False), (401, False, True)],
)
async def test_fetch_media_download_errors(
    channel: WhatsAppCloudChannel, status: int, retryable: bool, auth_failed: bool
) -> None:
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, payload=_media_info())
        mocked.get(DOWNLOAD_URL, status=status, body="<html>nope</html>")
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.fetch_media(session, MEDIA_URL, max_bytes=100_000)
    err = exc_info.value
    assert (err.status, err.retryable, err.auth_failed) == (status, retryable, auth_failed)
    assert ACCESS_TOKEN not in str(err)


@pytest.mark.parametrize("step", ["lookup", "download"])
@pytest.mark.parametrize("exception", [TimeoutError(), aiohttp.ClientConnectionError()])
async def test_fetch_media_transport_failures_are_retryable(
    channel: WhatsAppCloudChannel, step: str, exception: Exception
) -> None:
    with aioresponses() as mocked:
        if step == "lookup":
            mocked.get(MEDIA_INFO_URL, exception=exception)
        else:
            mocked.get(MEDIA_INFO_URL, payload=_media_info())
            mocked.get(DOWNLOAD_URL, exception=exception)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.fetch_media(session, MEDIA_URL, max_bytes=100_000)
    assert exc_info.value.retryable is True


@pytest.mark.parametrize(
    "info",
    [
        {"id": MEDIA_ID, "mime_type": "audio/ogg"},
        {"id": MEDIA_ID, "url": ""},
        {"id": MEDIA_ID, "url": "file:///etc/passwd"},
        {"id": MEDIA_ID, "url": "ftp://lookaside.fbsbx.com/x"},
    ],
)
async def test_fetch_media_refuses_unusable_download_urls(
    channel: WhatsAppCloudChannel, info: dict[str, Any]
) -> None:
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, payload=info)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.fetch_media(session, MEDIA_URL, max_bytes=1000)
    assert exc_info.value.retryable is False


@pytest.mark.parametrize(
    "url",
    [
        DOWNLOAD_URL,  # the token is never sent to an address taken from a webhook
        "https://evil.example.com/steal",
        "whatsapp-media:",
        "whatsapp-media:../../me",
        "whatsapp-media:123?fields=access_token",
        "",
    ],
)
async def test_fetch_media_only_accepts_its_own_pseudo_urls(channel: WhatsAppCloudChannel, url: str) -> None:
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.fetch_media(session, url, max_bytes=1000)
        assert not mocked.requests
    assert exc_info.value.retryable is False


async def test_fetch_media_not_configured_is_permanent() -> None:
    channel = WhatsAppCloudChannel(make_config(whatsapp_access_token=None))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as exc_info:
            await channel.fetch_media(session, MEDIA_URL, max_bytes=1000)
    assert exc_info.value.retryable is False


async def test_parsed_media_url_round_trips_into_fetch_media(channel: WhatsAppCloudChannel) -> None:
    msg = only_message(channel.parse(load("audio_voice.json")))
    assert msg.media_url is not None
    with aioresponses() as mocked:
        mocked.get(MEDIA_INFO_URL, payload=_media_info())
        mocked.get(DOWNLOAD_URL, body=b"OggS")
        async with aiohttp.ClientSession() as session:
            assert await channel.fetch_media(session, msg.media_url, max_bytes=10_000) == b"OggS"

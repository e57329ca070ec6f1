"""WAHA exactly as its OpenAPI spec (static/swagger/openapi.json) says: acks told apart
by the chat id's server, message.ack.group acknowledged, sendSeen naming the lead's
messages, and send_media's four operations with their request schemas."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from channels.base import OutgoingMedia, SendsMedia, media_sender
from channels.waha import WahaChannel
from core.errors import (
    AuthFailed,
    InvalidRecipient,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    WebhookRejected,
)
from core.settings import Settings
from web.configs.channels import waha_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "waha"
WAHA_URL = "http://waha:3000"
API_KEY = "waha-key-SECRET-7f6e5d4c"
PHONE = "5511999999999"
CHAT_ID = f"{PHONE}@c.us"
# Every event name the spec's webhook schemas list (WAHAWebhook*.event enum).
SPEC_EVENTS = [
    "session.status",
    "message",
    "message.reaction",
    "message.any",
    "message.ack",
    "message.ack.group",
    "message.waiting",
    "message.revoked",
    "message.edited",
    "state.change",
    "group.join",
    "group.leave",
    "group.v2.join",
    "group.v2.leave",
    "group.v2.update",
    "group.v2.participants",
    "presence.update",
    "poll.vote",
    "poll.vote.failed",
    "chat.archive",
    "call.received",
    "call.accepted",
    "call.rejected",
    "label.upsert",
    "label.deleted",
    "label.chat.added",
    "label.chat.deleted",
    "event.response",
    "event.response.failed",
    "engine.event",
]
# Events whose payload is read, and so must be of the documented shape.
READ_EVENTS = {"message", "message.any", "message.ack", "session.status"}


def load(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    data.pop("_source")
    return data


@pytest.fixture
def channel() -> WahaChannel:
    values: dict[str, Any] = {
        "_env_file": None,
        "waha_url": WAHA_URL,
        "waha_api_key": API_KEY,
        "http_timeout_s": 7.5,
    }
    return WahaChannel(waha_config(Settings(**values)))


# --- acks ----------------------------------------------------------------------------


def test_a_direct_ack_with_participant_is_a_delivery_status(channel: WahaChannel) -> None:
    payload = load("message_ack_spec_direct.json")
    assert payload["payload"]["participant"] == payload["payload"]["from"]
    result = channel.parse(payload)
    assert result.ignored == [] and result.messages == []
    [status] = result.statuses
    assert status.provider_message_id == "true_11111111111@c.us_AAAAAAAAAAAAAAAAAAAA"
    assert status.status == "read"
    assert status.timestamp == datetime.fromtimestamp(1634567890.123, tz=UTC)


@pytest.mark.parametrize("participant", [None, "11111111111@c.us", "81896604192873@lid", ""])
def test_participant_does_not_make_a_direct_ack_a_group_one(
    channel: WahaChannel, participant: str | None
) -> None:
    payload = load("message_ack_spec_direct.json")
    payload["payload"]["participant"] = participant
    assert [s.status for s in channel.parse(payload).statuses] == ["read"]


@pytest.mark.parametrize("side", ["from", "to"])
def test_an_ack_in_a_group_chat_is_ignored(channel: WahaChannel, side: str) -> None:
    payload = load("message_ack_spec_direct.json")
    payload["payload"][side] = "120363025246125486@g.us"
    result = channel.parse(payload)
    assert result.statuses == []
    assert [e.reason for e in result.ignored] == ["group"]


def test_the_group_ack_event_is_ignored(channel: WahaChannel) -> None:
    result = channel.parse(load("message_ack_group_event.json"))
    assert result.statuses == [] and result.messages == []
    assert [(e.reason, e.provider_message_id) for e in result.ignored] == [
        ("group", "true_11111111111@g.us_4CC5EDD64BC22EBA6D639F2AF571346C_9999@lid")
    ]


@pytest.mark.parametrize("body", [None, "x", [], {}, {"id": 5}])
def test_the_group_ack_event_is_never_a_422(channel: WahaChannel, body: Any) -> None:
    payload = load("message_ack_group_event.json") | {"payload": body}
    assert [e.reason for e in channel.parse(payload).ignored] == ["group"]


@pytest.mark.parametrize("event", sorted(set(SPEC_EVENTS) - READ_EVENTS))
def test_every_other_spec_event_is_acknowledged(channel: WahaChannel, event: str) -> None:
    payload = load("message_ack_spec_direct.json") | {"event": event}
    result = channel.parse(payload)
    assert result.messages == [] and result.statuses == [] and len(result.ignored) == 1


# --- sendSeen before a reply -------------------------------------------------------------


async def reply(channel: WahaChannel, **kwargs: Any) -> tuple[Any, Any, Any]:
    with aioresponses() as mocked:
        mocked.post(f"{WAHA_URL}/api/sendSeen", status=201, payload={})
        mocked.post(f"{WAHA_URL}/api/sendText", status=201, payload=load("send_response_spec.json"))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_text(session, PHONE, "oi", typing_s=0, **kwargs)
        [seen] = mocked.requests[("POST", URL(f"{WAHA_URL}/api/sendSeen"))]
        [text] = mocked.requests[("POST", URL(f"{WAHA_URL}/api/sendText"))]
    return sent, seen.kwargs["json"], text.kwargs["json"]


async def test_send_seen_names_the_leads_messages_being_answered(channel: WahaChannel) -> None:
    ids = ["false_5511999999999@c.us_AAAAAAAAAAAAAAAAAAAA", "false_5511999999999@c.us_BBBBBBBBBBBBBBBBBBBB"]
    sent, seen, text = await reply(channel, seen_message_ids=[*ids, "  ", ""])
    assert seen == {"chatId": CHAT_ID, "session": "default", "messageIds": ids}
    assert "messageIds" not in text and text["text"] == "oi"
    # The spec's WAMessage example is what sendText answers.
    assert sent.provider_message_id == "false_11111111111@c.us_AAAAAAAAAAAAAAAAAAAA"


async def test_without_known_ids_send_seen_reads_the_chat(channel: WahaChannel) -> None:
    _, seen, _ = await reply(channel)
    assert seen == {"chatId": CHAT_ID, "session": "default"}


# --- send_media ----------------------------------------------------------------------


def media(kind: str, **overrides: Any) -> OutgoingMedia:
    values: dict[str, Any] = {
        "kind": kind,
        "data": b"%PDF-1.4 proposta",
        "mime": "application/pdf",
        "file_name": "Proposta.pdf",
        "caption": "Segue a proposta",
    }
    values.update(overrides)
    return OutgoingMedia(**values)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def send_media(channel: WahaChannel, op: str, item: OutgoingMedia, **reply: Any) -> tuple[Any, Any]:
    url = f"{WAHA_URL}/api/{op}"
    with aioresponses() as mocked:
        mocked.post(url, **(reply or {"status": 201, "payload": load("send_response_spec.json")}))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_media(session, PHONE, item)
        [call] = mocked.requests[("POST", URL(url))]
    return sent, call


def test_waha_is_found_as_a_media_sender(channel: WahaChannel) -> None:
    assert isinstance(channel, SendsMedia) and media_sender(channel) is channel


@pytest.mark.parametrize(
    ("item", "op", "extra"),
    [
        (
            media("image", mime="image/jpeg", file_name="foto.jpg"),
            "sendImage",
            {"caption": "Segue a proposta"},
        ),
        (media("document"), "sendFile", {"caption": "Segue a proposta"}),
        (
            media("video", mime="video/mp4", file_name="demo.mp4"),
            "sendVideo",
            {"caption": "Segue a proposta", "convert": False, "asNote": False},
        ),
        (
            media("video", mime="video/quicktime", file_name="demo.mov", caption=None),
            "sendVideo",
            {"convert": True, "asNote": False},
        ),
        (
            media("audio", mime="audio/ogg; codecs=opus", file_name="voz.ogg", caption=None),
            "sendVoice",
            {"convert": False},
        ),
        (media("audio", mime="audio/mpeg", file_name="voz.mp3"), "sendVoice", {"convert": True}),
    ],
    ids=["image", "document", "video-mp4", "video-mov", "voice-opus", "voice-mp3"],
)
async def test_each_kind_goes_to_its_spec_operation(
    channel: WahaChannel, item: OutgoingMedia, op: str, extra: dict[str, Any]
) -> None:
    sent, call = await send_media(channel, op, item)
    assert sent.provider_message_id == "false_11111111111@c.us_AAAAAAAAAAAAAAAAAAAA"
    assert call.kwargs["json"] == {
        "chatId": CHAT_ID,
        "session": "default",
        "file": {"mimetype": item.mime, "filename": item.file_name, "data": b64(item.data)},
        **extra,
    }
    assert call.kwargs["headers"]["X-Api-Key"] == API_KEY
    assert call.kwargs["timeout"].total == 7.5


async def test_a_file_without_a_name_sends_none(channel: WahaChannel) -> None:
    _, call = await send_media(channel, "sendFile", media("document", file_name="", caption=" "))
    assert "filename" not in call.kwargs["json"]["file"] and "caption" not in call.kwargs["json"]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"message": "Unauthorized"}, AuthFailed),
        (429, {}, ProviderUnavailable),
        (500, {"statusCode": 500, "exception": {"message": "wid error: invalid wid"}}, InvalidRecipient),
        (
            422,
            {"error": "Session status is not as expected. Try again later or restart the session"},
            ProviderUnavailable,
        ),
        (400, {"message": ["file must be an object"]}, ProviderRejected),
    ],
)
async def test_refusals_map_like_send_text(channel: WahaChannel, status: int, body: Any, error: type) -> None:
    with pytest.raises(ProviderError) as raised:
        await send_media(channel, "sendImage", media("image", mime="image/jpeg"), status=status, payload=body)
    assert isinstance(raised.value, error)
    assert "sendImage failed" in str(raised.value) and API_KEY not in str(raised.value)


async def test_transport_failure_is_retryable(channel: WahaChannel) -> None:
    with pytest.raises(ProviderUnavailable):
        await send_media(channel, "sendFile", media("document"), exception=aiohttp.ClientConnectionError())


@pytest.mark.parametrize("contact_id", ["120363025246125486@g.us", "status@broadcast", ""])
async def test_media_is_never_sent_to_a_group_or_nobody(channel: WahaChannel, contact_id: str) -> None:
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(InvalidRecipient):
                await channel.send_media(session, contact_id, media("image"))
        assert mocked.requests == {}


async def test_an_unconfigured_channel_sends_nothing() -> None:
    values: dict[str, Any] = {"_env_file": None}
    channel = WahaChannel(waha_config(Settings(**values)))
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderRejected):
                await channel.send_media(session, PHONE, media("image"))
        assert mocked.requests == {}


async def test_a_malformed_group_ack_envelope_is_still_a_422(channel: WahaChannel) -> None:
    # The envelope itself must be WAHA's: an event name that is not a string is refused.
    with pytest.raises(WebhookRejected) as refused:
        channel.parse({"event": ["message.ack.group"], "payload": {}})
    assert refused.value.status == 422

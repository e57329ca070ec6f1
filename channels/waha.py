"""WAHA channel: WhatsApp through a self-hosted WAHA (WhatsApp HTTP API) server.

Shapes follow WAHA's published docs (waha.devlike.pro, source in
github.com/devlikeapro/waha-docs: content/docs/how-to/events/index.md for the event
envelope, `message`, `message.any`, `message.ack`, `session.status` and the HMAC
headers; receive-messages/index.md for media and chat ids; send-messages/index.md and
overview/how-to-avoid-blocking for sendSeen/startTyping/sendText) and the server's DTOs
(github.com/devlikeapro/waha src/structures/*.dto.ts).

WAHA runs one of three engines (WEBJS, NOWEB, GOWS). The documented top-level fields of
a message (`id`, `from`, `fromMe`, `body`, `hasMedia`, `media`, `location`, `vCards`,
`replyTo`) are the same for all of them; `_data` is the engine's raw message and differs
per engine, so it is only read defensively for what the documented fields lack (sender
name, message type, button/list replies, ad context).

The webhook body is untrusted input: anything unusable becomes a 4xx `WebhookRejected`,
never a 500 that would make WAHA retry the same poison 15 times.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from channels.base import DeliveryState, DeliveryStatus, ParsedWebhook, SentMessage
from channels.media_fetch import WAHA_FILES_PATH, Credentials, MediaFetcher, Origin, parse_media_url
from channels.provider_http import (
    MediaTooLarge,
    error_detail,
    is_retryable_status,
    scrub,
)
from core.errors import SendError, WebhookRejected
from core.logging import get_logger
from core.models import AdReferral, IgnoredEvent, InboundMessage, MessageKind, mask_phone
from core.secret_compare import secrets_match
from core.settings import Settings

log = get_logger(__name__)

# WAHA signs the raw body with HMAC-SHA512 and sends the hex digest in X-Webhook-Hmac,
# naming the algorithm in X-Webhook-Hmac-Algorithm (docs: events#hmac-authentication).
HMAC_HEADER = "X-Webhook-Hmac"
HMAC_ALGORITHM_HEADER = "X-Webhook-Hmac-Algorithm"
HMAC_ALGORITHM = "sha512"
TOKEN_HEADER = "X-Webhook-Token"
API_KEY_HEADER = "X-Api-Key"

_ERROR_DETAIL_MAX = 200
# Seen receipts and "typing..." are courtesy: they must never hold a worker as long as
# the message itself may take.
_COURTESY_TIMEOUT_MAX_S = 5.0

# message.ack: `ackName` is the documented name, `ack` the same value as a number.
_ACK_BY_NAME: dict[str, DeliveryState | None] = {
    "ERROR": "failed",
    "PENDING": None,
    "SERVER": "sent",
    "DEVICE": "delivered",
    "READ": "read",
    "PLAYED": "played",
}
_ACK_NAME_BY_NUMBER = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}

# Chat id servers from the docs' "chatId, from, to, participant" list.
_USER_SERVERS = {"c.us", "s.whatsapp.net"}

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}

# Failures that say the chat id itself is wrong. WEBJS reports a bad id as a 500
# "wid error: invalid wid"; other engines and versions word it differently.
_INVALID_RECIPIENT = re.compile(
    r"invalid wid|wid error|invalid jid|invalid chat ?id|chat ?id must|"
    r"not registered|not on whatsapp|not a whatsapp|phone_not_on_whatsapp|no lid for user|"
    r"(number|phone|chat|contact|jid|wid)[^.]{0,40}(does ?n[o']t exist|not exists?|not found|invalid)",
    re.IGNORECASE,
)
# 422 "Session status is not as expected. Try again later or restart the session": the
# phone is reconnecting or waiting for a QR scan; the message can go out later.
_SESSION_NOT_READY = re.compile(r"session status is not as expected", re.IGNORECASE)


# --- webhook payload models --------------------------------------------------------
# WAHA adds fields between releases; unknown keys are ignored so a new field never
# breaks us, while a documented field with the wrong type is a 422. Fields whose type
# differs per engine (timestamps, coordinates, `_data`) are typed loosely and read
# defensively instead.


class _Block(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class WMe(_Block):
    id: str | None = None
    pushName: str | None = None


class WEnvelope(_Block):
    event: str
    session: str | None = None
    engine: str | None = None
    # Event timestamp in ms ("Event Payload > Structure").
    timestamp: Any = None
    me: WMe | None = None
    payload: Any = None


class WMedia(_Block):
    url: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    error: Any = None


class WLocation(_Block):
    # The DTO declares strings, NOWEB/GOWS send numbers.
    latitude: float | str | None = None
    longitude: float | str | None = None
    description: str | None = None
    name: str | None = None
    address: str | None = None


class WReplyTo(_Block):
    id: str | None = None
    participant: str | None = None
    body: str | None = None


class WMessage(_Block):
    id: str | None = None
    timestamp: Any = None
    from_: str | None = Field(default=None, alias="from")
    fromMe: bool | None = None
    source: str | None = None
    to: str | None = None
    participant: str | None = None
    author: str | None = None
    body: str | None = None
    hasMedia: bool | None = None
    media: WMedia | None = None
    mediaUrl: str | None = None
    location: WLocation | None = None
    vCards: list[Any] | None = None
    replyTo: WReplyTo | None = None
    data: Any = Field(default=None, alias="_data")


class WAck(_Block):
    id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    participant: str | None = None
    fromMe: bool | None = None
    # GOWS reports an unknown ack as null.
    ack: int | None = None
    ackName: str | None = None


class WSessionStatus(_Block):
    status: str | None = None
    name: str | None = None


# --- helpers -----------------------------------------------------------------------


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _dig(obj: Any, *path: str) -> Any:
    """Walk engine-specific `_data` without trusting any level of it."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid WAHA payload: " + "; ".join(parts)


def _validate(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise WebhookRejected(422, _describe_validation_error(exc)) from None


def _as_number(value: Any) -> float | None:
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        elif isinstance(value, dict) and isinstance(value.get("low"), int):
            # NOWEB may forward protobuf Longs as {"low", "high", "unsigned"}.
            high = value.get("high") if isinstance(value.get("high"), int) else 0
            number = float((high << 32) + (value["low"] & 0xFFFFFFFF))
        else:
            return None
    except (ValueError, OverflowError):  # not a number, or an integer no clock can hold
        return None
    return number if math.isfinite(number) else None


def _epoch_to_datetime(value: Any) -> datetime | None:
    """Message timestamps are seconds, envelope ones milliseconds; tell them by size.

    An unusable value falls back to "now": losing a lead's message over a bad clock
    value would be worse than a slightly wrong timestamp.
    """
    number = _as_number(value)
    if number is None or number <= 0:
        return None
    seconds = number / 1000 if number > 1e11 else number
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _split_chat_id(value: str) -> tuple[str, str]:
    local, _, server = value.strip().partition("@")
    return local, server.lower()


def _chat_kind(chat_id: str) -> str:
    """Classify a WAHA chat id: user, lid, group, broadcast, newsletter or unknown."""
    local, server = _split_chat_id(chat_id)
    if server == "g.us":
        return "group"
    if server == "newsletter":
        return "newsletter"
    if server == "broadcast" or local.lower() == "status":
        return "broadcast"
    if server == "lid":
        return "lid"
    if server in _USER_SERVERS or (not server and local):
        return "user"
    return "unknown"


def _contact_identity(chat_id: str) -> tuple[str, str | None]:
    """Return (contact_id, phone digits) for a one-to-one chat id.

    A hidden user id ("123@lid") is kept whole: it is what WAHA accepts back as chatId,
    and there is no phone to record.
    """
    local, server = _split_chat_id(chat_id)
    if server == "lid":
        if not local:
            raise WebhookRejected(422, "invalid WAHA payload: empty lid chat id")
        return f"{local}@lid", None
    # "5511999999999:12@s.whatsapp.net" carries a device suffix.
    digits = local.split(":", 1)[0].strip().lstrip("+")
    if not digits.isdigit() or not digits.isascii():
        raise WebhookRejected(422, "invalid WAHA payload: chat id is not a phone number")
    return digits, digits


def _format_coord(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


_VCARD_FN = re.compile(r"^FN[;:](?:[^:\n]*:)?(.+)$", re.MULTILINE)
_VCARD_WAID = re.compile(r"waid=(\d+)")
_VCARD_TEL = re.compile(r"^TEL[^:\n]*:(.+)$", re.MULTILINE)


def _describe_vcard(vcard: str) -> str:
    name = next((m.strip() for m in _VCARD_FN.findall(vcard) if m.strip()), "")
    phones = _VCARD_WAID.findall(vcard) or [t.strip() for t in _VCARD_TEL.findall(vcard) if t.strip()]
    return " ".join(p for p in (name, ", ".join(phones)) if p)


# Where WAHA's error bodies keep the human part: Nest errors carry `message` (string or
# list), the 500 filter nests it in `exception.message`, the 422 session error and file
# errors use `error`.
_ERROR_PATHS = (("exception", "message"), ("message",), ("error",), ("error", "message"), ("detail",))


# --- the channel -------------------------------------------------------------------


class WahaChannel:
    name = "waha"
    window_hours = None  # WAHA rides on a phone: no customer-service window

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.rate_per_s = settings.waha_rate_per_s

    @property
    def configured(self) -> bool:
        return self._settings.waha_configured

    @property
    def missing_webhook_secret(self) -> str | None:
        s = self._settings
        if s.waha_webhook_hmac_key is None and s.waha_webhook_secret is None:
            return "WAHA_WEBHOOK_HMAC_KEY"
        return None

    # -- inbound: authentication ----------------------------------------------------

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Prefer WAHA's own HMAC signature; a URL secret is the fallback for setups
        that cannot configure `hmac.key` (WAHA Core's global webhook, older versions).

        When the HMAC key is set the signature is the only proof accepted: a URL
        token leaks through logs and proxies, a signature over the body does not.
        """
        s = self._settings
        if s.waha_webhook_hmac_key is not None:
            self._verify_hmac(request, raw_body, s.waha_webhook_hmac_key.get_secret_value())
            return
        if s.waha_webhook_secret is not None:
            self._verify_token(request, s.waha_webhook_secret.get_secret_value())
            return
        # Closed by default, like every other webhook route.
        raise WebhookRejected(
            403,
            "WAHA_WEBHOOK_HMAC_KEY (or WAHA_WEBHOOK_SECRET) is not set: WAHA webhooks are refused until it is",
        )

    @staticmethod
    def _verify_hmac(request: web.Request, raw_body: bytes, key: str) -> None:
        provided = (request.headers.get(HMAC_HEADER) or "").strip()
        if not provided:
            raise WebhookRejected(401, f"missing {HMAC_HEADER} signature")
        algorithm = request.headers.get(HMAC_ALGORITHM_HEADER)
        # WAHA only signs with sha512; anything else is not WAHA (or a downgrade try).
        if algorithm is not None and algorithm.strip().lower() != HMAC_ALGORITHM:
            raise WebhookRejected(403, "unsupported webhook signature algorithm")
        expected = hmac.new(key.encode("utf-8"), raw_body, hashlib.sha512).hexdigest()
        if not secrets_match(provided.lower(), expected):
            raise WebhookRejected(403, "invalid webhook signature")

    @staticmethod
    def _verify_token(request: web.Request, secret: str) -> None:
        expected = secret.encode("utf-8")
        candidates = [
            value for value in (request.query.get("token"), request.headers.get(TOKEN_HEADER)) if value
        ]
        # Compare every candidate so timing does not reveal which one was tried.
        ok = False
        for candidate in candidates:
            if secrets_match(candidate, expected):
                ok = True
        if not ok:
            raise WebhookRejected(401, "invalid or missing webhook token")

    # -- inbound: parsing -----------------------------------------------------------

    def parse(self, payload: object) -> ParsedWebhook:
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "WAHA webhook body must be a JSON object")
        event_name = payload.get("event")
        if event_name is None:
            raise WebhookRejected(422, "invalid WAHA payload: missing 'event'")
        if not isinstance(event_name, str):
            raise WebhookRejected(422, "invalid WAHA payload: 'event' must be a string")
        envelope: WEnvelope = _validate(WEnvelope, payload)

        session = _clean(envelope.session)
        if session is not None and session != self._settings.waha_session:
            # One WAHA server can post every session to the same URL; replying to another
            # session's chats through ours would answer the wrong phone's leads.
            return ParsedWebhook(ignored=[IgnoredEvent(reason="other_session")])

        event = event_name.strip().lower()
        if event in ("message", "message.any"):
            return self._parse_message(envelope, any_event=event == "message.any")
        if event == "message.ack":
            return self._parse_ack(envelope)
        if event == "session.status":
            body: WSessionStatus = _validate(WSessionStatus, self._payload_dict(envelope))
            status = _clean(body.status)
            if status is None:
                raise WebhookRejected(422, "invalid WAHA payload: session.status without status")
            return ParsedWebhook(connection=status.upper())
        # Reactions, revokes, presence, groups, calls, labels...: acknowledged, not answered.
        message_id = None
        if isinstance(envelope.payload, dict):
            message_id = _clean(envelope.payload.get("id"))
        return ParsedWebhook(ignored=[IgnoredEvent(reason="not_a_message", provider_message_id=message_id)])

    @staticmethod
    def _payload_dict(envelope: WEnvelope) -> dict[str, Any]:
        if not isinstance(envelope.payload, dict):
            raise WebhookRejected(422, f"invalid WAHA payload: '{envelope.event}' payload must be an object")
        return envelope.payload

    def _parse_ack(self, envelope: WEnvelope) -> ParsedWebhook:
        ack: WAck = _validate(WAck, self._payload_dict(envelope))
        message_id = _clean(ack.id)
        if message_id is None:
            raise WebhookRejected(422, "invalid WAHA payload: message.ack without id")

        def ignored(reason: str) -> ParsedWebhook:
            return ParsedWebhook(ignored=[IgnoredEvent(reason=reason, provider_message_id=message_id)])

        chat = _clean(ack.from_) or _clean(ack.to) or ""
        if _chat_kind(chat) == "group" or _clean(ack.participant):
            return ignored("group")
        if ack.fromMe is False:
            # Receipts about the lead's own messages: nothing we sent.
            return ignored("ack_inbound")
        name = (_clean(ack.ackName) or "").upper()
        if name not in _ACK_BY_NAME:
            name = _ACK_NAME_BY_NUMBER.get(ack.ack, "") if ack.ack is not None else ""
        if name not in _ACK_BY_NAME:
            return ignored("ack_unknown")
        state = _ACK_BY_NAME[name]
        if state is None:
            return ignored("ack_pending")
        return ParsedWebhook(
            statuses=[
                DeliveryStatus(
                    provider_message_id=message_id,
                    status=state,
                    error="WhatsApp reported ack ERROR" if state == "failed" else None,
                    timestamp=_epoch_to_datetime(envelope.timestamp),
                )
            ]
        )

    def _parse_message(self, envelope: WEnvelope, *, any_event: bool) -> ParsedWebhook:
        msg: WMessage = _validate(WMessage, self._payload_dict(envelope))
        message_id = _clean(msg.id)
        if message_id is None:
            raise WebhookRejected(422, "invalid WAHA payload: message without id")

        def ignored(reason: str, message: InboundMessage | None = None) -> ParsedWebhook:
            return ParsedWebhook(
                ignored=[IgnoredEvent(reason=reason, provider_message_id=message_id, message=message)]
            )

        from_me = bool(msg.fromMe)
        if any_event and not from_me:
            # `message` already carries what others send us; message.any is subscribed
            # only so the phone's own messages can pause the bot.
            return ignored("message_any")

        chat = self._chat_id(msg, envelope, from_me)
        if chat is None:
            raise WebhookRejected(422, "invalid WAHA payload: message without 'from'")
        # Engines disagree on which side of a group message holds the group id, so
        # either side being a group, a status or a channel is enough.
        for side in (chat, _clean(msg.from_), _clean(msg.to)):
            side_kind = _chat_kind(side) if side else None
            if side_kind in ("group", "broadcast", "newsletter"):
                return ignored(side_kind)
        kind = _chat_kind(chat)
        if kind == "unknown":
            return ignored("unsupported_chat")

        data = msg.data if isinstance(msg.data, dict) else {}
        content = self._content(msg, data)
        if content is None:
            # Encryption notices, calls, protocol updates: events, not words to answer.
            return ignored("notification")

        message = self._to_inbound(msg, data, envelope, message_id, chat, from_me, content)
        if from_me:
            return ignored("from_me", message)
        return ParsedWebhook(messages=[message])

    @staticmethod
    def _chat_id(msg: WMessage, envelope: WEnvelope, from_me: bool) -> str | None:
        """The other party of the chat.

        For our own messages WEBJS puts us in `from` and the chat in `to`, while NOWEB
        and GOWS keep the chat in `from`; `me.id` tells which side is us.
        """
        sender = _clean(msg.from_)
        if not from_me:
            return sender
        receiver = _clean(msg.to)
        me = _clean(envelope.me.id) if envelope.me else None
        if receiver and receiver not in ("me", me):
            return receiver
        return sender

    def _to_inbound(
        self,
        msg: WMessage,
        data: dict[str, Any],
        envelope: WEnvelope,
        message_id: str,
        chat: str,
        from_me: bool,
        content: dict[str, Any],
    ) -> InboundMessage:
        contact_id, phone = _contact_identity(chat)
        # On our own messages the push name is the business's, not the lead's.
        name = None if from_me else self._sender_name(data, phone)
        stamp = _epoch_to_datetime(msg.timestamp)
        if stamp is not None:
            content["timestamp"] = stamp
        reply_to = _clean(msg.replyTo.id) if msg.replyTo else None
        try:
            return InboundMessage(
                channel=self.name,
                contact_id=contact_id,
                phone=phone,
                name=name,
                provider_message_id=message_id,
                referral=self._referral(data),
                from_me=from_me,
                is_group=False,
                reply_to_provider_id=reply_to,
                **content,
            )
        except ValidationError as exc:
            raise WebhookRejected(422, _describe_validation_error(exc)) from None

    @staticmethod
    def _sender_name(data: dict[str, Any], phone: str | None) -> str | None:
        # WEBJS: notifyName; NOWEB: pushName; GOWS: Info.PushName.
        for value in (data.get("notifyName"), data.get("pushName"), _dig(data, "Info", "PushName")):
            name = _clean(value)
            if name and name not in (phone, "~"):
                return name
        return None

    # -- content -------------------------------------------------------------------

    @staticmethod
    def _engine_message(data: dict[str, Any]) -> dict[str, Any]:
        """The protobuf-shaped message of NOWEB (`message`) or GOWS (`Message`), unwrapped."""
        inner = data.get("message")
        if not isinstance(inner, dict):
            inner = data.get("Message")
        if not isinstance(inner, dict):
            return {}
        for _ in range(3):
            for wrapper in (
                "ephemeralMessage",
                "viewOnceMessage",
                "viewOnceMessageV2",
                "viewOnceMessageV2Extension",
                "documentWithCaptionMessage",
                "editedMessage",
            ):
                wrapped = _dig(inner, wrapper, "message")
                if isinstance(wrapped, dict):
                    inner = wrapped
                    break
            else:
                break
        return inner

    def _content(self, msg: WMessage, data: dict[str, Any]) -> dict[str, Any] | None:
        """Map a WAHA message to the channel-neutral fields, or None for non-messages."""
        proto = self._engine_message(data)
        webjs_type = _clean(data.get("type"))
        webjs_type = webjs_type.lower() if webjs_type else None
        body = _clean(msg.body)

        if webjs_type in {
            "e2e_notification",
            "notification",
            "notification_template",
            "gp2",
            "call_log",
            "protocol",
            "revoked",
            "ciphertext",
        } or ("protocolMessage" in proto and len(proto) == 1):
            return None

        reply = self._reply_content(webjs_type, proto, data, body)
        if reply is not None:
            return reply

        media = msg.media
        media_url = _clean(media.url) if media else None
        media_url = media_url or _clean(msg.mediaUrl)
        mime = _clean(media.mimetype) if media else None
        file_name = _clean(media.filename) if media else None

        kind = self._media_kind(webjs_type, proto, mime)
        if kind is not None or msg.hasMedia or media_url:
            if kind is None:
                kind = MessageKind.DOCUMENT
            fields: dict[str, Any] = {"kind": kind, "media_url": media_url, "media_mime": mime}
            if kind in (MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.DOCUMENT):
                fields["media_caption"] = body
            if kind is MessageKind.DOCUMENT:
                fields["file_name"] = (
                    file_name
                    or _clean(data.get("filename"))
                    or _clean(_dig(proto, "documentMessage", "fileName"))
                )
            return fields

        location = self._location_text(msg, webjs_type, proto)
        if location is not None:
            return {"kind": MessageKind.LOCATION, "text": location}

        vcards = [v for v in (msg.vCards or []) if isinstance(v, str) and v.strip()]
        if (
            vcards
            or webjs_type in ("vcard", "multi_vcard")
            or "contactMessage" in proto
            or "contactsArrayMessage" in proto
        ):
            described = [d for d in (_describe_vcard(v) for v in vcards) if d]
            if not described:
                display = _clean(_dig(proto, "contactMessage", "displayName"))
                described = [display] if display else []
            return {
                "kind": MessageKind.CONTACT,
                "text": "Contato compartilhado: " + ("; ".join(described) if described else "sem dados"),
            }

        if (
            body is not None
            or webjs_type == "chat"
            or "conversation" in proto
            or "extendedTextMessage" in proto
        ):
            return {"kind": MessageKind.TEXT, "text": body or _clean(proto.get("conversation"))}
        if webjs_type or proto:
            # Polls, events, products...: keep them, the agent can say it cannot read them.
            return {"kind": MessageKind.OTHER}
        return {"kind": MessageKind.TEXT, "text": None}

    @staticmethod
    def _reply_content(
        webjs_type: str | None, proto: dict[str, Any], data: dict[str, Any], body: str | None
    ) -> dict[str, Any] | None:
        """Buttons and list answers; not in WAHA's docs, read from each engine's raw message."""
        if webjs_type in ("buttons_response", "template_button_reply"):
            return {
                "kind": MessageKind.BUTTON_REPLY,
                "text": body or _clean(data.get("selectedButtonId")),
            }
        if webjs_type == "list_response":
            return {
                "kind": MessageKind.LIST_REPLY,
                "text": body or _clean(_dig(data, "listResponse", "singleSelectReply", "selectedRowId")),
            }
        if isinstance(proto.get("buttonsResponseMessage"), dict):
            button = proto["buttonsResponseMessage"]
            return {
                "kind": MessageKind.BUTTON_REPLY,
                "text": _clean(button.get("selectedDisplayText"))
                or body
                or _clean(button.get("selectedButtonId")),
            }
        if isinstance(proto.get("templateButtonReplyMessage"), dict):
            button = proto["templateButtonReplyMessage"]
            return {
                "kind": MessageKind.BUTTON_REPLY,
                "text": _clean(button.get("selectedDisplayText")) or body or _clean(button.get("selectedId")),
            }
        if isinstance(proto.get("listResponseMessage"), dict):
            row = proto["listResponseMessage"]
            return {
                "kind": MessageKind.LIST_REPLY,
                "text": _clean(row.get("title"))
                or body
                or _clean(_dig(row, "singleSelectReply", "selectedRowId")),
            }
        return None

    @staticmethod
    def _media_kind(webjs_type: str | None, proto: dict[str, Any], mime: str | None) -> MessageKind | None:
        by_type = {
            "ptt": MessageKind.AUDIO,
            "audio": MessageKind.AUDIO,
            "image": MessageKind.IMAGE,
            "video": MessageKind.VIDEO,
            "gif": MessageKind.VIDEO,
            "ptv": MessageKind.VIDEO,
            "document": MessageKind.DOCUMENT,
            "sticker": MessageKind.STICKER,
        }
        if webjs_type in by_type:
            return by_type[webjs_type]
        by_proto = (
            ("audioMessage", MessageKind.AUDIO),
            ("imageMessage", MessageKind.IMAGE),
            ("videoMessage", MessageKind.VIDEO),
            ("ptvMessage", MessageKind.VIDEO),
            ("documentMessage", MessageKind.DOCUMENT),
            ("stickerMessage", MessageKind.STICKER),
        )
        for key, kind in by_proto:
            if key in proto:
                return kind
        if mime:
            major = mime.split("/", 1)[0].lower()
            if major == "audio":
                return MessageKind.AUDIO
            if major == "image":
                return MessageKind.STICKER if mime.lower().startswith("image/webp") else MessageKind.IMAGE
            if major == "video":
                return MessageKind.VIDEO
            return MessageKind.DOCUMENT
        return None

    @staticmethod
    def _location_text(msg: WMessage, webjs_type: str | None, proto: dict[str, Any]) -> str | None:
        loc = msg.location
        raw = proto.get("locationMessage") or proto.get("liveLocationMessage")
        if loc is None and not isinstance(raw, dict) and webjs_type != "location":
            return None
        lat = _as_number(loc.latitude) if loc else None
        lng = _as_number(loc.longitude) if loc else None
        label_parts = [_clean(loc.name), _clean(loc.address), _clean(loc.description)] if loc else []
        if isinstance(raw, dict):
            lat = lat if lat is not None else _as_number(raw.get("degreesLatitude"))
            lng = lng if lng is not None else _as_number(raw.get("degreesLongitude"))
            label_parts += [_clean(raw.get("name")), _clean(raw.get("address"))]
        seen: list[str] = []
        for part in label_parts:
            # WEBJS puts name and address on two lines of `description`.
            part = " - ".join(line.strip() for line in (part or "").splitlines() if line.strip())
            if part and part not in seen:
                seen.append(part)
        label = " - ".join(seen)
        coords = (
            f"({_format_coord(lat)}, {_format_coord(lng)})" if lat is not None and lng is not None else ""
        )
        return "Localização: " + (" ".join(p for p in (label, coords) if p) or "compartilhada")

    def _referral(self, data: dict[str, Any]) -> AdReferral | None:
        """Click-to-WhatsApp context: WEBJS exposes `ctwaContext`, NOWEB/GOWS the
        protobuf `contextInfo.externalAdReply` of the content message."""
        ad: dict[str, Any] | None = None
        ctwa = data.get("ctwaContext")
        if isinstance(ctwa, dict):
            ad = {
                "ctwa_clid": ctwa.get("ctwaClid") or ctwa.get("clid"),
                "source_id": ctwa.get("sourceId"),
                "source_url": ctwa.get("sourceUrl"),
                "source_type": ctwa.get("sourceType"),
                "headline": ctwa.get("title"),
            }
        else:
            proto = self._engine_message(data)
            for content in proto.values():
                reply = _dig(content, "contextInfo", "externalAdReply")
                if isinstance(reply, dict):
                    ad = {
                        "ctwa_clid": reply.get("ctwaClid"),
                        "source_id": reply.get("sourceId") or reply.get("sourceID"),
                        "source_url": reply.get("sourceUrl") or reply.get("sourceURL"),
                        "source_type": reply.get("sourceType"),
                        "headline": reply.get("title"),
                    }
                    break
        if ad is None:
            return None
        referral = AdReferral(**{key: _clean(value) for key, value in ad.items()})
        if not any(referral.model_dump().values()):
            return None
        return referral

    # -- outbound -------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        s = self._settings
        return [
            secret.get_secret_value()
            for secret in (s.waha_api_key, s.waha_webhook_hmac_key, s.waha_webhook_secret)
            if secret is not None
        ]

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._settings.waha_api_key is not None:
            headers[API_KEY_HEADER] = self._settings.waha_api_key.get_secret_value()
        return headers

    def _base_url(self) -> str:
        return (self._settings.waha_url or "").rstrip("/")

    @staticmethod
    def _chat_id_for(contact_id: str) -> str:
        """Turn a stored contact id back into the chatId WAHA expects."""
        value = (contact_id or "").strip()
        if "@" in value:
            local, server = _split_chat_id(value)
            if server == "lid" and local:
                return f"{local}@lid"
            if server not in _USER_SERVERS:
                raise SendError(
                    f"waha cannot send to a {_chat_kind(value)} chat", retryable=False, invalid_recipient=True
                )
            value = local.split(":", 1)[0]
        digits = re.sub(r"\D", "", value)
        if not digits:
            raise SendError("waha recipient has no phone digits", retryable=False, invalid_recipient=True)
        return f"{digits}@c.us"

    async def send_text(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        text: str,
        *,
        typing_s: int,
        human_agent: bool = False,
    ) -> SentMessage:
        """One attempt only: the outbox owns retries, so errors say whether to retry.

        WAHA's anti-blocking guide asks for seen, typing, then the text. Seen and typing
        go out first and may fail without stopping the text; nothing here sleeps for
        `typing_s` (WAHA has no server-side typing delay and an outbox worker must not
        be parked for seconds), so a wish for typing only starts the indicator.
        """
        s = self._settings
        if not s.waha_url:
            raise SendError("waha is not configured", retryable=False)
        chat_id = self._chat_id_for(contact_id)
        base = self._base_url()
        body = {"chatId": chat_id, "session": s.waha_session}

        courtesy = [self._courtesy(session, f"{base}/api/sendSeen", body, contact_id)]
        if typing_s and typing_s > 0:
            courtesy.append(self._courtesy(session, f"{base}/api/startTyping", body, contact_id))
        await asyncio.gather(*courtesy)

        payload = {"chatId": chat_id, "text": text, "session": s.waha_session}
        timeout = aiohttp.ClientTimeout(total=s.http_timeout_s)
        try:
            async with session.post(
                f"{base}/api/sendText", json=payload, headers=self._headers(), timeout=timeout
            ) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            self._log_send_failure(contact_id, None, "timeout")
            raise SendError("waha sendText timed out", retryable=True) from None
        except aiohttp.ClientError as exc:
            self._log_send_failure(contact_id, None, type(exc).__name__)
            raise SendError(f"waha sendText transport error: {type(exc).__name__}", retryable=True) from None

        if not 200 <= status < 300:
            raise self._send_error(status, raw, contact_id)

        try:
            data = json.loads(raw) if raw.strip() else None
        except ValueError:
            data = None
        # Accepted but unidentified is still success: a resend would duplicate it.
        return SentMessage(provider_message_id=self._sent_id(data))

    async def _courtesy(
        self, session: aiohttp.ClientSession, url: str, body: dict[str, Any], contact_id: str
    ) -> None:
        """Seen receipts and typing are nice to have; their failure is logged, not raised."""
        what = url.rsplit("/", 1)[-1]
        timeout = aiohttp.ClientTimeout(total=min(self._settings.http_timeout_s, _COURTESY_TIMEOUT_MAX_S))
        try:
            async with session.post(url, json=body, headers=self._headers(), timeout=timeout) as resp:
                if not 200 <= resp.status < 300:
                    log.warning(
                        "waha_courtesy_failed",
                        call=what,
                        contact=mask_phone(contact_id),
                        status=resp.status,
                        auth_failed=resp.status in (401, 403),
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - courtesy must never stop the send
            log.warning(
                "waha_courtesy_failed", call=what, contact=mask_phone(contact_id), error=type(exc).__name__
            )

    def _send_error(self, status: int, raw: str, contact_id: str) -> SendError:
        detail = scrub(error_detail(raw, _ERROR_PATHS, join_lists=True), self._secrets())[:_ERROR_DETAIL_MAX]
        auth_failed = status in (401, 403)
        mentions_session = "session" in detail.lower()
        invalid_recipient = (
            not auth_failed
            and status in (400, 404, 422, 500)
            and not mentions_session
            and bool(_INVALID_RECIPIENT.search(detail))
        )
        if auth_failed or invalid_recipient:
            retryable = False
        elif status == 422 and _SESSION_NOT_READY.search(detail):
            retryable = True
        else:
            retryable = is_retryable_status(status)
        if auth_failed:
            outcome = "auth_failed"
        elif invalid_recipient:
            outcome = "invalid_recipient"
        else:
            outcome = "retryable" if retryable else "permanent"
        self._log_send_failure(contact_id, status, outcome)
        message = f"waha sendText failed: HTTP {status}"
        return SendError(
            f"{message}: {detail}" if detail else message,
            status=status,
            retryable=retryable,
            auth_failed=auth_failed,
            invalid_recipient=invalid_recipient,
        )

    @staticmethod
    def _sent_id(data: Any) -> str | None:
        """The id WAHA will use for this message in message.ack and message.any.

        GOWS answers `{"id": "true_<chat>_<id>"}`, WEBJS the whatsapp-web.js message
        (`id._serialized`), NOWEB the Baileys message with a bare `key`, from which
        WAHA builds `<fromMe>_<chat@c.us>_<id>` for its events.
        """
        if not isinstance(data, dict):
            return None
        value = data.get("id")
        if isinstance(value, str) and value.strip():
            return value.strip()
        serialized = _clean(_dig(data, "id", "_serialized")) or _clean(
            _dig(data, "_data", "id", "_serialized")
        )
        if serialized:
            return serialized
        key = data.get("key")
        if isinstance(key, dict) and _clean(key.get("id")) and _clean(key.get("remoteJid")):
            remote = str(key["remoteJid"]).strip()
            local, server = _split_chat_id(remote)
            if server == "s.whatsapp.net":
                remote = f"{local.split(':', 1)[0]}@c.us"
            from_me = "true" if key.get("fromMe") is not False else "false"
            return f"{from_me}_{remote}_{key['id'].strip()}"
        return None

    @staticmethod
    def _log_send_failure(contact_id: str, status: int | None, what: str) -> None:
        log.warning("waha_send_failed", contact=mask_phone(contact_id), status=status, error=what)

    def _media_target(self, parsed: URL) -> URL:
        """Where to really fetch a media URL.

        WAHA builds `media.url` from its own idea of its address (WAHA_BASE_URL, else
        http://localhost:3000 by default), which from another container is not WAHA at
        all; a loopback URL under /api/files/ is therefore read as "this file on our
        WAHA". Only files: a loopback URL to WAHA's API (GET /api/sendText sends a
        message) is left as it is, and the fetch policy refuses it as loopback.
        """
        base = self._settings.waha_url
        if not base or (parsed.host or "").lower() not in _LOOPBACK_HOSTS:
            return parsed
        if not parsed.raw_path.startswith(WAHA_FILES_PATH):
            return parsed
        try:
            return URL(base.rstrip("/") + parsed.raw_path_qs, encoded=True)
        except (TypeError, ValueError):
            return parsed

    def _files_credentials(self) -> Credentials | None:
        """The API key, for WAHA's file storage only: the URL comes from a webhook and
        could point anywhere (S3 storage, or a forged payload)."""
        base = self._settings.waha_url
        if not base or self._settings.waha_api_key is None:
            return None
        try:
            parsed = parse_media_url(base, error=ValueError)
        except ValueError:
            return None
        return Credentials(
            headers={API_KEY_HEADER: self._settings.waha_api_key.get_secret_value()},
            origin=Origin.of(parsed),
            path_prefix=parsed.raw_path.rstrip("/") + WAHA_FILES_PATH,
        )

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        """Download media from WAHA's file storage (or wherever it keeps media, such as
        S3) without trusting its address or its size; see channels/media_fetch.py."""
        target = self._media_target(parse_media_url(url))
        return await MediaFetcher.from_settings(self._settings).fetch(
            target,
            max_bytes=max_bytes,
            timeout=aiohttp.ClientTimeout(total=self._settings.http_timeout_s),
            credentials=self._files_credentials(),
            auth_statuses=(401, 403),
        )


__all__ = ["WahaChannel", "MediaTooLarge", "WMessage", "HMAC_HEADER", "HMAC_ALGORITHM_HEADER"]

"""WAHA webhook events to `InboundMessage`s, delivery statuses and session states.

WAHA runs one of three engines (WEBJS, NOWEB, GOWS). The documented top-level fields of
a message are the same for all of them; `_data` is the engine's raw message and is only
read defensively (channels/waha/content.py) for what the documented fields lack.

The webhook body is untrusted input: anything unusable becomes a 4xx `WebhookRejected`,
never a 500 that would make WAHA retry the same poison 15 times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from channels.base import DeliveryState, DeliveryStatus, ParsedWebhook, PresenceEvent, PresenceState
from channels.waha.content import as_number, content_fields, dig, referral
from channels.waha.schema import WAck, WEnvelope, WMessage, WPresenceUpdate, WSessionStatus
from channels.webhook_helpers import clean, describe_validation_error, epoch_to_datetime, validate
from core.errors import WebhookRejected
from core.models import IgnoredEvent, InboundMessage

CHANNEL = "waha"
LABEL = "WAHA"

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

# presence.update's lastKnownPresence (content/docs/how-to/presence/index.md); some
# engine builds say "composing" for typing.
_PRESENCE: dict[str, PresenceState] = {
    "typing": "typing",
    "composing": "typing",
    "recording": "recording",
    "paused": "paused",
    "online": "online",
    "offline": "offline",
}

# Chat id servers from the docs' "chatId, from, to, participant" list.
USER_SERVERS = frozenset({"c.us", "s.whatsapp.net"})


def _epoch(value: Any) -> datetime | None:
    """Message timestamps are seconds, envelope ones milliseconds, in any engine's type."""
    return epoch_to_datetime(as_number(value))


def split_chat_id(value: str) -> tuple[str, str]:
    local, _, server = value.strip().partition("@")
    return local, server.lower()


def chat_kind(chat_id: str) -> str:
    """Classify a WAHA chat id: user, lid, group, broadcast, newsletter or unknown."""
    local, server = split_chat_id(chat_id)
    if server == "g.us":
        return "group"
    if server == "newsletter":
        return "newsletter"
    if server == "broadcast" or local.lower() == "status":
        return "broadcast"
    if server == "lid":
        return "lid"
    if server in USER_SERVERS or (not server and local):
        return "user"
    return "unknown"


def _contact_identity(chat_id: str) -> tuple[str, str | None]:
    """Return (contact_id, phone digits) for a one-to-one chat id.

    A hidden user id ("123@lid") is kept whole: it is what WAHA accepts back as chatId,
    and there is no phone to record.
    """
    local, server = split_chat_id(chat_id)
    if server == "lid":
        if not local:
            raise WebhookRejected(422, "invalid WAHA payload: empty lid chat id")
        return f"{local}@lid", None
    # "5511999999999:12@s.whatsapp.net" carries a device suffix.
    digits = local.split(":", 1)[0].strip().lstrip("+")
    if not digits.isdigit() or not digits.isascii():
        raise WebhookRejected(422, "invalid WAHA payload: chat id is not a phone number")
    return digits, digits


def parse_webhook(payload: object, *, session_name: str) -> ParsedWebhook:
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "WAHA webhook body must be a JSON object")
    event_name = payload.get("event")
    if event_name is None:
        raise WebhookRejected(422, "invalid WAHA payload: missing 'event'")
    if not isinstance(event_name, str):
        raise WebhookRejected(422, "invalid WAHA payload: 'event' must be a string")
    envelope: WEnvelope = validate(WEnvelope, payload, LABEL)

    session = clean(envelope.session)
    if session is not None and session != session_name:
        # One WAHA server can post every session to the same URL; replying to another
        # session's chats through ours would answer the wrong phone's leads.
        return ParsedWebhook(ignored=[IgnoredEvent(reason="other_session")])

    event = event_name.strip().lower()
    if event in ("message", "message.any"):
        return _parse_message(envelope, any_event=event == "message.any")
    if event == "message.ack":
        return _parse_ack(envelope)
    if event == "message.ack.group":
        # Group members reading a group message: we never write to groups.
        return ParsedWebhook(
            ignored=[IgnoredEvent(reason="group", provider_message_id=_payload_id(envelope))]
        )
    if event == "session.status":
        body: WSessionStatus = validate(WSessionStatus, _payload_dict(envelope), LABEL)
        status = clean(body.status)
        if status is None:
            raise WebhookRejected(422, "invalid WAHA payload: session.status without status")
        return ParsedWebhook(connection=status.upper())
    if event == "presence.update":
        return _parse_presence(validate(WPresenceUpdate, _payload_dict(envelope), LABEL))
    # Reactions, revokes, groups, calls, labels...: acknowledged, not answered.
    return ParsedWebhook(
        ignored=[IgnoredEvent(reason="not_a_message", provider_message_id=_payload_id(envelope))]
    )


def _payload_id(envelope: WEnvelope) -> str | None:
    return clean(envelope.payload.get("id")) if isinstance(envelope.payload, dict) else None


def _payload_dict(envelope: WEnvelope) -> dict[str, Any]:
    if not isinstance(envelope.payload, dict):
        raise WebhookRejected(422, f"invalid WAHA payload: '{envelope.event}' payload must be an object")
    return envelope.payload


def _parse_presence(body: WPresenceUpdate) -> ParsedWebhook:
    """A hint for the quiet window, so nothing is lost by dropping one: a presence
    without its chat, a group's, or a state we do not know is only acknowledged; a
    payload of the wrong shape or types is still a 422."""
    chat = clean(body.id)
    if chat is None:
        return ParsedWebhook(ignored=[IgnoredEvent(reason="presence_without_chat")])
    kind = chat_kind(chat)
    if kind not in ("user", "lid"):
        return ParsedWebhook(ignored=[IgnoredEvent(reason=kind if kind != "unknown" else "unsupported_chat")])
    # A direct chat has one participant, the lead; the newest entry wins if a build sends more.
    states = [_PRESENCE.get((clean(p.lastKnownPresence) or "").lower()) for p in body.presences or []]
    state = next((s for s in reversed(states) if s is not None), None)
    if state is None:
        return ParsedWebhook(ignored=[IgnoredEvent(reason="presence_unknown")])
    contact_id, _phone = _contact_identity(chat)
    presence = validate(PresenceEvent, {"contact_id": contact_id, "state": state}, LABEL)
    return ParsedWebhook(presences=[presence])


def _parse_ack(envelope: WEnvelope) -> ParsedWebhook:
    ack: WAck = validate(WAck, _payload_dict(envelope), LABEL)
    message_id = clean(ack.id)
    if message_id is None:
        raise WebhookRejected(422, "invalid WAHA payload: message.ack without id")

    def ignored(reason: str) -> ParsedWebhook:
        return ParsedWebhook(ignored=[IgnoredEvent(reason=reason, provider_message_id=message_id)])

    # A group is told by the chat id's server (@g.us), never by `participant`: the spec
    # requires that field on every ack, and on 1:1 acks WAHA sends it null or equal to
    # the chat (WAMessageAckBody, openapi.json).
    if any(chat_kind(side) == "group" for side in (clean(ack.from_), clean(ack.to)) if side):
        return ignored("group")
    if ack.fromMe is False:
        # Receipts about the lead's own messages: nothing we sent.
        return ignored("ack_inbound")
    name = (clean(ack.ackName) or "").upper()
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
                timestamp=_epoch(envelope.timestamp),
            )
        ]
    )


def _parse_message(envelope: WEnvelope, *, any_event: bool) -> ParsedWebhook:
    msg: WMessage = validate(WMessage, _payload_dict(envelope), LABEL)
    message_id = clean(msg.id)
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

    chat = _chat_id(msg, envelope, from_me)
    if chat is None:
        raise WebhookRejected(422, "invalid WAHA payload: message without 'from'")
    # Engines disagree on which side of a group message holds the group id, so
    # either side being a group, a status or a channel is enough.
    for side in (chat, clean(msg.from_), clean(msg.to)):
        side_kind = chat_kind(side) if side else None
        if side_kind in ("group", "broadcast", "newsletter"):
            return ignored(side_kind)
    kind = chat_kind(chat)
    if kind == "unknown":
        return ignored("unsupported_chat")

    data = msg.data if isinstance(msg.data, dict) else {}
    content = content_fields(msg, data)
    if content is None:
        # Encryption notices, calls, protocol updates: events, not words to answer.
        return ignored("notification")

    message = _to_inbound(msg, data, message_id=message_id, chat=chat, from_me=from_me, content=content)
    if from_me:
        return ignored("from_me", message)
    return ParsedWebhook(messages=[message])


def _chat_id(msg: WMessage, envelope: WEnvelope, from_me: bool) -> str | None:
    """The other party of the chat.

    For our own messages WEBJS puts us in `from` and the chat in `to`, while NOWEB
    and GOWS keep the chat in `from`; `me.id` tells which side is us.
    """
    sender = clean(msg.from_)
    if not from_me:
        return sender
    receiver = clean(msg.to)
    me = clean(envelope.me.id) if envelope.me else None
    if receiver and receiver not in ("me", me):
        return receiver
    return sender


def _to_inbound(
    msg: WMessage,
    data: dict[str, Any],
    *,
    message_id: str,
    chat: str,
    from_me: bool,
    content: dict[str, Any],
) -> InboundMessage:
    contact_id, phone = _contact_identity(chat)
    # On our own messages the push name is the business's, not the lead's.
    name = None if from_me else _sender_name(data, phone)
    stamp = _epoch(msg.timestamp)
    if stamp is not None:
        content["timestamp"] = stamp
    reply_to = clean(msg.replyTo.id) if msg.replyTo else None
    try:
        return InboundMessage(
            channel=CHANNEL,
            contact_id=contact_id,
            phone=phone,
            name=name,
            provider_message_id=message_id,
            referral=referral(data),
            from_me=from_me,
            is_group=False,
            reply_to_provider_id=reply_to,
            **content,
        )
    except ValidationError as exc:
        raise WebhookRejected(422, describe_validation_error(LABEL, exc)) from None


def _sender_name(data: dict[str, Any], phone: str | None) -> str | None:
    # WEBJS: notifyName; NOWEB: pushName; GOWS: Info.PushName.
    for value in (data.get("notifyName"), data.get("pushName"), dig(data, "Info", "PushName")):
        name = clean(value)
        if name and name not in (phone, "~"):
            return name
    return None

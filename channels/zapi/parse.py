"""Z-API webhook bodies to `InboundMessage`s.

The body is untrusted input: every field may be missing, null or of the wrong type, so
it is validated with the frozen models of `schema` and anything unusable becomes a 4xx
`WebhookRejected`, never a 500 that would make Z-API retry the same poison forever.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from channels.base import DeliveryState, DeliveryStatus, ParsedWebhook, PresenceEvent, PresenceState
from channels.webhook_helpers import clean, describe_validation_error, epoch_to_datetime, validate
from channels.zapi.content import content_fields
from channels.zapi.schema import ZPresenceCallback, ZReceivedCallback, ZStatusCallback
from core.errors import WebhookRejected
from core.models import AdReferral, IgnoredEvent, InboundMessage

CHANNEL = "zapi"
LABEL = "Z-API"

# Event types Z-API posts besides received messages, statuses and presence; none of
# them is something to answer, but each is acknowledged (2xx) so the provider does not retry.
_NON_MESSAGE_REASONS = {
    "deliverycallback": "delivery",
    "connectedcallback": "connection",
    "disconnectedcallback": "connection",
}
# docs/webhooks/on-whatsapp-message-status-changes.md. READ_BY_ME is the business
# reading the lead's message on its own phone: nothing about what we sent.
_STATUS_BY_NAME: dict[str, DeliveryState] = {
    "SENT": "sent",
    "RECEIVED": "delivered",
    "READ": "read",
    "PLAYED": "played",
}
# docs/webhooks/on-chat-presence.md; PAUSED follows a COMPOSING or RECORDING that stopped.
_PRESENCE_BY_STATUS: dict[str, PresenceState] = {
    "COMPOSING": "typing",
    "RECORDING": "recording",
    "PAUSED": "paused",
    "AVAILABLE": "online",
    "UNAVAILABLE": "offline",
}


def parse_webhook(payload: object) -> ParsedWebhook:
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "Z-API webhook body must be a JSON object")
    event_type = payload.get("type")
    if event_type is None:
        raise WebhookRejected(422, "invalid Z-API payload: missing 'type'")
    if not isinstance(event_type, str):
        raise WebhookRejected(422, "invalid Z-API payload: 'type' must be a string")

    normalized = event_type.strip().lower()
    if normalized == "messagestatuscallback":
        return _parse_status(validate(ZStatusCallback, payload, LABEL))
    if normalized == "presencechatcallback":
        return _parse_presence(validate(ZPresenceCallback, payload, LABEL))
    if normalized != "receivedcallback":
        reason = _NON_MESSAGE_REASONS.get(normalized, "not_a_message")
        message_id = payload.get("messageId")
        message_id = message_id if isinstance(message_id, str) and message_id else None
        return ParsedWebhook(ignored=[IgnoredEvent(reason=reason, provider_message_id=message_id)])
    return _parse_received(validate(ZReceivedCallback, payload, LABEL))


def _parse_status(event: ZStatusCallback) -> ParsedWebhook:
    """One DeliveryStatus per id, like WAHA's acks and the Cloud API's statuses."""
    ids = [i.strip() for i in (event.ids or []) if isinstance(i, str) and i.strip()]
    single = clean(event.id)
    if single and single not in ids:
        ids.append(single)
    name = (clean(event.status) or "").upper()
    state = _STATUS_BY_NAME.get(name)
    reason = None
    if event.isGroup:
        reason = "group"  # we never write to groups: none of these ids is ours
    elif state is None:
        reason = "read_by_me" if name == "READ_BY_ME" else "status_unknown"
    if reason is not None or state is None or not ids:
        ignored_ids: list[str | None] = list(ids) or [None]
        return ParsedWebhook(
            ignored=[IgnoredEvent(reason=reason or "status", provider_message_id=i) for i in ignored_ids]
        )
    stamp = epoch_to_datetime(event.momment)
    return ParsedWebhook(
        statuses=[DeliveryStatus(provider_message_id=i, status=state, timestamp=stamp) for i in ids]
    )


def _parse_presence(event: ZPresenceCallback) -> ParsedWebhook:
    """A hint for the quiet window, so nothing is lost by dropping one: a presence
    without a phone, a group's, or a status we do not know is only acknowledged (a
    retry would not make it more useful); a field of the wrong type is still a 422."""
    raw_phone = clean(event.phone)
    if raw_phone is None:
        return ParsedWebhook(ignored=[IgnoredEvent(reason="presence_without_phone")])
    lowered = raw_phone.lower()
    state = _PRESENCE_BY_STATUS.get((clean(event.status) or "").upper())
    if lowered.endswith(_NOT_A_LEAD_SUFFIXES):
        return ParsedWebhook(ignored=[IgnoredEvent(reason="group")])
    if state is None:
        return ParsedWebhook(ignored=[IgnoredEvent(reason="presence_unknown")])
    contact_id, _phone = contact_identity(raw_phone)
    presence = validate(PresenceEvent, {"contact_id": contact_id, "state": state}, LABEL)
    return ParsedWebhook(presences=[presence])


# Chats that are not one person: groups, broadcast lists, channels (newsletters).
_GROUP_SUFFIXES = ("-group", "@g.us")
_NOT_A_LEAD_SUFFIXES = (*_GROUP_SUFFIXES, "@broadcast", "@newsletter")


def _ignored_reason(event: ZReceivedCallback, lowered_phone: str) -> str | None:
    """Why a received callback is not a lead's message to answer, if it is not."""
    if event.isNewsletter or lowered_phone.endswith("@newsletter"):
        return "newsletter"
    if event.isGroup or lowered_phone.endswith(_GROUP_SUFFIXES):
        return "group"
    if event.broadcast or lowered_phone.endswith("@broadcast"):
        return "broadcast"
    if event.notification and not event.has_content():
        # Calls, group membership, encryption notices...: events, not words to answer.
        return "notification"
    if event.waitingMessage and not event.has_content():
        # WhatsApp could not decrypt it yet ("Aguardando mensagem"); nothing to read.
        return "waiting_message"
    return None


def _parse_received(event: ZReceivedCallback) -> ParsedWebhook:
    message_id = clean(event.messageId)
    raw_phone = clean(event.phone)
    if (message_id is None or raw_phone is None) and clean(event.notification) and not event.has_content():
        # PROFILE_NAME_UPDATED, PROFILE_PICTURE_UPDATED, CHAT_LABEL_ASSOCIATION... carry
        # no messageId: acknowledged like every other notification, never a 422.
        return ParsedWebhook(ignored=[IgnoredEvent(reason="notification", provider_message_id=message_id)])
    if message_id is None:
        raise WebhookRejected(422, "invalid Z-API payload: missing messageId")
    if raw_phone is None:
        raise WebhookRejected(422, "invalid Z-API payload: missing phone")
    reason = _ignored_reason(event, raw_phone.lower())
    if reason is not None:
        return ParsedWebhook(ignored=[IgnoredEvent(reason=reason, provider_message_id=message_id)])

    message = _to_inbound(event, message_id, raw_phone)
    if message.from_me:
        return ParsedWebhook(
            ignored=[IgnoredEvent(reason="from_me", provider_message_id=message_id, message=message)]
        )
    return ParsedWebhook(messages=[message])


def contact_identity(raw_phone: str) -> tuple[str, str | None]:
    """Return (contact_id, phone digits) for a Z-API `phone` value.

    WhatsApp may hide the number behind a LID ("123@lid"); the LID is kept whole as the
    contact id (it is what Z-API accepts back) and there is no phone to record.
    """
    value = raw_phone.strip()
    if value.lower().endswith("@lid"):
        return value.lower(), None
    local = value.split("@", 1)[0]
    digits = re.sub(r"\D", "", local)
    if not digits:
        raise WebhookRejected(422, "invalid Z-API payload: phone has no digits")
    return digits, digits


def _to_inbound(event: ZReceivedCallback, message_id: str, raw_phone: str) -> InboundMessage:
    contact_id, phone = contact_identity(raw_phone)
    from_me = bool(event.fromMe)
    fields = content_fields(event)

    sender = clean(event.senderName)
    chat = clean(event.chatName)
    # On our own messages senderName is the business; the chat name is the lead.
    candidates = [chat] if from_me else [sender, chat]
    name = next((n for n in candidates if n and n != phone), None)

    epoch = next((v for v in (event.momment, event.moment, event.timestamp) if v is not None), None)
    stamp = epoch_to_datetime(epoch)
    reply_to = clean(event.referenceMessageId)
    if reply_to is None and event.reaction and event.reaction.referencedMessage:
        reply_to = clean(event.reaction.referencedMessage.messageId)

    if stamp is not None:
        fields["timestamp"] = stamp
    try:
        return InboundMessage(
            channel=CHANNEL,
            contact_id=contact_id,
            phone=phone,
            name=name,
            provider_message_id=message_id,
            referral=_referral(event),
            from_me=from_me,
            is_group=False,
            reply_to_provider_id=reply_to,
            **fields,
        )
    except ValidationError as exc:
        raise WebhookRejected(422, describe_validation_error(LABEL, exc)) from None


def _referral(event: ZReceivedCallback) -> AdReferral | None:
    ad = event.externalAdReply
    if ad is None:
        return None
    referral = AdReferral(
        ctwa_clid=clean(ad.ctwaClid),
        source_id=clean(ad.sourceId),
        source_url=clean(ad.sourceUrl),
        source_type=clean(ad.sourceType),
        headline=clean(ad.title),
    )
    if not any(referral.model_dump().values()):
        return None
    return referral

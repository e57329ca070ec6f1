"""Z-API webhook bodies to `InboundMessage`s.

The body is untrusted input: every field may be missing, null or of the wrong type, so
it is validated with the frozen models of `schema` and anything unusable becomes a 4xx
`WebhookRejected`, never a 500 that would make Z-API retry the same poison forever.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import ValidationError

from channels.base import ParsedWebhook
from channels.webhook_helpers import (
    clean,
    describe_validation_error,
    epoch_to_datetime,
    format_coord,
    validate,
)
from channels.zapi.schema import ZContact, ZLocation, ZReceivedCallback
from core.errors import WebhookRejected
from core.models import AdReferral, IgnoredEvent, InboundMessage, MessageKind

CHANNEL = "zapi"
LABEL = "Z-API"

# Event types Z-API posts besides received messages; none of them is something to
# answer, but each is acknowledged (2xx) so the provider does not keep retrying.
_NON_MESSAGE_REASONS = {
    "messagestatuscallback": "status",
    "deliverycallback": "delivery",
    "presencechatcallback": "presence",
    "connectedcallback": "connection",
    "disconnectedcallback": "connection",
}
_VCARD_WAID = re.compile(r"waid=(\d+)")


def parse_webhook(payload: object) -> ParsedWebhook:
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "Z-API webhook body must be a JSON object")
    event_type = payload.get("type")
    if event_type is None:
        raise WebhookRejected(422, "invalid Z-API payload: missing 'type'")
    if not isinstance(event_type, str):
        raise WebhookRejected(422, "invalid Z-API payload: 'type' must be a string")

    normalized = event_type.strip().lower()
    if normalized != "receivedcallback":
        reason = _NON_MESSAGE_REASONS.get(normalized, "not_a_message")
        return ParsedWebhook(ignored=_non_message_events(payload, reason))
    return _parse_received(validate(ZReceivedCallback, payload, LABEL))


def _non_message_events(payload: dict[str, Any], reason: str) -> list[IgnoredEvent]:
    # Status callbacks carry a list of ids; keep them so a delivery tracker can use them.
    ids = payload.get("ids")
    if isinstance(ids, list):
        str_ids = [i for i in ids if isinstance(i, str) and i]
        if str_ids:
            return [IgnoredEvent(reason=reason, provider_message_id=i) for i in str_ids]
    message_id = payload.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        message_id = None
    return [IgnoredEvent(reason=reason, provider_message_id=message_id)]


def _ignored_reason(event: ZReceivedCallback, lowered_phone: str) -> str | None:
    """Why a received callback is not a lead's message to answer, if it is not."""
    if event.isNewsletter or lowered_phone.endswith("@newsletter"):
        return "newsletter"
    if event.isGroup or lowered_phone.endswith("-group") or lowered_phone.endswith("@g.us"):
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
    if message_id is None:
        raise WebhookRejected(422, "invalid Z-API payload: missing messageId")
    raw_phone = clean(event.phone)
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


def _contact_phones(contact: ZContact) -> list[str]:
    phones = [p for p in (contact.phones or []) if p and p.strip()]
    if not phones and contact.vCard:
        phones = _VCARD_WAID.findall(contact.vCard)
    return phones


def _location_text(loc: ZLocation) -> str:
    label = " - ".join(p for p in (clean(loc.name), clean(loc.address)) if p)
    coords = ""
    lat, lng = loc.latitude, loc.longitude
    if lat is not None and lng is not None and math.isfinite(lat) and math.isfinite(lng):
        coords = f"({format_coord(lat)}, {format_coord(lng)})"
    body = " ".join(p for p in (label, coords) if p) or "compartilhada"
    return f"Localização: {body}"


def _reply_fields(event: ZReceivedCallback) -> dict[str, Any] | None:
    """Reactions, buttons and list answers: what the lead chose, as text."""
    if event.reaction is not None:
        return {"kind": MessageKind.REACTION, "text": clean(event.reaction.value)}
    if event.buttonsResponseMessage is not None:
        button = event.buttonsResponseMessage
        return {"kind": MessageKind.BUTTON_REPLY, "text": clean(button.message) or clean(button.buttonId)}
    if event.listResponseMessage is not None:
        row = event.listResponseMessage
        return {
            "kind": MessageKind.LIST_REPLY,
            "text": clean(row.title) or clean(row.message) or clean(row.selectedRowId),
        }
    return None


def _media_fields(event: ZReceivedCallback) -> dict[str, Any] | None:
    if event.audio is not None:
        return {
            "kind": MessageKind.AUDIO,
            "media_url": clean(event.audio.audioUrl),
            "media_mime": clean(event.audio.mimeType),
        }
    if event.image is not None:
        return {
            "kind": MessageKind.IMAGE,
            "media_url": clean(event.image.imageUrl),
            "media_mime": clean(event.image.mimeType),
            "media_caption": clean(event.image.caption),
        }
    if event.video is not None:
        return {
            "kind": MessageKind.VIDEO,
            "media_url": clean(event.video.videoUrl),
            "media_mime": clean(event.video.mimeType),
            "media_caption": clean(event.video.caption),
        }
    if event.document is not None:
        doc = event.document
        return {
            "kind": MessageKind.DOCUMENT,
            "media_url": clean(doc.documentUrl),
            "media_mime": clean(doc.mimeType),
            "media_caption": clean(doc.caption),
            "file_name": clean(doc.fileName) or clean(doc.title),
        }
    if event.sticker is not None:
        return {
            "kind": MessageKind.STICKER,
            "media_url": clean(event.sticker.stickerUrl),
            "media_mime": clean(event.sticker.mimeType),
        }
    return None


def content_fields(event: ZReceivedCallback) -> dict[str, Any]:
    """Map the one content block Z-API sent to the channel-neutral fields."""
    fields = _reply_fields(event) or _media_fields(event)
    if fields is not None:
        return fields
    if event.location is not None:
        return {"kind": MessageKind.LOCATION, "text": _location_text(event.location)}
    if event.contact is not None:
        contact = event.contact
        parts = [p for p in (clean(contact.displayName), ", ".join(_contact_phones(contact))) if p]
        return {
            "kind": MessageKind.CONTACT,
            "text": "Contato compartilhado: " + (" ".join(parts) if parts else "sem dados"),
        }
    if event.pollVote is not None:
        chosen = [o.name.strip() for o in (event.pollVote.options or []) if o.name and o.name.strip()]
        return {
            "kind": MessageKind.OTHER,
            "text": ("Resposta de enquete: " + ", ".join(chosen)) if chosen else None,
        }
    if event.text is not None:
        return {"kind": MessageKind.TEXT, "text": clean(event.text.message)}
    return {"kind": MessageKind.OTHER}

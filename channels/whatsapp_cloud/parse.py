"""WhatsApp Cloud API webhooks to `InboundMessage`s and delivery statuses.

One webhook can carry several entries/changes/messages/statuses, and a WABA can host
several phone numbers: anything addressed to another `phone_number_id` is not ours to
answer. Users who adopt a WhatsApp username may arrive without a phone (`from` omitted)
but with a business-scoped user id (`from_user_id`, e.g. "BR.1502576394655843"); that id
becomes the contact id. Media is not a URL but a media id that needs our bearer token; it
is carried as `whatsapp-media:<id>` so only the channel ever attaches the token.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from channels.base import DeliveryStatus, ParsedWebhook
from channels.webhook_helpers import clean, describe_validation_error, epoch_to_datetime, format_coord
from channels.whatsapp_cloud.commerce import order_text, product_question
from channels.whatsapp_cloud.schema import (
    WContact,
    WEcho,
    WError,
    WMessage,
    WReferral,
    WStatus,
    WValue,
)
from core.errors import WebhookRejected
from core.logging import get_logger
from core.models import AdReferral, IgnoredEvent, InboundMessage, MessageKind

log = get_logger(__name__)

CHANNEL = "whatsapp_cloud"
LABEL = "WhatsApp Cloud"
OBJECT = "whatsapp_business_account"
MEDIA_SCHEME = "whatsapp-media:"
# Free text outside the 24-hour customer-service window (Meta error code).
WINDOW_CODE = 131047
# "Message undeliverable": no WhatsApp account behind the number, an outdated client or
# terms not accepted (support/error-codes). Meta has no lookup, so this is the answer.
NOT_ON_WHATSAPP_CODE = 131026

# Media ids are numeric strings; anything else would end up in a Graph URL path.
MEDIA_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")
# Business-scoped user id: ISO country code, a dot, up to 128 alphanumerics; the parent
# BSUID inserts "ENT." ("US.ENT.11815799212886844830").
_BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
_ERROR_DETAIL_MAX = 300
_DELIVERY_STATES = {"sent", "delivered", "read", "played", "failed"}

_CONTENT_BLOCKS = (
    "text",
    "audio",
    "voice",
    "image",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "button",
    "interactive",
    "reaction",
    "order",
)
_MEDIA_KINDS = {
    "audio": MessageKind.AUDIO,
    "voice": MessageKind.AUDIO,
    "image": MessageKind.IMAGE,
    "video": MessageKind.VIDEO,
    "document": MessageKind.DOCUMENT,
    "sticker": MessageKind.STICKER,
}
# Message types that are notices, not words from the lead.
_IGNORED_TYPES = {
    "unsupported": "unsupported",
    "unknown": "unsupported",
    "errors": "unsupported",
    "system": "system",
    "request_welcome": "request_welcome",
}


# --- helpers -----------------------------------------------------------------------


def _reject(message: str) -> WebhookRejected:
    return WebhookRejected(422, f"invalid WhatsApp Cloud payload: {message}")


def _epoch(raw: Any, where: str) -> datetime | None:
    """Meta sends unix seconds as a string; reject garbage, tolerate absurd numbers.

    A wrong type means the body is not Meta's (422); a number that cannot be a date falls
    back to "now" (None) because losing a lead's message over a clock value is worse than
    a slightly wrong timestamp.
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise _reject(f"{where}.timestamp must be unix seconds")
    if not (
        isinstance(raw, (int, float)) or (isinstance(raw, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", raw))
    ):
        raise _reject(f"{where}.timestamp must be unix seconds")
    try:
        value = float(raw)
    except OverflowError:  # an integer with hundreds of digits: not a date
        return None
    return epoch_to_datetime(value)


def digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def is_bsuid(value: str) -> bool:
    return _BSUID.fullmatch(value) is not None


def _media_url(media_id: str | None, where: str) -> str | None:
    media_id = clean(media_id)
    if media_id is None:
        return None
    if not MEDIA_ID.fullmatch(media_id):
        raise _reject(f"{where}.id is not a media id")
    return MEDIA_SCHEME + media_id


def _status_error(errors: list[WError] | None) -> str | None:
    """One readable line from `errors[0]`, naming the 24h window when that is the cause."""
    if not errors:
        return None
    err = errors[0]
    title = clean(err.title) or clean(err.message)
    details = clean(err.error_data.details) if err.error_data else None
    head = " ".join(p for p in (str(err.code) if err.code is not None else None, title) if p)
    text = ": ".join(p for p in (head or None, details if details != title else None) if p)
    if err.code == WINDOW_CODE:
        text = f"{text} (outside the 24-hour customer-service window)"
    return text[:_ERROR_DETAIL_MAX] or None


def parse_webhook(payload: object, *, phone_number_id: str | None) -> ParsedWebhook:
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "WhatsApp Cloud webhook body must be a JSON object")
    obj = payload.get("object")
    if obj != OBJECT:
        raise WebhookRejected(422, f"webhook object must be {OBJECT!r}")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise _reject("'entry' must be a list")

    result = ParsedWebhook()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _reject(f"entry[{i}] must be an object")
        changes = entry.get("changes", [])
        if not isinstance(changes, list):
            raise _reject(f"entry[{i}].changes must be a list")
        for j, change in enumerate(changes):
            _parse_change(change, f"entry[{i}].changes[{j}]", result, phone_number_id)
    return result


def _change_value(change: object, where: str) -> WValue | None:
    """The `value` of a messages change, or None for fields that are not conversations."""
    if not isinstance(change, dict):
        raise _reject(f"{where} must be an object")
    field = change.get("field", "messages")
    if not isinstance(field, str):
        raise _reject(f"{where}.field must be a string")
    raw_value = change.get("value")
    if not isinstance(raw_value, dict):
        raise _reject(f"{where}.value must be an object")
    if field not in ("messages", "smb_message_echoes"):
        return None
    try:
        return WValue.model_validate(raw_value)
    except ValidationError as exc:
        raise WebhookRejected(422, describe_validation_error(LABEL, exc, where=f"{where}.value")) from None


def _parse_change(change: object, where: str, result: ParsedWebhook, ours: str | None) -> None:
    value = _change_value(change, where)
    if value is None:
        # Template reviews, account updates, history sync...: acknowledged, not answered.
        result.ignored.append(IgnoredEvent(reason="not_a_message"))
        return
    has_events = bool(value.messages or value.statuses or value.message_echoes)
    phone_number_id = clean(value.metadata.phone_number_id) if value.metadata else None
    if has_events and phone_number_id is None:
        raise _reject(f"{where}.value.metadata.phone_number_id is missing")
    # Without a configured id there is nothing to compare against; the number is
    # then whichever one the app is subscribed to.
    other_number = ours is not None and phone_number_id != ours.strip()

    contacts = value.contacts or []
    for k, message in enumerate(value.messages or []):
        msg_where = f"{where}.value.messages[{k}]"
        message_id = _required_id(message.id, msg_where)
        if other_number:
            result.ignored.append(IgnoredEvent(reason="other_number", provider_message_id=message_id))
        else:
            _add(result, _message(message, message_id, contacts, msg_where))
    for k, status in enumerate(value.statuses or []):
        st_where = f"{where}.value.statuses[{k}]"
        status_id = _required_id(status.id, st_where)
        if other_number:
            result.ignored.append(IgnoredEvent(reason="other_number", provider_message_id=status_id))
        else:
            _add(result, _status(status, status_id, st_where))
    for k, echo in enumerate(value.message_echoes or []):
        echo_where = f"{where}.value.message_echoes[{k}]"
        echo_id = _required_id(echo.id, echo_where)
        if other_number:
            result.ignored.append(IgnoredEvent(reason="other_number", provider_message_id=echo_id))
        else:
            result.ignored.append(_echo(echo, echo_id, echo_where))

    for err in value.errors or []:
        # App- or account-level trouble reported out of band (e.g. 130429 throughput):
        # nothing to answer, but an operator should see it.
        log.warning("whatsapp_cloud_webhook_error", code=err.code, title=clean(err.title))
        result.ignored.append(IgnoredEvent(reason="error"))


def _add(result: ParsedWebhook, outcome: InboundMessage | DeliveryStatus | IgnoredEvent) -> None:
    if isinstance(outcome, IgnoredEvent):
        result.ignored.append(outcome)
    elif isinstance(outcome, DeliveryStatus):
        result.statuses.append(outcome)
    else:
        result.messages.append(outcome)


def _required_id(raw: str | None, where: str) -> str:
    value = clean(raw)
    if value is None:
        raise _reject(f"{where}.id is missing")
    return value


def _identity(raw_from: str | None, user_id: str | None, where: str) -> tuple[str, str | None]:
    """(contact_id, phone) from a phone (`from`/`to`) or, failing that, a BSUID."""
    value = clean(raw_from)
    if value is not None:
        if is_bsuid(value):
            return value, None
        number = digits(value)
        if not number:
            raise _reject(f"{where} has no digits")
        return number, number
    bsuid = clean(user_id)
    if bsuid is not None:
        if not is_bsuid(bsuid):
            raise _reject(f"{where} user id is not a business-scoped user id")
        return bsuid, None
    raise _reject(f"{where} has no sender")


def _profile_name(contacts: list[WContact], phone: str | None, user_id: str | None) -> str | None:
    match: WContact | None = None
    for contact in contacts:
        if phone and contact.wa_id and digits(contact.wa_id) == phone:
            match = contact
            break
        if user_id and contact.user_id and contact.user_id.strip() == user_id:
            match = contact
            break
    if match is None and len(contacts) == 1:
        match = contacts[0]
    if match is None or match.profile is None:
        return None
    name = clean(match.profile.name)
    return name if name and name != phone else None


def _message(
    message: WMessage, message_id: str, contacts: list[WContact], where: str
) -> InboundMessage | IgnoredEvent:
    msg_type = (clean(message.type) or "").lower() or _infer_type(message)
    if msg_type in _IGNORED_TYPES:
        return IgnoredEvent(reason=_IGNORED_TYPES[msg_type], provider_message_id=message_id)
    if clean(message.group_id):
        return IgnoredEvent(reason="group", provider_message_id=message_id)

    contact_id, phone = _identity(message.from_, message.from_user_id, f"{where}.from")
    user_id = clean(message.from_user_id)
    name = _profile_name(contacts, phone, user_id)
    fields = _content(message, msg_type, where)
    reply_to = fields.pop("reply_to", None) or (clean(message.context.id) if message.context else None)
    stamp = _epoch(message.timestamp, where)
    if stamp is not None:
        fields["timestamp"] = stamp
    try:
        return InboundMessage(
            channel=CHANNEL,
            contact_id=contact_id,
            phone=phone,
            name=name,
            provider_message_id=message_id,
            referral=_referral(message.referral),
            from_me=False,
            is_group=False,
            reply_to_provider_id=reply_to,
            **fields,
        )
    except ValidationError as exc:
        raise WebhookRejected(422, describe_validation_error(LABEL, exc, where=where)) from None


def _echo(echo: WEcho, echo_id: str, where: str) -> IgnoredEvent:
    """The business answered from its phone: recorded so the bot can step aside."""
    contact_id, phone = _identity(echo.to, echo.to_user_id, f"{where}.to")
    msg_type = (clean(echo.type) or "").lower() or _infer_type(echo)
    fields = _content(echo, msg_type, where)
    fields.pop("reply_to", None)
    stamp = _epoch(echo.timestamp, where)
    if stamp is not None:
        fields["timestamp"] = stamp
    try:
        message = InboundMessage(
            channel=CHANNEL,
            contact_id=contact_id,
            phone=phone,
            provider_message_id=echo_id,
            from_me=True,
            **fields,
        )
    except ValidationError as exc:
        raise WebhookRejected(422, describe_validation_error(LABEL, exc, where=where)) from None
    return IgnoredEvent(reason="from_me", provider_message_id=echo_id, message=message)


def _infer_type(message: WMessage) -> str:
    for block in _CONTENT_BLOCKS:
        if getattr(message, block) is not None:
            return block
    return ""


def _referral(ref: WReferral | None) -> AdReferral | None:
    if ref is None:
        return None
    referral = AdReferral(
        ctwa_clid=clean(ref.ctwa_clid),
        source_id=clean(ref.source_id),
        source_url=clean(ref.source_url),
        source_type=clean(ref.source_type),
        headline=clean(ref.headline),
    )
    if not any(referral.model_dump().values()):
        return None
    return referral


def _media_content(message: WMessage, msg_type: str, where: str) -> dict[str, Any]:
    media = getattr(message, msg_type) or (message.voice if msg_type == "audio" else None)
    if media is None and msg_type == "voice":
        media = message.audio
    out: dict[str, Any] = {"kind": _MEDIA_KINDS[msg_type]}
    if media is not None:
        out["media_url"] = _media_url(media.id, f"{where}.{msg_type}")
        out["media_mime"] = clean(media.mime_type)
        if msg_type in ("image", "video", "document"):
            out["media_caption"] = clean(media.caption)
        if msg_type == "document":
            out["file_name"] = clean(media.filename)
    return out


def _interactive_content(message: WMessage) -> dict[str, Any]:
    interactive = message.interactive
    if interactive is not None and interactive.button_reply is not None:
        reply = interactive.button_reply
        return {"kind": MessageKind.BUTTON_REPLY, "text": clean(reply.title) or clean(reply.id)}
    if interactive is not None and interactive.list_reply is not None:
        row = interactive.list_reply
        return {
            "kind": MessageKind.LIST_REPLY,
            "text": clean(row.title) or clean(row.description) or clean(row.id),
        }
    # Flows (nfm_reply) and future interactive replies: kept, not interpreted.
    return {"kind": MessageKind.OTHER}


def _location_content(message: WMessage) -> dict[str, Any]:
    loc = message.location
    body = "compartilhada"
    if loc is not None:
        label = " - ".join(p for p in (clean(loc.name), clean(loc.address)) if p)
        coords = ""
        lat, lng = loc.latitude, loc.longitude
        if lat is not None and lng is not None and math.isfinite(lat) and math.isfinite(lng):
            coords = f"({format_coord(lat)}, {format_coord(lng)})"
        body = " ".join(p for p in (label, coords) if p) or body
    return {"kind": MessageKind.LOCATION, "text": f"Localização: {body}"}


def _contacts_content(message: WMessage) -> dict[str, Any]:
    shared = []
    for contact in message.contacts or []:
        name = clean(contact.name.formatted_name) if contact.name else None
        phones = [p for p in ((clean(ph.phone) or clean(ph.wa_id)) for ph in contact.phones or []) if p]
        part = " ".join(p for p in (name, ", ".join(phones)) if p)
        if part:
            shared.append(part)
    return {
        "kind": MessageKind.CONTACT,
        "text": "Contato compartilhado: " + ("; ".join(shared) if shared else "sem dados"),
    }


def _content(message: WMessage, msg_type: str, where: str) -> dict[str, Any]:
    """Map the one content block Meta sent to the channel-neutral fields."""
    if msg_type in _MEDIA_KINDS:
        return _media_content(message, msg_type, where)
    if msg_type == "text":
        text = clean(message.text.body) if message.text else None
        product = message.context.referred_product if message.context else None
        return {"kind": MessageKind.TEXT, "text": product_question(text, product)}
    if msg_type == "order":
        return {"kind": MessageKind.OTHER, "text": order_text(message.order)}
    if msg_type == "button":
        button = message.button
        text = (clean(button.text) or clean(button.payload)) if button else None
        return {"kind": MessageKind.BUTTON_REPLY, "text": text}
    if msg_type == "reaction":
        reaction = message.reaction
        return {
            "kind": MessageKind.REACTION,
            # An empty emoji means the reaction was removed.
            "text": clean(reaction.emoji) if reaction else None,
            "reply_to": clean(reaction.message_id) if reaction else None,
        }
    others = {
        "interactive": _interactive_content,
        "location": _location_content,
        "contacts": _contacts_content,
    }
    if msg_type in others:
        return others[msg_type](message)
    return {"kind": MessageKind.OTHER}


def _status(status: WStatus, status_id: str, where: str) -> DeliveryStatus | IgnoredEvent:
    state = (clean(status.status) or "").lower()
    if not state:
        raise _reject(f"{where}.status is missing")
    stamp = _epoch(status.timestamp, where)
    if state not in _DELIVERY_STATES:
        # "deleted", "warning" and whatever Meta adds next: not a delivery state of ours.
        return IgnoredEvent(reason="status", provider_message_id=status_id)
    return DeliveryStatus(
        provider_message_id=status_id,
        status=state,  # type: ignore[arg-type]  # checked against _DELIVERY_STATES
        error=_status_error(status.errors),
        timestamp=stamp,
        outside_window=_first_code(status.errors) == WINDOW_CODE,
        not_on_whatsapp=state == "failed"
        and any(error.code == NOT_ON_WHATSAPP_CODE for error in status.errors or ()),
    )


def _first_code(errors: list[WError] | None) -> int | None:
    return errors[0].code if errors else None

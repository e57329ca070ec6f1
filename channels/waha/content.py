"""What a WAHA message says, whichever engine sent it.

The documented fields (`body`, `media`, `location`, `vCards`) come first; `_data`, the
engine's raw message (WEBJS's whatsapp-web.js object, NOWEB's and GOWS's protobuf-shaped
`message`), is read defensively for what they lack: message types, button and list
replies, and the Click-to-WhatsApp ad context.
"""

from __future__ import annotations

import math
import re
from typing import Any

from channels.waha.schema import WMessage
from channels.webhook_helpers import clean, format_coord
from core.models import AdReferral, MessageKind


def dig(obj: Any, *path: str) -> Any:
    """Walk engine-specific `_data` without trusting any level of it."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def as_number(value: Any) -> float | None:
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        elif isinstance(value, dict) and isinstance(value.get("low"), int):
            # NOWEB may forward protobuf Longs as {"low", "high", "unsigned"}.
            high = value["high"] if isinstance(value.get("high"), int) else 0
            number = float((high << 32) + (value["low"] & 0xFFFFFFFF))
        else:
            return None
    except (ValueError, OverflowError):  # not a number, or an integer no clock can hold
        return None
    return number if math.isfinite(number) else None


_VCARD_FN = re.compile(r"^FN[;:](?:[^:\n]*:)?(.+)$", re.MULTILINE)
_VCARD_WAID = re.compile(r"waid=(\d+)")
_VCARD_TEL = re.compile(r"^TEL[^:\n]*:(.+)$", re.MULTILINE)


def _describe_vcard(vcard: str) -> str:
    name = next((m.strip() for m in _VCARD_FN.findall(vcard) if m.strip()), "")
    phones = _VCARD_WAID.findall(vcard) or [t.strip() for t in _VCARD_TEL.findall(vcard) if t.strip()]
    return " ".join(p for p in (name, ", ".join(phones)) if p)


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
            wrapped = dig(inner, wrapper, "message")
            if isinstance(wrapped, dict):
                inner = wrapped
                break
        else:
            break
    return inner


def content_fields(msg: WMessage, data: dict[str, Any]) -> dict[str, Any] | None:
    """Map a WAHA message to the channel-neutral fields, or None for non-messages."""
    proto = _engine_message(data)
    webjs_type = clean(data.get("type"))
    webjs_type = webjs_type.lower() if webjs_type else None
    body = clean(msg.body)

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

    reply = _reply_content(webjs_type, proto, data, body)
    if reply is not None:
        return reply

    media = _media_fields(msg, data, proto, webjs_type, body)
    if media is not None:
        return media

    location = _location_text(msg, webjs_type, proto)
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
            display = clean(dig(proto, "contactMessage", "displayName"))
            described = [display] if display else []
        return {
            "kind": MessageKind.CONTACT,
            "text": "Contato compartilhado: " + ("; ".join(described) if described else "sem dados"),
        }

    if body is not None or webjs_type == "chat" or "conversation" in proto or "extendedTextMessage" in proto:
        return {"kind": MessageKind.TEXT, "text": body or clean(proto.get("conversation"))}
    if webjs_type or proto:
        # Polls, events, products...: keep them, the agent can say it cannot read them.
        return {"kind": MessageKind.OTHER}
    return {"kind": MessageKind.TEXT, "text": None}


def _media_fields(
    msg: WMessage, data: dict[str, Any], proto: dict[str, Any], webjs_type: str | None, body: str | None
) -> dict[str, Any] | None:
    media = msg.media
    media_url = clean(media.url) if media else None
    media_url = media_url or clean(msg.mediaUrl)
    mime = clean(media.mimetype) if media else None
    file_name = clean(media.filename) if media else None

    kind = _media_kind(webjs_type, proto, mime)
    if kind is None and not msg.hasMedia and not media_url:
        return None
    if kind is None:
        kind = MessageKind.DOCUMENT
    fields: dict[str, Any] = {"kind": kind, "media_url": media_url, "media_mime": mime}
    if kind in (MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.DOCUMENT):
        fields["media_caption"] = body
    if kind is MessageKind.DOCUMENT:
        fields["file_name"] = (
            file_name or clean(data.get("filename")) or clean(dig(proto, "documentMessage", "fileName"))
        )
    return fields


def _reply_content(
    webjs_type: str | None, proto: dict[str, Any], data: dict[str, Any], body: str | None
) -> dict[str, Any] | None:
    """Buttons and list answers; not in WAHA's docs, read from each engine's raw message."""
    if webjs_type in ("buttons_response", "template_button_reply"):
        return {
            "kind": MessageKind.BUTTON_REPLY,
            "text": body or clean(data.get("selectedButtonId")),
        }
    if webjs_type == "list_response":
        return {
            "kind": MessageKind.LIST_REPLY,
            "text": body or clean(dig(data, "listResponse", "singleSelectReply", "selectedRowId")),
        }
    if isinstance(proto.get("buttonsResponseMessage"), dict):
        button = proto["buttonsResponseMessage"]
        return {
            "kind": MessageKind.BUTTON_REPLY,
            "text": clean(button.get("selectedDisplayText")) or body or clean(button.get("selectedButtonId")),
        }
    if isinstance(proto.get("templateButtonReplyMessage"), dict):
        button = proto["templateButtonReplyMessage"]
        return {
            "kind": MessageKind.BUTTON_REPLY,
            "text": clean(button.get("selectedDisplayText")) or body or clean(button.get("selectedId")),
        }
    if isinstance(proto.get("listResponseMessage"), dict):
        row = proto["listResponseMessage"]
        return {
            "kind": MessageKind.LIST_REPLY,
            "text": clean(row.get("title")) or body or clean(dig(row, "singleSelectReply", "selectedRowId")),
        }
    return None


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


def _location_text(msg: WMessage, webjs_type: str | None, proto: dict[str, Any]) -> str | None:
    loc = msg.location
    raw = proto.get("locationMessage") or proto.get("liveLocationMessage")
    if loc is None and not isinstance(raw, dict) and webjs_type != "location":
        return None
    lat = as_number(loc.latitude) if loc else None
    lng = as_number(loc.longitude) if loc else None
    label_parts = [clean(loc.name), clean(loc.address), clean(loc.description)] if loc else []
    if isinstance(raw, dict):
        lat = lat if lat is not None else as_number(raw.get("degreesLatitude"))
        lng = lng if lng is not None else as_number(raw.get("degreesLongitude"))
        label_parts += [clean(raw.get("name")), clean(raw.get("address"))]
    seen: list[str] = []
    for raw_part in label_parts:
        # WEBJS puts name and address on two lines of `description`.
        part = " - ".join(line.strip() for line in (raw_part or "").splitlines() if line.strip())
        if part and part not in seen:
            seen.append(part)
    label = " - ".join(seen)
    coords = f"({format_coord(lat)}, {format_coord(lng)})" if lat is not None and lng is not None else ""
    return "Localização: " + (" ".join(p for p in (label, coords) if p) or "compartilhada")


def referral(data: dict[str, Any]) -> AdReferral | None:
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
        proto = _engine_message(data)
        for content in proto.values():
            reply = dig(content, "contextInfo", "externalAdReply")
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
    referral = AdReferral(**{key: clean(value) for key, value in ad.items()})
    if not any(referral.model_dump().values()):
        return None
    return referral

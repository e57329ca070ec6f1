"""What a Z-API received message says, as the channel-neutral fields.

Each documented content block of docs/webhooks/on-message-received.md maps here: media,
location, contact, replies (buttons, list, reaction, poll vote) and the interactive
messages whose words the lead saw or chose (templates, buttons, lists, carousels,
products, orders, polls), kept as text so the agent reads them.
"""

from __future__ import annotations

import math
import re
from typing import Any

from channels.webhook_helpers import clean, format_coord
from channels.zapi.interactive import interactive_fields
from channels.zapi.schema import ZContact, ZLocation, ZReceivedCallback
from core.models import MessageKind

_VCARD_WAID = re.compile(r"waid=(\d+)")


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
    interactive = interactive_fields(event)
    if interactive is not None:
        return interactive
    return {"kind": MessageKind.OTHER}

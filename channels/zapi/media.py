"""The Z-API request that carries one file to the lead (docs/message/send-message-image.md,
send-message-document.md, send-message-video.md, send-message-audio.md).

The bytes were fetched already (channels/base.py OutgoingMedia), so every file goes as
the base64 data URI the docs ask for (`data:<mime>;base64,...`): Z-API never fetches a
URL of ours, and a Chatwoot link that needs auth or has expired cannot break the send.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from typing import Any

from channels.base import OutgoingMedia
from channels.webhook_helpers import clean

# Z-API routes a document by its extension: /send-document/{extension}.
_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")
_FALLBACK_EXTENSION = "bin"


def data_uri(media: OutgoingMedia) -> str:
    mime = (media.mime or "application/octet-stream").split(";", 1)[0].strip() or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(media.data).decode('ascii')}"


def document_extension(media: OutgoingMedia) -> str:
    """The file's own extension, else the one its MIME type implies."""
    _, dot, suffix = (media.file_name or "").rpartition(".")
    candidate = suffix.strip().lower() if dot else ""
    if _EXTENSION.match(candidate):
        return candidate
    guessed = mimetypes.guess_extension((media.mime or "").split(";", 1)[0].strip().lower()) or ""
    guessed = guessed.lstrip(".")
    return guessed if _EXTENSION.match(guessed) else _FALLBACK_EXTENSION


def media_request(phone: str, media: OutgoingMedia) -> tuple[str, dict[str, Any]]:
    """(operation, body) for POST /instances/{id}/token/{token}/{operation}.

    send-audio has no caption field: a caption on an audio is not sent (the caller logs
    it), the voice itself still goes.
    """
    caption = clean(media.caption)
    body: dict[str, Any] = {"phone": phone}
    if media.kind == "image":
        op = "send-image"
        body["image"] = data_uri(media)
    elif media.kind == "video":
        op = "send-video"
        body["video"] = data_uri(media)
    elif media.kind == "audio":
        return "send-audio", body | {"audio": data_uri(media)}
    else:
        op = f"send-document/{document_extension(media)}"
        body["document"] = data_uri(media)
        if clean(media.file_name):
            body["fileName"] = clean(media.file_name)
    if caption:
        body["caption"] = caption
    return op, body

"""The WAHA request that carries one file to the lead (static/swagger/openapi.json:
MessageImageRequest, MessageFileRequest, MessageVideoRequest, MessageVoiceRequest).

The bytes were fetched already (channels/base.py OutgoingMedia), so every file goes as
the spec's BinaryFile `{mimetype, filename, data}` with base64 data: WAHA never fetches a
URL of ours, and a Chatwoot link that needs auth or has expired cannot break the send.
"""

from __future__ import annotations

import base64
from typing import Any

from channels.base import OutgoingMedia
from channels.webhook_helpers import clean

# docs/how-to/send-messages: WhatsApp plays only OPUS in OGG as a voice note and only
# mp4 (libx264) as a video; anything else is converted by WAHA (`convert: true`).
_VOICE_NATIVE = "opus"
_VIDEO_NATIVE = "video/mp4"


def _file(media: OutgoingMedia) -> dict[str, Any]:
    file: dict[str, Any] = {
        "mimetype": media.mime or "application/octet-stream",
        "data": base64.b64encode(media.data).decode("ascii"),
    }
    if clean(media.file_name):
        file["filename"] = clean(media.file_name)
    return file


def media_request(chat_id: str, session: str, media: OutgoingMedia) -> tuple[str, dict[str, Any]]:
    """(operation, body) for POST /api/{operation}.

    sendVoice has no caption field: a caption on an audio is not sent (the caller logs
    it), the voice itself still goes.
    """
    mime = (media.mime or "").lower()
    body: dict[str, Any] = {"chatId": chat_id, "session": session, "file": _file(media)}
    if media.kind == "audio":
        return "sendVoice", body | {"convert": _VOICE_NATIVE not in mime}
    if media.kind == "image":
        op = "sendImage"
    elif media.kind == "video":
        op = "sendVideo"
        body |= {"convert": not mime.startswith(_VIDEO_NATIVE), "asNote": False}
    else:
        op = "sendFile"
    caption = clean(media.caption)
    if caption:
        body["caption"] = caption
    return op, body

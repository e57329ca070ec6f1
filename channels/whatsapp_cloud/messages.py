"""The bodies the Cloud API's POST /{phone-number-id}/messages and /media take, built
from what the runtime hands a channel, and refused here when Meta would refuse them.

Shapes are those of Meta's business-messaging OpenAPI (facebook/openapi,
business-messaging-api_v23.0.yaml): `TemplateObject` / `BodyComponent` / `TextParameter`
for templates, `MediaObject_1` (`id`, `caption` <= 1024) and the "Send Document Message by
ID" example (`filename`) for media, and the /media upload's multipart form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from channels.base import OutgoingMedia
from channels.errors import ChannelRejected, MediaTooLarge

# MediaObject_1.caption: maxLength 1024. A longer caption follows the file as a text.
CAPTION_MAX_CHARS = 1024
# What each kind may weigh on upload (Meta's "Supported media types" table: audio and
# video 16 MB, images 5 MB, documents 100 MB); Meta refuses more after the whole upload.
UPLOAD_MAX_BYTES = {
    "audio": 16 * 1024 * 1024,
    "document": 100 * 1024 * 1024,
    "image": 5 * 1024 * 1024,
    "video": 16 * 1024 * 1024,
}


def template_components(parameters: Sequence[str]) -> list[dict[str, Any]]:
    """The body's {{1}}, {{2}}... in order, as text parameters; none without parameters.

    Meta refuses a text parameter that is empty or carries new lines, tabs or more than
    four spaces in a row ("Param text cannot have new-line/tab characters or more than 4
    consecutive spaces", netflie/whatsapp-cloud-api#201), so whitespace is folded to single
    spaces: a lead's name or a product never needs a line break to read right.
    """
    if isinstance(parameters, str):  # one value, not one parameter per character
        parameters = (parameters,)
    values: list[dict[str, Any]] = []
    for position, value in enumerate(parameters, start=1):
        text = " ".join(str(value).split())
        if not text:
            raise ChannelRejected(f"whatsapp_cloud send_template: parameter {{{{{position}}}}} is empty")
        values.append({"type": "text", "text": text})
    return [{"type": "body", "parameters": values}] if values else []


def check_media(media: OutgoingMedia) -> None:
    """Refuse, before uploading anything, what Meta would refuse after the upload."""
    limit = UPLOAD_MAX_BYTES.get(media.kind)
    if limit is None:
        raise ChannelRejected(f"whatsapp_cloud send_media: unsupported media kind {media.kind!r}")
    if not media.data:
        raise ChannelRejected("whatsapp_cloud send_media: the file is empty")
    if not (media.mime or "").strip():
        raise ChannelRejected("whatsapp_cloud send_media: the file has no MIME type")
    if len(media.data) > limit:
        raise MediaTooLarge(
            f"whatsapp_cloud send_media: a {media.kind} of {len(media.data)} bytes is over "
            f"WhatsApp's {limit} bytes limit"
        )


def upload_form(media: OutgoingMedia) -> aiohttp.FormData:
    """POST /{phone-number-id}/media: `messaging_product`, `type` (the MIME type), `file`."""
    mime = media.mime.strip()
    form = aiohttp.FormData()
    form.add_field("messaging_product", "whatsapp")
    form.add_field("type", mime)
    form.add_field("file", media.data, filename=media.file_name or "file", content_type=mime)
    return form


def media_object(media: OutgoingMedia, media_id: str) -> tuple[dict[str, Any], str | None]:
    """The message's `image`/`document`/`video`/`audio` object, and the caption that has
    to follow it as a text message instead (audio takes none; longer ones do not fit)."""
    obj: dict[str, Any] = {"id": media_id}
    if media.kind == "document" and (media.file_name or "").strip():
        # The name the lead sees on the document (and saves it under).
        obj["filename"] = media.file_name.strip()
    caption = (media.caption or "").strip() or None
    if caption is None:
        return obj, None
    if media.kind == "audio" or len(caption) > CAPTION_MAX_CHARS:
        return obj, caption
    obj["caption"] = caption
    return obj, None

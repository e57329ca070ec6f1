"""A seller's file as an Instagram Send API attachment: a type and a URL Meta fetches.

Instagram's Send API takes an attachment as `message.attachment = {type: image | video |
audio | file, payload: {url}}` (Meta, Instagram Messaging "Send a Message" and "Upload
Media for Instagram Messaging": image, video, audio, file), never as bytes. So the file
goes as the URL it came from, and a URL Meta's servers cannot reach is refused here, with
the reason, instead of after a round trip to Meta.
"""

from __future__ import annotations

from channels.base import OutgoingMedia
from channels.errors import ChannelRejected, MediaRefused, MediaTooLarge
from channels.media_fetch import blocked_address, literal_address, parse_media_url

# Our media kinds to Instagram's attachment types (a document is a `file`).
ATTACHMENT_TYPES = {"image": "image", "video": "video", "audio": "audio", "document": "file"}
# The pages' "Supported Size Maximum": images 8 MB, audio, video and files 25 MB. Meta
# would fetch the file and then refuse it; the bytes we already hold say so now.
MAX_BYTES = {"image": 8 * 1024 * 1024, "video": 25 * 1024 * 1024, "audio": 25 * 1024 * 1024,
             "file": 25 * 1024 * 1024}  # fmt: skip


def attachment_type(media: OutgoingMedia) -> str:
    """Instagram's type for the file, once it is known to be one Instagram takes."""
    kind = ATTACHMENT_TYPES.get(media.kind)
    if kind is None:
        raise ChannelRejected(f"instagram send_media: unsupported media kind {media.kind!r}")
    if len(media.data) > MAX_BYTES[kind]:
        raise MediaTooLarge(
            f"instagram send_media: a {media.kind} of {len(media.data)} bytes is over "
            f"Instagram's {MAX_BYTES[kind]} bytes limit"
        )
    return kind


def attachment_url(media: OutgoingMedia) -> str:
    """`media.url`, if Meta could fetch it: absolute http(s) on a public host."""
    link = (media.url or "").strip()
    if not link:
        raise ChannelRejected(
            "instagram send_media: the file has no URL, and Instagram only takes attachments "
            "by URL (payload.url), never as an upload"
        )
    try:
        parsed = parse_media_url(link, error=ValueError)
    except ValueError as exc:
        raise MediaRefused(f"instagram send_media: the file's URL cannot be sent to Meta: {exc}") from None
    host = (parsed.raw_host or "").rstrip(".").lower()
    literal = literal_address(host)
    internal = "." not in host or host == "localhost" or host.endswith(".localhost")
    if (literal is not None and blocked_address(literal)) or (literal is None and internal):
        # Chatwoot reached by an internal name (http://chatwoot:3000): Meta fetches the
        # URL from the internet, so it would fail there; say where to fix it.
        raise MediaRefused(
            f"instagram send_media: the file's URL is on a host Meta cannot reach ({host}); "
            "Chatwoot must serve attachments on its public address (FRONTEND_URL)"
        )
    return str(parsed)

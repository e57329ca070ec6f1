"""Where the Cloud API's media lives, and the one place our bearer token may follow it.

An inbound file is a media id in the webhook (carried as `whatsapp-media:<id>`); GET
/{media-id} answers a short-lived `url` (5 minutes) that must be downloaded with the same
token (facebook/openapi business-messaging-api_v23.0.yaml, "Retrieve Media URL" and
"Download Media"). Meta serves those files from its lookaside CDN
(https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=...), so the token goes
there, or to the Graph origin we were configured with (a proxy or a local stand-in), and
nowhere else: a lookup answer that named any other host would otherwise be handed our
token.
"""

from __future__ import annotations

from typing import Any

from yarl import URL

from channels.errors import ChannelRejected, MediaRefused
from channels.media_fetch import Origin, parse_media_url
from channels.whatsapp_cloud.parse import MEDIA_ID, MEDIA_SCHEME

# Meta's CDN domain for business-messaging files (lookaside.fbsbx.com).
META_MEDIA_DOMAIN = "fbsbx.com"


def media_id_of(url: object) -> str:
    """The media id inside one of our own `whatsapp-media:<id>` pseudo-URLs, and nothing
    else: an address taken from a webhook never gets the token."""
    if not isinstance(url, str) or not url.startswith(MEDIA_SCHEME):
        raise ChannelRejected(f"whatsapp_cloud media url must be {MEDIA_SCHEME}<id>")
    media_id = url[len(MEDIA_SCHEME) :]
    if not MEDIA_ID.fullmatch(media_id):
        raise ChannelRejected("whatsapp_cloud media url carries an invalid media id")
    return media_id


def download_url(info: dict[str, Any], media_id: str, *, graph_url: str) -> URL:
    """The `url` of a Retrieve Media URL answer, if it is somewhere our token may go."""
    raw = info.get("url")
    if not isinstance(raw, str) or not raw.strip():
        raise ChannelRejected(f"whatsapp_cloud media {media_id}: Meta returned no download url")
    try:
        parsed = parse_media_url(raw.strip(), error=ValueError)
    except ValueError:
        raise ChannelRejected(f"whatsapp_cloud media {media_id}: download url must be http(s)") from None
    host = (parsed.raw_host or "").rstrip(".").lower()
    on_meta_cdn = parsed.scheme.lower() == "https" and (
        host == META_MEDIA_DOMAIN or host.endswith("." + META_MEDIA_DOMAIN)
    )
    if not on_meta_cdn and not _same_origin(parsed, graph_url):
        raise MediaRefused(
            f"whatsapp_cloud media {media_id}: download url on {host} is not Meta's media CDN "
            f"({META_MEDIA_DOMAIN}); the access token is not sent there"
        )
    return parsed


def _same_origin(url: URL, base: str) -> bool:
    try:
        return Origin.of(url) == Origin.of(parse_media_url(base, error=ValueError))
    except ValueError:
        return False

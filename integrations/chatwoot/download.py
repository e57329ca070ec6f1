"""Downloading a file a seller attached in Chatwoot, from Chatwoot and nowhere else.

An attachment's `data_url` (Attachment#push_event_data, app/models/attachment.rb) is an
Active Storage URL on Chatwoot's own host: `/rails/active_storage/blobs/redirect/...`
answers with a redirect to the stored file (the same host for disk storage, a signed
S3/GCS URL otherwise). The URL arrives in a webhook, so it is fetched only when it is on
the origin (scheme, host, port) of CHATWOOT_API_URL; a redirect is followed hop by hop,
and the API token goes only to Chatwoot's origin, never to the storage host.

One attempt: a refusal, a missing blob or a file over the size limit is permanent
(`ChatwootRejected`); a timeout, a broken connection, 429, 5xx, or a 404 behind the
redirect (the file not uploaded yet) is `ChatwootUnavailable`.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from yarl import URL

from integrations.chatwoot.errors import (
    ChatwootError,
    ChatwootRejected,
    ChatwootUnavailable,
    chatwoot_error_for_status,
)

MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_FILENAME_STAR = re.compile(r"filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)")
_FILENAME = re.compile(r'filename\s*=\s*"([^"]+)"|filename\s*=\s*([^;\s]+)')
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Downloaded:
    data: bytes
    mime: str
    file_name: str


def origin_of(url: URL) -> tuple[str, str, int]:
    scheme = url.scheme.lower()
    return scheme, (url.raw_host or "").lower().rstrip("."), url.port or _DEFAULT_PORTS.get(scheme, 0)


def parse_url(text: str) -> URL:
    try:
        url = URL(text)
    except (TypeError, ValueError):
        raise ChatwootRejected("chatwoot attachment url is not a valid URL") from None
    if url.scheme.lower() not in ("http", "https") or not url.raw_host:
        raise ChatwootRejected("chatwoot attachment url must be an absolute http(s) URL")
    if url.raw_user is not None or url.raw_password is not None:
        raise ChatwootRejected("chatwoot attachment url must not carry credentials")
    return url


async def download(
    session: aiohttp.ClientSession,
    url: str,
    *,
    chatwoot_url: str,
    headers: Mapping[str, str],
    max_bytes: int,
    timeout_s: float,
) -> Downloaded:
    """The file at `url`, which must be on `chatwoot_url`'s origin; `headers` (the API
    token) go to that origin only."""
    home = origin_of(parse_url(chatwoot_url))
    target = parse_url(url)
    if origin_of(target) != home:
        raise ChatwootRejected("chatwoot attachment url is not on the Chatwoot origin")
    # No total: a large file on a slow link is fine while bytes keep coming.
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
    for _hop in range(MAX_REDIRECTS + 1):
        send = dict(headers) if origin_of(target) == home else {}
        try:
            async with session.get(target, headers=send, timeout=timeout, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS:
                    target = _next_hop(target, resp.headers.get("Location"))
                    continue
                if not 200 <= resp.status < 300:
                    raise _http_error(resp.status, redirected=_hop > 0)
                data = await _read(resp, max_bytes)
                mime = (resp.content_type or "").strip().lower() or "application/octet-stream"
                disposition = resp.headers.get("Content-Disposition", "")
        except TimeoutError:
            raise ChatwootUnavailable("chatwoot attachment download timed out") from None
        except aiohttp.ClientError as exc:
            # Its text can carry the URL: only the class is kept.
            raise ChatwootUnavailable(
                f"chatwoot attachment download transport error: {type(exc).__name__}"
            ) from None
        # Active Storage's URLs end with the uploaded name; a storage host's seldom do.
        name = file_name_from(disposition) or file_name_from("", parse_url(url)) or file_name_from("", target)
        return Downloaded(data, mime, name or _fallback_name(mime))
    raise ChatwootRejected(f"chatwoot attachment redirected more than {MAX_REDIRECTS} times")


def _http_error(status: int, *, redirected: bool) -> ChatwootError:
    message = f"chatwoot attachment download failed: HTTP {status}"
    if status == 404 and redirected:
        # The blob exists (Chatwoot redirected to it) but its file is not stored yet:
        # Chatwoot uploads after the commit that fires the webhook, and waits 2 s itself
        # before sending a message with attachments (Message#send_reply). Later, then.
        return ChatwootUnavailable(f"{message} (file not stored yet)", status=status)
    return chatwoot_error_for_status(status, message)


def _next_hop(current: URL, location: str | None) -> URL:
    if not location:
        raise ChatwootRejected("chatwoot attachment redirect without a Location")
    try:
        nxt = current.join(URL(location))
    except (TypeError, ValueError):
        raise ChatwootRejected("chatwoot attachment redirect to an invalid URL") from None
    return parse_url(str(nxt))


async def _read(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise ChatwootRejected(f"chatwoot attachment is {declared} bytes, limit is {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ChatwootRejected(f"chatwoot attachment exceeds the {max_bytes} bytes limit")
        chunks.append(chunk)
    return b"".join(chunks)


def file_name_from(disposition: str, url: URL | None = None) -> str | None:
    """Content-Disposition's file name (Active Storage sends one), else the URL's last
    path segment; only the base name, never a path."""
    raw: str | None = None
    star = _FILENAME_STAR.search(disposition or "")
    if star:
        raw = unquote(star.group(1).strip())
    else:
        plain = _FILENAME.search(disposition or "")
        if plain:
            raw = plain.group(1) or plain.group(2)
    if not raw and url is not None:
        raw = url.name  # yarl decodes it
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip().strip(".")
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:200] or None


def _fallback_name(mime: str) -> str:
    return "anexo" + (mimetypes.guess_extension(mime) or "")


__all__ = ["MAX_REDIRECTS", "Downloaded", "download", "file_name_from", "origin_of", "parse_url"]

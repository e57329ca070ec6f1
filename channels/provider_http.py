"""What every provider client needs over HTTP, kept in one place so the channels agree.

The outbox decides retries from `SendError.retryable`, so every provider must read HTTP
statuses, error bodies and oversized media the same way; a fix made in one copy and
missed in another would make one channel retry what the others give up on.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import aiohttp
from yarl import URL

from channels.base import SendError

MEDIA_CHUNK = 64 * 1024


class MediaTooLarge(SendError):
    """The media is bigger than we are willing to hold in memory; retrying cannot help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def scrub(text: str, secrets: list[str]) -> str:
    """Providers echo our request (URL, token) in their errors; logs must not carry it.

    Longest first, so a secret that contains another is not left half-redacted."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


def is_retryable_status(status: int) -> bool:
    """Timeouts, throttling and server trouble may pass; any other 4xx will not."""
    return status in (408, 425, 429) or status >= 500


def _dig(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def error_detail(raw: str, paths: Sequence[Sequence[str]], *, join_lists: bool = False) -> str:
    """The human part of an error body, else the body itself.

    Each provider nests its message differently, so the caller names where to look, in
    order of preference; `join_lists` accepts the `["a", "b"]` messages of validation
    errors (NestJS) instead of passing over them.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for path in paths:
            value = _dig(data, path)
            if join_lists and isinstance(value, list):
                value = "; ".join(v for v in value if isinstance(v, str))
            if isinstance(value, str) and value.strip():
                return value.strip()
    return raw.strip()


def media_url(url: str) -> URL:
    """A media URL comes from a webhook: refuse anything we should not fetch."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        raise SendError("media url is not a valid URL", retryable=False) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SendError("media url must be http(s)", retryable=False)
    return parsed


async def download_limited(
    session: aiohttp.ClientSession,
    url: str | URL,
    *,
    max_bytes: int,
    timeout: aiohttp.ClientTimeout,
    headers: Mapping[str, str] | None = None,
    label: str | None = None,
    prefix: str = "",
    auth_statuses: Collection[int] = (),
    http_error: Callable[[aiohttp.ClientResponse], Awaitable[SendError]] | None = None,
) -> bytes:
    """Download at most `max_bytes` without trusting the declared size.

    Content-Length may be missing or lie, so the body is also counted while it streams
    and abandoned as soon as it passes the limit, before it can fill memory.

    `label` names the media in size refusals (default "media from <host>"), `prefix`
    names the provider in transport failures, `auth_statuses` are the statuses that mean
    our credentials were refused, and `http_error` replaces the default SendError for a
    non-2xx answer when the provider's error body says more than its status.
    """
    host = (url if isinstance(url, URL) else URL(url)).host
    what = label if label is not None else f"media from {host}"
    kwargs: dict[str, Any] = {"timeout": timeout}
    if headers is not None:
        kwargs["headers"] = headers
    try:
        async with session.get(url, **kwargs) as resp:
            if not 200 <= resp.status < 300:
                if http_error is not None:
                    raise await http_error(resp)
                raise SendError(
                    f"{prefix}media download from {host} failed: HTTP {resp.status}",
                    status=resp.status,
                    retryable=is_retryable_status(resp.status),
                    auth_failed=resp.status in auth_statuses,
                )
            declared = resp.content_length
            if declared is not None and declared > max_bytes:
                raise MediaTooLarge(f"{what} is {declared} bytes, limit is {max_bytes}")
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(MEDIA_CHUNK):
                buf += chunk
                if len(buf) > max_bytes:
                    raise MediaTooLarge(f"{what} exceeds the {max_bytes} bytes limit")
            return bytes(buf)
    except TimeoutError:
        raise SendError(f"{prefix}media download from {host} timed out", retryable=True) from None
    except aiohttp.ClientError as exc:
        raise SendError(
            f"{prefix}media download from {host} failed: {type(exc).__name__}", retryable=True
        ) from None


__all__ = [
    "MEDIA_CHUNK",
    "MediaTooLarge",
    "download_limited",
    "error_detail",
    "is_retryable_status",
    "media_url",
    "scrub",
]

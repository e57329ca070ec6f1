"""What every provider client needs over HTTP, kept in one place so the channels agree.

The outbox decides retries from the error's type (channels/errors.py), so every provider
must read HTTP statuses and error bodies the same way; a fix made in one copy and missed
in another would make one channel retry what the others give up on. Media downloads live
in channels/media_fetch.py, where the address policy is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from channels.errors import MediaTooLarge


def scrub(text: str, secrets: list[str]) -> str:
    """Providers echo our request (URL, token) in their errors; logs must not carry it.

    Longest first, so a secret that contains another is not left half-redacted."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


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


async def lookup(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    failed: Callable[[int | None, str], None],
    params: Mapping[str, str] | None = None,
) -> object | None:
    """A read-only question to the provider whose answer is only a nicety (is this number
    on WhatsApp?): the JSON body of a 2xx, else None after `failed(status, what)`. Never
    raises; the exception's text is not reported, since it can carry the URL's token."""
    try:
        async with session.get(url, params=params, headers=headers, timeout=timeout) as resp:
            status = resp.status
            raw = await resp.text(errors="replace")
    except TimeoutError:
        failed(None, "timeout")
        return None
    except Exception as exc:  # noqa: BLE001 - a lookup that fails must never stop the caller
        failed(None, type(exc).__name__)
        return None
    if not 200 <= status < 300:
        failed(status, "auth_failed" if status in (401, 403) else "refused")
        return None
    try:
        data: object = json.loads(raw)
    except ValueError:
        failed(status, "unexpected_body")
        return None
    return data


__all__ = [
    "MediaTooLarge",
    "lookup",
    "error_detail",
    "scrub",
]

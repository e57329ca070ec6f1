"""Constant-time comparison of a secret with what a caller sent.

One place for it because the caller's side is hostile input: a header or query value can
hold any character (aiohttp hands undecodable header bytes over as surrogates), and
`hmac.compare_digest` raises on non-ASCII text or unencodable strings. Both sides are
compared as bytes, with what the caller sent turned back into its original bytes.
"""

from __future__ import annotations

import hmac


def _bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogateescape")


def secrets_match(given: str | bytes | None, expected: str | bytes) -> bool:
    """True when `given` equals `expected`, in time that does not depend on where they differ."""
    if given is None:
        given = b""
    try:
        given_bytes = _bytes(given)
    except UnicodeEncodeError:  # a lone surrogate that was never a byte: not our secret
        given_bytes = b"\x00"
    return hmac.compare_digest(given_bytes, _bytes(expected))

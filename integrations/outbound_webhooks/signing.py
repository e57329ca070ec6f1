"""The exact bytes a receiver gets and how it checks them.

Shaped after ../shared/reference/custom-webhooks.md: POST of `{event, timestamp, data}`
as JSON, `X-Webhook-Signature` = HMAC-SHA256 of the body with the endpoint's secret as
lowercase hex (no prefix: the doc's receiver compares the bare hex digest). The body is
compact UTF-8 JSON (no spaces, accents as they are), which is what
`JSON.stringify(JSON.parse(body))` gives back, so even a receiver that signs the
re-serialised JSON, as the doc's example does, verifies it. Receivers should still sign
the raw body; tests/fixtures/outbound_webhooks/receiver.{py,js} are the snippets for
the README.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import SecretStr

from core.secret_compare import secrets_match

# Fixed namespace: the same parts give the same delivery id in every process, forever.
_DELIVERY_NS = uuid.UUID("6f1c7c1e-3f57-4d0c-9a55-1f0f5b0f8e21")


def _secret_bytes(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret if isinstance(secret, bytes) else secret.encode("utf-8")


def sign(body: bytes, secret: str | bytes | SecretStr) -> str:
    """The `X-Webhook-Signature` value: HMAC-SHA256 of the exact body, lowercase hex."""
    return hmac.new(_secret_bytes(secret), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, secret: str | bytes | SecretStr) -> bool:
    """Constant-time check; accepts the bare hex and the common `sha256=<hex>` form."""
    if not signature:
        return False
    given = signature.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:]
    return secrets_match(given.lower(), sign(body, secret))


def format_timestamp(at: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as JavaScript's Date.toISOString() writes it
    (naive datetimes are taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_body(event: str, timestamp: datetime, data: Mapping[str, Any]) -> bytes:
    """The exact bytes posted and signed; the same inputs always give the same bytes, so
    a retry carries the same signature."""
    envelope = {"event": event, "timestamp": format_timestamp(timestamp), "data": dict(data)}
    return json.dumps(
        envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    ).encode("utf-8")


def stable_delivery_id(*parts: str) -> str:
    """A delivery id (X-Webhook-Id) derived from what identifies the delivery, e.g. the
    endpoint id and the outbox idempotency key: retries and replays send the same one."""
    return str(uuid.uuid5(_DELIVERY_NS, "\x1f".join(parts)))


__all__ = ["encode_body", "format_timestamp", "sign", "stable_delivery_id", "verify"]

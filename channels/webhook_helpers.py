"""What every provider's webhook parser needs, written once so the channels agree.

Webhook bodies are untrusted input: every field may be missing, null or of the wrong
type. Each provider validates with frozen pydantic models that ignore unknown keys (a
field the provider adds tomorrow must not break us) and turns anything unusable into a
4xx `WebhookRejected`, never a 500 that would make the provider redeliver the same
poison. The rules for blank strings, validation messages, clock values and shared
secrets live here so a fix reaches every channel at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import WebhookRejected
from core.secret_compare import secrets_match


class ProviderModel(BaseModel):
    """Base of every provider payload model: read-only once parsed, unknown keys ignored,
    aliased fields (`from`, `_data`) accepted under their Python names too."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


M = TypeVar("M", bound=BaseModel)


def clean(value: object) -> str | None:
    """A stripped string, or None for blanks and anything that is not a string."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def describe_validation_error(label: str, exc: ValidationError, *, where: str | None = None) -> str:
    """The first three problems, located, for the 422 the provider (and our log) reads."""
    prefix = f"{where}." if where else ""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{prefix}{loc}: {err.get('msg', 'invalid')}")
    return f"invalid {label} payload: " + "; ".join(parts)


def validate(model: type[M], data: Any, label: str, *, where: str | None = None) -> M:
    """`model` from `data`, or the provider's 422."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise WebhookRejected(422, describe_validation_error(label, exc, where=where)) from None


def epoch_to_datetime(value: float | None) -> datetime | None:
    """Providers send epochs in seconds or milliseconds; tell them apart by size.

    An unusable number yields None (the message's "now"): losing a lead's message over a
    bad clock value would be worse than a slightly wrong timestamp.
    """
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    seconds = value / 1000 if value > 1e11 else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def format_coord(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def token_matches(candidates: Iterable[str], expected: str | bytes) -> bool:
    """Whether any candidate is the shared secret.

    Every candidate is compared, so timing does not reveal which one was tried."""
    matched = False
    for candidate in candidates:
        if secrets_match(candidate, expected):
            matched = True
    return matched


def json_or_none(raw: str) -> Any:
    """The JSON of a provider's answer, or None when it is empty or not JSON."""
    try:
        return json.loads(raw) if raw.strip() else None
    except (ValueError, RecursionError):
        return None


def json_object(raw: str) -> dict[str, Any]:
    """The JSON object of a provider's answer, or {} for anything else."""
    data = json_or_none(raw)
    return data if isinstance(data, dict) else {}


__all__ = [
    "ProviderModel",
    "clean",
    "describe_validation_error",
    "epoch_to_datetime",
    "format_coord",
    "json_object",
    "json_or_none",
    "token_matches",
    "validate",
]

"""Which receivers get which events: OUTBOUND_WEBHOOKS / OUTBOUND_WEBHOOKS_FILE.

Neither the secret nor the URL (its query may carry a token) is ever printed: an
endpoint shows its host, and configuration errors name the field, never the value.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, model_validator

WebhookEvent = Literal[
    "lead.created",
    "lead.updated",
    "lead.qualified",
    "lead.hot",
    "conversation.handoff",
    "message.received",
    "message.sent",
    # A quote request or a technical question the bot registered, for the people who answer them.
    "quote.requested",
    "technical_question.created",
    # A meeting the bot booked (or moved) on a seller's calendar, or cancelled.
    "meeting.scheduled",
    "meeting.cancelled",
    # An LGPD erasure: sent to every enabled endpoint, whatever it subscribed to (each may
    # hold the lead's data), carrying no personal data (runtime/lifecycle.py).
    "lead.erased",
]
EVENTS: tuple[str, ...] = get_args(WebhookEvent)
WILDCARD = "*"
MIN_SECRET_CHARS = 16
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class OutboundWebhookConfigError(ValueError):
    """OUTBOUND_WEBHOOKS / OUTBOUND_WEBHOOKS_FILE cannot be used; the message says where
    and what, never the secret."""


class Endpoint(BaseModel):
    """One receiver. `id` names it in logs, breakers and idempotency keys: set it to
    keep those stable when the URL changes; by default it is derived from the URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    url: str
    secret: SecretStr
    events: tuple[str, ...]
    enabled: bool = True
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_id(cls, values: Any) -> Any:
        if isinstance(values, Mapping) and not values.get("id") and isinstance(values.get("url"), str):
            url = values["url"].strip()
            host = (urlsplit(url).hostname or "endpoint").replace(":", "-")[:40]
            digest = hashlib.sha256(url.encode()).hexdigest()[:8]
            values = {**values, "id": f"{host}-{digest}"}
        return values

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID_RE.match(value):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL, e.g. https://crm.example.com/hooks/sdr")
        if parts.fragment:
            raise ValueError("must not have a #fragment")
        return value

    @field_validator("secret")
    @classmethod
    def _valid_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().strip()) < MIN_SECRET_CHARS:
            raise ValueError(
                f"must be at least {MIN_SECRET_CHARS} characters (receivers verify every delivery with it)"
            )
        return value

    @field_validator("events", mode="before")
    @classmethod
    def _valid_events(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"must be a non-empty list of events: {', '.join(EVENTS)}, or '*' for all")
        unknown = [e for e in value if e != WILDCARD and e not in EVENTS]
        if unknown:
            raise ValueError(
                f"unknown event(s) {', '.join(map(repr, unknown))}; known: {', '.join(EVENTS)}, or '*' for all"
            )
        return tuple(dict.fromkeys(value))  # duplicates dropped, order kept

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def __repr_args__(self) -> Any:
        # Printed or logged by mistake, an endpoint shows its host: the URL's query may
        # carry the receiver's token (the secret is a SecretStr anyway).
        yield "id", self.id
        yield "host", self.host
        yield "events", self.events
        yield "enabled", self.enabled

    def wants(self, event: str) -> bool:
        if event not in EVENTS:
            raise ValueError(f"unknown outbound webhook event {event!r}")
        return self.enabled and (WILDCARD in self.events or event in self.events)


def subscribers(endpoints: list[Endpoint], event: str) -> list[Endpoint]:
    """The endpoints one event fans out to (enabled and subscribed)."""
    return [e for e in endpoints if e.wants(event)]


def load_endpoints(json_text: str | None = None, file: Path | str | None = None) -> list[Endpoint]:
    """Endpoints from OUTBOUND_WEBHOOKS (a JSON list) or OUTBOUND_WEBHOOKS_FILE (TOML with
    `[[endpoints]]` tables, or JSON: a list or `{"endpoints": [...]}`); none when
    neither is set. Refuses both at once: two sources would make it unclear which one
    an operator must edit."""
    if json_text is not None and not json_text.strip():
        json_text = None
    if json_text is not None and file is not None:
        raise OutboundWebhookConfigError("set OUTBOUND_WEBHOOKS or OUTBOUND_WEBHOOKS_FILE, not both")
    if json_text is not None:
        source = "OUTBOUND_WEBHOOKS"
        raw = _parse_json(json_text, source)
    elif file is not None:
        source, raw = _read_file(Path(file))
    else:
        return []
    endpoints = [_endpoint(entry, n, source) for n, entry in enumerate(_entries(raw, source), start=1)]
    seen: set[str] = set()
    for endpoint in endpoints:
        if endpoint.id in seen:
            raise OutboundWebhookConfigError(
                f'{source}: two endpoints have the id {endpoint.id!r}; give each its own "id"'
            )
        seen.add(endpoint.id)
    return endpoints


def _read_file(path: Path) -> tuple[str, Any]:
    """(the source as errors name it, the decoded file)."""
    source = f"OUTBOUND_WEBHOOKS_FILE ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OutboundWebhookConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            return source, tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise OutboundWebhookConfigError(f"{source} is not valid TOML: {exc}") from None
    if suffix == ".json":
        return source, _parse_json(text, source)
    raise OutboundWebhookConfigError(f"{source}: use a .toml or .json file")


def _endpoint(entry: Any, n: int, source: str) -> Endpoint:
    if not isinstance(entry, Mapping):
        raise OutboundWebhookConfigError(
            f"{source}: endpoint {n} must be an object with url, secret and events"
        )
    try:
        return Endpoint.model_validate(dict(entry))
    except ValidationError as exc:
        raise OutboundWebhookConfigError(f"{source}: endpoint {n}{_where(entry)}: {_problems(exc)}") from None


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # its message has a position, never the text
        raise OutboundWebhookConfigError(f"{source} is not valid JSON: {exc}") from None


def _entries(raw: Any, source: str) -> list[Any]:
    if isinstance(raw, Mapping):
        if set(raw) != {"endpoints"}:
            raise OutboundWebhookConfigError(
                f"{source}: expected a list of endpoints (JSON) or [[endpoints]] tables (TOML)"
            )
        raw = raw["endpoints"]
    if not isinstance(raw, list):
        raise OutboundWebhookConfigError(f'{source}: "endpoints" must be a list')
    return raw


def _where(entry: Mapping[str, Any]) -> str:
    label = entry.get("id") or entry.get("name")
    if not label and isinstance(entry.get("url"), str):
        label = urlsplit(entry["url"]).hostname
    return f" ({label})" if isinstance(label, str) and label else ""


def _problems(exc: ValidationError) -> str:
    # include_input=False: the offending value may be the secret.
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "endpoint"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field (known: id, name, url, secret, events, enabled)"
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


__all__ = [
    "EVENTS",
    "MIN_SECRET_CHARS",
    "WILDCARD",
    "Endpoint",
    "OutboundWebhookConfigError",
    "WebhookEvent",
    "load_endpoints",
    "subscribers",
]

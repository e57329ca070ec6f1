"""Outbound webhooks: lead and conversation events pushed to any other CRM or automation.

Shaped after ../shared/reference/custom-webhooks.md: POST of `{event, timestamp, data}`
as JSON, `X-Webhook-Signature` = HMAC-SHA256 of the body with the endpoint's secret as
lowercase hex (no prefix: the doc's receiver compares the bare hex digest),
`X-Webhook-Event`, 30 s timeout, `*` subscribes to everything. We add `X-Webhook-Id`, a
delivery id the caller keeps stable across retries and replays, so a receiver can drop
duplicates: delivery is at least once.

The body is compact UTF-8 JSON (no spaces, accents as they are), which is what
`JSON.stringify(JSON.parse(body))` gives back, so even a receiver that signs the
re-serialised JSON, as the doc's example does, verifies it. Receivers should still sign
the raw body; tests/fixtures/outbound_webhooks/receiver.{py,js} are the snippets for
the README.

One attempt per call, like every integration client: retries, backoff, the breaker and
the dead letters belong to the outbox. Neither the secret, the URL (its query may carry
a token) nor the event's data are ever logged; a `DeliveryResult` is the delivery log
line, small and storable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, model_validator

from core.logging import get_logger
from core.secret_compare import secrets_match
from core.settings import Settings

log = get_logger(__name__)

WebhookEvent = Literal[
    "lead.created",
    "lead.updated",
    "lead.qualified",
    "lead.hot",
    "conversation.handoff",
    "message.received",
    "message.sent",
    # An LGPD erasure: sent to every enabled endpoint, whatever it subscribed to (each may
    # hold the lead's data), carrying no personal data (runtime/lifecycle.py).
    "lead.erased",
]
EVENTS: tuple[str, ...] = get_args(WebhookEvent)
WILDCARD = "*"
DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "SDR-Agent-Webhook/1.0"
MIN_SECRET_CHARS = 16
# Statuses that say "not now" rather than "never": request timeout, too early, rate limit.
_RETRYABLE_4XX = frozenset({408, 425, 429})
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Fixed namespace: the same parts give the same delivery id in every process, forever.
_DELIVERY_NS = uuid.UUID("6f1c7c1e-3f57-4d0c-9a55-1f0f5b0f8e21")


class OutboundWebhookConfigError(ValueError):
    """OUTBOUND_WEBHOOKS / OUTBOUND_WEBHOOKS_FILE cannot be used; the message says where
    and what, never the secret."""


class WebhookDeliveryError(Exception):
    """A delivery failed. `retryable`: timeouts, transport errors, 408/425/429 and 5xx;
    anything else (4xx, a redirect) will fail the same way until someone fixes the
    endpoint. `result` is the delivery log line of the failed attempt."""

    def __init__(self, message: str, *, status: int | None, retryable: bool, result: DeliveryResult) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.result = result


# --- configuration ------------------------------------------------------------------


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
        path = Path(file)
        source = f"OUTBOUND_WEBHOOKS_FILE ({path})"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise OutboundWebhookConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
        suffix = path.suffix.lower()
        if suffix == ".toml":
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise OutboundWebhookConfigError(f"{source} is not valid TOML: {exc}") from None
        elif suffix == ".json":
            raw = _parse_json(text, source)
        else:
            raise OutboundWebhookConfigError(f"{source}: use a .toml or .json file")
    else:
        return []
    entries = _entries(raw, source)
    endpoints: list[Endpoint] = []
    for n, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise OutboundWebhookConfigError(
                f"{source}: endpoint {n} must be an object with url, secret and events"
            )
        try:
            endpoints.append(Endpoint.model_validate(dict(entry)))
        except ValidationError as exc:
            raise OutboundWebhookConfigError(
                f"{source}: endpoint {n}{_where(entry)}: {_problems(exc)}"
            ) from None
    seen: set[str] = set()
    for endpoint in endpoints:
        if endpoint.id in seen:
            raise OutboundWebhookConfigError(
                f'{source}: two endpoints have the id {endpoint.id!r}; give each its own "id"'
            )
        seen.add(endpoint.id)
    return endpoints


def endpoints_from_settings(settings: Settings) -> list[Endpoint]:
    return load_endpoints(settings.outbound_webhooks, settings.outbound_webhooks_file)


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


# --- signing --------------------------------------------------------------------------


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


# --- delivery -------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    """One line of an endpoint's delivery log (no secret, no URL, no event data)."""

    endpoint_id: str
    host: str
    event: str
    delivery_id: str
    attempt: int
    ok: bool
    status: int | None  # HTTP status; None when no response came (timeout, transport)
    duration_ms: int
    error: str | None = None
    retryable: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OutboundWebhookClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock

    async def deliver(
        self,
        endpoint: Endpoint,
        event: str,
        delivery_id: str,
        data: Mapping[str, Any],
        timestamp: datetime,
        *,
        attempt: int = 1,
    ) -> DeliveryResult:
        """POST one event to one endpoint: a DeliveryResult when it answered 2xx,
        WebhookDeliveryError (with `retryable` and the `result`) otherwise.

        Whether the endpoint still wants the event is the caller's call (it may have
        been unsubscribed since the item was queued): this only delivers."""
        if event not in EVENTS:
            raise ValueError(f"unknown outbound webhook event {event!r}")
        body = encode_body(event, timestamp, data)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Webhook-Event": event,
            "X-Webhook-Id": delivery_id,
            "X-Webhook-Signature": sign(body, endpoint.secret),
        }
        started = self._clock()
        status: int | None = None
        try:
            # Redirects are not followed: a POST bounced elsewhere is a config error,
            # and the body would go to a host nobody configured.
            async with self.session.post(
                endpoint.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                reason = resp.reason or ""
                await resp.read()  # drain so the connection can be reused
        except TimeoutError:
            total = self.timeout.total
            error = f"timeout after {total:g}s"
            raise self._failed(endpoint, event, delivery_id, attempt, started, None, error, True) from None
        except aiohttp.ClientError as exc:
            # Never the URL: its query may carry the receiver's token.
            what = f"{type(exc).__name__}: {exc}".replace(endpoint.url, endpoint.host)[:200]
            raise self._failed(endpoint, event, delivery_id, attempt, started, None, what, True) from None
        if 200 <= status < 300:
            result = self._result(endpoint, event, delivery_id, attempt, started, status, ok=True)
            log.info("outbound_webhook_delivered", **_log_fields(result))
            return result
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed, configure the final URL"
            raise self._failed(endpoint, event, delivery_id, attempt, started, status, error, False)
        retryable = status in _RETRYABLE_4XX or status >= 500
        error = f"HTTP {status} {reason}".strip()
        raise self._failed(endpoint, event, delivery_id, attempt, started, status, error, retryable)

    def _result(
        self,
        endpoint: Endpoint,
        event: str,
        delivery_id: str,
        attempt: int,
        started: float,
        status: int | None,
        *,
        ok: bool,
        error: str | None = None,
        retryable: bool | None = None,
    ) -> DeliveryResult:
        return DeliveryResult(
            endpoint_id=endpoint.id,
            host=endpoint.host,
            event=event,
            delivery_id=delivery_id,
            attempt=attempt,
            ok=ok,
            status=status,
            duration_ms=max(0, round((self._clock() - started) * 1000)),
            error=error,
            retryable=retryable,
        )

    def _failed(
        self,
        endpoint: Endpoint,
        event: str,
        delivery_id: str,
        attempt: int,
        started: float,
        status: int | None,
        error: str,
        retryable: bool,
    ) -> WebhookDeliveryError:
        result = self._result(
            endpoint, event, delivery_id, attempt, started, status, ok=False, error=error, retryable=retryable
        )
        (log.warning if retryable else log.error)("outbound_webhook_failed", **_log_fields(result))
        return WebhookDeliveryError(
            f"outbound webhook {endpoint.id} ({event}): {error}",
            status=status,
            retryable=retryable,
            result=result,
        )


def _log_fields(result: DeliveryResult) -> dict[str, Any]:
    fields = result.as_dict()
    fields["endpoint"] = fields.pop("endpoint_id")
    fields["webhook_event"] = fields.pop("event")  # structlog's own "event" is the line's name
    fields.pop("ok")
    return {k: v for k, v in fields.items() if v is not None}

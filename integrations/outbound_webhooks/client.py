"""Delivering one event to one receiver: one attempt per call, like every integration client.

We add `X-Webhook-Id`, a delivery id the caller keeps stable across retries and replays,
so a receiver can drop duplicates: delivery is at least once. Retries, backoff, the
breaker and the dead letters belong to the outbox. Neither the secret, the URL (its query
may carry a token) nor the event's data are ever logged; a `DeliveryResult` is the
delivery log line, small and storable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import aiohttp

from core.errors import ProviderRejected, ProviderUnavailable, is_retryable_status
from core.logging import get_logger
from integrations.errors import IntegrationError
from integrations.outbound_webhooks.config import EVENTS, Endpoint
from integrations.outbound_webhooks.signing import encode_body, sign

log = get_logger(__name__)

DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "SDR-Agent-Webhook/1.0"


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


class WebhookDeliveryError(IntegrationError):
    """A delivery failed; catch this for "any delivery", raise a leaf. `retryable`
    (timeouts, transport errors, 408/425/429 and 5xx) is read from the type; anything
    else (4xx, a redirect) will fail the same way until someone fixes the endpoint.
    `result` is the delivery log line of the failed attempt."""

    def __init__(self, message: str, *, status: int | None, result: DeliveryResult) -> None:
        super().__init__(message, status=status)
        self.result = result


class WebhookDeliveryUnavailable(WebhookDeliveryError, ProviderUnavailable):
    """The receiver did not take it now: a timeout, a broken connection, 408/425/429, 5xx."""


class WebhookDeliveryRejected(WebhookDeliveryError, ProviderRejected):
    """The receiver refused (4xx) or redirected: resending will not help."""


@dataclass(frozen=True)
class _Attempt:
    """One delivery attempt, for its log line."""

    endpoint: Endpoint
    event: str
    delivery_id: str
    attempt: int
    started: float


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
        a WebhookDeliveryError leaf (with the `result`) otherwise.

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
        at = _Attempt(endpoint, event, delivery_id, attempt, self._clock())
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
            raise self._failed(at, None, f"timeout after {total:g}s", retryable=True) from None
        except aiohttp.ClientError as exc:
            # Never the URL: its query may carry the receiver's token.
            what = f"{type(exc).__name__}: {exc}".replace(endpoint.url, endpoint.host)[:200]
            raise self._failed(at, None, what, retryable=True) from None
        if 200 <= status < 300:
            result = self._result(at, status, ok=True)
            log.info("outbound_webhook_delivered", **_log_fields(result))
            return result
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed, configure the final URL"
            raise self._failed(at, status, error, retryable=False)
        retryable = is_retryable_status(status)
        raise self._failed(at, status, f"HTTP {status} {reason}".strip(), retryable=retryable)

    def _result(
        self,
        at: _Attempt,
        status: int | None,
        *,
        ok: bool,
        error: str | None = None,
        retryable: bool | None = None,
    ) -> DeliveryResult:
        return DeliveryResult(
            endpoint_id=at.endpoint.id,
            host=at.endpoint.host,
            event=at.event,
            delivery_id=at.delivery_id,
            attempt=at.attempt,
            ok=ok,
            status=status,
            duration_ms=max(0, round((self._clock() - at.started) * 1000)),
            error=error,
            retryable=retryable,
        )

    def _failed(
        self, at: _Attempt, status: int | None, error: str, *, retryable: bool
    ) -> WebhookDeliveryError:
        result = self._result(at, status, ok=False, error=error, retryable=retryable)
        (log.warning if retryable else log.error)("outbound_webhook_failed", **_log_fields(result))
        leaf = WebhookDeliveryUnavailable if retryable else WebhookDeliveryRejected
        return leaf(f"outbound webhook {at.endpoint.id} ({at.event}): {error}", status=status, result=result)


def _log_fields(result: DeliveryResult) -> dict[str, Any]:
    fields = result.as_dict()
    fields["endpoint"] = fields.pop("endpoint_id")
    fields["webhook_event"] = fields.pop("event")  # structlog's own "event" is the line's name
    fields.pop("ok")
    return {k: v for k, v in fields.items() if v is not None}


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "USER_AGENT",
    "DeliveryResult",
    "OutboundWebhookClient",
    "WebhookDeliveryError",
    "WebhookDeliveryRejected",
    "WebhookDeliveryUnavailable",
]

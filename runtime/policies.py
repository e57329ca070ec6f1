"""Delivery policies, declared once per integration.

A policy is a tenacity stop/wait/retry triple. The dispatcher applies it to attempts
that are persisted in the outbox (so backoff survives restarts), instead of looping in
memory: tenacity decides, the store remembers.

`INTEGRATIONS` is the one table of resilience knobs: retry budget and backoff for the
outbox, the timeout clients should use, and the circuit breaker's threshold and reset
timeout (`runtime.breaker` reads it). The numbers are the CRM connections spec's
("Retry e Resiliencia" in ../shared/reference/crm-connections-prd.md) where it has them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

import aiohttp
from tenacity import Future, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from core.errors import Permanent, ProviderError, Retryable, is_retryable_status


class PermanentDeliveryError(Permanent):
    """The item can never succeed as it is (bad payload, unknown channel...): a runtime
    concept, so it lives here, on the core tree's Permanent branch."""


class HeldUntil(Exception):  # noqa: N818 - not an error: the item is not due yet
    """The item must not go out before `until` (a stale form's first touch waits for
    business hours): back to pending, due then, the claim not counted as an attempt.

    `until` is read on the clock that decided it (business hours: the app's clock); the
    outbox schedules on the store's clock. The wait between them is what is carried over,
    so the two clocks never have to be the same one (they are in production, not in a
    test that sets the app's clock to a chosen night)."""

    def __init__(self, until: datetime, reason: str, *, now: datetime) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason
        self.wait = max(until - now, timedelta(0))


def is_transient(exc: BaseException) -> bool:
    """Decided by type: the core tree's `Retryable` branch is worth another attempt, its
    `Permanent` branch never is. Errors from outside the tree: 429/5xx, timeouts and
    connection errors are retried, other 4xx are not.
    """
    if isinstance(exc, Permanent):
        return False
    if isinstance(exc, Retryable):
        return True
    if isinstance(exc, ProviderError):  # known only by its HTTP status
        return exc.retryable
    if isinstance(exc, aiohttp.ClientResponseError):
        # raise_for_status(): a ClientError, but a 400 stays a 400 however often it is sent.
        return is_retryable_status(exc.status)
    return isinstance(exc, (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError))


class JitteredBackoff(wait_base):
    """Exponential (or linear) backoff with jitter, capped.

    The spec adds 0-30 % on top of the nominal delay; we take 0-30 % off instead, so the
    cap stays a true ceiling while clients retrying in step still spread out. Unlike
    full jitter (0-100 %), a retry never comes right back within milliseconds of the
    failure: with budgets of 3 attempts, that would burn the whole budget in one blip.
    """

    def __init__(self, base_s: float, max_s: float, *, linear: bool = False, jitter: float = 0.3) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.linear = linear
        self.jitter = jitter

    def nominal(self, attempt: int) -> float:
        n = max(1, attempt)
        growth = float(n) if self.linear else 2.0 ** min(n - 1, 64)
        return min(self.base_s * growth, self.max_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        nominal = self.nominal(retry_state.attempt_number)
        return random.uniform(nominal * (1.0 - self.jitter), nominal)


@dataclass(frozen=True)
class DeliveryPolicy:
    name: str
    stop: stop_base
    wait: wait_base
    retry: retry_base
    # What the integration's client should give one request; None: the client decides.
    # The dispatcher does not cancel handlers itself: a handler may legitimately pause
    # (typing delays), and a send cancelled mid-request is ambiguous anyway.
    timeout_s: float | None = None

    def decide(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds until the next attempt, or None when the item is dead."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        state.outcome = Future.construct(attempt, exc, has_exception=True)
        if not self.retry(state) or self.stop(state):
            return None
        return float(self.wait(state))


@dataclass(frozen=True)
class IntegrationSpec:
    """One row of the table: attempts count the first try (the spec's "Max Retries"
    is a loop bound over attempts, so 3 means three calls in all)."""

    max_attempts: int
    base_delay_s: float
    timeout_s: float
    backoff: Literal["exponential", "linear"] = "exponential"
    # The spec's default ceiling for any single wait.
    max_delay_s: float = 60.0
    failure_threshold: int = 3
    reset_timeout_s: float = 60.0


INTEGRATIONS: Mapping[str, IntegrationSpec] = MappingProxyType(
    {
        # Spec: OAuth token refresh 3 / 1 s / exponential / 10 s.
        "token_refresh": IntegrationSpec(3, 1.0, 10.0, failure_threshold=3, reset_timeout_s=30.0),
        # Spec: Envio CAPI 5 / 2 s / exponential / 30 s; breaker meta_capi 5 / 60 s.
        "meta_capi": IntegrationSpec(5, 2.0, 30.0, failure_threshold=5, reset_timeout_s=60.0),
        # Spec: WhatsApp and Instagram send 3 / 2 s / exponential / 15 s. Breakers: WAHA
        # 3 / 30 s (the spec has nothing for Z-API or the Cloud API: same as WAHA),
        # Instagram 3 / 60 s. Breakers are per channel ("channel_send:<channel>"), so a
        # down Instagram never holds WhatsApp replies.
        "channel_send": IntegrationSpec(3, 2.0, 15.0, failure_threshold=3, reset_timeout_s=30.0),
        "channel_send:instagram": IntegrationSpec(3, 2.0, 15.0, failure_threshold=3, reset_timeout_s=60.0),
        # Spec: Google Calendar create 3 / 1 s / exponential / 10 s; breaker 3 / 60 s.
        "calendar": IntegrationSpec(3, 1.0, 10.0, failure_threshold=3, reset_timeout_s=60.0),
        # Spec: Webhook Saida 5 / 5 s / exponential / 30 s: waits of ~5, 10, 20, 40 s, so
        # dead about 75 s after the first try. custom-webhooks.md (the earlier PrimeZap
        # worker) retries at 1 s, 5 s, 15 s and gives up ~21 s in, shorter than a
        # receiver's ordinary redeploy; the issue names both. The spec's row wins as the
        # table's default: same shape (a few retries within the first minute, then
        # dead and replayable), a little more patient, and the breaker (per endpoint,
        # "outbound_webhook:<endpoint id>") keeps a longer outage from using it up.
        "outbound_webhook": IntegrationSpec(5, 5.0, 30.0, failure_threshold=3, reset_timeout_s=60.0),
        # Not in the spec. Chatwoot keeps what the mirror always had (12 attempts up to
        # 5 min apart: nobody waits on a mirror, so it may as well be patient).
        "chatwoot": IntegrationSpec(
            12, 2.0, 15.0, max_delay_s=300.0, failure_threshold=3, reset_timeout_s=30.0
        ),
        # Not in the spec: reading a Lead Ads lead from the Graph API. Patient like the
        # mirror (Page throttling lasts minutes; a lead must arrive late, never be lost).
        "meta_leads": IntegrationSpec(
            12, 2.0, 15.0, max_delay_s=300.0, failure_threshold=5, reset_timeout_s=60.0
        ),
        # Not in the spec: a CRM like CAPI (nobody waiting, the lead card must land).
        "piperun": IntegrationSpec(5, 2.0, 15.0, failure_threshold=3, reset_timeout_s=60.0),
    }
)


def integration_spec(integration: str) -> IntegrationSpec:
    """The row for an integration; "kind:instance" (a channel, a webhook endpoint) falls
    back to its kind's row unless the instance has one of its own."""
    spec = INTEGRATIONS.get(integration)
    if spec is None:
        spec = INTEGRATIONS.get(integration.split(":", 1)[0])
    if spec is None:
        known = ", ".join(sorted(k for k in INTEGRATIONS if ":" not in k))
        raise KeyError(f"no delivery policy for integration {integration!r} (known: {known})")
    return spec


@dataclass(frozen=True, slots=True)
class OutboxKnobs:
    """The OUTBOX_* knobs an operator set (None: the table's value): one way to make
    everything more patient, and the way tests shrink the clocks."""

    max_attempts: int | None = None
    backoff_base_s: float | None = None
    backoff_max_s: float | None = None


TABLE_AS_IS = OutboxKnobs()


def effective_spec(integration: str, knobs: OutboxKnobs = TABLE_AS_IS) -> IntegrationSpec:
    """The table's row, with any knob the operator set applied."""
    spec = integration_spec(integration)
    overrides: dict[str, Any] = {}
    if knobs.max_attempts is not None:
        overrides["max_attempts"] = knobs.max_attempts
    if knobs.backoff_base_s is not None:
        overrides["base_delay_s"] = knobs.backoff_base_s
    if knobs.backoff_max_s is not None:
        overrides["max_delay_s"] = knobs.backoff_max_s
    return replace(spec, **overrides) if overrides else spec


def policy_for(integration: str, knobs: OutboxKnobs = TABLE_AS_IS) -> DeliveryPolicy:
    spec = effective_spec(integration, knobs)
    return DeliveryPolicy(
        name=integration,
        stop=stop_after_attempt(max(1, spec.max_attempts)),
        wait=JitteredBackoff(spec.base_delay_s, spec.max_delay_s, linear=spec.backoff == "linear"),
        retry=retry_if_exception(is_transient),
        timeout_s=spec.timeout_s,
    )


def channel_send_policy(knobs: OutboxKnobs = TABLE_AS_IS) -> DeliveryPolicy:
    return policy_for("channel_send", knobs)


def integration_policy(knobs: OutboxKnobs = TABLE_AS_IS) -> DeliveryPolicy:
    """The Chatwoot mirror's policy (the name predates the per-integration table)."""
    return policy_for("chatwoot", knobs)

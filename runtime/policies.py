"""Delivery policies, declared once per integration.

A policy is a tenacity stop/wait/retry triple. The dispatcher applies it to attempts
that are persisted in the outbox (so backoff survives restarts), instead of looping in
memory: tenacity decides, the store remembers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from tenacity import Future, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from channels.base import SendError
from core.settings import Settings


class PermanentDeliveryError(Exception):
    """The item can never succeed as it is (bad payload, unknown channel...)."""


def is_transient(exc: BaseException) -> bool:
    """429/5xx/timeouts/connection errors are worth retrying; other 4xx are not."""
    if isinstance(exc, SendError):
        return exc.retryable
    if isinstance(exc, PermanentDeliveryError):
        return False
    return isinstance(exc, (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError))


@dataclass(frozen=True)
class DeliveryPolicy:
    name: str
    stop: stop_base
    wait: wait_base
    retry: retry_base

    def decide(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds until the next attempt, or None when the item is dead."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        state.outcome = Future.construct(attempt, exc, has_exception=True)
        if not self.retry(state) or self.stop(state):
            return None
        return float(self.wait(state))


def channel_send_policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(
        name="channel_send",
        stop=stop_after_attempt(settings.outbox_max_attempts),
        wait=wait_random_exponential(
            multiplier=settings.outbox_backoff_base_s, max=settings.outbox_backoff_max_s
        ),
        retry=retry_if_exception(is_transient),
    )


def integration_policy(settings: Settings) -> DeliveryPolicy:
    """Mirrors and CRMs may be down for a while without anyone waiting on them: more
    attempts than a reply gets, the same backoff ceiling, so a long outage still ends
    with everything delivered, in order."""
    return DeliveryPolicy(
        name="integration",
        stop=stop_after_attempt(max(settings.outbox_max_attempts, 12)),
        wait=wait_random_exponential(
            multiplier=settings.outbox_backoff_base_s, max=settings.outbox_backoff_max_s
        ),
        retry=retry_if_exception(is_transient),
    )

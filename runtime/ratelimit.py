"""Outbound rate limits per provider (Z-API: 20 messages/s per instance, ...).

GCRA, the leaky-bucket-as-a-meter: each send reserves the next free slot and sleeps
once until it, so concurrent senders queue in order without polling or a lock.

A provider's rate belongs to its account, not to a bot process: with several instances
on one Supabase, a limiter per process would let N instances send N times the rate.
`SharedRateLimiter` keeps the meter in the store instead (`Store.take_rate_slot`, one
atomic statement), and `limiter_for` picks it when the store is shared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from core.clock import Clock, utc_now
from store.base import Store

Sleep = Callable[[float], Awaitable[None]]


class Limiter(Protocol):
    async def acquire(self) -> None:
        """Return when this send may go out."""


def default_burst(rate_per_s: float, burst: int | None) -> int:
    """A second's worth of sends may go at once after a quiet spell, and at least one."""
    return max(1, burst if burst is not None else int(rate_per_s))


class RateLimiter:
    """The meter in this process's memory: enough when one process sends."""

    def __init__(self, rate_per_s: float, *, burst: int | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.interval = 1.0 / rate_per_s
        self.burst = default_burst(rate_per_s, burst)
        self._next = float("-inf")  # monotonic time of the next free slot

    def reserve(self, now: float | None = None) -> float:
        """Take a slot; return how long to wait for it (0 when one is free now)."""
        now = time.monotonic() if now is None else now
        # Unused capacity accumulates up to `burst` sends, no more.
        earliest = now - (self.burst - 1) * self.interval
        slot = max(self._next, earliest)
        self._next = slot + self.interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class SharedRateLimiter:
    """The meter in the store, drawn from by every instance sharing it.

    One store call per send reserves the slot (it is taken whether or not the send then
    succeeds, so the meter never lets more through than the rate); the sender sleeps
    until it, counted on its own clock from before the call, so the call's latency is
    part of the wait rather than added to it. The slots are wall-clock instants: the
    instances' clocks must agree (NTP) to within a fraction of one interval (50 ms at
    20/s). A store that cannot be reached raises `StoreUnavailable`, which the outbox
    retries: a send never goes out unmetered.
    """

    def __init__(
        self,
        store: Store,
        name: str,
        rate_per_s: float,
        *,
        burst: int | None = None,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.store = store
        self.name = name
        self.rate_per_s = rate_per_s
        self.burst = default_burst(rate_per_s, burst)
        self.clock = clock
        self.sleep = sleep

    async def reserve(self) -> datetime:
        """Take the next slot in the shared meter; return when it is."""
        now = self.clock()
        wait = await self.store.take_rate_slot(
            self.name, rate_per_s=self.rate_per_s, burst=self.burst, now=now
        )
        return now + timedelta(seconds=wait)

    async def acquire(self) -> None:
        slot = await self.reserve()
        delay = (slot - self.clock()).total_seconds()
        if delay > 0:
            await self.sleep(delay)


def limiter_for(
    store: Store,
    name: str,
    rate_per_s: float,
    *,
    shared: bool,
    burst: int | None = None,
    clock: Clock = utc_now,
) -> Limiter:
    """The composition root's one call: the store's meter when instances share the
    provider accounts (`store.shares_rate_limits`), else this process's own, which costs
    no store write per send."""
    if shared:
        return SharedRateLimiter(store, name, rate_per_s, burst=burst, clock=clock)
    return RateLimiter(rate_per_s, burst=burst)

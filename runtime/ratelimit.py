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
from datetime import datetime
from typing import Protocol

from core.clock import Clock
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
    succeeds, so the meter never lets more through than the rate) and the sender sleeps
    once, until it. By default the slots are on the store's clock (Supabase: the
    database's), so the instances' own clocks never have to agree; the wait is then
    counted from the store's answer, so a send goes a little after its slot (by the
    answer's trip back), never before it. A test injects `clock`: slots are instants on
    it and the sender sleeps until its own, exactly. A store that cannot be reached
    raises `StoreUnavailable`, which the outbox retries: a send never goes out unmetered.
    """

    def __init__(
        self,
        store: Store,
        name: str,
        rate_per_s: float,
        *,
        burst: int | None = None,
        clock: Clock | None = None,
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

    async def reserve(self, now: datetime | None = None) -> float:
        """Take the next slot; return how long after `now` it is (0 when one is free).
        No `now`: the injected clock's, else the store's own clock."""
        if now is None and self.clock is not None:
            now = self.clock()
        return await self.store.take_rate_slot(
            self.name, rate_per_s=self.rate_per_s, burst=self.burst, now=now
        )

    async def acquire(self) -> None:
        asked = self.clock() if self.clock is not None else None
        delay = await self.reserve(asked)
        if asked is not None and self.clock is not None:  # the store's answer took part of it
            delay -= (self.clock() - asked).total_seconds()
        if delay > 0:
            await self.sleep(delay)


def limiter_for(
    store: Store,
    name: str,
    rate_per_s: float,
    *,
    shared: bool,
    burst: int | None = None,
) -> Limiter:
    """The composition root's one call: the store's meter when instances share the
    provider accounts (`store.shares_rate_limits`), else this process's own, which costs
    no store write per send."""
    if shared:
        return SharedRateLimiter(store, name, rate_per_s, burst=burst)
    return RateLimiter(rate_per_s, burst=burst)

"""Outbound rate limits per provider (Z-API: 20 messages/s per instance, ...).

GCRA, the leaky-bucket-as-a-meter: each send reserves the next free slot and sleeps
once until it, so concurrent senders queue in order without polling or a lock.
"""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    def __init__(self, rate_per_s: float, *, burst: int | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.interval = 1.0 / rate_per_s
        self.burst = max(1, burst if burst is not None else int(rate_per_s))
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

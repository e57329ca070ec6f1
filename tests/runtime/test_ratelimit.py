"""The outbound limiter: a burst goes out at once, then sends are paced at the rate."""

from __future__ import annotations

import asyncio
import time

import pytest

from runtime.ratelimit import RateLimiter


def test_a_burst_is_free_then_sends_are_spaced_by_the_rate() -> None:
    limiter = RateLimiter(20, burst=20)
    waits = [limiter.reserve(now=100.0) for _ in range(25)]
    assert waits[:20] == [0.0] * 20
    assert waits[20:] == pytest.approx([0.05, 0.10, 0.15, 0.20, 0.25])


def test_idle_time_refills_up_to_the_burst_only() -> None:
    limiter = RateLimiter(10, burst=2)
    assert [limiter.reserve(now=0.0) for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])
    # An hour later only `burst` sends are free again, not 36,000.
    assert [limiter.reserve(now=3600.0) for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


async def test_concurrent_senders_never_exceed_the_rate() -> None:
    limiter = RateLimiter(50, burst=1)
    stamps: list[float] = []

    async def send() -> None:
        await limiter.acquire()
        stamps.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(send() for _ in range(20)))
    elapsed = max(stamps) - started
    # 20 sends at 50/s with no burst: the last one cannot go before 19 intervals.
    assert elapsed >= 19 * 0.02 * 0.95


def test_a_non_positive_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)

"""A write that found the SQLite file locked past its busy timeout raises StoreUnavailable,
and the runtime retries it (a turn, an outbox delivery). Tests that race several
"processes" on one file do the same, so a loaded machine cannot fail them; what they
assert is the outcome of the race, not that nobody ever waited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.errors import StoreUnavailable

T = TypeVar("T")


async def retried_while_busy(call: Callable[[], Awaitable[T]], *, tries: int = 200) -> T:
    for _ in range(tries):
        try:
            return await call()
        except StoreUnavailable:
            await asyncio.sleep(0.01)
    raise AssertionError(f"the store stayed busy for {tries} tries")

"""Recording what already happened, however long the store takes to accept it.

After a provider took a message (or PipeRun created a deal), failing to write that
down is worse than waiting: the outbox item stays in flight, holds back the lead's
next replies, and is sent again at the next start. So these writes wait out a locked
or briefly unreachable store instead of raising. Shutdown still cancels them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


async def until_stored(write: Callable[[], Awaitable[T]], *, what: str, max_delay_s: float = 5.0) -> T:
    delay = 0.05
    while True:
        try:
            return await write()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # locked or unreachable store: it comes back
            log.warning("store_write_retry", what=what, error=f"{type(exc).__name__}: {exc}", in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)

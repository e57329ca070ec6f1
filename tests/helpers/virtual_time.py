"""An asyncio loop whose clock is virtual: time jumps to the next timer once every task
is waiting, so a 15 s debounce runs in microseconds and never races the wall clock.

The code under test is unchanged: it sleeps, waits on events and reads `loop.time()`
as always (runtime/scheduler.py reads the loop's clock). Only for code without real I/O
(no sockets, no threads): a jump would not wait for them.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # The loop asks to block until its next timer: nothing else can happen, so jump.
        if timeout is not None and timeout > 0:
            self._loop.advance(timeout)
        return super().select(0 if timeout is not None else None)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 1000.0) -> None:
        self._virtual_now = start
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()

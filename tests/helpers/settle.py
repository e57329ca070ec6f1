"""Wait for the bot to be settled, then assert exact counts.

Polling "until len(sent) == N" races: two sends a few milliseconds apart can jump past N
between two looks. Instead wait until nothing is left to do — no turn, debounce or nudge
under way (the runner's idle signal), nothing in flight or pending in the outbox (the
dispatcher's idle signal, confirmed by the store) — and only then count.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from web.keys import DISPATCHER, RUNNER, STORE


def _app(target: Any) -> web.Application:
    return target if isinstance(target, web.Application) else target.app


async def is_settled(target: Any) -> bool:
    app = _app(target)
    runner, dispatcher, store = app[RUNNER], app[DISPATCHER], app[STORE]
    if not (runner.idle.is_set() and dispatcher.idle.is_set()):
        return False
    if await store.pending_contacts():
        return False
    stats = await store.outbox_stats()
    # The signals again: the store calls above awaited, and work may have started meanwhile.
    return stats.pending + stats.inflight == 0 and runner.idle.is_set() and dispatcher.idle.is_set()


async def settled(target: Any, *, timeout: float = 10.0) -> None:
    """Return once the turn is committed and the outbox idle; fail after `timeout` s.

    Waits on the runner's and the dispatcher's idle events; the store is only asked when
    both say idle (a commit between the two is caught by the store check and the wait
    goes on)."""
    app = _app(target)
    runner, dispatcher = app[RUNNER], app[DISPATCHER]
    try:
        async with asyncio.timeout(timeout):
            while True:
                await runner.idle.wait()
                await dispatcher.idle.wait()
                if await is_settled(app):
                    return
                # Between a commit and the dispatcher's wake-up: let the loop run once more.
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"the bot did not settle within {timeout} s") from None


async def all_settled(*bots: Any, timeout: float = 15.0) -> None:
    """Every instance settled at the same time: one instance's turn or delivery can
    give another work (a lead it leased, an item on the shared outbox)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                for bot in bots:
                    await settled(bot)
                if all([await is_settled(bot) for bot in bots]):
                    return
    except TimeoutError:
        raise AssertionError(f"the instances did not settle together within {timeout} s") from None

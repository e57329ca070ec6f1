"""Fires the nudges scheduled for leads who went silent mid-qualification.

Schedules live in the store (a commit cancels the lead's pending nudges and may
schedule the next), so they survive restarts; this loop only looks for due ones.
"""

from __future__ import annotations

import asyncio
import contextlib

from core.logging import get_logger
from runtime.turns import TurnRunner
from store.base import Store

log = get_logger(__name__)


class FollowUpScheduler:
    def __init__(self, store: Store, runner: TurnRunner, *, poll_s: float, batch: int = 20) -> None:
        self.store = store
        self.runner = runner
        self.poll_s = poll_s
        self.batch = batch
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="follow-ups")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def run_due(self) -> list[str]:
        """One pass over due nudges; returns each outcome (sent, lead_replied, ...)."""
        outcomes: list[str] = []
        for due in await self.store.due_follow_ups(now=self.runner.clock(), limit=self.batch):
            if self._stop.is_set():
                break
            try:
                outcomes.append(await self.runner.run_follow_up(due))
            except Exception:
                log.exception("follow_up_failed", follow_up_id=due.id)
                await self.store.cancel_follow_up(due.id, reason="error")
                outcomes.append("error")
        return outcomes

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_due()
            except Exception:
                log.exception("follow_up_pass_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll_s)

"""Outbox dispatcher: delivers committed side effects, at least once, in order per key.

Items are claimed from the store (marked in flight), handled by the handler registered
for their kind, then completed, rescheduled by their policy, or marked dead with the
error. A crash leaves claimed items in flight; `start` puts them back to pending, so
nothing committed is ever lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import structlog

from core.logging import get_logger
from core.models import mask_contact_key
from integrations.store.base import OutboxItem, Store
from runtime.policies import DeliveryPolicy, PermanentDeliveryError

log = get_logger(__name__)

Handler = Callable[[OutboxItem], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    policy: DeliveryPolicy


def _now() -> datetime:
    return datetime.now(timezone.utc)


class OutboxDispatcher:
    def __init__(self, store: Store, *, workers: int, poll_s: float) -> None:
        self.store = store
        self.workers = max(1, workers)
        self.poll_s = poll_s
        self.routes: dict[str, Route] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.delivered = 0

    def register(self, kind: str, handler: Handler, policy: DeliveryPolicy) -> None:
        self.routes[kind] = Route(handler, policy)

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        released = await self.store.release_inflight()
        if released:
            log.info("outbox_released_inflight", items=released)
        self._task = asyncio.create_task(self._loop(), name="outbox-dispatcher")

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._inflight:
            _done, still = await asyncio.wait(self._inflight, timeout=timeout)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping:
            # Cleared before looking, so a wake-up that lands while we look is not lost.
            self._wake.clear()
            free = self.workers - len(self._inflight)
            items: list[OutboxItem] = []
            if free > 0:
                try:
                    items = await self.store.claim_outbox(limit=free, now=_now())
                except Exception:
                    log.exception("outbox_claim_failed")
            for item in items:
                task = asyncio.create_task(self._handle(item))
                self._inflight.add(task)
                task.add_done_callback(self._finished)
            if items and len(items) == free:
                continue
            await self._sleep_until_due()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _sleep_until_due(self) -> None:
        timeout = self.poll_s
        if len(self._inflight) < self.workers:
            try:
                due = await self.store.next_outbox_due()
            except Exception:
                due = None
            if due is not None:
                timeout = min(timeout, max(0.0, (due - _now()).total_seconds()))
        # else: every worker is busy; a finishing one sets the wake event.
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        except asyncio.TimeoutError:
            pass

    async def _handle(self, item: OutboxItem) -> None:
        assert item.id is not None
        contact = None
        if item.payload.get("contact_key"):
            contact = mask_contact_key(item.payload["contact_key"])
        elif "channel" in item.payload and "contact_id" in item.payload:
            contact = mask_contact_key(f"{item.payload['channel']}:{item.payload['contact_id']}")
        with structlog.contextvars.bound_contextvars(
            outbox_id=item.id, outbox_kind=item.kind, turn_id=item.payload.get("turn_id"), contact=contact
        ):
            route = self.routes.get(item.kind)
            if route is None:
                await self.store.kill_outbox(item.id, error=f"no handler for kind {item.kind!r}")
                log.error("outbox_dead", reason="no_handler")
                return
            try:
                await route.handler(item)
            except asyncio.CancelledError:
                raise  # shutdown: left in flight, released on next start
            except Exception as exc:
                try:
                    await self._failed(item, route.policy, exc)
                except Exception:  # the store failed too: the item stays in flight until restart
                    log.exception("outbox_failure_not_recorded")
                return
            await self.store.complete_outbox(item.id)
            self.delivered += 1
            log.info("outbox_delivered", attempts=item.attempts)

    async def _failed(self, item: OutboxItem, policy: DeliveryPolicy, exc: Exception) -> None:
        assert item.id is not None
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, PermanentDeliveryError):
            delay = None
        else:
            delay = policy.decide(item.attempts, exc)
        if delay is None:
            await self.store.kill_outbox(item.id, error=error)
            log.error("outbox_dead", attempts=item.attempts, error=error)
            return
        await self.store.retry_outbox(item.id, error=error, next_attempt_at=_now() + timedelta(seconds=delay))
        log.warning("outbox_retry", attempts=item.attempts, in_s=round(delay, 2), error=error)

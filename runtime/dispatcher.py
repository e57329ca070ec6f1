"""Outbox dispatcher: delivers committed side effects, at least once, in order per key.

Items are claimed from the store (marked in flight), handled by the handler registered
for their kind, then completed, rescheduled by their policy, or marked dead with the
error. A crash leaves claimed items in flight; `start` puts them back to pending, so
nothing committed is ever lost.

A route may have a circuit breaker. While it is open the dispatcher does not call the
handler: the item goes back to pending, due when the breaker half-opens, without
counting an attempt, so an outage of any length costs no item its retry budget. The
item whose failure opens the breaker, and a failed half-open probe, are never marked
dead either: the outage, not the item, is what failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import structlog
from pydantic import ValidationError

from core.clock import Clock, utc_now
from core.errors import Permanent, StoreUnavailable
from core.logging import get_logger
from core.models import mask_contact_key
from core.outbox import OutboxPayload, log_fields
from core.records import OutboxItem
from runtime.breaker import CircuitBreaker, Permit
from runtime.persist import until_stored
from runtime.policies import DeliveryPolicy, HeldUntil, PermanentDeliveryError, is_transient
from store.base import Store

log = get_logger(__name__)

Handler = Callable[[OutboxItem], Awaitable[None]]
P = TypeVar("P", bound=OutboxPayload)
# A handler of one typed kind: the item (id, attempts, keys) and its parsed payload.
TypedHandler = Callable[[OutboxItem, P], Awaitable[None]]
# One breaker for a whole kind, or one chosen per item (per channel, per endpoint).
BreakerSelector = Callable[[OutboxItem], CircuitBreaker | None]

# A failed probe waits this much longer than the items it was deferred with, so the next
# probe is another key's item: one item that always fails (a receiver choking on that
# payload) must not keep a whole integration shut while the others would go through.
PROBE_STEP_ASIDE = timedelta(seconds=1)


@dataclass(frozen=True)
class Route:
    handler: Handler
    policy: DeliveryPolicy
    breaker: CircuitBreaker | BreakerSelector | None = None

    def breaker_for(self, item: OutboxItem) -> CircuitBreaker | None:
        if self.breaker is None or isinstance(self.breaker, CircuitBreaker):
            return self.breaker
        return self.breaker(item)


class OutboxDispatcher:
    def __init__(self, store: Store, *, workers: int, poll_s: float, clock: Clock = utc_now) -> None:
        self.store = store
        self.workers = max(1, workers)
        self.poll_s = poll_s
        self.routes: dict[str, Route] = {}
        # Wall clock for due times; injectable so a long outage can be simulated.
        self._clock = clock
        self._wake = asyncio.Event()
        # Set while nothing is in flight and nothing is pending at all (not even backing
        # off): the outbox is idle. Cleared by every wake-up, so a commit that just
        # enqueued work is never mistaken for idleness.
        self.idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.delivered = 0
        self.deferred = 0

    def register(
        self,
        kind: str,
        handler: Handler,
        policy: DeliveryPolicy,
        breaker: CircuitBreaker | BreakerSelector | None = None,
    ) -> None:
        self.routes[kind] = Route(handler, policy, breaker)

    def register_typed(
        self,
        model: type[P],
        handler: TypedHandler[P],
        policy: DeliveryPolicy,
        breaker: CircuitBreaker | BreakerSelector | None = None,
    ) -> None:
        """Route `model.KIND` to a handler that receives the parsed payload; a payload
        that is not a valid `model` is dead at once (no attempt can fix it)."""
        self.register(model.KIND, _parsing(model, handler), policy, breaker)

    def wake(self) -> None:
        self.idle.clear()
        self._wake.set()

    async def start(self) -> None:
        released = await self.store.release_inflight()
        if released:
            log.info("outbox_released_inflight", items=released)
        self._task = asyncio.create_task(self._loop(), name="outbox-dispatcher")

    async def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is due now (a reply the last turn committed should not wait for
        the next start) within `timeout`, then stop; items backing off stay pending."""
        deadline = asyncio.get_running_loop().time() + timeout
        await self._drain_due(deadline)
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._inflight:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            _done, still = await asyncio.wait(self._inflight, timeout=remaining)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    async def _drain_due(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            return
        while loop.time() < deadline:
            if not self._inflight:
                try:
                    due = await self.store.next_outbox_due()
                except Exception:
                    return
                if due is None or due > self._clock() + timedelta(seconds=0.05):
                    return
            self._wake.set()
            await asyncio.sleep(0.02)

    async def _loop(self) -> None:
        while not self._stopping:
            # Cleared before looking, so a wake-up that lands while we look is not lost.
            self._wake.clear()
            free = self.workers - len(self._inflight)
            items: list[OutboxItem] = []
            if free > 0:
                try:
                    items = await self.store.claim_outbox(limit=free, now=self._clock())
                except StoreUnavailable as exc:
                    # Busy (another writer kept the lock through the wait, as under a
                    # flood) or briefly down: the next pass claims; no traceback per pass.
                    log.warning("outbox_claim_unavailable", error=str(exc))
                except Exception:
                    log.exception("outbox_claim_failed")
            if items:
                self.idle.clear()
            for item in items:
                task = asyncio.create_task(self._handle(item))
                self._inflight.add(task)
                task.add_done_callback(self._finished)
            if items and len(items) == free:
                continue
            await self._sleep_until_due()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.idle.clear()
        self._wake.set()

    async def _sleep_until_due(self) -> None:
        timeout = self.poll_s
        if len(self._inflight) < self.workers:
            try:
                due = await self.store.next_outbox_due()
            except Exception:
                due = None
            if due is not None:
                timeout = min(timeout, max(0.0, (due - self._clock()).total_seconds()))
            elif not self._inflight and not self._wake.is_set():
                # Nothing pending and no wake-up landed while we looked.
                self.idle.set()
        # else: every worker is busy; a finishing one sets the wake event.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _handle(self, item: OutboxItem) -> None:
        assert item.id is not None
        contact, turn_id = log_fields(item.payload)
        with structlog.contextvars.bound_contextvars(
            outbox_id=item.id,
            outbox_kind=item.kind,
            turn_id=turn_id,
            contact=mask_contact_key(contact) if contact else None,
        ):
            route = self.routes.get(item.kind)
            if route is None:
                await self.store.kill_outbox(item.id, error=f"no handler for kind {item.kind!r}")
                log.error("outbox_dead", reason="no_handler")
                return
            # No await before the permit is taken: items claimed together ask in claim
            # order, so the half-open probe is the first of them.
            breaker = self._breaker(route, item)
            permit: Permit | None = None
            if breaker is not None:
                permit = breaker.acquire()
                if permit is None:
                    await self._defer(item, breaker)
                    return
            try:
                await route.handler(item)
            except asyncio.CancelledError:
                if breaker is not None and permit is not None:
                    breaker.release(permit)
                raise  # shutdown: left in flight, released on next start
            except HeldUntil as held:
                if breaker is not None and permit is not None:
                    breaker.release(permit)
                item_id, until, reason = item.id, self._clock() + held.wait, held.reason
                await until_stored(
                    lambda: self.store.defer_outbox(item_id, next_attempt_at=until, reason=reason),
                    what="defer_outbox",
                )
                self.deferred += 1
                log.info("outbox_held", until=held.until.isoformat(), reason=held.reason)
                return
            except Exception as exc:
                try:
                    await self._failed(item, route.policy, exc, breaker, permit)
                except Exception:  # the store failed too: the item stays in flight until restart
                    log.exception("outbox_failure_not_recorded")
                return
            if breaker is not None and permit is not None:
                breaker.record_success(permit)
            # Delivered: recording it must not be given up on (see runtime/persist.py).
            item_id = item.id
            await until_stored(lambda: self.store.complete_outbox(item_id), what="complete_outbox")
            self.delivered += 1
            log.info("outbox_delivered", attempts=item.attempts)

    @staticmethod
    def _breaker(route: Route, item: OutboxItem) -> CircuitBreaker | None:
        try:
            return route.breaker_for(item)
        except Exception:  # a selector bug must not stop deliveries: go without a breaker
            log.exception("outbox_breaker_selector_failed")
            return None

    async def _defer(self, item: OutboxItem, breaker: CircuitBreaker) -> None:
        """Fail fast: back to pending, due when the breaker half-opens, attempt not counted."""
        assert item.id is not None
        wait = breaker.retry_in()
        if wait <= 0:  # half-open with its probe out: look again soon, the probe is quick
            wait = self.poll_s
        try:
            await self.store.defer_outbox(
                item.id, next_attempt_at=self._clock() + timedelta(seconds=wait), reason="circuit_open"
            )
        except Exception:  # the item stays in flight until restart, as any unrecorded outcome
            log.exception("outbox_defer_not_recorded", breaker=breaker.name)
            return
        self.deferred += 1
        log.debug("outbox_deferred", breaker=breaker.name, in_s=round(wait, 2))

    async def _failed(
        self,
        item: OutboxItem,
        policy: DeliveryPolicy,
        exc: Exception,
        breaker: CircuitBreaker | None = None,
        permit: Permit | None = None,
    ) -> None:
        assert item.id is not None
        error = f"{type(exc).__name__}: {exc}"
        delay = None if isinstance(exc, Permanent) else policy.decide(item.attempts, exc)
        if breaker is not None and permit is not None:
            if is_transient(exc):
                breaker.record_failure(permit)
                if breaker.state != "closed":
                    await self._failed_in_outage(item, breaker, permit, delay, error)
                    return
            else:  # the service answered: not its health's business, but free the probe slot
                breaker.release(permit)
        item_id = item.id
        if delay is None:
            await until_stored(lambda: self.store.kill_outbox(item_id, error=error), what="kill_outbox")
            log.error("outbox_dead", attempts=item.attempts, error=error)
            return
        next_at = self._clock() + timedelta(seconds=delay)
        await until_stored(
            lambda: self.store.retry_outbox(item_id, error=error, next_attempt_at=next_at),
            what="retry_outbox",
        )
        log.warning("outbox_retry", attempts=item.attempts, in_s=round(delay, 2), error=error)

    async def _failed_in_outage(
        self, item: OutboxItem, breaker: CircuitBreaker, permit: Permit, delay: float | None, error: str
    ) -> None:
        """A transient failure with the breaker open: never dead, due when it half-opens
        (or later, if the item's own backoff says so)."""
        assert item.id is not None
        wait = max(delay or 0.0, breaker.retry_in())
        at = self._clock() + timedelta(seconds=wait)
        if permit.probe:
            # The probe tested the integration, not the item: its attempt is not counted.
            await self.store.defer_outbox(
                item.id, next_attempt_at=at + PROBE_STEP_ASIDE, reason=f"circuit_probe_failed: {error}"
            )
            self.deferred += 1
            log.warning("outbox_probe_failed", breaker=breaker.name, in_s=round(wait, 2), error=error)
            return
        await self.store.retry_outbox(item.id, error=error, next_attempt_at=at)
        log.warning(
            "outbox_retry_after_circuit",
            breaker=breaker.name,
            attempts=item.attempts,
            in_s=round(wait, 2),
            error=error,
        )


def _parsing(model: type[P], handler: TypedHandler[P]) -> Handler:
    async def parse_then_handle(item: OutboxItem) -> None:
        try:
            payload = model.parse(item.payload)
        except ValidationError as exc:
            # Field names and reasons only: the values may be a lead's words.
            where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise PermanentDeliveryError(f"invalid {model.KIND} payload ({where})") from None
        await handler(item, payload)

    return parse_then_handle

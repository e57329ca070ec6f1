"""Per-contact scheduling: debounce, one driver per contact, leases and the ready poller.

Per contact there is at most one driver task: it waits for a quiet window (debounce,
capped so a chatty lead still gets an answer), calls `run(contact_key)` once for every
pending burst, and loops if more arrived meanwhile. Runs of one contact therefore never
overlap, and state for idle contacts is dropped so memory does not grow with them. The
window adapts to the burst's last message and to the lead's chat presence when the
provider reports it (runtime/quiet_window.py); presence only moves the window of a
pending burst, never past `max_wait_s`.

This module knows nothing of turns: `run` says whether the work was done (True) or must
be tried again after a backoff (False). Durability comes from the store: what `run` did
not finish stays pending there, and the next start (or another instance's poller) finds
it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Protocol, TypeVar

from core.logging import get_logger
from core.models import mask_contact_key
from runtime.presence import PresenceBoard
from runtime.quiet_window import Windows, deadline

log = get_logger(__name__)

T = TypeVar("T")


class LeaseStore(Protocol):
    """What scheduling needs of the store: pending contacts and per-contact leases."""

    async def pending_contacts(self) -> list[str]: ...

    async def claim_ready_contacts(
        self, *, owner: str, limit: int, quiet_s: float, max_wait_s: float, lease_s: float
    ) -> list[str]: ...

    async def claim_contact(self, contact_key: str, *, owner: str, lease_s: float) -> bool: ...

    async def release_contact(self, contact_key: str, *, owner: str) -> None: ...


@dataclass(frozen=True)
class ScheduleConfig:
    # The window after a fragment, and whenever the content cannot tell (DEBOUNCE_QUIET_S).
    quiet_s: float
    max_wait_s: float
    max_concurrent: int
    lease_s: float
    retry_base_s: float
    retry_max_s: float
    poll_s: float
    # After a message that ends a thought; None: `quiet_s` (one fixed window).
    complete_s: float | None = None
    # After a complete message when the lead's phone reports presence; None: the complete window.
    presence_s: float | None = None
    # How long a "typing"/"recording" signal holds the turn without a refresh.
    typing_s: float = 10.0

    @cached_property
    def windows(self) -> Windows:
        """The windows, each at most the one before: a complete message never waits
        longer than a fragment (DEBOUNCE_QUIET_S=0 answers everything at once)."""
        complete = self.quiet_s if self.complete_s is None else min(self.complete_s, self.quiet_s)
        return Windows(
            fragment_s=self.quiet_s,
            complete_s=complete,
            presence_s=complete if self.presence_s is None else min(self.presence_s, complete),
            typing_s=self.typing_s,
            max_wait_s=self.max_wait_s,
        )

    def quiet_left(self, received_at: list[datetime], *, complete: bool | None = None) -> float:
        """Seconds a burst stored by several instances still needs to be quiet (their
        arrivals never reached our local debounce). `complete`: whether the last message
        ends a thought; its shortest window counts, since the local debounce may already
        have waited on presence."""
        if not received_at:
            return 0.0
        now = datetime.now(UTC)
        window = self.windows.after(complete, presence=True)
        quiet_left = window - (now - max(received_at)).total_seconds()
        max_left = self.max_wait_s - (now - min(received_at)).total_seconds()
        return max(0.0, min(quiet_left, max_left))


@dataclass
class _Contact:
    first_at: float | None = None
    last_at: float = 0.0
    task: asyncio.Task[None] | None = None
    dirty: bool = False
    failures: int = 0
    in_run: bool = False
    # Whether the burst's last message ends a thought (None: not known, a fragment's window).
    complete: bool | None = None
    # Set when a message or a presence signal may have moved the deadline.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # The burst a run is answering: when its first and last messages came (see more_coming).
    run_first_at: float = 0.0
    run_last_at: float = 0.0
    # Set when a run yielded: the next run answers the same burst (not a new wait).
    rerun: bool = False


async def _changed_or_after(state: _Contact, delay: float) -> None:
    """Until a message or a presence signal may have moved things, or `delay` passed."""
    state.changed.clear()
    timer = asyncio.get_running_loop().call_later(delay, state.changed.set)
    try:
        await state.changed.wait()
    finally:
        timer.cancel()


def _now() -> float:
    """The event loop's clock (time.monotonic on a normal loop): tests and the bench run
    the scheduler on a loop whose clock is virtual."""
    return asyncio.get_running_loop().time()


class ContactScheduler:
    def __init__(
        self,
        run: Callable[[str], Awaitable[bool]],
        *,
        store: LeaseStore,
        config: ScheduleConfig,
        owner: str,
        shared: bool,
        on_debounced: Callable[[float], None] | None = None,
    ) -> None:
        self._run = run
        self.store = store
        self.config = config
        # Stable across restarts (the host name by default): a restarted instance takes
        # back its own leases at once instead of waiting for them to expire.
        self.owner = owner
        # A store shared by several instances (Supabase, or a worker process) needs leases
        # and a poller for messages another process stored; the embedded store does not.
        self.shared = shared
        self.on_debounced = on_debounced
        self._contacts: dict[str, _Contact] = {}
        self.presence_board = PresenceBoard()
        # Set while no contact has a run, a debounce or an exclusive section under way:
        # what an operator's drain and the tests' "settled" wait for instead of a delay.
        self.idle = asyncio.Event()
        self.idle.set()
        self._slots = asyncio.Semaphore(config.max_concurrent)
        self._poller: asyncio.Task[None] | None = None
        self.closing = False

    # --- waking contacts ----------------------------------------------------------------
    def notify(self, contact_key: str, *, immediate: bool = False, complete: bool | None = None) -> None:
        """Work for this contact was stored: (re)start its quiet window. `complete`: the
        message ends a thought (a shorter window) or not; None when not known."""
        if self.closing:
            return
        now = _now()
        state = self._contacts.get(contact_key)
        if state is None:
            state = self._track(contact_key, _Contact())
        if state.first_at is None:
            state.first_at = now - (self.config.max_wait_s if immediate else 0.0)
        state.last_at = now - (self.config.quiet_s if immediate else 0.0)
        state.complete = complete
        state.dirty = True
        state.changed.set()  # a complete message may bring the deadline forward
        if state.task is None:
            # A fresh context: the driver outlives the webhook that woke it, and its
            # log lines must not carry that request's id.
            state.task = asyncio.create_task(
                self._drive(contact_key, state),
                name=f"turn:{mask_contact_key(contact_key)}",
                context=contextvars.Context(),
            )

    def presence(self, contact_key: str, state: str) -> None:
        """The lead's phone says what they are doing in the chat. Remembered (a "typing"
        usually comes before the message); a pending burst's driver looks again. Never
        starts a turn."""
        if self.closing:
            return
        self.presence_board.record(contact_key, state, _now())
        contact = self._contacts.get(contact_key)
        if contact is not None:
            contact.changed.set()

    async def resume_pending(self) -> int:
        keys = await self.store.pending_contacts()
        for key in keys:
            self.notify(key, immediate=True)
        if keys:
            log.info("resumed_pending_contacts", contacts=len(keys))
        return len(keys)

    async def start(self) -> None:
        """Run what waited while we were down, then (shared store) keep looking for
        bursts other instances stored and nobody is handling."""
        await self.resume_pending()
        if self.shared:
            self._poller = asyncio.create_task(self._poll_ready(), name="turns-ready-poller")

    async def _poll_ready(self) -> None:
        while not self.closing:
            try:
                await self.poll_ready_once()
            except Exception:  # the store is down: the webhooks say 503, we try again later
                log.warning("ready_poll_failed", exc_info=True)
            await asyncio.sleep(self.config.poll_s)

    async def poll_ready_once(self) -> list[str]:
        """Lease every burst that is over and nobody holds, and drive it here."""
        keys = await self.store.claim_ready_contacts(
            owner=self.owner,
            limit=max(1, self.config.max_concurrent),
            quiet_s=self.config.quiet_s,
            max_wait_s=self.config.max_wait_s,
            lease_s=self.config.lease_s,
        )
        for key in keys:
            if key not in self._contacts:
                self.notify(key, immediate=True)
        return keys

    @property
    def active_contacts(self) -> int:
        return len(self._contacts)

    def _track(self, contact_key: str, state: _Contact) -> _Contact:
        self._contacts[contact_key] = state
        self.idle.clear()
        return state

    def _untrack(self, contact_key: str, state: _Contact) -> None:
        if self._contacts.get(contact_key) is state:
            del self._contacts[contact_key]
        if not self._contacts:
            self.idle.set()

    def _let_go(self, contact_key: str, state: _Contact) -> None:
        state.task = None
        if state.dirty and not self.closing:
            # Work arrived while this task was unwinding: start a fresh driver (before
            # letting go of the contact, so the scheduler never looks idle here).
            if self._contacts.get(contact_key) is state:
                del self._contacts[contact_key]
            self.notify(contact_key, complete=state.complete)
        self._untrack(contact_key, state)

    async def close(self, timeout: float = 10.0) -> None:
        """Let running work finish within `timeout`; the rest stays pending in the store."""
        self.closing = True
        for state in self._contacts.values():
            state.changed.set()  # a ready answer held for a typing lead goes now
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        tasks: list[asyncio.Task[None]] = []
        for state in self._contacts.values():
            if state.task is None:
                continue
            if not state.in_run:
                state.task.cancel()  # only waiting (debounce/backoff): nothing to finish
            tasks.append(state.task)
        if not tasks:
            return
        _done, still = await asyncio.wait(tasks, timeout=timeout)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)

    # --- one contact's driver -----------------------------------------------------------
    async def _drive(self, contact_key: str, state: _Contact) -> None:
        try:
            while state.dirty and not self.closing:
                await self._debounce(contact_key, state)
                if self.on_debounced is not None and state.first_at is not None and not state.rerun:
                    self.on_debounced(_now() - state.first_at)
                state.rerun = False
                state.dirty = False
                state.run_first_at = state.first_at if state.first_at is not None else state.last_at
                state.run_last_at = state.last_at
                state.first_at = None
                async with self._slots:
                    if not await self.lease(contact_key, self.config.lease_s):
                        # Another instance holds this contact; what it did not do stays
                        # pending and the ready poller brings it back.
                        log.info("turn_leased_elsewhere", contact=mask_contact_key(contact_key))
                        break
                    ok = await self._run_once(contact_key, state)
                if ok:
                    state.failures = 0
                    if not state.dirty:
                        await self.release(contact_key)
                    continue
                await self._back_off(contact_key, state)
        finally:
            self._let_go(contact_key, state)

    async def _run_once(self, contact_key: str, state: _Contact) -> bool:
        state.in_run = True
        try:
            return await self._run(contact_key)
        except Exception:  # the store failed mid-run: the work is still pending
            log.exception("turn_crashed", contact=mask_contact_key(contact_key))
            return False
        finally:
            state.in_run = False

    async def _back_off(self, contact_key: str, state: _Contact) -> None:
        state.failures += 1
        delay = min(self.config.retry_base_s * 2 ** (state.failures - 1), self.config.retry_max_s)
        # Keep the lease through the backoff, or another instance would retry at once.
        await self.lease(contact_key, delay + self.config.lease_s)
        log.info("turn_retry_scheduled", contact=mask_contact_key(contact_key), in_s=delay)
        await asyncio.sleep(delay)
        state.dirty = True

    def deadline(self, contact_key: str, state: _Contact) -> float:
        first = state.first_at if state.first_at is not None else state.last_at
        return deadline(
            self.config.windows,
            first_at=first,
            last_at=state.last_at,
            complete=state.complete,
            seen=self.presence_board.get(contact_key, _now()),
        )

    async def _debounce(self, contact_key: str, state: _Contact) -> None:
        """Wait until the deadline, looking again whenever a message or a presence signal
        may have moved it."""
        while True:
            delay = self.deadline(contact_key, state) - _now()
            if delay <= 0:
                return
            await _changed_or_after(state, delay)

    def reading(self, contact_key: str) -> None:
        """The run is about to read the contact's pending messages: every message notified
        so far was stored before this read and is in it, so only a later one makes the run
        yield (a message that came while the run waited for a slot or a lease is answered,
        not yielded to). The next burst's window starts at its own first message."""
        state = self._contacts.get(contact_key)
        if state is None or not state.in_run:
            return
        state.dirty = False
        state.first_at = None
        state.run_last_at = max(state.run_last_at, state.last_at)

    async def more_coming(self, contact_key: str) -> bool:
        """Asked by a run whose answer is ready, before it commits: has the lead said more
        since the run read their burst, or are they typing it now?

        True when a message came during the run: the run yields (commits nothing) and the
        next one answers the whole burst, so a part that only looked final ("Vi o anúncio
        de vocês.") does not get its own reply. While the phone says the lead is typing or
        recording, waits for that message, a stop or the hold's end (`typing_s`): a stop
        or silence means the answer goes as it is, with no new model call. Never past
        `max_wait_s` since the burst's first message, so a lead who keeps writing still
        gets answers. While shutting down, a message that came still makes the run yield
        (it stays pending and is answered whole after the restart); a typing lead does not
        hold the answer."""
        state = self._contacts.get(contact_key)
        if state is None or not state.in_run:
            return False
        cap = state.run_first_at + self.config.max_wait_s
        while True:
            now = _now()
            if now >= cap:
                return False
            if state.dirty:
                # The next window's cap still counts from the burst's first message.
                state.first_at = state.run_first_at
                state.rerun = True
                return True
            if self.closing:
                return False
            seen = self.presence_board.get(contact_key, now)
            if seen is None or not seen.holding or seen.at <= state.run_last_at:
                return False
            until = min(seen.at + self.config.windows.typing_s, cap)
            if until <= now:
                return False
            await _changed_or_after(state, until - now)

    # --- leases -------------------------------------------------------------------------
    async def lease(self, contact_key: str, lease_s: float) -> bool:
        if not self.shared:
            return True
        try:
            return await self.store.claim_contact(contact_key, owner=self.owner, lease_s=lease_s)
        except Exception:
            log.warning("turn_lease_failed", contact=mask_contact_key(contact_key), exc_info=True)
            return False

    async def release(self, contact_key: str) -> None:
        if not self.shared:
            return
        try:
            await self.store.release_contact(contact_key, owner=self.owner)
        except Exception:  # it expires on its own
            log.warning("turn_release_failed", contact=mask_contact_key(contact_key), exc_info=True)

    async def exclusive(self, contact_key: str, work: Callable[[], Awaitable[T]]) -> T | str:
        """Run `work` as this contact's only activity (leased when shared), or say why
        not: "closing", or "busy" when the contact has a run or a debounce under way."""
        if self.closing:
            return "closing"
        if contact_key in self._contacts:
            return "busy"
        state = self._track(contact_key, _Contact(task=asyncio.current_task(), in_run=True))
        leased = False
        try:
            leased = await self.lease(contact_key, self.config.lease_s)
            if not leased:
                return "busy"
            return await work()
        finally:
            if leased:
                await self.release(contact_key)
            state.in_run = False
            self._let_go(contact_key, state)

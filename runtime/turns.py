"""The turn runner: the runtime's turns, put together from their four parts.

- `runtime.scheduler.ContactScheduler`: per contact, one driver at a time (debounce,
  leases, the ready poller), given `run(contact_key)` and knowing nothing of turns;
- `runtime.turn.Turn`: the turn's policy (silence rules, sessions, calling the agent);
- `runtime.commit.CommitBuilder`: the pure commit (messages, outbox items, follow-up);
- `runtime.followups.FollowUpTurn`: the nudge to a lead who went silent.

Durability comes from the store, not from this object: a message is pending in the
inbox until the turn that answered it commits, so a crash simply means the next start
finds it pending and answers it then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from core.clock import Clock, utc_now
from core.metrics import Metrics
from core.records import DueFollowUp
from runtime.commit import CommitBuilder, CommitConfig
from runtime.first_touch import FirstTouchConfig
from runtime.followups import FollowUpConfig, FollowUpTurn
from runtime.handoff_card import HandoffCard
from runtime.lifecycle import Lifecycle
from runtime.meetings import MeetingDesk
from runtime.scheduler import ContactScheduler, ScheduleConfig
from runtime.seller_notes import SellerNotes
from runtime.turn import ProfileName, ReadReceipt, Turn, TurnConfig
from store.base import Store

if TYPE_CHECKING:  # the agent (langgraph, openai) is loaded only where turns run
    from agent.graph import SdrAgent


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """The four parts' configs, and the name this instance takes leases under: stable
    across restarts (the host name by default), so a restarted instance takes back its
    own leases at once instead of waiting for them to expire."""

    schedule: ScheduleConfig
    commit: CommitConfig
    turn: TurnConfig
    follow_up: FollowUpConfig
    owner: str
    first_touch: FirstTouchConfig = field(default_factory=FirstTouchConfig)


class TurnRunner:
    def __init__(
        self,
        *,
        store: Store,
        agent: SdrAgent,
        config: RunnerConfig,
        card: HandoffCard,
        on_commit: Callable[[], None] = lambda: None,
        clock: Clock | None = None,
        profile_name: ProfileName | None = None,
        read_receipt: ReadReceipt | None = None,
        notes: SellerNotes | None = None,
        shared: bool | None = None,
        lifecycle: Lifecycle | None = None,
        metrics: Metrics | None = None,
        meetings: MeetingDesk | None = None,
    ) -> None:
        self.store = store
        self.agent = agent
        self.config = config
        self.on_commit = on_commit
        self.lifecycle = lifecycle
        self.metrics = metrics
        # Injectable so tests and the scenario suite can say "two days later"; every part
        # reads it through this attribute, so replacing it moves them all.
        self.clock: Clock = clock or utc_now
        schedule = config.schedule
        # A store shared by several instances (Supabase) needs turn leases and a poller
        # for messages another instance stored; the embedded store has one process.
        self.shared = store.backend_name != "sqlite" if shared is None else shared
        self.builder = CommitBuilder(config.commit, card, notes)
        self.turn = Turn(
            store=store,
            agent=agent,
            builder=self.builder,
            config=config.turn,
            schedule=schedule,
            shared=self.shared,
            clock=self.now,
            on_commit=self._committed,
            lifecycle=lifecycle,
            metrics=metrics,
            profile_name=profile_name,
            read_receipt=read_receipt,
            first_touch=config.first_touch,
            meetings=meetings,
        )
        self.follow_up = FollowUpTurn(
            store=store,
            agent=agent,
            builder=self.builder,
            config=config.follow_up,
            clock=self.now,
            on_commit=self._committed,
            add_lifecycle=self.turn.add_lifecycle,
        )
        self.scheduler = ContactScheduler(
            self.turn.run,
            store=store,
            config=schedule,
            owner=config.owner,
            shared=self.shared,
            on_debounced=metrics.debounced if metrics is not None else None,
        )
        # A run whose answer is ready yields when the lead wrote again meanwhile.
        self.turn.burst = self.scheduler
        # Set while no contact has a turn, a debounce or a nudge under way: what an
        # operator's drain and the tests' "settled" wait for instead of guessing a delay.
        self.idle = self.scheduler.idle

    def now(self) -> datetime:
        """`clock()` read at call time: hand this out, not `clock`, which tests replace."""
        return self.clock()

    def _committed(self) -> None:
        self.on_commit()

    # --- scheduling (see runtime/scheduler.py) -----------------------------------------
    def notify(self, contact_key: str, *, immediate: bool = False, complete: bool | None = None) -> None:
        """A message for this contact was stored: (re)start its quiet window."""
        self.scheduler.notify(contact_key, immediate=immediate, complete=complete)

    def presence(self, contact_key: str, state: str) -> None:
        """The lead's phone reported their chat presence: a hint for the quiet window."""
        self.scheduler.presence(contact_key, state)

    async def resume_pending(self) -> int:
        return await self.scheduler.resume_pending()

    async def start(self) -> None:
        await self.scheduler.start()

    async def poll_ready_once(self) -> list[str]:
        return await self.scheduler.poll_ready_once()

    async def close(self, timeout: float = 10.0) -> None:
        await self.scheduler.close(timeout)

    @property
    def owner(self) -> str:
        return self.scheduler.owner

    @property
    def active_contacts(self) -> int:
        return self.scheduler.active_contacts

    @property
    def turns_completed(self) -> int:
        return self.turn.completed

    # --- follow-ups -------------------------------------------------------------------
    async def run_follow_up(self, due: DueFollowUp) -> str:
        """Write one nudge to a lead who went silent; returns what happened (for logs/tests).

        Runs as the contact's only activity: if the lead is writing right now, the nudge
        is moot (their turn's commit cancels it)."""
        outcome = await self.scheduler.exclusive(due.contact_key, lambda: self.follow_up.run(due))
        return str(outcome)

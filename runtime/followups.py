"""Follow-ups: the nudges scheduled for leads who went silent mid-qualification.

Schedules live in the store (a commit cancels the lead's pending nudges and may
schedule the next), so they survive restarts; `FollowUpScheduler` only looks for due
ones, and `FollowUpTurn` decides whether a due nudge still makes sense and writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import structlog

from core.clock import Clock
from core.errors import LLMUnavailable
from core.lead import LeadProfile
from core.logging import get_logger
from core.models import mask_contact_key
from core.records import DueFollowUp, LeadRecord, TurnCommit
from runtime.commit import CommitBuilder
from store.base import Store

if TYPE_CHECKING:  # the agent (langgraph, openai) is loaded only where turns run
    from agent.graph import SdrAgent, TurnResult

log = get_logger(__name__)

# Channels where free text is allowed only within 24 h of the lead's last message.
WINDOWED_CHANNELS = frozenset({"whatsapp_cloud", "instagram"})


@dataclass(frozen=True)
class FollowUpConfig:
    history_window: int


class FollowUpTurn:
    """One nudge to a lead who went silent; run under the contact's exclusive section."""

    def __init__(
        self,
        *,
        store: Store,
        agent: SdrAgent,
        builder: CommitBuilder,
        config: FollowUpConfig,
        clock: Clock,
        on_commit: Callable[[], None],
        add_lifecycle: Callable[[LeadRecord | None, TurnCommit], None],
    ) -> None:
        self.store = store
        self.agent = agent
        self.builder = builder
        self.config = config
        self.clock = clock
        self.on_commit = on_commit
        self.add_lifecycle = add_lifecycle

    async def _moot(self, due: DueFollowUp, lead: LeadRecord | None) -> str | None:
        """Why this nudge must not be written (any more), or None."""
        if lead is None:
            return "lead_gone"
        now = self.clock()
        checks = (
            (lead.opted_out, "opted_out"),
            (bool(lead.handoff_state), "handed_off"),
            (lead.paused_until is not None and lead.paused_until > now, "human_talking"),
            (bool(lead.last_inbound_at and lead.last_inbound_at > due.scheduled_at), "lead_replied"),
            # Something was said since this nudge was planned (another instance already
            # sent it, or a person answered): a second nudge would be spam.
            (
                bool(
                    lead.conversation_last_message_at and lead.conversation_last_message_at > due.scheduled_at
                ),
                "superseded",
            ),
        )
        for moot, reason in checks:
            if moot:
                return reason
        if await self.store.pending_inbound(due.contact_key):
            return "lead_replied"
        window_closed = lead.last_inbound_at is not None and now - lead.last_inbound_at > timedelta(hours=24)
        if lead.channel in WINDOWED_CHANNELS and window_closed:
            return "outside_24h_window"
        return None

    async def run(self, due: DueFollowUp) -> str:
        lead = await self.store.get_lead(due.contact_key)
        reason = await self._moot(due, lead)
        if reason is not None:
            await self.store.cancel_follow_up(due.id, reason=reason)
            log.info("follow_up_cancelled", reason=reason, contact=mask_contact_key(due.contact_key))
            return reason
        assert lead is not None
        turn_id = uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(
            turn_id=turn_id, channel=lead.channel, contact=mask_contact_key(due.contact_key)
        ):
            try:
                result = await self._write(due, lead, self.clock())
            except LLMUnavailable as exc:
                log.warning("follow_up_deferred", reason=str(exc))
                return "deferred"
            # The lead may have written while the model was writing the nudge: then the
            # nudge is moot (their turn answers them), never sent after their reply.
            fresh = await self.store.get_lead(due.contact_key)
            if await self.store.pending_inbound(due.contact_key) or (
                fresh is not None and fresh.last_inbound_at != lead.last_inbound_at
            ):
                await self.store.cancel_follow_up(due.id, reason="lead_replied")
                return "lead_replied"
            commit = self.builder.from_agent(
                turn_id, due.contact_key, [], lead, result, at=self.clock(), fired_follow_up=due
            )
            self.add_lifecycle(lead, commit)
            await self.store.commit_turn(commit)
            log.info("follow_up_sent", attempt=due.attempt)
            self.on_commit()
            return "sent"

    async def _write(self, due: DueFollowUp, lead: LeadRecord, now: datetime) -> TurnResult:
        from agent.graph import TurnInput

        instruction = self.agent.deps.prompts.message("follow_up_instruction").replace(
            "{tentativa}", str(due.attempt)
        )
        return await self.agent.run(
            TurnInput(
                contact_key=due.contact_key,
                inbound=[],
                profile=LeadProfile.model_validate(lead.profile),
                history=await self.store.recent_messages(due.contact_key, self.config.history_window),
                lead_message_count=lead.lead_message_count,
                summary=lead.summary,
                handed_off=False,
                now=now,
                nudge=instruction,
            )
        )


class _Runner(Protocol):
    """What the scheduler needs of the turn runner: its clock and the guarded nudge."""

    def clock(self) -> datetime: ...

    async def run_follow_up(self, due: DueFollowUp) -> str: ...


class FollowUpScheduler:
    def __init__(self, store: Store, runner: _Runner, *, poll_s: float, batch: int = 20) -> None:
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

"""One turn: read a contact's pending burst, decide whether and how to answer, commit once.

The policy lives here: an opted-out lead is recorded but never answered, "SAIR" is
honoured even while a person talks, a person talking silences the bot, a long silence
starts a new session, and only then is the agent asked. The model being down defers
the turn (the messages stay pending); any other failure is retried a few times and then
answered with a fixed apology, so a lead is never left in silence.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import structlog

from agent.guardrails import is_opt_out
from core.clock import Clock
from core.errors import LLMUnavailable
from core.lead import LeadProfile
from core.logging import get_logger
from core.metrics import Metrics
from core.models import InboundMessage, MessageKind, mask_contact_key
from core.outbox import ChatwootHandoff
from core.records import InboundRecord, LeadRecord, TurnCommit
from integrations.google_calendar import GoogleCalendarUnavailable
from runtime.commit import OPT_OUT_CONFIRMATION, CommitBuilder
from runtime.first_touch import (
    TEMPLATE_ONLY_CHANNELS,
    FirstTouchConfig,
    forms_of,
    hold_until,
    in_conversation,
    mark_first_touch,
    merged_profile,
    only_forms,
    rescored,
    template_touch,
)
from runtime.late_parts import Carried, CarriedCosts, Yielded, heard_seconds
from runtime.lifecycle import Lifecycle
from runtime.meetings import Booked, MeetingDesk, MeetingOffer, Taken, meeting_note
from runtime.quiet_window import ends_thought
from runtime.scheduler import ScheduleConfig
from runtime.seller_routing import choose_seller
from store.base import Store

if TYPE_CHECKING:  # the agent (langgraph, openai) is loaded only where turns run
    from agent.graph import SdrAgent, TurnInput, TurnResult

log = get_logger(__name__)

ProfileName = Callable[[InboundMessage], Awaitable[str | None]]
# Blue ticks and "typing..." on the lead's last message (WhatsApp Cloud's mark-as-read).
ReadReceipt = Callable[[InboundMessage], Awaitable[None]]


class BurstWatch(Protocol):
    """What the scheduler knows of the lead's burst while a run answers it
    (runtime/scheduler.py's ContactScheduler)."""

    def reading(self, contact_key: str) -> None:
        """The run reads the pending messages now: what was notified is in it."""

    async def more_coming(self, contact_key: str) -> bool:
        """Once the answer is ready, before it commits: did the lead write again (or are
        they typing)? True: the run yields and the next one answers the whole burst."""


@dataclass(frozen=True)
class TurnConfig:
    history_window: int
    session_idle_hours: float
    max_failures: int


def _quiet_left(schedule: ScheduleConfig, records: list[InboundRecord]) -> float:
    """What a burst stored by several instances still needs: the window of its last
    message (a complete question waits less than a fragment). Only the lead's own
    messages count: a filled form is complete as it arrives and never waits for a quiet
    window (the lead is holding the phone)."""
    said = [r for r in records if r.message.kind is not MessageKind.FORM]
    if not said:
        return 0.0
    last = max(said, key=lambda r: r.received_at).message
    return schedule.quiet_left([r.received_at for r in said], complete=ends_thought(last))


@dataclass
class _Outcome:
    """A committed turn's kind and costs, for its log line and metrics."""

    kind: str
    commit: TurnCommit
    llm_s: float = 0.0
    # Prompt (cached included), completion, and the cached part of the prompt.
    tokens: tuple[int, int, int] = (0, 0, 0)
    # The read receipt sent while the model thought; awaited once the turn committed.
    courtesy: asyncio.Task[None] | None = None
    # How long the answer waited for the lead to finish typing (ContactScheduler.more_coming).
    held_s: float = 0.0


class Turn:
    def __init__(
        self,
        *,
        store: Store,
        agent: SdrAgent,
        builder: CommitBuilder,
        config: TurnConfig,
        schedule: ScheduleConfig,
        shared: bool,
        clock: Clock,
        on_commit: Callable[[], None],
        lifecycle: Lifecycle | None = None,
        metrics: Metrics | None = None,
        profile_name: ProfileName | None = None,
        read_receipt: ReadReceipt | None = None,
        first_touch: FirstTouchConfig | None = None,
        meetings: MeetingDesk | None = None,
    ) -> None:
        self.first_touch = first_touch or FirstTouchConfig()
        self.meetings = meetings
        self.store = store
        self.agent = agent
        self.builder = builder
        self.config = config
        self.schedule = schedule
        self.shared = shared
        self.clock = clock
        self.on_commit = on_commit
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.profile_name = profile_name
        self.read_receipt = read_receipt
        self.completed = 0
        # Set by the owner of the scheduler (runtime/turns.py); None: never yield.
        self.burst: BurstWatch | None = None
        self.carried = CarriedCosts()

    async def run(self, contact_key: str) -> bool:
        """True when the turn committed (or there was nothing to do)."""
        records = await self._read(contact_key)
        while self.shared and (wait := _quiet_left(self.schedule, records)) > 0:
            await asyncio.sleep(wait)
            records = await self._read(contact_key)
        if not records:
            return True
        turn_id = uuid.uuid4().hex[:12]
        first = records[0].message
        with structlog.contextvars.bound_contextvars(
            turn_id=turn_id, channel=first.channel, contact=mask_contact_key(contact_key)
        ):
            started = time.perf_counter()
            lead = await self.store.get_lead(contact_key)
            try:
                outcome = await self._decide(turn_id, contact_key, records, lead)
            except Yielded as yielded:
                self._report_yield(yielded, len(records), time.perf_counter() - started)
                return True  # the messages stay pending; the scheduler runs again
            if outcome is None:
                return False
            self.add_lifecycle(lead, outcome.commit)
            carried = self.carried.peek(contact_key)
            if carried is not None and carried.answered_by(outcome.commit.inbound_ids):
                outcome.commit.usage = carried.onto(outcome.commit.usage)
            await self.store.commit_turn(outcome.commit)
            self.carried.done(contact_key)
            self.completed += 1
            self._report(outcome, len(records), time.perf_counter() - started)
            self.on_commit()
            if outcome.courtesy is not None:
                # Long done in practice (one HTTP call against a model call); awaited so a
                # settled runner has nothing left in flight.
                await outcome.courtesy
            return True

    async def _read(self, contact_key: str) -> list[InboundRecord]:
        if self.burst is not None:
            self.burst.reading(contact_key)
        return await self.store.pending_inbound(contact_key)

    async def _decide(
        self, turn_id: str, contact_key: str, records: list[InboundRecord], lead: LeadRecord | None
    ) -> _Outcome | None:
        """What this turn commits, or None when it must be tried again later."""
        build = self.builder.build
        try:
            if lead is not None and lead.opted_out:
                # Recorded, never answered automatically.
                commit = build(turn_id, contact_key, records, lead, reply="", at=self.clock())
                return _Outcome("silent_opted_out", commit)
            if any(is_opt_out(r.message.text) for r in records if r.message.kind is not MessageKind.FORM):
                # Before the pause check: "SAIR" must be honoured even while a person talks.
                goodbye = self.agent.deps.prompts.message("opt_out_confirmation")
                commit = build(
                    turn_id,
                    contact_key,
                    records,
                    lead,
                    reply=goodbye,
                    at=self.clock(),
                    opt_out=True,
                    purpose=OPT_OUT_CONFIRMATION,
                )
                return _Outcome("opt_out", commit)
            if forms_of(records):
                return await self._form_turn(turn_id, contact_key, records, lead)
            if lead is not None and lead.paused_until is not None and lead.paused_until > self.clock():
                # A person at the company is answering.
                commit = build(turn_id, contact_key, records, lead, reply="", at=self.clock())
                return _Outcome("silent_human_talking", commit)
            return await self._think(turn_id, contact_key, records, lead)
        except Yielded:
            raise
        except (LLMUnavailable, GoogleCalendarUnavailable) as exc:
            # The model (or the calendar a booking needs) is down or rate-limited: the
            # messages wait, however long it takes; nothing is confirmed meanwhile.
            log.warning("turn_deferred", reason=str(exc), messages=len(records))
            await self.store.record_turn_failure([r.id for r in records], str(exc))
            return None
        except Exception as exc:  # refusal, rejected request, or a bug: retrying may not help
            attempts = max(r.attempts for r in records) + 1
            log.exception("turn_failed", messages=len(records), attempts=attempts)
            await self.store.record_turn_failure([r.id for r in records], repr(exc))
            if attempts < self.config.max_failures:
                return None
            # Never leave the lead in silence: a fixed apology, the messages kept.
            apology = self.agent.deps.prompts.turn_failed_reply
            return _Outcome(
                "fallback", build(turn_id, contact_key, records, lead, reply=apology, at=self.clock())
            )

    def _report(self, outcome: _Outcome, messages: int, total_s: float) -> None:
        commit, llm_s = outcome.commit, outcome.llm_s
        own_s = total_s - llm_s - outcome.held_s
        log.info(
            "turn_committed",
            kind=outcome.kind,
            messages=messages,
            replies=sum(1 for m in commit.messages if m.direction == "out"),
            temperature=commit.temperature,
            score=commit.score,
            llm_ms=round(llm_s * 1000, 1),
            own_ms=round(own_s * 1000, 1),
            held_ms=round(outcome.held_s * 1000, 1),
        )
        self._count(outcome.kind, llm_s, own_s, outcome.tokens)

    def _report_yield(self, yielded: Yielded, messages: int, total_s: float) -> None:
        """A model call paid for an answer nobody will read: logged and counted, so an
        operator sees what waiting for late parts costs."""
        own_s = total_s - yielded.llm_seconds - yielded.held_s
        log.info(
            "turn_yielded",
            messages=messages,
            llm_ms=round(yielded.llm_seconds * 1000, 1),
            own_ms=round(own_s * 1000, 1),
            held_ms=round(yielded.held_s * 1000, 1),
        )
        self._count("yielded", yielded.llm_seconds, own_s, yielded.tokens)

    def _count(self, kind: str, llm_s: float, own_s: float, tokens: tuple[int, int, int]) -> None:
        if self.metrics is not None:
            self.metrics.turn(
                kind,
                llm_s=llm_s,
                own_s=own_s,
                tokens_in=tokens[0],
                tokens_out=tokens[1],
                tokens_cached=tokens[2],
            )

    def add_lifecycle(self, lead: LeadRecord | None, commit: TurnCommit) -> None:
        """CRM, ads and webhook side effects of what this turn changed, in the same commit."""
        if self.lifecycle is not None:
            commit.outbox.extend(self.lifecycle.items_for(lead, commit))

    def _session_expired(self, lead: LeadRecord | None, now: datetime) -> bool:
        """Idle since the conversation's last message either way: a lead answering the
        bot's nudge is continuing that conversation, not starting a new one."""
        if lead is None:
            return False
        times = [t for t in (lead.last_inbound_at, lead.conversation_last_message_at) if t is not None]
        if not times:
            return False
        return now - max(times) > timedelta(hours=self.config.session_idle_hours)

    async def _sender_name(self, records: list[InboundRecord], lead: LeadRecord | None) -> str | None:
        """The provider's profile name when the webhook carries none (Instagram): fetched
        once, on the lead's first turn, then kept on the lead."""
        # Asked on the lead's first turn only: a profile without a name stays without one
        # rather than costing a Graph API call on every message.
        if lead is not None or self.profile_name is None:
            return None
        if any(r.message.name for r in records):
            return None
        try:
            return await self.profile_name(records[-1].message)
        except Exception:  # a name is a nicety: never let it cost the turn
            log.warning("profile_name_lookup_failed")
            return None

    def _acknowledge(self, message: InboundMessage) -> asyncio.Task[None] | None:
        """The lead sees their message read and the bot typing while the model thinks.

        Only on the path where a reply will follow, and beside the model call rather than
        before it: Meta shows the bubble for up to 25 s (about one model call), and a
        courtesy that fails or is slow must not delay or cost the turn."""
        if self.read_receipt is None:
            return None
        return asyncio.create_task(self._send_receipt(self.read_receipt, message))

    @staticmethod
    async def _send_receipt(receipt: ReadReceipt, message: InboundMessage) -> None:
        try:
            await receipt(message)
        except Exception as exc:  # a courtesy: logged, never raised
            log.warning("read_receipt_failed", error=type(exc).__name__)

    async def _form_turn(
        self, turn_id: str, contact_key: str, records: list[InboundRecord], lead: LeadRecord | None
    ) -> _Outcome:
        """A filled form (see runtime/first_touch.py): its answers first, then at most one
        first touch; a lead already in a conversation is never greeted twice."""
        now = self.clock()
        forms = forms_of(records)
        base = LeadProfile.model_validate(lead.profile) if lead else LeadProfile()
        profile = merged_profile(base, forms, now)
        if lead is not None:
            # The newest ad gets the credit (and Meta the lead id), as for an ad click.
            for record in records:
                if record.message.referral is not None:
                    await self.store.record_referral(
                        contact_key, record.message.referral.model_dump(exclude_none=True)
                    )
        if not only_forms(records):
            # The lead also wrote: an ordinary turn, with the answers already known.
            return await self._think(turn_id, contact_key, records, lead, profile=profile)
        count = lead.lead_message_count if lead else 0
        rules = self.agent.deps.rules
        if in_conversation(lead, now, self.first_touch):
            commit = self._form_commit(turn_id, contact_key, records, lead, now)
            rescored(commit, profile, rules, count)
            return _Outcome("form_merged", commit)
        hold = hold_until(forms, now, self.first_touch, self.agent.deps.hours)
        if records[-1].message.channel in TEMPLATE_ONLY_CHANNELS:
            commit = self._form_commit(turn_id, contact_key, records, lead, now)
            rescored(commit, profile, rules, count)
            commit.outbox.append(template_touch(commit, hold))
            return _Outcome("form_template", commit)
        instruction = self.agent.deps.prompts.message("form_first_touch_instruction")
        outcome = await self._think(
            turn_id, contact_key, records, lead, profile=profile, nudge=instruction, receipt=False
        )
        # The form is not the lead writing: no window opens, no message is counted.
        outcome.commit.lead_wrote = False
        outcome.commit.lead_messages_added = 0
        mark_first_touch(outcome.commit.outbox, hold)
        outcome.kind = "form_first_touch"
        return outcome

    async def _meeting_effects(
        self, contact_key: str, lead: LeadRecord | None, offer: MeetingOffer, result: TurnResult
    ) -> tuple[Booked | None, TurnResult]:
        """What the model asked of the calendar, done before the turn commits: the lead is
        told a meeting is booked, moved or cancelled only once the calendar did it."""
        assert self.meetings is not None
        effects, desk = result.effects, self.meetings
        done: Booked | Taken | None
        if effects.cancel_meeting and offer.existing is not None:
            done = await desk.cancel(contact_key, offer)
        elif effects.reschedule_option is not None and offer.existing is not None:
            done = await desk.move(contact_key, lead, result.profile, offer, effects.reschedule_option)
        elif effects.meeting_option is not None and offer.existing is None:
            done = await desk.book(contact_key, lead, result.profile, offer, effects.meeting_option)
        else:
            return None, result
        if isinstance(done, Booked):
            return done, replace(result, reply=f"{result.reply}\n\n{done.text}".strip())
        # The slot went meanwhile: the apology and fresh times replace the model's words.
        return None, replace(result, reply=done.text if done is not None else result.reply)

    async def _route_handoff(self, contact_key: str, profile: LeadProfile, commit: TurnCommit) -> None:
        """A lead handed to a person goes to the right seller (territory, products, then
        round-robin), who gets the Chatwoot conversation: the same routing as meetings."""
        if self.meetings is None or not self.meetings.sellers:
            return
        seller = await choose_seller(
            self.store, self.meetings.sellers, profile, contact_key=contact_key, now=self.clock()
        )
        if seller is None or seller.chatwoot_agent_id is None:
            return
        for item in commit.outbox:
            if item.kind == ChatwootHandoff.KIND:
                item.payload["assignee_id"] = seller.chatwoot_agent_id

    async def _meeting_offer(
        self, contact_key: str, lead: LeadRecord | None, profile: LeadProfile, records: list[InboundRecord]
    ) -> MeetingOffer | None:
        """The seller's free times for the model, when meetings are on and wanted. A
        calendar that cannot answer costs the offer, never the turn."""
        if self.meetings is None:
            return None
        try:
            return await self.meetings.offer(
                contact_key, lead, profile, [r.message.text or "" for r in records]
            )
        except Exception as exc:  # noqa: BLE001 - an offer is a nicety of this turn
            log.warning("meeting_offer_failed", error=type(exc).__name__)
            return None

    def _form_commit(
        self,
        turn_id: str,
        contact_key: str,
        records: list[InboundRecord],
        lead: LeadRecord | None,
        now: datetime,
    ) -> TurnCommit:
        commit = self.builder.build(turn_id, contact_key, records, lead, reply="", at=now)
        commit.lead_wrote = False
        commit.lead_messages_added = 0
        return commit

    async def _think(
        self,
        turn_id: str,
        contact_key: str,
        records: list[InboundRecord],
        lead: LeadRecord | None,
        *,
        profile: LeadProfile | None = None,
        nudge: str | None = None,
        receipt: bool = True,
    ) -> _Outcome:
        courtesy = self._acknowledge(records[-1].message) if receipt else None
        try:
            outcome = await self._answer(turn_id, contact_key, records, lead, profile=profile, nudge=nudge)
        except BaseException:
            if courtesy is not None:
                courtesy.cancel()
            raise
        outcome.courtesy = courtesy
        return outcome

    async def _answer(
        self,
        turn_id: str,
        contact_key: str,
        records: list[InboundRecord],
        lead: LeadRecord | None,
        *,
        profile: LeadProfile | None = None,
        nudge: str | None = None,
    ) -> _Outcome:
        from agent.graph import TurnInput

        now = self.clock()
        carried = self.carried.get(contact_key)
        # A run that yielded already asked the provider for the name: not asked twice.
        fetched_name = carried.name or await self._sender_name(records, lead)
        carried.name = fetched_name
        if fetched_name:
            records = [
                InboundRecord(
                    r.id, r.message.model_copy(update={"name": fetched_name}), r.attempts, r.received_at
                )
                for r in records
            ]
        new_session = self._session_expired(lead, now)
        history = (
            [] if new_session else await self.store.recent_messages(contact_key, self.config.history_window)
        )
        if profile is None:
            profile = LeadProfile.model_validate(lead.profile) if lead else LeadProfile()
        offer = await self._meeting_offer(contact_key, lead, profile, records) if nudge is None else None
        turn = TurnInput(
            contact_key=contact_key,
            inbound=[r.message for r in records],
            profile=profile,
            history=history,
            lead_message_count=lead.lead_message_count if lead else 0,
            summary=None if new_session or lead is None else lead.summary,
            handed_off=bool(lead and lead.handoff_state),
            now=now,
            nudge=nudge,
            meeting_note=offer.note if offer is not None else None,
            transcripts=carried.transcripts,
        )
        result, heard = await self._ask_agent(turn, carried, records)
        usage = (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.cached_tokens)
        more, held_s = await self._held(contact_key, nudge)
        if more:  # the lead wrote again: this answer yields to the one for the whole burst
            read = [r.id for r in records]
            carried.add(result.usage.model, usage, read)
            carried.heard_in(list(heard), read)
            raise Yielded(result.llm_seconds, usage, held_s)
        booked: Booked | None = None
        if offer is not None and self.meetings is not None:
            booked, result = await self._meeting_effects(contact_key, lead, offer, result)
        commit = self.builder.from_agent(
            turn_id, contact_key, records, lead, result, at=self.clock(), new_session=new_session
        )
        if result.effects.handoff is not None:
            await self._route_handoff(contact_key, result.profile, commit)
        if booked is not None:
            commit.meeting = booked.meeting
            if self.builder.config.chatwoot and self.meetings is not None:
                seller = self.meetings.sellers.get(booked.meeting.seller_key)
                agent = seller.chatwoot_agent_id if seller is not None else None
                commit.outbox += meeting_note(commit, booked, assignee_id=agent)
        if commit.usage is not None:
            commit.usage = replace(commit.usage, transcription_seconds=heard_seconds(heard))
        return _Outcome("agent", commit, result.llm_seconds, usage, held_s=held_s)

    async def _ask_agent(
        self, turn: TurnInput, carried: Carried, records: list[InboundRecord]
    ) -> tuple[TurnResult, list[float | None]]:
        """The agent's answer and the audio seconds it transcribed. A run that fails keeps
        its transcripts for the retry (TurnInput.transcripts), so their seconds are kept
        with them and counted on the turn that commits."""
        from agent.llm import count_transcription

        with count_transcription() as heard:
            try:
                return await self.agent.run(turn), heard
            except BaseException:
                carried.heard_in(list(heard), [r.id for r in records])
                raise

    async def _held(self, contact_key: str, nudge: str | None) -> tuple[bool, float]:
        """Before anything of the answer takes effect (a booking, the commit): whether the
        lead wrote again meanwhile (or typed on and then sent it), so this run yields and
        leaves its cost and transcripts to the run that answers the whole burst; and how
        long it waited for the lead to finish. A form's first touch (`nudge`) never waits."""
        if nudge is not None or self.burst is None:
            return False, 0.0
        began = time.perf_counter()
        more = await self.burst.more_coming(contact_key)
        return more, time.perf_counter() - began

"""Turns: gather a contact's burst of messages, think once, commit once.

Per contact there is at most one driver task: it waits for a quiet window (debounce,
capped so a chatty lead still gets an answer), runs one turn over every pending
message, and loops if more arrived meanwhile. Turns of one contact therefore never
overlap, and state for idle contacts is dropped so memory does not grow with them.

Durability comes from the store, not from this object: a message is pending in the
inbox until the turn that answered it commits, so a crash simply means the next start
finds it pending and answers it then.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from agent.guardrails import is_opt_out
from core.clock import Clock, utc_now
from core.lead import LeadProfile, describe_lead, field_label, missing_fields
from core.logging import get_logger

if TYPE_CHECKING:  # the agent (langgraph, openai) is loaded only where turns run
    from agent.graph import SdrAgent, TurnResult
from core.metrics import Metrics
from core.models import InboundMessage, mask_contact_key
from core.records import DueFollowUp, FollowUp, InboundRecord, LeadRecord, NewMessage, OutboxItem, TurnCommit
from core.settings import Settings
from runtime.lifecycle import Lifecycle
from runtime.replies import MAX_TEXT_BYTES, fit_to_limit, split_reply, typing_seconds
from store.base import Store

log = get_logger(__name__)

# The Chatwoot lead card is refreshed when the score moved at least this much.
CARD_SCORE_STEP = 10

# Channels where free text is allowed only within 24 h of the lead's last message.
WINDOWED_CHANNELS = frozenset({"whatsapp_cloud", "instagram"})


@dataclass
class _Contact:
    first_at: float | None = None
    last_at: float = 0.0
    task: asyncio.Task[None] | None = None
    dirty: bool = False
    failures: int = 0
    in_turn: bool = False


class TurnRunner:
    def __init__(
        self,
        *,
        store: Store,
        agent: SdrAgent | None,
        settings: Settings,
        on_commit: Callable[[], None] = lambda: None,
        clock: Clock | None = None,
        profile_name: Callable[[InboundMessage], Awaitable[str | None]] | None = None,
        shared: bool | None = None,
        lifecycle: Lifecycle | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.profile_name = profile_name
        # A store shared by several instances (Supabase) needs turn leases and a poller
        # for messages another instance stored; the embedded store has one process.
        self.shared = store.backend_name != "sqlite" if shared is None else shared
        # Stable across restarts (the host name by default): a restarted instance takes
        # back its own leases at once instead of waiting for them to expire.
        self.owner = settings.instance_id or socket.gethostname()
        self._poller: asyncio.Task[None] | None = None
        # False in the web process when a worker process runs the turns; `forward` then
        # tells the worker which lead has news.
        self.local_turns = True
        self.forward: Callable[[str], None] | None = None
        # Injectable so tests and the scenario suite can say "two days later".
        self.clock: Clock = clock or utc_now
        self.store = store
        self.agent = agent
        self.settings = settings
        self.on_commit = on_commit
        self._contacts: dict[str, _Contact] = {}
        # Set while no contact has a turn, a debounce or a nudge under way: what an
        # operator's drain and the tests' "settled" wait for instead of guessing a delay.
        self.idle = asyncio.Event()
        self.idle.set()
        self._slots = asyncio.Semaphore(settings.max_concurrent_turns)
        self._closing = False
        self.turns_completed = 0

    # --- scheduling ---------------------------------------------------------------
    def notify(self, contact_key: str, *, immediate: bool = False) -> None:
        """A message for this contact was stored: (re)start its quiet window."""
        if self._closing:
            return
        if not self.local_turns:
            if self.forward is not None:
                self.forward(contact_key)
            return
        now = time.monotonic()
        state = self._contacts.get(contact_key)
        if state is None:
            state = self._track(contact_key, _Contact())
        if state.first_at is None:
            state.first_at = now - (self.settings.debounce_max_s if immediate else 0.0)
        state.last_at = now - (self.settings.debounce_quiet_s if immediate else 0.0)
        state.dirty = True
        if state.task is None:
            # A fresh context: the driver outlives the webhook that woke it, and its
            # log lines must not carry that request's id.
            state.task = asyncio.create_task(
                self._drive(contact_key, state),
                name=f"turn:{mask_contact_key(contact_key)}",
                context=contextvars.Context(),
            )

    async def resume_pending(self) -> int:
        keys = await self.store.pending_contacts()
        for key in keys:
            self.notify(key, immediate=True)
        if keys:
            log.info("resumed_pending_contacts", contacts=len(keys))
        return len(keys)

    async def start(self) -> None:
        """Answer what waited while we were down, then (shared store) keep looking for
        bursts other instances stored and nobody is answering."""
        await self.resume_pending()
        if self.shared:
            self._poller = asyncio.create_task(self._poll_ready(), name="turns-ready-poller")

    async def _poll_ready(self) -> None:
        while not self._closing:
            try:
                await self.poll_ready_once()
            except Exception:  # the store is down: the webhooks say 503, we try again later
                log.warning("ready_poll_failed", exc_info=True)
            await asyncio.sleep(self.settings.pending_poll_s)

    async def poll_ready_once(self) -> list[str]:
        """Lease every burst that is over and nobody holds, and drive it here."""
        keys = await self.store.claim_ready_contacts(
            owner=self.owner,
            limit=max(1, self.settings.max_concurrent_turns),
            quiet_s=self.settings.debounce_quiet_s,
            max_wait_s=self.settings.debounce_max_s,
            lease_s=self.settings.turn_lease_s,
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

    async def close(self, timeout: float = 10.0) -> None:
        """Let running turns finish within `timeout`; the rest stays pending in the store."""
        self._closing = True
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        tasks: list[asyncio.Task[None]] = []
        for state in self._contacts.values():
            if state.task is None:
                continue
            if state.in_turn:
                tasks.append(state.task)
            else:
                state.task.cancel()  # only waiting (debounce/backoff): nothing to finish
                tasks.append(state.task)
        if not tasks:
            return
        _done, still = await asyncio.wait(tasks, timeout=timeout)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)

    async def _drive(self, contact_key: str, state: _Contact) -> None:
        try:
            while state.dirty and not self._closing:
                await self._debounce(state)
                if self.metrics is not None and state.first_at is not None:
                    self.metrics.debounced(time.monotonic() - state.first_at)
                state.dirty = False
                state.first_at = None
                async with self._slots:
                    if not await self._lease(contact_key, self.settings.turn_lease_s):
                        # Another instance is answering this lead; what it did not read
                        # stays pending and the ready poller brings it back.
                        log.info("turn_leased_elsewhere", contact=mask_contact_key(contact_key))
                        break
                    state.in_turn = True
                    try:
                        ok = await self._run_turn(contact_key)
                    except Exception:  # the store failed mid-turn: the messages are still pending
                        log.exception("turn_crashed", contact=mask_contact_key(contact_key))
                        ok = False
                    finally:
                        state.in_turn = False
                if ok:
                    state.failures = 0
                    if not state.dirty:
                        await self._release(contact_key)
                    continue
                state.failures += 1
                delay = min(
                    self.settings.turn_retry_base_s * 2 ** (state.failures - 1),
                    self.settings.turn_retry_max_s,
                )
                # Keep the lease through the backoff, or another instance would retry at once.
                await self._lease(contact_key, delay + self.settings.turn_lease_s)
                log.info("turn_retry_scheduled", contact=mask_contact_key(contact_key), in_s=delay)
                await asyncio.sleep(delay)
                state.dirty = True
        finally:
            state.task = None
            if state.dirty and not self._closing:
                # A message arrived while this task was unwinding: start a fresh driver
                # (before letting go of the contact, so the runner never looks idle here).
                if self._contacts.get(contact_key) is state:
                    del self._contacts[contact_key]
                self.notify(contact_key)
            self._untrack(contact_key, state)

    async def _lease(self, contact_key: str, lease_s: float) -> bool:
        if not self.shared:
            return True
        try:
            return await self.store.claim_contact(contact_key, owner=self.owner, lease_s=lease_s)
        except Exception:
            log.warning("turn_lease_failed", contact=mask_contact_key(contact_key), exc_info=True)
            return False

    async def _release(self, contact_key: str) -> None:
        if not self.shared:
            return
        try:
            await self.store.release_contact(contact_key, owner=self.owner)
        except Exception:  # it expires on its own
            log.warning("turn_release_failed", contact=mask_contact_key(contact_key), exc_info=True)

    async def _shared_quiet_wait(self, records: list[InboundRecord]) -> float:
        """Seconds the burst still needs to be quiet, counting messages other instances
        stored (their arrival never reached our local debounce)."""
        if not self.shared or not records:
            return 0.0
        now = datetime.now(UTC)
        newest = max(r.received_at for r in records)
        oldest = min(r.received_at for r in records)
        quiet_left = self.settings.debounce_quiet_s - (now - newest).total_seconds()
        max_left = self.settings.debounce_max_s - (now - oldest).total_seconds()
        return max(0.0, min(quiet_left, max_left))

    async def _debounce(self, state: _Contact) -> None:
        while True:
            first = state.first_at if state.first_at is not None else state.last_at
            deadline = min(
                state.last_at + self.settings.debounce_quiet_s, first + self.settings.debounce_max_s
            )
            delay = deadline - time.monotonic()
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    # --- one turn -----------------------------------------------------------------
    async def _run_turn(self, contact_key: str) -> bool:
        """True when the turn committed (or there was nothing to do)."""
        from core.errors import LLMUnavailable

        records = await self.store.pending_inbound(contact_key)
        while (wait := await self._shared_quiet_wait(records)) > 0:
            await asyncio.sleep(wait)
            records = await self.store.pending_inbound(contact_key)
        if not records:
            return True
        turn_id = uuid.uuid4().hex[:12]
        first = records[0].message
        with structlog.contextvars.bound_contextvars(
            turn_id=turn_id, channel=first.channel, contact=mask_contact_key(contact_key)
        ):
            started = time.perf_counter()
            lead = await self.store.get_lead(contact_key)
            llm_s = 0.0
            usage: tuple[int, int] = (0, 0)
            kind = "agent"
            try:
                if lead is not None and lead.opted_out:
                    kind = "silent_opted_out"  # recorded, never answered automatically
                    commit = self._commit(turn_id, contact_key, records, lead, reply="")
                elif any(is_opt_out(r.message.text) for r in records):
                    # Before the pause check: "SAIR" must be honoured even while a person talks.
                    kind = "opt_out"
                    commit = self._commit(
                        turn_id,
                        contact_key,
                        records,
                        lead,
                        reply=self.agent.deps.prompts.message("opt_out_confirmation"),
                        opt_out=True,
                    )
                    for item in commit.outbox:
                        item.payload["purpose"] = "opt_out_confirmation"
                elif lead is not None and lead.paused_until is not None and lead.paused_until > self.clock():
                    kind = "silent_human_talking"  # a person at the company is answering
                    commit = self._commit(turn_id, contact_key, records, lead, reply="")
                else:
                    commit, llm_s, usage = await self._think(turn_id, contact_key, records, lead)
            except LLMUnavailable as exc:
                # The model is down or rate-limited: the messages wait, however long it takes.
                log.warning("turn_deferred", reason=str(exc), messages=len(records))
                await self.store.record_turn_failure([r.id for r in records], str(exc))
                return False
            except Exception as exc:  # refusal, rejected request, or a bug: retrying may not help
                attempts = max(r.attempts for r in records) + 1
                log.exception("turn_failed", messages=len(records), attempts=attempts)
                await self.store.record_turn_failure([r.id for r in records], repr(exc))
                if attempts < self.settings.turn_max_failures:
                    return False
                # Never leave the lead in silence: a fixed apology, the messages kept.
                kind = "fallback"
                commit = self._commit(
                    turn_id, contact_key, records, lead, reply=self.agent.deps.prompts.turn_failed_reply
                )
            self._add_lifecycle(lead, commit)
            await self.store.commit_turn(commit)
            self.turns_completed += 1
            total_s = time.perf_counter() - started
            log.info(
                "turn_committed",
                kind=kind,
                messages=len(records),
                replies=sum(1 for m in commit.messages if m.direction == "out"),
                temperature=commit.temperature,
                score=commit.score,
                llm_ms=round(llm_s * 1000, 1),
                own_ms=round((total_s - llm_s) * 1000, 1),
            )
            if self.metrics is not None:
                self.metrics.turn(
                    kind, llm_s=llm_s, own_s=total_s - llm_s, tokens_in=usage[0], tokens_out=usage[1]
                )
            self.on_commit()
            return True

    def _add_lifecycle(self, lead: LeadRecord | None, commit: TurnCommit) -> None:
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
        return now - max(times) > timedelta(hours=self.settings.session_idle_hours)

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

    async def _think(
        self, turn_id: str, contact_key: str, records: list[InboundRecord], lead: LeadRecord | None
    ) -> tuple[TurnCommit, float, tuple[int, int]]:
        from agent.graph import TurnInput

        now = self.clock()
        fetched_name = await self._sender_name(records, lead)
        if fetched_name:
            records = [
                InboundRecord(
                    r.id, r.message.model_copy(update={"name": fetched_name}), r.attempts, r.received_at
                )
                for r in records
            ]
        new_session = self._session_expired(lead, now)
        history = (
            [] if new_session else await self.store.recent_messages(contact_key, self.settings.history_window)
        )
        profile = LeadProfile.model_validate(lead.profile) if lead else LeadProfile()
        result = await self.agent.run(
            TurnInput(
                contact_key=contact_key,
                inbound=[r.message for r in records],
                profile=profile,
                history=history,
                lead_message_count=lead.lead_message_count if lead else 0,
                summary=None if new_session or lead is None else lead.summary,
                handed_off=bool(lead and lead.handoff_state),
                now=now,
            )
        )
        commit = self._agent_commit(turn_id, contact_key, records, lead, result, new_session=new_session)
        return commit, result.llm_seconds, (result.usage.prompt_tokens, result.usage.completion_tokens)

    def _agent_commit(
        self,
        turn_id: str,
        contact_key: str,
        records: list[InboundRecord],
        lead: LeadRecord | None,
        result: TurnResult,
        *,
        new_session: bool = False,
        fired_follow_up: DueFollowUp | None = None,
    ) -> TurnCommit:
        effects = result.effects
        handed_off = bool(lead and lead.handoff_state) or effects.handoff is not None
        commit = self._commit(
            turn_id,
            contact_key,
            records,
            lead,
            reply=result.reply,
            lead_texts=result.lead_texts,
            profile=result.profile.model_dump(mode="json"),
            name=result.profile.name,
            score=result.score.score,
            temperature=result.score.temperature,
            reasons=list(result.score.reasons),
            opt_out=effects.opt_out,
        )
        if effects.opt_out:
            # The model's goodbye is the confirmation: it goes out even though the lead
            # is do-not-contact from this commit on.
            for item in commit.outbox:
                item.payload["purpose"] = "opt_out_confirmation"
        if self.settings.chatwoot_configured:
            self._chatwoot_card_items(commit, lead, result)
        commit.quotes = list(effects.quotes)
        commit.technical_questions = list(effects.technical_questions)
        commit.handoff = None if (lead and lead.handoff_state) else effects.handoff
        commit.summary = result.summary or None
        commit.new_session = new_session
        if fired_follow_up is not None:
            commit.lead_wrote = False
            commit.fired_follow_up_id = fired_follow_up.id
        attempt = fired_follow_up.attempt + 1 if fired_follow_up else 1
        delays = self.settings.follow_up_delays_h
        # Delays count from the lead's last message, so "2 h and 22 h" both land inside
        # a 24-hour customer-service window.
        now = self.clock()
        base = (
            now
            if fired_follow_up is None or lead is None or lead.last_inbound_at is None
            else lead.last_inbound_at
        )
        if (
            attempt <= len(delays)
            and not effects.opt_out
            and not handed_off
            and result.score.temperature != "quente"
            and missing_fields(result.profile)
        ):
            due_at = max(base + timedelta(hours=delays[attempt - 1]), now + timedelta(minutes=1))
            commit.follow_up = FollowUp(due_at=due_at, attempt=attempt)
        return commit

    def _chatwoot_card_items(self, commit: TurnCommit, lead: LeadRecord | None, result: TurnResult) -> None:
        """The lead card on the Chatwoot contact when it changed; the handoff note when handed off."""
        profile, score = result.profile, result.score
        # Not on every point the score moves (each message adds a little): a card update
        # costs Chatwoot calls on every turn, and sellers read the temperature anyway.
        changed = (
            lead is None
            or abs(lead.score - score.score) >= CARD_SCORE_STEP
            or lead.temperature != score.temperature
            or lead.profile != profile.model_dump(mode="json")
        )
        if changed:
            attributes = {
                "nome": profile.name,
                "empresa": profile.company,
                "cidade": profile.city,
                "uf": profile.state,
                "produto": profile.product_interest,
                "volume": profile.volume,
                "urgencia": profile.urgency,
                "pontuacao": score.score,
                "temperatura": score.temperature,
            }
            commit.outbox.append(
                OutboxItem(
                    kind="chatwoot_profile",
                    order_key=f"chatwoot:{commit.contact_key}",
                    idempotency_key=f"cw-profile:{commit.contact_key}:{commit.turn_id}",
                    payload={
                        "contact_key": commit.contact_key,
                        "attributes": {k: v for k, v in attributes.items() if v is not None},
                        "temperature": score.temperature,
                    },
                )
            )
        handoff = result.effects.handoff
        if handoff is not None and not (lead and lead.handoff_state):
            lines = ["🔔 Lead para atendimento humano", f"Motivo: {handoff.reason}"]
            lines += [f"{line}" for line in describe_lead(profile)]
            lines.append(f"Pontuação: {score.score}/100 ({score.temperature})")
            lines += [f"• {reason}" for reason in score.reasons]
            lines.append(f"Resumo: {handoff.summary}")
            missing = missing_fields(profile)
            if missing:
                lines.append("Falta saber: " + ", ".join(field_label(f) for f in missing))
            commit.outbox.append(
                OutboxItem(
                    kind="chatwoot_handoff",
                    order_key=f"chatwoot:{commit.contact_key}",
                    idempotency_key=f"cw-handoff:{commit.contact_key}:{commit.turn_id}",
                    payload={"contact_key": commit.contact_key, "card": "\n".join(lines)},
                )
            )

    def _commit(
        self,
        turn_id: str,
        contact_key: str,
        records: list[InboundRecord],
        lead: LeadRecord | None,
        *,
        reply: str,
        lead_texts: list[str] | None = None,
        profile: dict[str, Any] | None = None,
        name: str | None = None,
        score: int | None = None,
        temperature: str | None = None,
        reasons: list[str] | None = None,
        opt_out: bool = False,
    ) -> TurnCommit:
        """The commit of a turn; what the agent did not decide stays as the lead had it."""
        from agent.graph import describe_inbound

        inbound = [r.message for r in records]
        texts = lead_texts if lead_texts is not None else [describe_inbound(m) for m in inbound]
        messages = [
            NewMessage(
                direction="in",
                kind=msg.kind.value,
                text=text,
                provider_message_id=msg.provider_message_id,
                status="received",
                media_url=msg.media_url,
                ref=f"in-{index}",
            )
            for index, (msg, text) in enumerate(zip(inbound, texts, strict=True))
        ]
        if inbound:
            channel, contact_id = inbound[-1].channel, inbound[-1].contact_id
        else:
            assert lead is not None, "a turn without inbound messages needs a known lead"
            channel, contact_id = lead.channel, lead.contact_id
        outbox: list[OutboxItem] = []
        # Deterministic per batch of inbound messages: re-running a turn that crashed
        # before commit can never enqueue a second copy of the same answer.
        batch = f"{contact_key}:{records[0].id}" if records else f"{contact_key}:t{turn_id}"
        parts = fit_to_limit(
            split_reply(reply, max_parts=self.settings.reply_max_parts), MAX_TEXT_BYTES.get(channel)
        )
        for index, part in enumerate(parts):
            ref = f"reply-{index}"
            messages.append(NewMessage(direction="out", kind="text", text=part, status="queued", ref=ref))
            outbox.append(
                OutboxItem(
                    kind="send_text",
                    order_key=f"reply:{contact_key}",
                    idempotency_key=f"reply:{batch}:{index}",
                    payload={
                        "channel": channel,
                        "contact_id": contact_id,
                        "contact_key": contact_key,
                        "text": part,
                        "typing_s": typing_seconds(
                            part,
                            chars_per_s=self.settings.typing_chars_per_s,
                            max_s=self.settings.typing_max_s,
                        ),
                        "message_ref": ref,
                        "turn_id": turn_id,
                    },
                )
            )
        if self.settings.chatwoot_configured:
            # The team sees every message, the lead's and the bot's, in order.
            for message in messages:
                outbox.append(
                    OutboxItem(
                        kind="chatwoot_message",
                        order_key=f"chatwoot:{contact_key}",
                        idempotency_key=f"cw:{batch}:{message.ref}",
                        payload={
                            "contact_key": contact_key,
                            "direction": message.direction,
                            # Voice notes arrive as their transcript; media as a link the team can open.
                            "text": (message.text or "")
                            + (
                                f"\n{message.media_url}"
                                if (message.media_url or "").startswith("http")
                                else ""
                            ),
                            "message_ref": message.ref,
                        },
                    )
                )
        sender_name = next((m.name for m in reversed(inbound) if m.name), None)
        phone = next((m.phone for m in reversed(inbound) if m.phone), None)
        return TurnCommit(
            turn_id=turn_id,
            contact_key=contact_key,
            channel=channel,
            contact_id=contact_id,
            phone=phone,
            name=name or sender_name,
            inbound_ids=[r.id for r in records],
            messages=messages,
            profile=profile if profile is not None else (lead.profile if lead else {}),
            score=score if score is not None else (lead.score if lead else 0),
            temperature=temperature or (lead.temperature if lead else "frio"),
            score_reasons=reasons if reasons is not None else (lead.score_reasons if lead else []),
            lead_messages_added=len(inbound),
            outbox=outbox,
            opt_out=opt_out,
            at=self.clock(),
            referral=next(
                (m.referral.model_dump(exclude_none=True) for m in inbound if m.referral is not None), None
            ),
        )

    # --- follow-ups -----------------------------------------------------------------
    async def run_follow_up(self, due: DueFollowUp) -> str:
        """Write one nudge to a lead who went silent; returns what happened (for logs/tests).

        Runs under the contact's serialisation: if the lead is writing right now, the
        nudge is moot (their turn's commit cancels it)."""
        if self._closing:
            return "closing"
        state = self._contacts.get(due.contact_key)
        if state is not None:
            return "busy"
        state = self._track(due.contact_key, _Contact(task=asyncio.current_task(), in_turn=True))
        leased = False
        try:
            leased = await self._lease(due.contact_key, self.settings.turn_lease_s)
            if not leased:
                return "busy"
            return await self._follow_up_turn(due)
        finally:
            if leased:
                await self._release(due.contact_key)
            state.task = None
            state.in_turn = False
            if state.dirty and not self._closing:
                if self._contacts.get(due.contact_key) is state:
                    del self._contacts[due.contact_key]
                self.notify(due.contact_key)
            self._untrack(due.contact_key, state)

    async def _follow_up_turn(self, due: DueFollowUp) -> str:
        from agent.graph import TurnInput
        from core.errors import LLMUnavailable

        lead = await self.store.get_lead(due.contact_key)
        reason = None
        if lead is None:
            reason = "lead_gone"
        elif lead.opted_out:
            reason = "opted_out"
        elif lead.handoff_state:
            reason = "handed_off"
        elif lead.paused_until is not None and lead.paused_until > self.clock():
            reason = "human_talking"
        elif lead.last_inbound_at and lead.last_inbound_at > due.scheduled_at:
            reason = "lead_replied"
        elif lead.conversation_last_message_at and lead.conversation_last_message_at > due.scheduled_at:
            # Something was said since this nudge was planned (another instance already
            # sent it, or a person answered): a second nudge would be spam.
            reason = "superseded"
        elif await self.store.pending_inbound(due.contact_key):
            reason = "lead_replied"
        elif (
            lead.channel in WINDOWED_CHANNELS
            and lead.last_inbound_at
            and (self.clock() - lead.last_inbound_at > timedelta(hours=24))
        ):
            reason = "outside_24h_window"
        if reason is not None:
            await self.store.cancel_follow_up(due.id, reason=reason)
            log.info("follow_up_cancelled", reason=reason, contact=mask_contact_key(due.contact_key))
            return reason
        assert lead is not None
        turn_id = uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(
            turn_id=turn_id, channel=lead.channel, contact=mask_contact_key(due.contact_key)
        ):
            now = self.clock()
            instruction = self.agent.deps.prompts.message("follow_up_instruction").replace(
                "{tentativa}", str(due.attempt)
            )
            try:
                result = await self.agent.run(
                    TurnInput(
                        contact_key=due.contact_key,
                        inbound=[],
                        profile=LeadProfile.model_validate(lead.profile),
                        history=await self.store.recent_messages(
                            due.contact_key, self.settings.history_window
                        ),
                        lead_message_count=lead.lead_message_count,
                        summary=lead.summary,
                        handed_off=False,
                        now=now,
                        nudge=instruction,
                    )
                )
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
            commit = self._agent_commit(turn_id, due.contact_key, [], lead, result, fired_follow_up=due)
            for item in commit.outbox:
                item.payload["purpose"] = "follow_up"
            self._add_lifecycle(lead, commit)
            await self.store.commit_turn(commit)
            log.info("follow_up_sent", attempt=due.attempt)
            self.on_commit()
            return "sent"

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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from agent.graph import SdrAgent, TurnInput, describe_inbound
from agent.lead import LeadProfile
from agent.llm import LLMUnavailable
from core.logging import get_logger
from core.models import mask_contact_key
from core.settings import Settings
from integrations.store.base import InboundRecord, LeadRecord, NewMessage, OutboxItem, Store, TurnCommit
from runtime.replies import split_reply, typing_seconds

log = get_logger(__name__)


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
        agent: SdrAgent,
        settings: Settings,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.agent = agent
        self.settings = settings
        self.on_commit = on_commit
        self._contacts: dict[str, _Contact] = {}
        self._slots = asyncio.Semaphore(settings.max_concurrent_turns)
        self._closing = False
        self.turns_completed = 0

    # --- scheduling ---------------------------------------------------------------
    def notify(self, contact_key: str, *, immediate: bool = False) -> None:
        """A message for this contact was stored: (re)start its quiet window."""
        if self._closing:
            return
        now = time.monotonic()
        state = self._contacts.get(contact_key)
        if state is None:
            state = self._contacts[contact_key] = _Contact()
        if state.first_at is None:
            state.first_at = now - (self.settings.debounce_max_s if immediate else 0.0)
        state.last_at = now - (self.settings.debounce_quiet_s if immediate else 0.0)
        state.dirty = True
        if state.task is None:
            # A fresh context: the driver outlives the webhook that woke it, and its
            # log lines must not carry that request's id.
            state.task = asyncio.create_task(
                self._drive(contact_key, state), name=f"turn:{mask_contact_key(contact_key)}", context=contextvars.Context()
            )

    async def resume_pending(self) -> int:
        keys = await self.store.pending_contacts()
        for key in keys:
            self.notify(key, immediate=True)
        if keys:
            log.info("resumed_pending_contacts", contacts=len(keys))
        return len(keys)

    @property
    def active_contacts(self) -> int:
        return len(self._contacts)

    async def close(self, timeout: float = 10.0) -> None:
        """Let running turns finish within `timeout`; the rest stays pending in the store."""
        self._closing = True
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
                state.dirty = False
                state.first_at = None
                async with self._slots:
                    state.in_turn = True
                    try:
                        ok = await self._run_turn(contact_key)
                    finally:
                        state.in_turn = False
                if ok:
                    state.failures = 0
                    continue
                state.failures += 1
                delay = min(
                    self.settings.turn_retry_base_s * 2 ** (state.failures - 1),
                    self.settings.turn_retry_max_s,
                )
                log.info("turn_retry_scheduled", contact=mask_contact_key(contact_key), in_s=delay)
                await asyncio.sleep(delay)
                state.dirty = True
        finally:
            state.task = None
            if self._contacts.get(contact_key) is state:
                del self._contacts[contact_key]
            if state.dirty and not self._closing:
                # A message arrived while this task was unwinding: start a fresh driver.
                self.notify(contact_key)

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
            try:
                commit, llm_s = await self._think(turn_id, contact_key, records, lead)
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
                commit = self._fallback_commit(turn_id, contact_key, records, lead)
            await self.store.commit_turn(commit)
            self.turns_completed += 1
            total_s = time.perf_counter() - started
            log.info(
                "turn_committed",
                messages=len(records),
                replies=sum(1 for m in commit.messages if m.direction == "out"),
                temperature=commit.temperature,
                score=commit.score,
                llm_ms=round(llm_s * 1000, 1),
                own_ms=round((total_s - llm_s) * 1000, 1),
            )
            self.on_commit()
            return True

    async def _think(
        self, turn_id: str, contact_key: str, records: list[InboundRecord], lead: LeadRecord | None
    ) -> tuple[TurnCommit, float]:
        history = await self.store.recent_messages(contact_key, self.settings.history_window)
        profile = LeadProfile.model_validate(lead.profile) if lead else LeadProfile()
        inbound = [r.message for r in records]
        result = await self.agent.run(
            TurnInput(
                contact_key=contact_key,
                inbound=inbound,
                profile=profile,
                history=history,
                lead_message_count=lead.lead_message_count if lead else 0,
            )
        )
        commit = self._commit(
            turn_id,
            contact_key,
            records,
            lead_texts=result.lead_texts,
            reply=result.reply,
            profile=result.profile.model_dump(mode="json"),
            name=result.profile.name,
            score=result.score.score,
            temperature=result.score.temperature,
            reasons=list(result.score.reasons),
        )
        return commit, result.llm_seconds

    def _fallback_commit(
        self, turn_id: str, contact_key: str, records: list[InboundRecord], lead: LeadRecord | None
    ) -> TurnCommit:
        return self._commit(
            turn_id,
            contact_key,
            records,
            lead_texts=[describe_inbound(r.message) for r in records],
            reply=self.agent.deps.prompts.turn_failed_reply,
            profile=lead.profile if lead else {},
            name=lead.name if lead else None,
            score=lead.score if lead else 0,
            temperature=lead.temperature if lead else "frio",
            reasons=lead.score_reasons if lead else [],
        )

    def _commit(
        self,
        turn_id: str,
        contact_key: str,
        records: list[InboundRecord],
        *,
        lead_texts: list[str],
        reply: str,
        profile: dict[str, Any],
        name: str | None,
        score: int,
        temperature: str,
        reasons: list[str],
    ) -> TurnCommit:
        inbound = [r.message for r in records]
        messages = [
            NewMessage(
                direction="in",
                kind=msg.kind.value,
                text=text,
                provider_message_id=msg.provider_message_id,
                status="received",
            )
            for msg, text in zip(inbound, lead_texts, strict=True)
        ]
        outbox: list[OutboxItem] = []
        last = inbound[-1]
        # Deterministic per batch of inbound messages: re-running a turn that crashed
        # before commit can never enqueue a second copy of the same answer.
        batch = f"{contact_key}:{records[0].id}"
        for index, part in enumerate(split_reply(reply, max_parts=self.settings.reply_max_parts)):
            ref = f"reply-{index}"
            messages.append(NewMessage(direction="out", kind="text", text=part, status="queued", ref=ref))
            outbox.append(
                OutboxItem(
                    kind="send_text",
                    order_key=f"reply:{contact_key}",
                    idempotency_key=f"reply:{batch}:{index}",
                    payload={
                        "channel": last.channel,
                        "contact_id": last.contact_id,
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
        sender_name = next((m.name for m in reversed(inbound) if m.name), None)
        phone = next((m.phone for m in reversed(inbound) if m.phone), None)
        return TurnCommit(
            turn_id=turn_id,
            contact_key=contact_key,
            channel=last.channel,
            contact_id=last.contact_id,
            phone=phone,
            name=name or sender_name,
            inbound_ids=[r.id for r in records],
            messages=messages,
            profile=profile,
            score=score,
            temperature=temperature,
            score_reasons=reasons,
            lead_messages_added=len(inbound),
            outbox=outbox,
        )

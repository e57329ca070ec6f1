"""What the store keeps, as plain records: the ground every layer above reads.

These are data only (no I/O): the store backends fill them, the runtime and the agent
read them, the integrations get them handed in. Lanes and erasure hashes live here
because the store and the runtime must agree on them byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from core.models import InboundMessage

InboundStatus = Literal["pending", "done", "ignored"]
OutboxStatus = Literal["pending", "inflight", "done", "dead"]


# Outbox items of one lead are serialised per lane ("<lane>:<contact key>"; outbound
# webhooks add "#<endpoint id>"); an LGPD erasure deletes every lane of the lead, and any
# item whose payload names the lead, since payloads carry messages and contact data.
OUTBOX_LANES = ("reply", "chatwoot", "crm", "capi", "hooks")


def lane_key(lane: str, contact_key: str) -> str:
    return f"{lane}:{contact_key}"


def endpoint_lane_prefix(contact_key: str) -> str:
    """What every outbound-webhook lane of the lead starts with ("hooks:<key>#<endpoint>")."""
    return lane_key("hooks", contact_key) + "#"


# --- LGPD erasure -----------------------------------------------------------------------
# The erasure writes one item of this kind in its own transaction; the runtime turns it
# into the calls to Chatwoot, PipeRun and the webhook subscribers (runtime/erasure.py).
# Its lane and keys name the erasure, never the lead.
ERASURE_KIND = "lead_erasure"


def erasure_lane(erasure_id: int) -> str:
    return f"erasure:{erasure_id}"


def erasure_hash(key: bytes, value: str) -> str:
    """The only trace an erased lead leaves: HMAC-SHA256 under a key the bot owns, so the
    tombstone recognises a returning contact or message id and cannot be reversed by
    hashing every phone number (a plain hash of a phone can)."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def contact_tombstone(key: bytes, contact_key: str) -> str:
    return erasure_hash(key, f"contact:{contact_key}")


def message_tombstone(key: bytes, provider_message_id: str) -> str:
    return erasure_hash(key, f"message:{provider_message_id}")


@dataclass(frozen=True)
class InboundRecord:
    id: int
    message: InboundMessage
    attempts: int
    received_at: datetime


@dataclass
class LeadRecord:
    id: int
    contact_key: str
    channel: str
    contact_id: str
    phone: str | None
    name: str | None
    profile: dict[str, Any]
    score: int
    temperature: str
    score_reasons: list[str]
    lead_message_count: int
    opted_out: bool
    created_at: datetime
    updated_at: datetime
    handoff_state: str | None = None
    handoff_reason: str | None = None
    summary: str | None = None
    last_inbound_at: datetime | None = None
    paused_until: datetime | None = None
    referral: dict[str, Any] | None = None
    chatwoot_contact_id: int | None = None
    chatwoot_source_id: str | None = None
    chatwoot_conversation_id: int | None = None
    chatwoot_conversation_resolved: bool = False
    conversation_id: int | None = None
    conversation_started_at: datetime | None = None
    # Last message of the current conversation either way (a nudge counts too).
    conversation_last_message_at: datetime | None = None
    # Where the lead lives in PipeRun, once a hot lead was pushed there.
    crm_person_id: int | None = None
    crm_company_id: int | None = None
    crm_deal_id: int | None = None


@dataclass(frozen=True)
class StoredMessage:
    id: int
    direction: Literal["in", "out"]
    kind: str
    text: str | None
    created_at: datetime
    provider_message_id: str | None = None
    status: str | None = None


@dataclass
class OutboxItem:
    """A side effect waiting to happen. `order_key` serialises items that must stay in
    order (all replies to one contact), `idempotency_key` makes enqueueing twice a no-op."""

    kind: str
    order_key: str
    idempotency_key: str
    payload: dict[str, Any]
    id: int | None = None
    status: OutboxStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class NewMessage:
    direction: Literal["in", "out"]
    kind: str
    text: str | None
    provider_message_id: str | None = None
    status: str | None = None
    media_url: str | None = None
    # Outbox payloads point at the message they deliver by this ref; the store swaps
    # it for the real row id inside the same transaction.
    ref: str | None = None


@dataclass(frozen=True)
class QuoteRequest:
    """An `orcamentos` row: what a seller needs to price the lead's request."""

    products: list[str]
    quantity: str | None
    summary: str


@dataclass(frozen=True)
class TechnicalQuestion:
    question: str
    context: str | None


@dataclass(frozen=True)
class Handoff:
    reason: str
    summary: str


@dataclass(frozen=True)
class MeetingRecord:
    """A meeting the calendar accepted for a lead, keyed by our own event id (the one we
    gave Google), so saving it again after a retry or a crash changes nothing.

    `reminders_sent` names the reminders already sent ("24h", "1h"); a cancelled or
    moved meeting keeps its row with `status` saying so."""

    event_id: str
    contact_key: str
    seller_key: str
    calendar_id: str
    starts_at: datetime
    ends_at: datetime
    status: Literal["scheduled", "cancelled"] = "scheduled"
    meet_url: str | None = None
    html_link: str | None = None
    reminders_sent: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class DueReminder:
    """A reminder of `meeting` due now: `which` is the offset's name ("24h", "1h")."""

    meeting: MeetingRecord
    which: str


@dataclass(frozen=True)
class FollowUp:
    """A nudge due at `due_at` unless the lead writes first. `attempt` counts from 1."""

    due_at: datetime
    attempt: int


@dataclass(frozen=True)
class DueFollowUp:
    id: int
    contact_key: str
    attempt: int
    due_at: datetime
    scheduled_at: datetime


@dataclass(frozen=True)
class TurnUsage:
    """What one turn cost in model usage, recorded with the turn (issue 20's dashboard).

    `cached_tokens` is the part of `prompt_tokens` read from OpenAI's prompt cache
    (billed at half). `transcription_seconds` is the audio Whisper heard in the turn
    (None: the turn had voice notes whose length could not be told)."""

    model: str
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    transcription_seconds: float | None = 0.0


@dataclass
class TurnCommit:
    """Everything one turn changes, written all-or-nothing."""

    turn_id: str
    contact_key: str
    channel: str
    contact_id: str
    phone: str | None
    name: str | None
    inbound_ids: list[int]
    messages: list[NewMessage]
    profile: dict[str, Any]
    score: int
    temperature: str
    score_reasons: list[str]
    lead_messages_added: int
    outbox: list[OutboxItem] = field(default_factory=list)
    quotes: list[QuoteRequest] = field(default_factory=list)
    technical_questions: list[TechnicalQuestion] = field(default_factory=list)
    handoff: Handoff | None = None
    opt_out: bool = False
    summary: str | None = None
    # Start a new conversation row (session expired); the lead's profile carries over.
    new_session: bool = False
    # Pending nudges of this lead are always cancelled by a commit; this schedules the next.
    follow_up: FollowUp | None = None
    # A follow-up turn has no inbound message: it must not count as the lead writing.
    lead_wrote: bool = True
    fired_follow_up_id: int | None = None
    # The turn's own clock: what "last heard from" and follow-up schedules are measured by.
    at: datetime | None = None
    # The ad that brought the lead (Click-to-WhatsApp, Instagram ads); the first one wins.
    referral: dict[str, Any] | None = None
    # A meeting the calendar accepted during this turn (already saved by the store).
    meeting: MeetingRecord | None = None
    # The model usage of the turn (None: no model call, e.g. an opt-out or a silent turn).
    usage: TurnUsage | None = None
    # A website form's UTMs (utm_source, utm_medium, utm_campaign): the first one wins.
    utm: dict[str, str] | None = None


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    inflight: int
    dead: int
    done: int

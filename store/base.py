"""The store protocol every backend implements (embedded SQLite, Supabase).

The runtime only talks to this protocol, so the durability rules (inbox unique on
channel + provider id, a turn committed in one transaction, outbox with leases) are
stated once here and proven by one contract suite per backend.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from core.analytics import Funnel, GroupBy
from core.errors import StoreUnavailable
from core.models import InboundMessage
from core.records import (
    DueFollowUp,
    DueReminder,
    InboundRecord,
    InboundStatus,
    LeadRecord,
    MeetingRecord,
    OutboxItem,
    OutboxStats,
    OutboxStatus,
    StoredMessage,
    TurnCommit,
)


class StoreBusy(StoreUnavailable):
    """The store works, but another writer held it for the whole probe (SQLite's write
    lock under a flood). /api/health reports it busy and still up: another instance
    would wait on the same file, and every write retries meanwhile."""


class Store(Protocol):
    backend_name: str
    # Several instances may send through the same provider accounts at once (Supabase):
    # a provider's rate must then be metered in the store (`take_rate_slot`), not per process.
    shares_rate_limits: bool

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Prove the store takes a write; `StoreBusy` when it only could not right now."""

    async def add_inbound(
        self, message: InboundMessage, *, status: InboundStatus = "pending", reason: str | None = None
    ) -> bool:
        """Store a webhook message; False when (channel, provider id) was already stored,
        or when the contact or the message id belongs to an erased lead (the tombstone):
        a late or replayed delivery must not bring an erased lead back."""

    async def pending_contacts(self) -> list[str]: ...
    async def pending_inbound(self, contact_key: str) -> list[InboundRecord]: ...
    async def record_turn_failure(self, inbound_ids: list[int], error: str) -> None: ...

    async def get_lead(self, contact_key: str) -> LeadRecord | None: ...
    async def recent_messages(self, contact_key: str, limit: int) -> list[StoredMessage]: ...
    async def commit_turn(self, commit: TurnCommit) -> None:
        """All-or-nothing; a turn of a lead erased while it ran writes nothing."""

    async def claim_outbox(self, *, limit: int, now: datetime) -> list[OutboxItem]: ...
    async def outbox_progress(self, item_id: int, payload: dict[str, Any]) -> None: ...
    async def complete_outbox(self, item_id: int) -> None: ...
    async def retry_outbox(self, item_id: int, *, error: str, next_attempt_at: datetime) -> None: ...
    async def kill_outbox(self, item_id: int, *, error: str) -> None: ...
    async def release_inflight(self) -> int: ...
    async def next_outbox_due(self) -> datetime | None: ...
    async def outbox_stats(self) -> OutboxStats: ...
    async def replay_dead(self, *, kind: str | None = None) -> int: ...
    async def outbox_stats_by_kind(self) -> dict[str, OutboxStats]:
        """Depth and dead count per integration kind, for /metrics and /api/health."""

    async def list_outbox(
        self, *, status: OutboxStatus | None = None, kind: str | None = None, limit: int = 50
    ) -> list[OutboxItem]:
        """Newest first: what an operator looks at before replaying."""

    async def get_outbox(self, item_id: int) -> OutboxItem | None: ...
    async def replay_outbox(self, item_id: int) -> bool:
        """A dead item back to pending with fresh attempts and the same idempotency key;
        False when the item is unknown or not dead."""

    async def defer_outbox(self, item_id: int, *, next_attempt_at: datetime, reason: str) -> None:
        """Back to pending without counting the claim as an attempt (circuit open,
        shutting down): the item was never tried."""

    # --- several instances sharing one store -----------------------------------------
    async def claim_contact(self, contact_key: str, *, owner: str, lease_s: float) -> bool:
        """Lease a lead's turns to `owner` (new, renewed, or taken over from an owner whose
        lease expired); False while another live owner holds it."""

    async def release_contact(self, contact_key: str, *, owner: str) -> None: ...
    async def claim_ready_contacts(
        self, *, owner: str, limit: int, quiet_s: float, max_wait_s: float, lease_s: float
    ) -> list[str]:
        """Contacts whose pending burst is over (quiet for `quiet_s`, or waiting longer than
        `max_wait_s`) and whose turn nobody holds, leased to `owner`, oldest first."""

    async def save_crm_link(
        self, contact_key: str, *, person_id: int | None, company_id: int | None, deal_id: int | None
    ) -> None:
        """The PipeRun ids of a lead (None keeps what is stored)."""

    async def lead_by_crm_deal(self, deal_id: int) -> LeadRecord | None: ...
    async def lead_counts(self) -> dict[str, int]:
        """Leads by temperature (frio/morno/quente), for /metrics."""

    async def mark_message_sent(self, message_id: int, provider_message_id: str | None) -> None: ...

    async def record_delivery_status(
        self, channel: str, provider_message_id: str, status: str, error: str | None = None
    ) -> bool:
        """A provider's sent/delivered/read/failed report on one of our messages."""

    async def mark_message_failed(self, message_id: int, error: str) -> None: ...
    async def message_contact(self, provider_message_id: str) -> str | None:
        """The contact key of the lead one of our sent messages went to."""

    async def enqueue(self, item: OutboxItem) -> bool:
        """A side effect outside a turn (a provider's late report); idempotent on its key."""

    async def request_handoff(self, contact_key: str, *, reason: str, summary: str) -> None: ...
    async def note_business_message(
        self, contact_key: str, *, provider_message_id: str, text: str | None, pause_until: datetime
    ) -> bool:
        """A message the business sent to the lead (phone, app, echo). True when it was
        not one of the bot's own: a person is talking, the bot is paused until then."""

    async def save_chatwoot_link(
        self, contact_key: str, *, contact_id: int, source_id: str | None, conversation_id: int | None
    ) -> None:
        """Where the lead lives in Chatwoot: kept in the store, never in process memory."""

    async def set_chatwoot_message_id(self, message_id: int, chatwoot_message_id: int) -> None: ...
    async def is_own_chatwoot_message(
        self, chatwoot_message_id: int, *, conversation_id: int | None = None, text: str | None = None
    ) -> bool: ...
    async def lead_by_chatwoot_conversation(self, conversation_id: int) -> LeadRecord | None: ...
    async def lead_by_chatwoot_contact(self, contact_id: int) -> LeadRecord | None:
        """The lead linked to this Chatwoot contact; several (one person on two channels,
        a contact merged in Chatwoot): the one whose record changed last."""

    async def record_referral(self, contact_key: str, referral: dict[str, Any]) -> bool:
        """A lead already in a thread came back through an ad (Instagram
        `messaging_referrals`): its attribution becomes this newest ad. False, and nothing
        stored, for an unknown or erased contact or an empty referral."""

    async def record_human_reply(
        self, contact_key: str, *, text: str, chatwoot_message_id: int
    ) -> int | None:
        """A sales person's Chatwoot reply, stored as an outgoing message; None if already known."""

    async def set_human_owned(
        self, contact_key: str, *, until: datetime | None, resolved: bool = False
    ) -> None:
        """Pause the bot while a person owns the conversation; `until=None` gives it back
        (and `resolved` forgets the Chatwoot conversation so the next message opens a new one)."""

    async def due_follow_ups(self, *, now: datetime, limit: int) -> list[DueFollowUp]: ...
    async def cancel_follow_up(self, follow_up_id: int, *, reason: str) -> None: ...
    async def quotes(self, contact_key: str) -> list[dict[str, Any]]: ...
    async def technical_questions(self, contact_key: str) -> list[dict[str, Any]]: ...
    async def forget_lead(self, contact_key: str) -> bool:
        """LGPD erasure, in one transaction: every row, outbox item and lease of the lead
        gone; a tombstone (keyed hashes of the contact key and of its provider message
        ids) written so nothing can bring the lead back; an anonymous audit row; and one
        `ERASURE_KIND` outbox item that takes the erasure to Chatwoot, the CRM and the
        webhook subscribers. False (and nothing written) when the contact is unknown."""

    async def is_erased(self, contact_key: str) -> bool:
        """The contact's lead was erased: whatever still arrives for it is dropped."""

    async def take_rate_slot(
        self, name: str, *, rate_per_s: float, burst: int, now: datetime | None = None
    ) -> float:
        """Reserve the next send slot of the rate limit `name` (GCRA: `burst` sends free
        at once, then one every 1/`rate_per_s` s) in one atomic step, and return how many
        seconds after `now` it is (0.0: go now). Every instance sharing the store draws
        from the same meter; a slot once returned is taken, so the caller sends in it.
        `now=None` is the store's own clock (Supabase: the database's, the one clock all
        instances share, so their clocks' skew cannot stall or speed up the others)."""

    # --- which seller takes a lead (prompts/sellers.toml, runtime/seller_routing.py) ---
    async def assign_seller(
        self, contact_key: str, candidates: list[str], *, now: datetime | None = None
    ) -> str:
        """The seller key of the lead among `candidates` (seller keys, in the file's
        order), in one atomic step: the lead's assignment if it is one of them (sticky);
        else the candidate assigned least recently (never assigned first; ties in list
        order), recorded for the lead and moved to the back of the rotation. Every
        instance sharing the store draws from one rotation, so two leads assigned at
        once never get the same "least recent" seller. The rotation's order is the
        store's own sequence, not a clock; `now` (None: the store's clock) is only
        written down. An erased contact gets an answer and nothing recorded; no
        candidate is a ValueError."""

    async def lead_seller(self, contact_key: str) -> str | None:
        """The seller key the lead was assigned to; None before any (or after erasure)."""

    # --- meetings booked on a seller's calendar (issue 17) -----------------------------
    async def save_meeting(self, meeting: MeetingRecord) -> bool:
        """Store a meeting the calendar accepted, keyed by its `event_id` (ours, given to
        Google): saving the same event again (a retry, a crash, a reschedule, a cancel)
        keeps one row and its first `contact_key`, `seller_key`, `calendar_id` and
        `created_at`, and updates `status`, `starts_at`, `ends_at`, the links (a None
        link keeps the one stored) and `updated_at` (the store's clock). A new
        `starts_at` clears `reminders_sent`: those reminders were for the old time.
        `reminders_sent` of the record is not written (see `mark_reminder_sent`). False,
        and nothing stored, when the contact belongs to an erased lead (the tombstone)."""

    async def lead_meetings(self, contact_key: str) -> list[MeetingRecord]:
        """The lead's meetings, every status, soonest first (ties by event id)."""

    async def due_reminders(self, *, now: datetime, offsets: dict[str, float]) -> list[DueReminder]:
        """The reminders to send now, soonest meeting first: for each scheduled meeting
        not yet started (`starts_at > now`), the closest of the `offsets` (name: hours
        before the start) whose time has come (`starts_at - hours <= now`), unless that
        one is already in `reminders_sent`. Only the closest counts: the larger ones due
        too are skipped for good (a "24h" reminder is pointless 50 minutes before), so
        once "1h" is sent nothing more is due for the meeting. See `due_reminder`."""

    async def mark_reminder_sent(self, event_id: str, which: str) -> None:
        """Add `which` to the meeting's `reminders_sent`; idempotent, and a no-op for an
        unknown event. Only `which` is recorded: larger offsets need no mark, since
        `due_reminders` only ever offers the closest due one."""

    # --- the sales dashboard (issue 20, core/analytics.py) ----------------------------
    async def funnel(
        self,
        since: datetime,
        until: datetime,
        *,
        group_by: GroupBy = "week",
        timezone: str,
        brl_per_usd: float,
    ) -> Funnel:
        """The funnel of the leads created in [since, until) by week (company time,
        `timezone` as in prompts/company.toml) or by source, with time to first reply,
        temperatures, handoff reasons, opt-outs, and the model cost of the turns
        committed in the period (US$ at list prices, R$ at `brl_per_usd`)."""

    async def mark_deal_won(self, contact_key: str, *, at: datetime | None = None) -> bool:
        """The CRM said the lead's deal was won (the funnel's last stage); the first time
        counts. False for an unknown lead."""


def due_reminder(meeting: MeetingRecord, *, now: datetime, offsets: dict[str, float]) -> DueReminder | None:
    """The rule of `Store.due_reminders` for one meeting, shared by every backend."""
    if meeting.status != "scheduled" or meeting.starts_at <= now:
        return None
    due = [
        (hours, name) for name, hours in offsets.items() if meeting.starts_at - timedelta(hours=hours) <= now
    ]
    if not due:
        return None
    _hours, closest = min(due)
    return None if closest in meeting.reminders_sent else DueReminder(meeting, closest)


def reminder_horizon(now: datetime, offsets: dict[str, float]) -> datetime | None:
    """The latest start a meeting can have and still have a reminder due at `now`."""
    return now + timedelta(hours=max(offsets.values())) if offsets else None

"""Supabase store: the production backend, spoken to through PostgREST.

Several bot instances share one Supabase, so every write that touches more than one row
or needs a decision is one Postgres function called by `rpc`: one HTTP call is one
transaction, and a crash between calls can never leave half a turn. Single-table reads
and single-row updates with plain values are ordinary PostgREST table requests.

The parts: `requests` (the client, deadlines, the retry policy, how answers are
classified), `errors` (those failures in the one exception tree), `names` (every table,
column and function named here, checked against the migrated schema) and `rows`
(PostgREST rows to records and back). This module is the store itself: one method per
protocol call, each one `_rpc`, `_select` or `_update`.
"""

from __future__ import annotations

import socket
import uuid
from datetime import datetime
from typing import Any

import httpx

from core.logging import get_logger
from core.models import InboundMessage
from core.records import (
    OUTBOX_LANES,
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
    lane_key,
)
from store.base import due_reminder, reminder_horizon
from store.supabase.analytics import SupabaseAnalytics
from store.supabase.errors import SupabaseRequestError
from store.supabase.names import FUNCTIONS, MEETING_COLUMNS, MESSAGE_COLUMNS, OUTBOX_COLUMNS, TABLES
from store.supabase.requests import PostgrestRequests
from store.supabase.rows import (
    commit_body,
    lead_record,
    outbox_item,
    parse_dt,
    parse_optional_dt,
    plain,
    stats_of,
    stored_message,
)
from store.timestamps import iso

__all__ = [
    "FUNCTIONS",
    "MEETING_COLUMNS",
    "MESSAGE_COLUMNS",
    "OUTBOX_COLUMNS",
    "TABLES",
    "SupabaseRequestError",
    "SupabaseStore",
]

log = get_logger(__name__)

# What a claimed or released item no longer has: an owner and a lease.
_UNCLAIMED = {"claimed_by": None, "lease_expires_at": None}


class SupabaseStore(SupabaseAnalytics, PostgrestRequests):
    backend_name = "supabase"
    # Every instance behind the load balancer sends through the same provider accounts.
    shares_rate_limits = True

    def __init__(
        self,
        url: str,
        service_role_key: str,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        instance_id: str | None = None,
        outbox_lease_s: float = 300.0,
    ) -> None:
        """`instance_id` names this instance's outbox claims and should survive a restart
        of the same instance (default: the host name), so that on start it takes back what
        it left in flight; another live instance's claims are left to their lease."""
        super().__init__(
            url, service_role_key, timeout_s=timeout_s, max_attempts=max_attempts, transport=transport
        )
        self.instance_id = instance_id or socket.gethostname()
        self._outbox_lease_s = outbox_lease_s

    def __repr__(self) -> str:  # the key must not leak through a repr in a traceback
        return f"SupabaseStore(url={self._url!r}, instance_id={self.instance_id!r})"

    async def ping(self) -> None:
        await self._select("inbound", "id", limit=1)

    # --- inbox --------------------------------------------------------------------
    async def add_inbound(
        self, message: InboundMessage, *, status: InboundStatus = "pending", reason: str | None = None
    ) -> bool:
        return bool(
            await self._rpc(
                "sdr_add_inbound",
                p_channel=message.channel,
                p_provider_message_id=message.provider_message_id,
                p_contact_key=message.contact_key,
                p_message=message.model_dump(mode="json"),
                p_status=status,
                p_reason=reason,
            )
        )

    async def pending_contacts(self) -> list[str]:
        return list(await self._rpc("sdr_pending_contacts"))

    async def pending_inbound(self, contact_key: str) -> list[InboundRecord]:
        rows = await self._select(
            "inbound",
            "id,message,attempts,received_at",
            eq={"contact_key": contact_key, "status": "pending"},
            order=("id",),
        )
        return [
            InboundRecord(
                id=r["id"],
                message=InboundMessage.model_validate(r["message"]),
                attempts=r["attempts"],
                received_at=parse_dt(r["received_at"]),
            )
            for r in rows
        ]

    async def record_turn_failure(self, inbound_ids: list[int], error: str) -> None:
        if inbound_ids:
            await self._rpc("sdr_record_turn_failure", p_inbound_ids=list(inbound_ids), p_error=error[:500])

    # --- leads and history --------------------------------------------------------
    async def get_lead(self, contact_key: str) -> LeadRecord | None:
        row = await self._rpc("sdr_get_lead", p_contact_key=contact_key)
        return lead_record(row) if row else None

    async def recent_messages(self, contact_key: str, limit: int) -> list[StoredMessage]:
        rows = await self._rpc("sdr_recent_messages", p_contact_key=contact_key, p_limit=limit)
        return [stored_message(r) for r in rows]

    async def commit_turn(self, commit: TurnCommit) -> None:
        """One rpc, one transaction. The request id makes a retry of a commit whose answer
        was lost return the first result instead of writing the turn twice."""
        await self._rpc("sdr_commit_turn_once", p_request_id=uuid.uuid4().hex, p_commit=commit_body(commit))

    async def due_follow_ups(self, *, now: datetime, limit: int) -> list[DueFollowUp]:
        rows = await self._select(
            "followups",
            "id,contact_key,attempt,due_at,scheduled_at",
            eq={"status": "pending"},
            lte={"due_at": iso(now)},
            order=("due_at", "id"),
            limit=limit,
        )
        return [
            DueFollowUp(
                id=r["id"],
                contact_key=r["contact_key"],
                attempt=r["attempt"],
                due_at=parse_dt(r["due_at"]),
                scheduled_at=parse_dt(r["scheduled_at"]),
            )
            for r in rows
        ]

    async def cancel_follow_up(self, follow_up_id: int, *, reason: str) -> None:
        await self._update("followups", {"status": "cancelled", "reason": reason}, eq={"id": follow_up_id})

    async def quotes(self, contact_key: str) -> list[dict[str, Any]]:
        return list(await self._rpc("sdr_lead_quotes", p_contact_key=contact_key))

    async def technical_questions(self, contact_key: str) -> list[dict[str, Any]]:
        return list(await self._rpc("sdr_lead_technical_questions", p_contact_key=contact_key))

    async def forget_lead(self, contact_key: str) -> bool:
        """LGPD erasure in one transaction (sdr_erase_lead): every outbox item of the lead,
        the tombstone and the erasure item included. The tombstone's HMAC key lives in the
        database (`erasure_secret`, service role only) and the hashes are computed there,
        so `add_inbound` and `commit_turn` check it in the same transaction as their write."""
        lanes = [lane_key(lane, contact_key) for lane in OUTBOX_LANES]
        return bool(await self._rpc("sdr_erase_lead", p_contact_key=contact_key, p_order_keys=lanes))

    async def is_erased(self, contact_key: str) -> bool:
        return bool(await self._rpc("sdr_is_erased", p_contact_key=contact_key))

    async def lead_counts(self) -> dict[str, int]:
        return dict(await self._rpc("sdr_lead_counts") or {})

    # --- messages -----------------------------------------------------------------
    async def mark_message_sent(self, message_id: int, provider_message_id: str | None) -> None:
        await self._rpc(
            "sdr_mark_message_sent", p_message_id=message_id, p_provider_message_id=provider_message_id
        )

    async def record_delivery_status(
        self, channel: str, provider_message_id: str, status: str, error: str | None = None
    ) -> bool:
        # Provider ids do not collide across providers; `channel` is not needed to find it.
        return bool(
            await self._rpc(
                "sdr_record_delivery_status",
                p_provider_message_id=provider_message_id,
                p_status=status,
                p_error=error[:500] if error else None,
            )
        )

    async def mark_message_failed(self, message_id: int, error: str) -> None:
        await self._update("messages", {"status": "failed", "error": error[:500]}, eq={"id": message_id})

    async def message_contact(self, provider_message_id: str) -> str | None:
        contact_key: str | None = await self._rpc(
            "sdr_message_contact", p_provider_message_id=provider_message_id
        )
        return contact_key

    # --- outbox -------------------------------------------------------------------
    async def enqueue(self, item: OutboxItem) -> bool:
        return bool(
            await self._rpc(
                "sdr_enqueue",
                p_kind=item.kind,
                p_order_key=item.order_key,
                p_idempotency_key=item.idempotency_key,
                p_payload=plain(item.payload),
            )
        )

    async def claim_outbox(self, *, limit: int, now: datetime) -> list[OutboxItem]:
        """Heads of their order key only, SKIP LOCKED across instances, each leased to
        this instance; a dead instance's items come back when their lease expires."""
        rows = await self._rpc(
            "sdr_claim_outbox_for",
            p_owner=self.instance_id,
            p_limit=limit,
            p_now=iso(now),
            p_lease_seconds=self._outbox_lease_s,
        )
        return [outbox_item(r) for r in rows]

    async def outbox_progress(self, item_id: int, payload: dict[str, Any]) -> None:
        await self._update("outbox", {"payload": plain(payload)}, eq={"id": item_id})

    async def complete_outbox(self, item_id: int) -> None:
        await self._update("outbox", {"status": "done", "last_error": None, **_UNCLAIMED}, eq={"id": item_id})

    async def retry_outbox(self, item_id: int, *, error: str, next_attempt_at: datetime) -> None:
        values = {"status": "pending", "last_error": error[:1000], "next_attempt_at": iso(next_attempt_at)}
        await self._update("outbox", {**values, **_UNCLAIMED}, eq={"id": item_id})

    async def kill_outbox(self, item_id: int, *, error: str) -> None:
        await self._update(
            "outbox", {"status": "dead", "last_error": error[:1000], **_UNCLAIMED}, eq={"id": item_id}
        )

    async def release_inflight(self) -> int:
        """Only this instance's claims (it restarted) and expired leases (their instance
        died): the items another live instance is delivering stay with it."""
        return int(await self._rpc("sdr_release_outbox", p_owner=self.instance_id))

    async def next_outbox_due(self) -> datetime | None:
        return parse_optional_dt(await self._rpc("sdr_next_outbox_due"))

    async def _counts_by_kind(self) -> dict[str, dict[str, int]]:
        return dict(await self._rpc("sdr_outbox_stats") or {})

    async def outbox_stats(self) -> OutboxStats:
        totals: dict[str, int] = {}
        for counts in (await self._counts_by_kind()).values():
            for status, n in counts.items():
                totals[status] = totals.get(status, 0) + n
        return stats_of(totals)

    async def outbox_stats_by_kind(self) -> dict[str, OutboxStats]:
        """Open and dead items per kind, as SqliteStore: delivered ones are history, not
        depth, and a kind with nothing but delivered items is left out."""
        open_counts = {
            kind: {status: n for status, n in counts.items() if status != "done"}
            for kind, counts in (await self._counts_by_kind()).items()
        }
        return {kind: stats_of(counts) for kind, counts in open_counts.items() if counts}

    async def replay_dead(self, *, kind: str | None = None) -> int:
        return int(await self._rpc("sdr_replay_dead", p_kind=kind or None))

    async def list_outbox(
        self, *, status: OutboxStatus | None = None, kind: str | None = None, limit: int = 50
    ) -> list[OutboxItem]:
        eq = {name: value for name, value in (("status", status), ("kind", kind)) if value}
        rows = await self._select(
            "outbox", ",".join(OUTBOX_COLUMNS), eq=eq, order=("id",), desc=True, limit=max(0, limit)
        )
        return [outbox_item(r) for r in rows]

    async def get_outbox(self, item_id: int) -> OutboxItem | None:
        rows = await self._select("outbox", ",".join(OUTBOX_COLUMNS), eq={"id": item_id}, limit=1)
        return outbox_item(rows[0]) if rows else None

    async def replay_outbox(self, item_id: int) -> bool:
        return bool(await self._rpc("sdr_replay_outbox", p_id=item_id))

    async def defer_outbox(self, item_id: int, *, next_attempt_at: datetime, reason: str) -> None:
        await self._rpc(
            "sdr_defer_outbox", p_id=item_id, p_next_attempt_at=iso(next_attempt_at), p_reason=reason
        )

    # --- several instances sharing one store -----------------------------------------
    async def claim_contact(self, contact_key: str, *, owner: str, lease_s: float) -> bool:
        return bool(
            await self._rpc(
                "sdr_lease_contact", p_contact_key=contact_key, p_owner=owner, p_lease_seconds=lease_s
            )
        )

    async def release_contact(self, contact_key: str, *, owner: str) -> None:
        await self._rpc("sdr_release_contact", p_contact_key=contact_key, p_owner=owner)

    async def claim_ready_contacts(
        self, *, owner: str, limit: int, quiet_s: float, max_wait_s: float, lease_s: float
    ) -> list[str]:
        return list(
            await self._rpc(
                "sdr_claim_ready_contacts",
                p_owner=owner,
                p_limit=limit,
                p_quiet_seconds=quiet_s,
                p_max_wait_seconds=max_wait_s,
                p_lease_seconds=lease_s,
            )
        )

    # --- CRM and Chatwoot links ----------------------------------------------------
    async def save_crm_link(
        self, contact_key: str, *, person_id: int | None, company_id: int | None, deal_id: int | None
    ) -> None:
        # A key left out keeps what is stored: None never erases a known id.
        ids = {"crm_person_id": person_id, "crm_company_id": company_id, "crm_deal_id": deal_id}
        values = {column: value for column, value in ids.items() if value is not None}
        if values:
            await self._update("leads", values, eq={"contact_key": contact_key})

    async def lead_by_crm_deal(self, deal_id: int) -> LeadRecord | None:
        row = await self._rpc("sdr_get_lead", p_crm_deal_id=deal_id)
        return lead_record(row) if row else None

    async def request_handoff(self, contact_key: str, *, reason: str, summary: str) -> None:
        await self._rpc("sdr_request_handoff", p_contact_key=contact_key, p_reason=reason, p_summary=summary)

    async def note_business_message(
        self, contact_key: str, *, provider_message_id: str, text: str | None, pause_until: datetime
    ) -> bool:
        return bool(
            await self._rpc(
                "sdr_note_business_message",
                p_contact_key=contact_key,
                p_provider_message_id=provider_message_id,
                p_text=(text or "").strip(),
                p_pause_until=iso(pause_until),
            )
        )

    async def save_chatwoot_link(
        self, contact_key: str, *, contact_id: int, source_id: str | None, conversation_id: int | None
    ) -> None:
        values: dict[str, Any] = {
            "chatwoot_contact_id": contact_id,
            "chatwoot_conversation_id": conversation_id,
            "chatwoot_conversation_resolved": False,
        }
        if source_id is not None:  # unknown now: keep the one stored
            values["chatwoot_source_id"] = source_id
        await self._update("leads", values, eq={"contact_key": contact_key})

    async def set_chatwoot_message_id(self, message_id: int, chatwoot_message_id: int) -> None:
        try:
            await self._update(
                "messages",
                {"chatwoot_message_id": chatwoot_message_id},
                eq={"id": message_id},
                is_null=("chatwoot_message_id",),
            )
        except SupabaseRequestError as exc:
            if exc.code != "23505":
                raise
            log.warning("chatwoot_message_id_already_linked")  # keep the first link

    async def is_own_chatwoot_message(
        self, chatwoot_message_id: int, *, conversation_id: int | None = None, text: str | None = None
    ) -> bool:
        return bool(
            await self._rpc(
                "sdr_is_own_chatwoot_message",
                p_chatwoot_message_id=chatwoot_message_id,
                p_conversation_id=conversation_id,
                p_text=text.strip() if text else None,
            )
        )

    async def lead_by_chatwoot_conversation(self, conversation_id: int) -> LeadRecord | None:
        row = await self._rpc("sdr_get_lead", p_chatwoot_conversation_id=conversation_id)
        return lead_record(row) if row else None

    async def lead_by_chatwoot_contact(self, contact_id: int) -> LeadRecord | None:
        row = await self._rpc("sdr_lead_by_chatwoot_contact", p_chatwoot_contact_id=contact_id)
        return lead_record(row) if row else None

    async def record_referral(self, contact_key: str, referral: dict[str, Any]) -> bool:
        if not referral:
            return False
        return bool(
            await self._rpc("sdr_record_referral", p_contact_key=contact_key, p_referral=plain(referral))
        )

    async def take_rate_slot(
        self, name: str, *, rate_per_s: float, burst: int, now: datetime | None = None
    ) -> float:
        """One rpc, one row lock: instances taking slots at once queue on the row. No
        `now`: the database's clock, the same for every instance."""
        if not rate_per_s > 0:
            raise ValueError("rate_per_s must be positive")
        wait = await self._rpc(
            "sdr_take_rate_slot",
            p_name=name,
            p_rate_per_s=rate_per_s,
            p_burst=max(1, burst),
            p_now=iso(now) if now is not None else None,
        )
        return max(0.0, float(wait or 0.0))

    async def assign_seller(
        self, contact_key: str, candidates: list[str], *, now: datetime | None = None
    ) -> str:
        """One rpc: the contact lock and the candidates' rotation rows, locked in one order,
        queue instances assigning at once, so none hands the same seller two leads."""
        if not candidates or not all(isinstance(c, str) and c for c in candidates):
            raise ValueError("assign_seller needs at least one candidate seller key")
        seller = await self._rpc(
            "sdr_assign_seller",
            p_contact_key=contact_key,
            p_candidates=list(candidates),
            p_now=iso(now) if now is not None else None,
        )
        return str(seller)

    async def lead_seller(self, contact_key: str) -> str | None:
        rows = await self._select(
            "seller_assignments", "seller_key", eq={"contact_key": contact_key}, limit=1
        )
        return str(rows[0]["seller_key"]) if rows else None

    # --- meetings booked on a seller's calendar --------------------------------------
    async def save_meeting(self, meeting: MeetingRecord) -> bool:
        """One rpc under the contact lock: the tombstone check and the upsert in one
        transaction, so an erasure running at the same time cannot be undone by it."""
        return bool(
            await self._rpc(
                "sdr_save_meeting",
                p_event_id=meeting.event_id,
                p_contact_key=meeting.contact_key,
                p_seller_key=meeting.seller_key,
                p_calendar_id=meeting.calendar_id,
                p_starts_at=iso(meeting.starts_at),
                p_ends_at=iso(meeting.ends_at),
                p_status=meeting.status,
                p_meet_url=meeting.meet_url,
                p_html_link=meeting.html_link,
            )
        )

    async def lead_meetings(self, contact_key: str) -> list[MeetingRecord]:
        rows = await self._select(
            "meetings",
            ",".join(MEETING_COLUMNS),
            eq={"contact_key": contact_key},
            order=("starts_at", "event_id"),
        )
        return [_meeting(r) for r in rows]

    async def due_reminders(self, *, now: datetime, offsets: dict[str, float]) -> list[DueReminder]:
        horizon = reminder_horizon(now, offsets)
        if horizon is None:
            return []
        rows = await self._rpc("sdr_due_meetings", p_now=iso(now), p_horizon=iso(horizon))
        due = (due_reminder(_meeting(r), now=now, offsets=offsets) for r in rows)
        return [reminder for reminder in due if reminder is not None]

    async def mark_reminder_sent(self, event_id: str, which: str) -> None:
        await self._rpc("sdr_mark_reminder_sent", p_event_id=event_id, p_which=which)

    async def record_human_reply(
        self, contact_key: str, *, text: str, chatwoot_message_id: int
    ) -> int | None:
        message_id: int | None = await self._rpc(
            "sdr_record_human_reply",
            p_contact_key=contact_key,
            p_text=text,
            p_chatwoot_message_id=chatwoot_message_id,
        )
        return message_id

    async def set_human_owned(
        self, contact_key: str, *, until: datetime | None, resolved: bool = False
    ) -> None:
        if until is not None:
            # A person took it (again): the conversation is live, whatever it was before.
            values: dict[str, Any] = {"paused_until": iso(until), "chatwoot_conversation_resolved": False}
        else:
            values = {
                "paused_until": None,
                "handoff_state": None,
                "handoff_reason": None,
                "handoff_summary": None,
                "handoff_at": None,
            }
            if resolved:  # the id is kept: late events of that conversation still find the lead
                values["chatwoot_conversation_resolved"] = True
        await self._update("leads", values, eq={"contact_key": contact_key})


def _meeting(row: dict[str, Any]) -> MeetingRecord:
    return MeetingRecord(
        event_id=row["event_id"],
        contact_key=row["contact_key"],
        seller_key=row["seller_key"],
        calendar_id=row["calendar_id"],
        starts_at=parse_dt(row["starts_at"]),
        ends_at=parse_dt(row["ends_at"]),
        status=row["status"],
        meet_url=row["meet_url"],
        html_link=row["html_link"],
        reminders_sent=tuple(row["reminders_sent"] or ()),
        created_at=parse_optional_dt(row["created_at"]),
        updated_at=parse_optional_dt(row["updated_at"]),
    )

"""Supabase store: the production backend, spoken to through PostgREST.

Several bot instances share one Supabase, so every write that touches more than one row
or needs a decision is one Postgres function called by `rpc`: one HTTP call is one
transaction, and a crash between calls can never leave half a turn. Single-table reads
and single-row updates with plain values are ordinary PostgREST table requests.

Every call has a deadline and goes through one retry policy (5xx, timeouts, connection
errors; never a 4xx, which would fail the same way again). When the policy gives up,
the store raises `StoreUnavailable`: webhooks answer 503 so the provider retries, and
/api/health reports `supabase: error`. Nothing personal and never the service-role key
goes into a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx
from postgrest.types import ReturnMethod
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from core.errors import StoreUnavailable
from core.logging import Scrubber, get_logger
from core.models import InboundMessage
from core.records import (
    OUTBOX_LANES,
    DueFollowUp,
    InboundRecord,
    InboundStatus,
    LeadRecord,
    OutboxItem,
    OutboxStats,
    OutboxStatus,
    StoredMessage,
    TurnCommit,
    lane_key,
)

log = get_logger(__name__)
_SCRUB = Scrubber()

# --- names this store uses (tests/store/test_supabase_schema_names.py checks
# every one of them against the migrated schema) ----------------------------------------

# Columns read or written through table requests or read from rows the functions return.
LEAD_COLUMNS = (
    "id",
    "contact_key",
    "channel",
    "contact_id",
    "phone",
    "name",
    "profile",
    "score",
    "temperature",
    "score_reasons",
    "lead_message_count",
    "opted_out",
    "created_at",
    "updated_at",
    "handoff_state",
    "handoff_reason",
    "handoff_summary",
    "handoff_at",
    "summary",
    "last_inbound_at",
    "paused_until",
    "referral",
    "chatwoot_contact_id",
    "chatwoot_source_id",
    "chatwoot_conversation_id",
    "chatwoot_conversation_resolved",
    "crm_person_id",
    "crm_company_id",
    "crm_deal_id",
)
INBOUND_COLUMNS = ("id", "message", "attempts", "received_at", "contact_key", "status")
OUTBOX_COLUMNS = (
    "id",
    "kind",
    "order_key",
    "idempotency_key",
    "payload",
    "status",
    "attempts",
    "last_error",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "claimed_by",
    "lease_expires_at",
)
MESSAGE_COLUMNS = (
    "id",
    "direction",
    "kind",
    "text",
    "created_at",
    "provider_message_id",
    "status",
    "error",
    "chatwoot_message_id",
)
FOLLOWUP_COLUMNS = ("id", "contact_key", "attempt", "due_at", "scheduled_at", "status", "reason")
TABLES: dict[str, tuple[str, ...]] = {
    "leads": LEAD_COLUMNS,
    "inbound": INBOUND_COLUMNS,
    "outbox": OUTBOX_COLUMNS,
    "messages": MESSAGE_COLUMNS,
    "followups": FOLLOWUP_COLUMNS,
}

# Every rpc function this store calls, with the parameters it passes.
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "sdr_add_inbound": (
        "p_channel",
        "p_provider_message_id",
        "p_contact_key",
        "p_message",
        "p_status",
        "p_reason",
    ),
    "sdr_pending_contacts": (),
    "sdr_record_turn_failure": ("p_inbound_ids", "p_error"),
    "sdr_get_lead": ("p_contact_key", "p_chatwoot_conversation_id", "p_crm_deal_id"),
    "sdr_recent_messages": ("p_contact_key", "p_limit"),
    "sdr_commit_turn_once": ("p_request_id", "p_commit"),
    "sdr_claim_outbox_for": ("p_owner", "p_limit", "p_now", "p_lease_seconds"),
    "sdr_release_outbox": ("p_owner",),
    "sdr_next_outbox_due": (),
    "sdr_outbox_stats": (),
    "sdr_replay_dead": ("p_kind",),
    "sdr_replay_outbox": ("p_id",),
    "sdr_defer_outbox": ("p_id", "p_next_attempt_at", "p_reason"),
    "sdr_enqueue": ("p_kind", "p_order_key", "p_idempotency_key", "p_payload"),
    "sdr_lease_contact": ("p_contact_key", "p_owner", "p_lease_seconds"),
    "sdr_release_contact": ("p_contact_key", "p_owner"),
    "sdr_claim_ready_contacts": (
        "p_owner",
        "p_limit",
        "p_quiet_seconds",
        "p_max_wait_seconds",
        "p_lease_seconds",
    ),
    "sdr_mark_message_sent": ("p_message_id", "p_provider_message_id"),
    "sdr_record_delivery_status": ("p_provider_message_id", "p_status", "p_error"),
    "sdr_message_contact": ("p_provider_message_id",),
    "sdr_request_handoff": ("p_contact_key", "p_reason", "p_summary"),
    "sdr_note_business_message": ("p_contact_key", "p_provider_message_id", "p_text", "p_pause_until"),
    "sdr_is_own_chatwoot_message": ("p_chatwoot_message_id", "p_conversation_id", "p_text"),
    "sdr_record_human_reply": ("p_contact_key", "p_text", "p_chatwoot_message_id"),
    "sdr_lead_quotes": ("p_contact_key",),
    "sdr_lead_technical_questions": ("p_contact_key",),
    "sdr_erase_lead": ("p_contact_key", "p_order_keys"),
    "sdr_is_erased": ("p_contact_key",),
    "sdr_lead_counts": (),
}

# --- the one retry policy -------------------------------------------------------------

RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 2.0
RETRY_JITTER_S = 0.1


class _Transient(Exception):
    """A failure worth trying again: 5xx, timeout, connection refused or reset."""


class _Rejected(Exception):
    """A 4xx answer: the same request would fail the same way again."""

    def __init__(self, status: int, code: str | None, message: str | None) -> None:
        super().__init__(f"HTTP {status} {code or ''}: {message or ''}".strip())
        self.status = status
        self.code = code
        self.message = message


class SupabaseRequestError(Exception):
    """PostgREST refused a request (missing function, constraint, bad input): a bug or a
    schema out of date, not an outage, so it is not retried and not a 503."""

    def __init__(self, operation: str, status: int, code: str | None, message: str | None) -> None:
        super().__init__(
            f"supabase {operation} rejected: HTTP {status} {code or '-'}: {message or ''}".strip()
        )
        self.operation = operation
        self.status = status
        self.code = code


# Retried on transient failures only, with exponential backoff and jitter; the number of
# attempts is the store's (SUPABASE_MAX_ATTEMPTS), set per store by `copy(stop=...)`.
RETRY_POLICY = AsyncRetrying(
    retry=retry_if_exception_type(_Transient),
    wait=wait_exponential(multiplier=RETRY_INITIAL_S, max=RETRY_MAX_S) + wait_random(0, RETRY_JITTER_S),
    stop=stop_after_attempt(3),
    reraise=True,
)


async def _check_status(response: httpx.Response) -> None:
    """Classify every answer before supabase-py sees it: its own errors do not carry the
    HTTP status, and the status is what decides between retry, 503 and a bug."""
    if response.status_code < 400:
        return
    await response.aread()
    if response.status_code >= 500:
        raise _Transient(f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    # `details` can quote row values (a duplicate key's value): left out on purpose; the
    # message keeps what names the problem, with phone-like digit runs masked.
    message = body.get("message")
    raise _Rejected(
        response.status_code, body.get("code"), _SCRUB.scrub(str(message)[:300]) if message else None
    )


# --- value conversions ----------------------------------------------------------------


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    """PostgREST sends timestamptz as ISO 8601 text ("...+00:00")."""
    return datetime.fromisoformat(value) if value else None


def _plain(value: Any) -> Any:
    """JSON-ready copy of a payload, the way the SQLite store serialises it."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def _lead(row: dict[str, Any]) -> LeadRecord:
    return LeadRecord(
        id=row["id"],
        contact_key=row["contact_key"],
        channel=row["channel"],
        contact_id=row["contact_id"],
        phone=row["phone"],
        name=row["name"],
        profile=row["profile"] or {},
        score=row["score"],
        temperature=row["temperature"],
        score_reasons=row["score_reasons"] or [],
        lead_message_count=row["lead_message_count"],
        opted_out=bool(row["opted_out"]),
        created_at=_dt(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_dt(row["updated_at"]),  # type: ignore[arg-type]
        handoff_state=row["handoff_state"],
        handoff_reason=row["handoff_reason"],
        summary=row["summary"],
        last_inbound_at=_dt(row["last_inbound_at"]),
        paused_until=_dt(row["paused_until"]),
        referral=row["referral"],
        chatwoot_contact_id=row["chatwoot_contact_id"],
        chatwoot_source_id=row["chatwoot_source_id"],
        chatwoot_conversation_id=row["chatwoot_conversation_id"],
        chatwoot_conversation_resolved=bool(row["chatwoot_conversation_resolved"]),
        conversation_id=row.get("conversation_id"),
        conversation_started_at=_dt(row.get("conversation_started_at")),
        conversation_last_message_at=_dt(row.get("conversation_last_message_at")),
        crm_person_id=row.get("crm_person_id"),
        crm_company_id=row.get("crm_company_id"),
        crm_deal_id=row.get("crm_deal_id"),
    )


def _outbox_item(row: dict[str, Any]) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        kind=row["kind"],
        order_key=row["order_key"],
        idempotency_key=row["idempotency_key"],
        payload=row["payload"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=_dt(row["next_attempt_at"]),
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
    )


def _message(row: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        direction=row["direction"],
        kind=row["kind"],
        text=row["text"],
        created_at=_dt(row["created_at"]),  # type: ignore[arg-type]
        provider_message_id=row["provider_message_id"],
        status=row["status"],
    )


def _stats(counts: dict[str, int]) -> OutboxStats:
    return OutboxStats(
        pending=counts.get("pending", 0),
        inflight=counts.get("inflight", 0),
        dead=counts.get("dead", 0),
        done=counts.get("done", 0),
    )


def _commit_body(commit: TurnCommit) -> dict[str, Any]:
    """The TurnCommit under its Python names, as sdr_commit_turn reads it."""
    return {
        "turn_id": commit.turn_id,
        "contact_key": commit.contact_key,
        "channel": commit.channel,
        "contact_id": commit.contact_id,
        "phone": commit.phone,
        "name": commit.name,
        "inbound_ids": list(commit.inbound_ids),
        "messages": [asdict(m) for m in commit.messages],
        "profile": _plain(commit.profile),
        "score": commit.score,
        "temperature": commit.temperature,
        "score_reasons": list(commit.score_reasons),
        "lead_messages_added": commit.lead_messages_added,
        "outbox": [
            {
                "kind": item.kind,
                "order_key": item.order_key,
                "idempotency_key": item.idempotency_key,
                "payload": _plain(item.payload),
            }
            for item in commit.outbox
        ],
        "quotes": [asdict(q) for q in commit.quotes],
        "technical_questions": [asdict(q) for q in commit.technical_questions],
        "handoff": asdict(commit.handoff) if commit.handoff else None,
        "opt_out": commit.opt_out,
        "summary": commit.summary,
        "new_session": commit.new_session,
        "follow_up": (
            {"due_at": _iso(commit.follow_up.due_at), "attempt": commit.follow_up.attempt}
            if commit.follow_up
            else None
        ),
        "lead_wrote": commit.lead_wrote,
        "fired_follow_up_id": commit.fired_follow_up_id,
        "at": _iso(commit.at) if commit.at else None,
        "referral": _plain(commit.referral) if commit.referral is not None else None,
    }


# Our policy is the only one that retries: postgrest-py's own retry (GET/HEAD only, its
# own backoff) is switched off where this supabase-py version has the switch.
_NO_CLIENT_RETRY = (
    {"postgrest_client_retry": False}
    if "postgrest_client_retry" in {f.name for f in fields(AsyncClientOptions)}
    else {}
)

# What a claimed or released item no longer has: an owner and a lease.
_UNCLAIMED = {"claimed_by": None, "lease_expires_at": None}

Request = Callable[[], Awaitable[Any]]


class SupabaseStore:
    backend_name = "supabase"

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
        self._url = url
        self._key = service_role_key
        self._timeout_s = timeout_s
        self._retrying = RETRY_POLICY.copy(stop=stop_after_attempt(max(1, max_attempts)))
        self._transport = transport
        self.instance_id = instance_id or socket.gethostname()
        self._outbox_lease_s = outbox_lease_s
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncClient | None = None

    def __repr__(self) -> str:  # the key must not leak through a repr in a traceback
        return f"SupabaseStore(url={self._url!r}, instance_id={self.instance_id!r})"

    # --- lifecycle ----------------------------------------------------------------
    async def open(self) -> None:
        """One HTTP client for the store's life; no request yet, so an outage at start
        shows in /api/health instead of stopping the process."""
        if self._client is not None:
            return
        http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self._timeout_s),
            event_hooks={"response": [_check_status]},
        )
        options = AsyncClientOptions(
            httpx_client=http,
            postgrest_client_timeout=self._timeout_s,
            auto_refresh_token=False,
            persist_session=False,
            **_NO_CLIENT_RETRY,
        )
        try:
            self._client = await acreate_client(self._url, self._key, options=options)
        except Exception:
            await http.aclose()
            raise
        self._http = http

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.aclose()

    async def ping(self) -> None:
        await self._select("inbound", "id", limit=1)

    # --- the one way every request goes ---------------------------------------------
    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise StoreUnavailable("supabase store is not open")
        return self._client

    async def _attempt(self, request: Request) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await request()
        except TimeoutError as exc:
            raise _Transient(f"no answer within {self._timeout_s:g} s") from exc
        except httpx.TimeoutException as exc:
            raise _Transient(f"timeout ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"connection error ({type(exc).__name__})") from exc
        return response.data

    async def _call(self, operation: str, request: Request) -> Any:
        self._require_client()
        try:
            # A copy per call: a Retrying object keeps its iteration state, and calls overlap.
            return await self._retrying.copy()(self._attempt, request)
        except _Transient as exc:
            log.warning("supabase_unavailable", operation=operation, error=str(exc))
            raise StoreUnavailable(f"supabase {operation} unavailable: {exc}") from exc
        except _Rejected as exc:
            self._rejected(operation, exc)

    @staticmethod
    def _rejected(operation: str, exc: _Rejected) -> NoReturn:
        if exc.status in (401, 403):
            # A revoked or wrong key is an outage for this bot: refuse (503), never drop.
            raise StoreUnavailable(
                f"supabase {operation} unavailable: the service role key was refused (HTTP {exc.status})"
            ) from exc
        log.error("supabase_rejected", operation=operation, status=exc.status, code=exc.code)
        raise SupabaseRequestError(operation, exc.status, exc.code, exc.message) from exc

    async def _rpc(self, function: str, **params: Any) -> Any:
        unknown = set(params) - set(FUNCTIONS[function])
        if unknown:  # a programming error, caught by the schema-names test too
            raise TypeError(f"{function} takes no {sorted(unknown)}")
        client = self._require_client()
        return await self._call(f"rpc {function}", lambda: client.rpc(function, params).execute())

    async def _select(
        self,
        table: str,
        columns: str,
        *,
        eq: dict[str, Any] | None = None,
        lte: dict[str, Any] | None = None,
        order: tuple[str, ...] = (),
        desc: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        client = self._require_client()

        def request() -> Awaitable[Any]:
            query = client.table(table).select(columns)
            for column, value in (eq or {}).items():
                query = query.eq(column, value)
            for column, value in (lte or {}).items():
                query = query.lte(column, value)
            for column in order:
                query = query.order(column, desc=desc)
            if limit is not None:
                query = query.limit(limit)
            return query.execute()

        return await self._call(f"select {table}", request)

    async def _update(
        self, table: str, values: dict[str, Any], *, eq: dict[str, Any], is_null: tuple[str, ...] = ()
    ) -> None:
        client = self._require_client()

        def request() -> Awaitable[Any]:
            query = client.table(table).update(values, returning=ReturnMethod.minimal)
            for column, value in eq.items():
                query = query.eq(column, value)
            for column in is_null:
                query = query.is_(column, None)
            return query.execute()

        await self._call(f"update {table}", request)

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
                received_at=_dt(r["received_at"]),  # type: ignore[arg-type]
            )
            for r in rows
        ]

    async def record_turn_failure(self, inbound_ids: list[int], error: str) -> None:
        if inbound_ids:
            await self._rpc("sdr_record_turn_failure", p_inbound_ids=list(inbound_ids), p_error=error[:500])

    # --- leads and history --------------------------------------------------------
    async def get_lead(self, contact_key: str) -> LeadRecord | None:
        row = await self._rpc("sdr_get_lead", p_contact_key=contact_key)
        return _lead(row) if row else None

    async def recent_messages(self, contact_key: str, limit: int) -> list[StoredMessage]:
        rows = await self._rpc("sdr_recent_messages", p_contact_key=contact_key, p_limit=limit)
        return [_message(r) for r in rows]

    async def commit_turn(self, commit: TurnCommit) -> None:
        """One rpc, one transaction. The request id makes a retry of a commit whose answer
        was lost return the first result instead of writing the turn twice."""
        await self._rpc("sdr_commit_turn_once", p_request_id=uuid.uuid4().hex, p_commit=_commit_body(commit))

    async def due_follow_ups(self, *, now: datetime, limit: int) -> list[DueFollowUp]:
        rows = await self._select(
            "followups",
            "id,contact_key,attempt,due_at,scheduled_at",
            eq={"status": "pending"},
            lte={"due_at": _iso(now)},
            order=("due_at", "id"),
            limit=limit,
        )
        return [
            DueFollowUp(
                id=r["id"],
                contact_key=r["contact_key"],
                attempt=r["attempt"],
                due_at=_dt(r["due_at"]),  # type: ignore[arg-type]
                scheduled_at=_dt(r["scheduled_at"]),  # type: ignore[arg-type]
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
        return await self._rpc("sdr_message_contact", p_provider_message_id=provider_message_id)

    # --- outbox -------------------------------------------------------------------
    async def enqueue(self, item: OutboxItem) -> bool:
        return bool(
            await self._rpc(
                "sdr_enqueue",
                p_kind=item.kind,
                p_order_key=item.order_key,
                p_idempotency_key=item.idempotency_key,
                p_payload=_plain(item.payload),
            )
        )

    async def claim_outbox(self, *, limit: int, now: datetime) -> list[OutboxItem]:
        """Heads of their order key only, SKIP LOCKED across instances, each leased to
        this instance; a dead instance's items come back when their lease expires."""
        rows = await self._rpc(
            "sdr_claim_outbox_for",
            p_owner=self.instance_id,
            p_limit=limit,
            p_now=_iso(now),
            p_lease_seconds=self._outbox_lease_s,
        )
        return [_outbox_item(r) for r in rows]

    async def outbox_progress(self, item_id: int, payload: dict[str, Any]) -> None:
        await self._update("outbox", {"payload": _plain(payload)}, eq={"id": item_id})

    async def complete_outbox(self, item_id: int) -> None:
        await self._update("outbox", {"status": "done", "last_error": None, **_UNCLAIMED}, eq={"id": item_id})

    async def retry_outbox(self, item_id: int, *, error: str, next_attempt_at: datetime) -> None:
        values = {"status": "pending", "last_error": error[:1000], "next_attempt_at": _iso(next_attempt_at)}
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
        return _dt(await self._rpc("sdr_next_outbox_due"))

    async def _counts_by_kind(self) -> dict[str, dict[str, int]]:
        return dict(await self._rpc("sdr_outbox_stats") or {})

    async def outbox_stats(self) -> OutboxStats:
        totals: dict[str, int] = {}
        for counts in (await self._counts_by_kind()).values():
            for status, n in counts.items():
                totals[status] = totals.get(status, 0) + n
        return _stats(totals)

    async def outbox_stats_by_kind(self) -> dict[str, OutboxStats]:
        """Open and dead items per kind, as SqliteStore: delivered ones are history, not
        depth, and a kind with nothing but delivered items is left out."""
        open_counts = {
            kind: {status: n for status, n in counts.items() if status != "done"}
            for kind, counts in (await self._counts_by_kind()).items()
        }
        return {kind: _stats(counts) for kind, counts in open_counts.items() if counts}

    async def replay_dead(self, *, kind: str | None = None) -> int:
        return int(await self._rpc("sdr_replay_dead", p_kind=kind or None))

    async def list_outbox(
        self, *, status: OutboxStatus | None = None, kind: str | None = None, limit: int = 50
    ) -> list[OutboxItem]:
        eq = {name: value for name, value in (("status", status), ("kind", kind)) if value}
        rows = await self._select(
            "outbox", ",".join(OUTBOX_COLUMNS), eq=eq, order=("id",), desc=True, limit=max(0, limit)
        )
        return [_outbox_item(r) for r in rows]

    async def get_outbox(self, item_id: int) -> OutboxItem | None:
        rows = await self._select("outbox", ",".join(OUTBOX_COLUMNS), eq={"id": item_id}, limit=1)
        return _outbox_item(rows[0]) if rows else None

    async def replay_outbox(self, item_id: int) -> bool:
        return bool(await self._rpc("sdr_replay_outbox", p_id=item_id))

    async def defer_outbox(self, item_id: int, *, next_attempt_at: datetime, reason: str) -> None:
        await self._rpc(
            "sdr_defer_outbox", p_id=item_id, p_next_attempt_at=_iso(next_attempt_at), p_reason=reason
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
        return _lead(row) if row else None

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
                p_pause_until=_iso(pause_until),
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
        return _lead(row) if row else None

    async def record_human_reply(
        self, contact_key: str, *, text: str, chatwoot_message_id: int
    ) -> int | None:
        return await self._rpc(
            "sdr_record_human_reply",
            p_contact_key=contact_key,
            p_text=text,
            p_chatwoot_message_id=chatwoot_message_id,
        )

    async def set_human_owned(
        self, contact_key: str, *, until: datetime | None, resolved: bool = False
    ) -> None:
        if until is not None:
            # A person took it (again): the conversation is live, whatever it was before.
            values: dict[str, Any] = {"paused_until": _iso(until), "chatwoot_conversation_resolved": False}
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

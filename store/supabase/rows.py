"""Rows as PostgREST sends them, turned into the store's records, and a turn's commit
turned into the JSON body `sdr_commit_turn` reads."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from core.records import LeadRecord, OutboxItem, OutboxStats, StoredMessage, TurnCommit
from store.timestamps import iso


def parse_dt(value: str) -> datetime:
    """PostgREST sends timestamptz as ISO 8601 text ("...+00:00")."""
    return datetime.fromisoformat(value)


def parse_optional_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def plain(value: Any) -> Any:
    """JSON-ready copy of a payload, the way the SQLite store serialises it."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def lead_record(row: dict[str, Any]) -> LeadRecord:
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
        created_at=parse_dt(row["created_at"]),
        updated_at=parse_dt(row["updated_at"]),
        handoff_state=row["handoff_state"],
        handoff_reason=row["handoff_reason"],
        summary=row["summary"],
        last_inbound_at=parse_optional_dt(row["last_inbound_at"]),
        paused_until=parse_optional_dt(row["paused_until"]),
        referral=row["referral"],
        chatwoot_contact_id=row["chatwoot_contact_id"],
        chatwoot_source_id=row["chatwoot_source_id"],
        chatwoot_conversation_id=row["chatwoot_conversation_id"],
        chatwoot_conversation_resolved=bool(row["chatwoot_conversation_resolved"]),
        conversation_id=row.get("conversation_id"),
        conversation_started_at=parse_optional_dt(row.get("conversation_started_at")),
        conversation_last_message_at=parse_optional_dt(row.get("conversation_last_message_at")),
        crm_person_id=row.get("crm_person_id"),
        crm_company_id=row.get("crm_company_id"),
        crm_deal_id=row.get("crm_deal_id"),
    )


def outbox_item(row: dict[str, Any]) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        kind=row["kind"],
        order_key=row["order_key"],
        idempotency_key=row["idempotency_key"],
        payload=row["payload"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=parse_optional_dt(row["next_attempt_at"]),
        created_at=parse_optional_dt(row["created_at"]),
        updated_at=parse_optional_dt(row["updated_at"]),
    )


def stored_message(row: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        direction=row["direction"],
        kind=row["kind"],
        text=row["text"],
        created_at=parse_dt(row["created_at"]),
        provider_message_id=row["provider_message_id"],
        status=row["status"],
    )


def stats_of(counts: dict[str, int]) -> OutboxStats:
    return OutboxStats(
        pending=counts.get("pending", 0),
        inflight=counts.get("inflight", 0),
        dead=counts.get("dead", 0),
        done=counts.get("done", 0),
    )


def commit_body(commit: TurnCommit) -> dict[str, Any]:
    """The TurnCommit under its Python names, as sdr_commit_turn reads it."""
    body: dict[str, Any] = {
        "turn_id": commit.turn_id,
        "contact_key": commit.contact_key,
        "channel": commit.channel,
        "contact_id": commit.contact_id,
        "phone": commit.phone,
        "name": commit.name,
        "inbound_ids": list(commit.inbound_ids),
        "messages": [asdict(m) for m in commit.messages],
        "profile": plain(commit.profile),
        "score": commit.score,
        "temperature": commit.temperature,
        "score_reasons": list(commit.score_reasons),
        "lead_messages_added": commit.lead_messages_added,
        "outbox": [
            {
                "kind": item.kind,
                "order_key": item.order_key,
                "idempotency_key": item.idempotency_key,
                "payload": plain(item.payload),
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
            {"due_at": iso(commit.follow_up.due_at), "attempt": commit.follow_up.attempt}
            if commit.follow_up
            else None
        ),
        "lead_wrote": commit.lead_wrote,
        "fired_follow_up_id": commit.fired_follow_up_id,
        "at": iso(commit.at) if commit.at else None,
        "referral": plain(commit.referral) if commit.referral is not None else None,
    }
    # Issue 20's additions, sent only when there is something (sdr_record_turn_usage).
    if commit.usage is not None:
        body["usage"] = asdict(commit.usage)
    if commit.utm:
        body["utm"] = dict(commit.utm)
    return body

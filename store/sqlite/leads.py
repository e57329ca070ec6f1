"""Reading a lead and its history: the profile, the current conversation, what was said,
the quotes and technical questions it left, and the CRM ids it is linked to."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from core.clock import utc_now
from core.records import LeadRecord, StoredMessage
from store.sqlite.connection import SqliteConnection, unavailable_on_error
from store.timestamps import iso


def _maybe_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _lead_record(row: sqlite3.Row) -> LeadRecord:
    return LeadRecord(
        id=row["id"],
        contact_key=row["contact_key"],
        channel=row["channel"],
        contact_id=row["contact_id"],
        phone=row["phone"],
        name=row["name"],
        profile=json.loads(row["profile"]),
        score=row["score"],
        temperature=row["temperature"],
        score_reasons=json.loads(row["score_reasons"]),
        lead_message_count=row["lead_message_count"],
        opted_out=bool(row["opted_out"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        handoff_state=row["handoff_state"],
        handoff_reason=row["handoff_reason"],
        summary=row["summary"],
        last_inbound_at=_maybe_dt(row["last_inbound_at"]),
        paused_until=_maybe_dt(row["paused_until"]),
        referral=json.loads(row["referral"]) if row["referral"] else None,
        chatwoot_contact_id=row["chatwoot_contact_id"],
        chatwoot_source_id=row["chatwoot_source_id"],
        chatwoot_conversation_id=row["chatwoot_conversation_id"],
        chatwoot_conversation_resolved=bool(row["chatwoot_conversation_resolved"]),
        conversation_id=row["conversation_id"],
        conversation_started_at=_maybe_dt(row["conversation_started_at"]),
        conversation_last_message_at=_maybe_dt(row["conversation_last_message_at"]),
        crm_person_id=row["crm_person_id"],
        crm_company_id=row["crm_company_id"],
        crm_deal_id=row["crm_deal_id"],
    )


class Leads(SqliteConnection):
    async def get_lead(self, contact_key: str) -> LeadRecord | None:
        row = self.db.execute(
            "SELECT l.*, c.id AS conversation_id, c.started_at AS conversation_started_at,"
            " c.last_message_at AS conversation_last_message_at"
            " FROM leads l LEFT JOIN conversations c"
            "   ON c.id = (SELECT MAX(id) FROM conversations WHERE lead_id = l.id)"
            " WHERE l.contact_key = ?",
            (contact_key,),
        ).fetchone()
        return _lead_record(row) if row is not None else None

    async def recent_messages(self, contact_key: str, limit: int) -> list[StoredMessage]:
        rows = self.db.execute(
            "SELECT m.id, m.direction, m.kind, m.text, m.created_at, m.provider_message_id, m.status"
            " FROM messages m JOIN leads l ON l.id = m.lead_id"
            " WHERE l.contact_key = ?"
            "   AND m.conversation_id = (SELECT MAX(id) FROM conversations WHERE lead_id = l.id)"
            " ORDER BY m.id DESC LIMIT ?",
            (contact_key, limit),
        ).fetchall()
        return [
            StoredMessage(
                id=r["id"],
                direction=r["direction"],
                kind=r["kind"],
                text=r["text"],
                created_at=datetime.fromisoformat(r["created_at"]),
                provider_message_id=r["provider_message_id"],
                status=r["status"],
            )
            for r in reversed(rows)
        ]

    async def quotes(self, contact_key: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT o.* FROM orcamentos o JOIN leads l ON l.id = o.lead_id WHERE l.contact_key = ?"
            " ORDER BY o.id",
            (contact_key,),
        ).fetchall()
        return [{**dict(r), "products": json.loads(r["products"])} for r in rows]

    async def technical_questions(self, contact_key: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT q.* FROM technical_questions q JOIN leads l ON l.id = q.lead_id"
            " WHERE l.contact_key = ? ORDER BY q.id",
            (contact_key,),
        ).fetchall()
        return [dict(r) for r in rows]

    async def lead_counts(self) -> dict[str, int]:
        return dict(
            self.db.execute("SELECT temperature, COUNT(*) FROM leads GROUP BY temperature").fetchall()
        )

    @unavailable_on_error
    async def record_referral(self, contact_key: str, referral: dict[str, Any]) -> bool:
        # An erased lead has no row left (and the tombstone keeps it from coming back), so
        # the update finds nothing to change: the ad of a forgotten person is not kept.
        if not referral:
            return False
        cursor = self.db.execute(
            "UPDATE leads SET referral = ?, updated_at = ? WHERE contact_key = ?",
            (json.dumps(referral, ensure_ascii=False, default=str), iso(utc_now()), contact_key),
        )
        return cursor.rowcount > 0

    # --- CRM ----------------------------------------------------------------------
    async def save_crm_link(
        self, contact_key: str, *, person_id: int | None, company_id: int | None, deal_id: int | None
    ) -> None:
        self.db.execute(
            "UPDATE leads SET crm_person_id = COALESCE(?, crm_person_id),"
            " crm_company_id = COALESCE(?, crm_company_id), crm_deal_id = COALESCE(?, crm_deal_id),"
            " updated_at = ? WHERE contact_key = ?",
            (person_id, company_id, deal_id, iso(utc_now()), contact_key),
        )

    async def lead_by_crm_deal(self, deal_id: int) -> LeadRecord | None:
        row = self.db.execute("SELECT contact_key FROM leads WHERE crm_deal_id = ?", (deal_id,)).fetchone()
        return await self.get_lead(row[0]) if row else None

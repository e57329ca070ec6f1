"""Our messages after the turn: what the provider reports on them, and the messages the
business sends by itself (a seller on the phone), which pause the bot."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.clock import utc_now
from store.sqlite.connection import SqliteConnection, unavailable_on_error
from store.timestamps import iso


class Messages(SqliteConnection):
    # A later report never moves a message back (a late "delivered" after "read").
    _STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}

    @unavailable_on_error
    async def record_delivery_status(
        self, channel: str, provider_message_id: str, status: str, error: str | None = None
    ) -> bool:
        # Provider ids are unique per provider and never collide across them in practice;
        # `channel` is kept in the signature for stores that partition by it.
        row = self.db.execute(
            "SELECT id, status FROM messages WHERE provider_message_id = ? AND direction = 'out'"
            " ORDER BY id DESC LIMIT 1",
            (provider_message_id,),
        ).fetchone()
        if row is None:
            return False
        rank = self._STATUS_RANK
        if rank.get(status, 0) < rank.get(row["status"] or "queued", 0) and status != "failed":
            return True
        self.db.execute(
            "UPDATE messages SET status = ?, error = COALESCE(?, error) WHERE id = ?",
            (status, (error or None) and error[:500], row["id"]),
        )
        return True

    async def mark_message_failed(self, message_id: int, error: str) -> None:
        self.db.execute(
            "UPDATE messages SET status = 'failed', error = ? WHERE id = ?", (error[:500], message_id)
        )

    @unavailable_on_error
    async def message_contact(self, provider_message_id: str) -> str | None:
        row = self.db.execute(
            "SELECT l.contact_key FROM messages m JOIN leads l ON l.id = m.lead_id"
            " WHERE m.provider_message_id = ? AND m.direction = 'out' ORDER BY m.id DESC LIMIT 1",
            (provider_message_id,),
        ).fetchone()
        return row[0] if row else None

    @unavailable_on_error
    async def note_business_message(
        self, contact_key: str, *, provider_message_id: str, text: str | None, pause_until: datetime
    ) -> bool:
        lead = self.db.execute("SELECT id FROM leads WHERE contact_key = ?", (contact_key,)).fetchone()
        if lead is None:
            # A seller writing first to a new prospect: the bot must not barge in when they
            # answer, so the lead exists from now on, paused.
            channel, _, contact_id = contact_key.partition(":")
            now = iso(utc_now())
            self.db.execute(
                "INSERT INTO leads (contact_key, channel, contact_id, paused_until, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (contact_key) DO NOTHING",
                (contact_key, channel, contact_id, iso(pause_until), now, now),
            )
            return True
        # Ours when the provider id matches, or, since an echo can arrive before the send
        # call returns its id, when the same text went to this lead in the last minutes.
        recent = iso(utc_now() - timedelta(minutes=10))
        ours = self.db.execute(
            "SELECT 1 FROM messages WHERE lead_id = ? AND direction = 'out'"
            " AND (provider_message_id = ? OR (text = ? AND created_at >= ?)) LIMIT 1",
            (lead["id"], provider_message_id, (text or "").strip(), recent),
        ).fetchone()
        if ours is not None:
            return False
        self.db.execute(
            "UPDATE leads SET paused_until = MAX(COALESCE(paused_until, ''), ?), updated_at = ? WHERE id = ?",
            (iso(pause_until), iso(utc_now()), lead["id"]),
        )
        return True

    async def mark_message_sent(self, message_id: int, provider_message_id: str | None) -> None:
        self.db.execute(
            "UPDATE messages SET status = CASE WHEN status IN ('delivered', 'read', 'played') THEN status"
            " ELSE 'sent' END, provider_message_id = COALESCE(?, provider_message_id)"
            " WHERE id = ?",
            (provider_message_id, message_id),
        )

"""The people side of a conversation: a handoff to sales, the lead's place in Chatwoot,
replies written there by a person, and the bot's pause while a person owns the talk."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from core.clock import utc_now
from core.records import LeadRecord
from store.sqlite.connection import log, unavailable_on_error
from store.sqlite.leads import Leads
from store.timestamps import iso


class People(Leads):
    async def request_handoff(self, contact_key: str, *, reason: str, summary: str) -> None:
        self.db.execute(
            "UPDATE leads SET handoff_state = COALESCE(handoff_state, 'requested'),"
            " handoff_reason = COALESCE(handoff_reason, ?), handoff_summary = COALESCE(handoff_summary, ?),"
            " handoff_at = COALESCE(handoff_at, ?), updated_at = ?,"
            # The dashboard's first handoff, kept when the bot gets the lead back.
            " handed_off_reason = CASE WHEN handed_off_at IS NULL THEN ? ELSE handed_off_reason END,"
            " handed_off_at = COALESCE(handed_off_at, ?) WHERE contact_key = ?",
            (reason, summary, iso(utc_now()), iso(utc_now()), reason, iso(utc_now()), contact_key),
        )

    async def save_chatwoot_link(
        self, contact_key: str, *, contact_id: int, source_id: str | None, conversation_id: int | None
    ) -> None:
        self.db.execute(
            "UPDATE leads SET chatwoot_contact_id = ?, chatwoot_source_id = COALESCE(?, chatwoot_source_id),"
            " chatwoot_conversation_id = ?, chatwoot_conversation_resolved = 0, updated_at = ?"
            " WHERE contact_key = ?",
            (contact_id, source_id, conversation_id, iso(utc_now()), contact_key),
        )

    async def set_chatwoot_message_id(self, message_id: int, chatwoot_message_id: int) -> None:
        try:
            self.db.execute(
                "UPDATE messages SET chatwoot_message_id = ? WHERE id = ? AND chatwoot_message_id IS NULL",
                (chatwoot_message_id, message_id),
            )
        except sqlite3.IntegrityError:  # already linked to another row: keep the first link
            log.warning("chatwoot_message_id_already_linked")

    @unavailable_on_error
    async def is_own_chatwoot_message(
        self, chatwoot_message_id: int, *, conversation_id: int | None = None, text: str | None = None
    ) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM messages WHERE chatwoot_message_id = ? AND COALESCE(turn_id, '') != 'human' LIMIT 1",
            (chatwoot_message_id,),
        ).fetchone()
        if row is not None or conversation_id is None or not text:
            return row is not None
        # Chatwoot's webhook can beat our own bookkeeping of the id we just created (and
        # after an outage the mirror posts messages queued long ago): a bot message with
        # the same text, for this lead, not yet linked to a Chatwoot id, is ours.
        row = self.db.execute(
            "SELECT 1 FROM messages m JOIN leads l ON l.id = m.lead_id"
            " WHERE l.chatwoot_conversation_id = ? AND m.direction = 'out' AND m.chatwoot_message_id IS NULL"
            " AND COALESCE(m.turn_id, '') != 'human' AND m.text = ? LIMIT 1",
            (conversation_id, text.strip()),
        ).fetchone()
        return row is not None

    @unavailable_on_error
    async def lead_by_chatwoot_conversation(self, conversation_id: int) -> LeadRecord | None:
        row = self.db.execute(
            "SELECT contact_key FROM leads WHERE chatwoot_conversation_id = ?", (conversation_id,)
        ).fetchone()
        return await self.get_lead(row[0]) if row else None

    @unavailable_on_error
    async def lead_by_chatwoot_contact(self, contact_id: int) -> LeadRecord | None:
        row = self.db.execute(
            "SELECT contact_key FROM leads WHERE chatwoot_contact_id = ? ORDER BY updated_at DESC, id DESC LIMIT 1",
            (contact_id,),
        ).fetchone()
        return await self.get_lead(row[0]) if row else None

    @unavailable_on_error
    async def record_human_reply(
        self, contact_key: str, *, text: str, chatwoot_message_id: int
    ) -> int | None:
        with self._tx() as db:
            known = db.execute(
                "SELECT 1 FROM messages WHERE chatwoot_message_id = ?", (chatwoot_message_id,)
            ).fetchone()
            lead = db.execute("SELECT id FROM leads WHERE contact_key = ?", (contact_key,)).fetchone()
            if known is not None or lead is None:
                return None
            conv = db.execute(
                "SELECT id FROM conversations WHERE lead_id = ? ORDER BY id DESC LIMIT 1", (lead["id"],)
            ).fetchone()
            if conv is None:
                return None
            now = iso(utc_now())
            message_id: int = db.execute(
                "INSERT INTO messages (conversation_id, lead_id, direction, kind, text, status,"
                " chatwoot_message_id, turn_id, created_at) VALUES (?, ?, 'out', 'text', ?, 'queued', ?, 'human', ?)"
                " RETURNING id",
                (conv["id"], lead["id"], text, chatwoot_message_id, now),
            ).fetchone()[0]
            return message_id

    @unavailable_on_error
    async def set_human_owned(
        self, contact_key: str, *, until: datetime | None, resolved: bool = False
    ) -> None:
        if until is not None:
            # A person took it (again): the conversation is live, whatever it was before.
            self.db.execute(
                "UPDATE leads SET paused_until = ?, chatwoot_conversation_resolved = 0, updated_at = ?"
                " WHERE contact_key = ?",
                (iso(until), iso(utc_now()), contact_key),
            )
            return
        # The id is kept (late events of that conversation still find the lead); the flag
        # makes the next mirror item look for a live conversation or open a new one.
        self.db.execute(
            "UPDATE leads SET paused_until = NULL, handoff_state = NULL, handoff_reason = NULL,"
            " handoff_summary = NULL, handoff_at = NULL,"
            " chatwoot_conversation_resolved = CASE WHEN ? THEN 1 ELSE chatwoot_conversation_resolved END,"
            " updated_at = ? WHERE contact_key = ?",
            (1 if resolved else 0, iso(utc_now()), contact_key),
        )

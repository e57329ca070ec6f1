"""Meetings booked on a seller's calendar (issue 17): kept for reschedule, cancel and
reminders.

One row per calendar event, keyed by our own event id, so saving the same event again
(a retry, a crash between booking and saving, a reschedule) updates the row instead of
adding one. `reminders_sent` is a JSON list of offset names. The same rules as the
Supabase store's sdr_save_meeting, sdr_due_meetings and sdr_mark_reminder_sent; the
reminder rule itself is `store.base.due_reminder`, shared by both.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from core.clock import utc_now
from core.records import DueReminder, MeetingRecord
from store.base import due_reminder, reminder_horizon
from store.sqlite.connection import SqliteConnection, unavailable_on_error
from store.timestamps import iso

_COLUMNS = (
    "event_id, contact_key, seller_key, calendar_id, starts_at, ends_at, status, meet_url,"
    " html_link, reminders_sent, created_at, updated_at"
)


def _meeting(row: sqlite3.Row) -> MeetingRecord:
    return MeetingRecord(
        event_id=row["event_id"],
        contact_key=row["contact_key"],
        seller_key=row["seller_key"],
        calendar_id=row["calendar_id"],
        starts_at=datetime.fromisoformat(row["starts_at"]),
        ends_at=datetime.fromisoformat(row["ends_at"]),
        status=row["status"],
        meet_url=row["meet_url"],
        html_link=row["html_link"],
        reminders_sent=tuple(json.loads(row["reminders_sent"] or "[]")),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


class Meetings(SqliteConnection):
    @unavailable_on_error
    async def save_meeting(self, meeting: MeetingRecord) -> bool:
        now = iso(utc_now())
        with self._tx() as db:
            if self._tombstoned(db, meeting.contact_key):
                return False  # nothing recorded of an erased lead
            db.execute(
                f"INSERT INTO meetings ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', ?, ?)"
                " ON CONFLICT (event_id) DO UPDATE SET"
                " reminders_sent = CASE WHEN starts_at = excluded.starts_at THEN reminders_sent"
                " ELSE '[]' END,"
                " starts_at = excluded.starts_at, ends_at = excluded.ends_at, status = excluded.status,"
                " meet_url = coalesce(excluded.meet_url, meet_url),"
                " html_link = coalesce(excluded.html_link, html_link),"
                " updated_at = excluded.updated_at",
                (
                    meeting.event_id,
                    meeting.contact_key,
                    meeting.seller_key,
                    meeting.calendar_id,
                    iso(meeting.starts_at),
                    iso(meeting.ends_at),
                    meeting.status,
                    meeting.meet_url,
                    meeting.html_link,
                    now,
                    now,
                ),
            )
        return True

    async def lead_meetings(self, contact_key: str) -> list[MeetingRecord]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM meetings WHERE contact_key = ? ORDER BY starts_at, event_id",
            (contact_key,),
        ).fetchall()
        return [_meeting(r) for r in rows]

    async def due_reminders(self, *, now: datetime, offsets: dict[str, float]) -> list[DueReminder]:
        horizon = reminder_horizon(now, offsets)
        if horizon is None:
            return []
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM meetings WHERE status = 'scheduled' AND starts_at > ?"
            " AND starts_at <= ? ORDER BY starts_at, event_id",
            (iso(now), iso(horizon)),
        ).fetchall()
        due = (due_reminder(_meeting(r), now=now, offsets=offsets) for r in rows)
        return [reminder for reminder in due if reminder is not None]

    @unavailable_on_error
    async def mark_reminder_sent(self, event_id: str, which: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE meetings SET reminders_sent = json_insert(reminders_sent, '$[#]', ?),"
                " updated_at = ? WHERE event_id = ?"
                " AND NOT EXISTS (SELECT 1 FROM json_each(meetings.reminders_sent) WHERE value = ?)",
                (which, iso(utc_now()), event_id, which),
            )

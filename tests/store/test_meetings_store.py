"""The `Store` contract, continued: meetings booked on a seller's calendar (issue 17).

A meeting is saved under our own event id, so saving it again (a retry, a crash between
booking and saving, a reschedule or a cancel) keeps one row; `due_reminders` offers, per
scheduled meeting not yet started, only the closest reminder whose time has come and
that was not sent; an erased lead's meetings are gone and cannot come back. Every test
runs on both backends (SQLite file, Supabase over the PostgREST bridge on Postgres).
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.records import DueReminder, MeetingRecord
from store.base import Store
from store.sqlite import SqliteStore
from tests.store.conftest import OpenStore
from tests.store.test_store_contract import inbound, key

T0 = datetime(2026, 12, 10, 14, 0, tzinfo=UTC)
OFFSETS = {"24h": 24.0, "1h": 1.0}
CONTACT = "5511987651234"


def meeting(event_id: str = "sdr-ev-1", *, starts_at: datetime = T0, contact: str = CONTACT) -> MeetingRecord:
    return MeetingRecord(
        event_id=event_id,
        contact_key=key(contact),
        seller_key="ana",
        calendar_id="ana@seleto.example",
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30),
        meet_url="https://meet.google.com/abc-defg-hij",
        html_link=f"https://www.google.com/calendar/event?eid={event_id}",
    )


async def due(store: Store, now: datetime) -> list[tuple[str, str]]:
    return [(r.meeting.event_id, r.which) for r in await store.due_reminders(now=now, offsets=OFFSETS)]


# --- saving -----------------------------------------------------------------------------


async def test_a_saved_meeting_reads_back_whole(store: Store) -> None:
    assert await store.save_meeting(meeting()) is True
    [saved] = await store.lead_meetings(key(CONTACT))
    assert replace(saved, created_at=None, updated_at=None) == meeting()
    assert saved.starts_at == T0 and saved.starts_at.utcoffset() == timedelta(0)
    assert saved.created_at is not None and saved.updated_at is not None
    assert await store.lead_meetings(key("5511900000000")) == []


async def test_saving_the_same_event_twice_keeps_one_row_and_updates_it(store: Store) -> None:
    assert await store.save_meeting(meeting()) is True
    assert await store.save_meeting(meeting()) is True  # a retry: nothing changes
    [first] = await store.lead_meetings(key(CONTACT))
    cancelled = replace(meeting(), status="cancelled", seller_key="bruno", meet_url=None)
    assert await store.save_meeting(cancelled) is True
    [row] = await store.lead_meetings(key(CONTACT))
    assert row.status == "cancelled"
    assert row.seller_key == "ana"  # who and where stay; status, times and links change
    assert row.meet_url == meeting().meet_url  # a None link keeps the one stored
    assert row.created_at == first.created_at
    assert row.updated_at is not None and first.updated_at is not None
    assert row.updated_at >= first.updated_at


async def test_a_reschedule_moves_the_times_and_clears_the_reminders(store: Store) -> None:
    await store.save_meeting(meeting())
    await store.mark_reminder_sent("sdr-ev-1", "24h")
    await store.save_meeting(meeting())  # same time again: the reminder stays sent
    [same] = await store.lead_meetings(key(CONTACT))
    assert same.reminders_sent == ("24h",)
    later = T0 + timedelta(days=2)
    await store.save_meeting(meeting(starts_at=later))
    [moved] = await store.lead_meetings(key(CONTACT))
    assert (moved.starts_at, moved.ends_at) == (later, later + timedelta(minutes=30))
    assert moved.reminders_sent == ()
    assert await due(store, later - timedelta(hours=23)) == [("sdr-ev-1", "24h")]


async def test_lead_meetings_are_soonest_first_with_every_status(store: Store) -> None:
    await store.save_meeting(meeting("ev-late", starts_at=T0 + timedelta(days=3)))
    await store.save_meeting(
        replace(meeting("ev-early", starts_at=T0 - timedelta(days=1)), status="cancelled")
    )
    await store.save_meeting(meeting("ev-mid", starts_at=T0))
    await store.save_meeting(meeting("ev-other", starts_at=T0, contact="5511900000001"))
    rows = await store.lead_meetings(key(CONTACT))
    assert [(m.event_id, m.status) for m in rows] == [
        ("ev-early", "cancelled"),
        ("ev-mid", "scheduled"),
        ("ev-late", "scheduled"),
    ]


# --- reminders --------------------------------------------------------------------------


async def test_nothing_is_due_before_the_largest_offset(store: Store) -> None:
    await store.save_meeting(meeting())
    assert await due(store, T0 - timedelta(hours=30)) == []
    assert await due(store, T0 - timedelta(hours=24, seconds=1)) == []
    assert await store.due_reminders(now=T0 - timedelta(hours=1), offsets={}) == []


async def test_the_24h_reminder_is_due_24_hours_before_and_once(store: Store) -> None:
    await store.save_meeting(meeting())
    at = T0 - timedelta(hours=24)
    [reminder] = await store.due_reminders(now=at, offsets=OFFSETS)
    assert isinstance(reminder, DueReminder) and reminder.which == "24h"
    assert reminder.meeting.event_id == "sdr-ev-1" and reminder.meeting.contact_key == key(CONTACT)
    assert await due(store, T0 - timedelta(hours=5)) == [("sdr-ev-1", "24h")]
    await store.mark_reminder_sent("sdr-ev-1", "24h")
    await store.mark_reminder_sent("sdr-ev-1", "24h")  # idempotent
    [row] = await store.lead_meetings(key(CONTACT))
    assert row.reminders_sent == ("24h",)
    assert await due(store, T0 - timedelta(hours=5)) == []
    # Then the 1 h one, and after it nothing more.
    assert await due(store, T0 - timedelta(hours=1)) == [("sdr-ev-1", "1h")]
    await store.mark_reminder_sent("sdr-ev-1", "1h")
    assert await due(store, T0 - timedelta(minutes=10)) == []
    [row] = await store.lead_meetings(key(CONTACT))
    assert row.reminders_sent == ("24h", "1h")


async def test_only_the_closest_reminder_when_several_are_due(store: Store) -> None:
    # Booked 50 minutes before: "24h" is pointless now, and skipped for good.
    await store.save_meeting(meeting())
    assert await due(store, T0 - timedelta(minutes=50)) == [("sdr-ev-1", "1h")]
    await store.mark_reminder_sent("sdr-ev-1", "1h")
    assert await due(store, T0 - timedelta(minutes=40)) == []


async def test_no_reminder_for_a_cancelled_or_started_meeting(store: Store) -> None:
    await store.save_meeting(replace(meeting("ev-cancelled"), status="cancelled"))
    await store.save_meeting(meeting("ev-now", starts_at=T0 - timedelta(minutes=30)))
    await store.save_meeting(meeting("ev-past", starts_at=T0 - timedelta(days=1)))
    assert await due(store, T0 - timedelta(minutes=30)) == []
    assert await due(store, T0 - timedelta(minutes=10)) == []


async def test_reminders_of_several_meetings_come_soonest_first(store: Store) -> None:
    await store.save_meeting(meeting("ev-b", starts_at=T0 + timedelta(hours=20)))
    await store.save_meeting(meeting("ev-a", starts_at=T0 + timedelta(minutes=30)))
    await store.save_meeting(meeting("ev-c", starts_at=T0 + timedelta(days=5)))
    assert await due(store, T0) == [("ev-a", "1h"), ("ev-b", "24h")]


async def test_marking_an_unknown_event_does_nothing(store: Store) -> None:
    await store.mark_reminder_sent("no-such-event", "1h")
    assert await store.lead_meetings(key(CONTACT)) == []


# --- erasure and restarts -----------------------------------------------------------------


async def test_an_erased_leads_meetings_are_gone_and_cannot_come_back(store: Store) -> None:
    await store.add_inbound(inbound("meeting-in-1", contact=CONTACT))
    await store.save_meeting(meeting("ev-1"))
    await store.save_meeting(meeting("ev-2", starts_at=T0 + timedelta(days=1)))
    await store.save_meeting(meeting("ev-other", contact="5511900000001"))
    assert await store.forget_lead(key(CONTACT)) is True
    assert await store.lead_meetings(key(CONTACT)) == []
    assert [r.meeting.event_id for r in await store.due_reminders(now=T0, offsets=OFFSETS)] == []
    # A late save (a booking that finished after the erasure) stores nothing.
    assert await store.save_meeting(meeting("ev-1")) is False
    assert await store.save_meeting(meeting("ev-3")) is False
    assert await store.lead_meetings(key(CONTACT)) == []
    # Another lead's meeting is untouched.
    assert [m.event_id for m in await store.lead_meetings(key("5511900000001"))] == ["ev-other"]


async def test_meetings_and_sent_reminders_survive_a_restart(open_store: OpenStore) -> None:
    before = await open_store()
    await before.save_meeting(meeting())
    await before.mark_reminder_sent("sdr-ev-1", "24h")
    await before.close()
    after = await open_store()
    [row] = await after.lead_meetings(key(CONTACT))
    assert replace(row, created_at=None, updated_at=None) == replace(meeting(), reminders_sent=("24h",))
    assert await due(after, T0 - timedelta(hours=2)) == []
    assert await due(after, T0 - timedelta(minutes=59)) == [("sdr-ev-1", "1h")]


async def test_an_older_sqlite_file_gets_the_meetings_table_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE meetings")
    db.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.save_meeting(meeting()) is True
        assert [m.event_id for m in await store.lead_meetings(key(CONTACT))] == ["sdr-ev-1"]
    finally:
        await store.close()

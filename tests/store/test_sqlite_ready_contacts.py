"""SQLite's poll for contacts ready for a turn (`claim_ready_contacts`, polled by a worker
process sharing the file) under a flood: it reads about the contacts it leases, not every
waiting message (issue 18). Cost counted in SQLite VM steps, never timed."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from store.sqlite import SqliteStore
from store.sqlite.schedule import _PAGE, _WAITING_PAGE

OLD = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()


def waiting(db: sqlite3.Connection, contacts: range, *, at: str = OLD, per_contact: int = 1) -> None:
    db.execute("BEGIN")
    for n in contacts:
        for m in range(per_contact):
            db.execute(
                "INSERT INTO inbound (channel, provider_message_id, contact_key, message, status, received_at)"
                " VALUES ('zapi', ?, ?, '{}', 'pending', ?)",
                (f"m{n}:{m}:{at}", f"zapi:{n}", at),
            )
    db.execute("COMMIT")


async def ready(store: SqliteStore, owner: str = "worker", limit: int = 8) -> list[str]:
    return await store.claim_ready_contacts(owner=owner, limit=limit, quiet_s=1, max_wait_s=60, lease_s=30)


async def test_the_waiting_messages_are_read_on_their_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plan.sqlite3")
    await store.open()
    try:
        plan = store.db.execute("EXPLAIN QUERY PLAN " + _WAITING_PAGE, (0, _PAGE)).fetchall()
        assert len(plan) == 1 and "USING INDEX inbound_waiting" in plan[0][-1], plan
    finally:
        await store.close()


async def test_ready_contacts_past_a_page_of_busy_ones_are_found_in_arrival_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "pages.sqlite3")
    await store.open()
    try:
        db = store.db
        waiting(db, range(0, 300), at=datetime.now(UTC).isoformat())  # still writing: not ready
        waiting(db, range(300, 310), per_contact=2)
        for n in (300, 301):
            assert await store.claim_contact(f"zapi:{n}", owner="another", lease_s=30)
        assert await ready(store, limit=5) == [f"zapi:{n}" for n in range(302, 307)]
        assert await ready(store, owner="third", limit=50) == [f"zapi:{n}" for n in range(307, 310)]
    finally:
        await store.close()


async def steps_of_a_poll(path: Path, contacts: int) -> int:
    store = SqliteStore(path)
    await store.open()
    try:
        waiting(store.db, range(contacts), per_contact=2)
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        store.db.set_progress_handler(count, 1)
        leased = await ready(store)
        store.db.set_progress_handler(None, 1)
        assert leased == [f"zapi:{n}" for n in range(8)]
        return steps[0]
    finally:
        await store.close()


async def test_a_poll_reads_as_much_with_10000_contacts_waiting_as_with_100(tmp_path: Path) -> None:
    small = await steps_of_a_poll(tmp_path / "small.sqlite3", 100)
    large = await steps_of_a_poll(tmp_path / "large.sqlite3", 10_000)
    # One page of waiting messages either way; a GROUP BY over them all would be ~100x.
    assert large < 1.5 * small, (small, large)

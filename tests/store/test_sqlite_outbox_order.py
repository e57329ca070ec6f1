"""SQLite's claim order (store/sqlite/outbox_order.py): the head flag the triggers keep is
always the lowest open id of its order key, a database of an earlier release gets it on
open, and a claim reads the same number of rows with 100 or 10,000 items queued.

Cost is counted in SQLite VM steps (a progress handler), never timed."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.clock import utc_now
from core.records import OutboxItem
from store.sqlite import SqliteStore
from store.sqlite.outbox import _CLAIMABLE, _NEXT_DUE
from store.sqlite.outbox_order import TRIGGERS

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

# The outbox as every release before issue 18 created it.
OLD_OUTBOX = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    order_key TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'inflight', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX outbox_open ON outbox(order_key, id) WHERE status IN ('pending', 'inflight');
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE status = 'pending';
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "order.sqlite3")
    await s.open()
    yield s
    await s.close()


def insert(db: sqlite3.Connection, kind: str, order_key: str, idem: str, status: str = "pending") -> int:
    at = (NOW - timedelta(minutes=5)).isoformat()
    cur = db.execute(
        "INSERT INTO outbox (kind, order_key, idempotency_key, payload, status, next_attempt_at,"
        " created_at, updated_at) VALUES (?, ?, ?, '{}', ?, ?, ?, ?)",
        (kind, order_key, idem, status, at, at, at),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def heads(db: sqlite3.Connection) -> set[int]:
    return {r[0] for r in db.execute("SELECT id FROM outbox WHERE head = 1")}


def expected_heads(db: sqlite3.Connection) -> set[int]:
    """The rule the flag stands for, computed the slow way (the old claim's join)."""
    return {
        r[0]
        for r in db.execute(
            "SELECT MIN(id) FROM outbox WHERE status IN ('pending', 'inflight') GROUP BY order_key"
        )
    }


# --- an older database -------------------------------------------------------------------


async def test_a_database_of_an_earlier_release_gets_priorities_heads_and_the_index_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(OLD_OUTBOX)
    mirror = insert(old, "chatwoot_message", "chatwoot:a", "m1")
    insert(old, "chatwoot_message", "chatwoot:a", "m2")
    insert(old, "send_text", "reply:b", "r1", status="dead")
    reply = insert(old, "send_text", "reply:b", "r2")
    stuck = insert(old, "piperun_sync", "crm:c", "c1", status="inflight")
    insert(old, "piperun_sync", "crm:c", "c2")
    old.close()

    store = SqliteStore(path)
    await store.open()
    try:
        db = store.db
        assert {"priority", "head"} <= {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_claim'").fetchone()
        assert heads(db) == {mirror, reply, stuck} == expected_heads(db)
        priorities = dict(db.execute("SELECT idempotency_key, priority FROM outbox WHERE status = 'pending'"))
        assert priorities == {"m1": 1, "m2": 1, "r2": 0, "c2": 2}

        claimed = await store.claim_outbox(limit=10, now=NOW)
        assert [i.idempotency_key for i in claimed] == ["r2", "m1"]  # c2 waits behind c1
        await store.release_inflight()  # c1's instance is gone
        assert [i.idempotency_key for i in await store.claim_outbox(limit=10, now=NOW)] == ["r2", "m1", "c1"]
    finally:
        await store.close()


async def test_opening_an_up_to_date_database_again_rewrites_nothing(
    store: SqliteStore, tmp_path: Path
) -> None:
    stored = dict(store.db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
    assert stored == TRIGGERS  # the text kept is the text written: no upgrade at every open
    await store.close()
    await store.open()
    changes = store.db.total_changes
    again = SqliteStore(tmp_path / "order.sqlite3")
    await again.open()
    try:
        assert again.db.total_changes == 0
        assert store.db.total_changes == changes
    finally:
        await again.close()


# --- the flag follows the rule -----------------------------------------------------------


async def test_an_older_item_replayed_becomes_the_head_again(store: SqliteStore) -> None:
    db = store.db
    first = insert(db, "send_text", "reply:a", "a1")
    second = insert(db, "send_text", "reply:a", "a2")
    [claimed] = await store.claim_outbox(limit=5, now=NOW)
    await store.kill_outbox(claimed.id or 0, error="HTTP 400")
    assert heads(db) == {second}
    assert await store.replay_outbox(first)
    assert heads(db) == {first}
    # A replay is due at once on the store's own (wall) clock, whatever NOW says.
    later = max(NOW, utc_now()) + timedelta(minutes=1)
    assert [i.id for i in await store.claim_outbox(limit=5, now=later)] == [first]


async def test_the_flag_always_marks_the_lowest_open_id_of_each_key(store: SqliteStore) -> None:
    """Every way an item enters or leaves the open set, in random order, against the rule."""
    db = store.db
    rng = random.Random(18)
    kinds = ("send_text", "chatwoot_message", "piperun_sync", "meta_capi")
    for step in range(600):
        ids = [r[0] for r in db.execute("SELECT id FROM outbox")]
        action = rng.choice(
            ("insert", "insert", "claim", "complete", "kill", "retry", "replay", "delete", "move")
        )
        target = rng.choice(ids) if ids else None
        if action == "insert" or target is None:
            insert(db, rng.choice(kinds), f"key:{rng.randrange(6)}", f"i{step}")
        elif action == "claim":
            await store.claim_outbox(limit=rng.randrange(1, 4), now=NOW)
        elif action == "complete":
            await store.complete_outbox(target)
        elif action == "kill":
            await store.kill_outbox(target, error="boom")
        elif action == "retry":
            await store.retry_outbox(target, error="later", next_attempt_at=NOW - timedelta(seconds=1))
        elif action == "replay":
            await store.replay_outbox(target)
        elif action == "delete":
            db.execute("DELETE FROM outbox WHERE id = ?", (target,))
        else:
            db.execute("UPDATE outbox SET order_key = ? WHERE id = ?", (f"key:{rng.randrange(6)}", target))
        assert heads(db) == expected_heads(db), f"step {step}: {action} {target}"


async def test_an_erased_lead_leaves_no_head_behind(store: SqliteStore) -> None:
    db = store.db
    insert(db, "send_text", "reply:a", "a1")
    insert(db, "send_text", "reply:a", "a2")
    db.execute("DELETE FROM outbox WHERE order_key = 'reply:a'")
    assert heads(db) == set()
    later = insert(db, "send_text", "reply:a", "a3")
    assert heads(db) == {later}


# --- cost --------------------------------------------------------------------------------


def test_claim_and_next_due_read_the_claim_index() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    from store.sqlite.schema import apply_schema

    apply_schema(db)
    claim = db.execute("EXPLAIN QUERY PLAN " + _CLAIMABLE, (0, NOW.isoformat(), 8)).fetchall()
    due = db.execute("EXPLAIN QUERY PLAN " + _NEXT_DUE, (0,)).fetchall()
    for plan in (claim, due):
        assert len(plan) == 1 and "USING INDEX outbox_claim" in plan[0][-1], plan


def flood(db: sqlite3.Connection, items: int) -> None:
    """`items` items as a flood leaves them: per contact two reply bubbles, two mirror
    messages and a CRM sync; every tenth contact's first bubble in flight."""
    db.execute("BEGIN")
    for n in range(items // 5):
        for lane, kind in (("reply", "send_text"), ("chatwoot", "chatwoot_message")):
            first = insert(db, kind, f"{lane}:{n}", f"{lane}:{n}:1")
            insert(db, kind, f"{lane}:{n}", f"{lane}:{n}:2")
            if lane == "reply" and n % 10 == 0:
                db.execute("UPDATE outbox SET status = 'inflight' WHERE id = ?", (first,))
        insert(db, "piperun_sync", f"crm:{n}", f"crm:{n}")
    db.execute("COMMIT")


async def vm_steps(store: SqliteStore, queued: int) -> tuple[int, int]:
    """VM steps of one claim of 8 items, and of completing one of them."""
    flood(store.db, queued)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store.db.set_progress_handler(count, 1)
    claimed: list[OutboxItem] = await store.claim_outbox(limit=8, now=NOW)
    claim_steps, steps[0] = steps[0], 0
    await store.complete_outbox(claimed[0].id or 0)
    store.db.set_progress_handler(None, 1)
    assert len(claimed) == 8 and all(i.kind == "send_text" for i in claimed)
    return claim_steps, steps[0]


async def test_a_claim_reads_as_much_with_10000_items_queued_as_with_100(tmp_path: Path) -> None:
    small, large = SqliteStore(tmp_path / "small.sqlite3"), SqliteStore(tmp_path / "large.sqlite3")
    await small.open()
    await large.open()
    try:
        claim_100, complete_100 = await vm_steps(small, 100)
        claim_10k, complete_10k = await vm_steps(large, 10_000)
    finally:
        await small.close()
        await large.close()
    # A deeper b-tree costs a few steps more per row; a scan of the queue would be ~100x.
    assert claim_10k < 1.5 * claim_100, (claim_100, claim_10k)
    assert complete_10k < 1.5 * complete_100, (complete_100, complete_10k)

"""The outbox's claim order in SQLite: a priority per item and a head flag per order key,
kept by triggers, so a claim reads only the rows it may claim.

A flood (10,000 form leads in two seconds, ~73k items) made the old claim compute the
head of every open order key under the write lock at each call: its cost grew with the
queue, deliveries slowed, and every other writer (webhooks, the health probe) waited.
Now `head` is 1 on the lowest open (pending or in-flight) id of each order key, the only
row of that key that may be claimed, so a later reply never overtakes an earlier one
still retrying; the partial index `outbox_claim` holds exactly the pending heads in
(priority, due time, id) order, and a claim reads as many index entries as it claims.

Triggers keep `head` and `priority` right, not the statements that write the outbox:
rows come in from enqueue, a turn's commit and the erasure (and from tools and tests
writing SQL, or an older release writing to an upgraded file), and leave by completion,
death, replay and erasure; one rule in the database covers them all. The flag changes
only when a row enters or leaves the open set (claim and retry do not touch it), and
re-deciding one key reads only that key's open rows (`outbox_open`).

`head` is SQLite's bookkeeping: Postgres, with concurrent writers, decides heads at
claim time instead (supabase/migrations/20261203000003_outbox_lanes.sql).
"""

from __future__ import annotations

import re
import sqlite3

from core.outbox import BACK_OFFICE_PRIORITY, PAYLOADS

_OPEN = "status IN ('pending', 'inflight')"

UPGRADE_BUSY_TIMEOUT_MS = 30_000

# The index a claim walks: pending heads only, in claim order within a priority.
CLAIM_INDEX = (
    "CREATE INDEX IF NOT EXISTS outbox_claim ON outbox(priority, next_attempt_at, id)"
    " WHERE status = 'pending' AND head = 1"
)


def priority_case(kind: str) -> str:
    """core.outbox's priorities as one SQL expression over `kind` (the trigger's, the
    upgrade's): the Python classes stay the only place a priority is decided."""
    groups: dict[int, list[str]] = {}
    for name, model in sorted(PAYLOADS.items()):
        if not re.fullmatch(r"[a-z0-9_]+", name):  # spliced into SQL: plain names only
            raise ValueError(f"outbox kind {name!r} is not a plain name")
        if model.PRIORITY != BACK_OFFICE_PRIORITY:
            groups.setdefault(model.PRIORITY, []).append(f"'{name}'")
    whens = " ".join(f"WHEN {kind} IN ({', '.join(kinds)}) THEN {p}" for p, kinds in sorted(groups.items()))
    return f"CASE {whens} ELSE {BACK_OFFICE_PRIORITY} END"


def _rehead(key: str) -> str:
    """Make the lowest open id of order key `key` its only head (writes only what changes)."""
    lowest = f"(SELECT MIN(p.id) FROM outbox p WHERE p.order_key = {key} AND p.{_OPEN})"
    return (
        f"UPDATE outbox SET head = (id = {lowest})"
        f" WHERE order_key = {key} AND {_OPEN} AND head IS NOT (id = {lowest});"
    )


# Created as written; sqlite_master keeps this text, which tells an upgrade is due.
TRIGGERS = {
    "outbox_enqueued": (
        "CREATE TRIGGER outbox_enqueued AFTER INSERT ON outbox BEGIN"
        f" UPDATE outbox SET priority = {priority_case('NEW.kind')} WHERE id = NEW.id;"
        f" {_rehead('NEW.order_key')} END"
    ),
    "outbox_moved": (
        "CREATE TRIGGER outbox_moved AFTER UPDATE OF status, order_key ON outbox"
        f" WHEN (OLD.{_OPEN}) IS NOT (NEW.{_OPEN}) OR OLD.order_key IS NOT NEW.order_key BEGIN"
        " UPDATE outbox SET head = 0 WHERE id = NEW.id AND head = 1;"
        f" {_rehead('OLD.order_key')} {_rehead('NEW.order_key')} END"
    ),
    "outbox_removed": (
        f"CREATE TRIGGER outbox_removed AFTER DELETE ON outbox WHEN OLD.head = 1 BEGIN {_rehead('OLD.order_key')} END"
    ),
}

# Every open row's priority and every key's head from scratch: the first open after an
# upgrade, or a release whose priorities differ from the file's.
_BACKFILL = (
    f"UPDATE outbox SET priority = {priority_case('kind')} WHERE {_OPEN}",
    f"UPDATE outbox SET head = (id IN (SELECT MIN(id) FROM outbox WHERE {_OPEN} GROUP BY order_key))"
    f" WHERE {_OPEN} OR head = 1",
)


def _up_to_date(db: sqlite3.Connection) -> bool:
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    triggers = dict(
        db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'outbox'")
    )
    return "head" in columns and all(triggers.get(name) == sql for name, sql in TRIGGERS.items())


def apply_claim_order(db: sqlite3.Connection) -> None:
    """Bring a database of any earlier release to the claim order, in one transaction:
    a crash half-way must not leave heads unset (their keys would never be claimed)."""
    if _up_to_date(db):
        db.execute(CLAIM_INDEX)
        return
    # The other process of a split deployment may be upgrading the same file (a second
    # or so for a large outbox): wait for it rather than fail to start.
    busy_ms = db.execute("PRAGMA busy_timeout").fetchone()[0]
    db.execute(f"PRAGMA busy_timeout={UPGRADE_BUSY_TIMEOUT_MS}")
    try:
        _upgrade(db)
    finally:
        db.execute(f"PRAGMA busy_timeout={busy_ms}")


def _upgrade(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        if not _up_to_date(db):  # another process may have upgraded it meanwhile
            columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
            if "head" not in columns:
                db.execute("ALTER TABLE outbox ADD COLUMN head INTEGER NOT NULL DEFAULT 0")
            for name, sql in TRIGGERS.items():
                db.execute(f"DROP TRIGGER IF EXISTS {name}")
                db.execute(sql)
            for statement in _BACKFILL:
                db.execute(statement)
        db.execute(CLAIM_INDEX)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise

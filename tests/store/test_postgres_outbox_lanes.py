"""supabase/migrations/20261203000003_outbox_lanes.sql on a real PostgreSQL: the outbox
claimed by priority (the lead's replies, then the Chatwoot mirror, then the rest), the
order-key rules kept, and a database with items queued before the file upgraded.

Postgres at TEST_DATABASE_URL or 127.0.0.1:5432/test (tests/store/pg_support.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from core.outbox import PAYLOADS, PRIORITIES, claim_priority
from tests.store.pg_support import Jsonb, connect, fresh_schema, migration_files, require_postgres

LANES_FILE = "20261203000003_outbox_lanes.sql"


@pytest.fixture
def db() -> Iterator[object]:
    with fresh_schema() as name, connect(name) as conn:
        yield conn


def enqueue(conn, kind: str, order_key: str, idem: str) -> int:  # type: ignore[no-untyped-def]
    return int(
        conn.execute(
            "INSERT INTO outbox (kind, order_key, idempotency_key, payload, status)"
            " VALUES (%s, %s, %s, %s, 'pending') RETURNING id",
            (kind, order_key, idem, Jsonb({"n": idem})),
        ).fetchone()[0]
    )


def claim(conn, limit: int = 10, owner: str = "A") -> list[str]:  # type: ignore[no-untyped-def]
    rows = conn.execute(
        "SELECT idempotency_key FROM sdr_claim_outbox_for(%s, %s, now(), 60)", (owner, limit)
    ).fetchall()
    return [r[0] for r in rows]


def test_the_sql_priorities_are_core_outbox_priorities(db) -> None:  # type: ignore[no-untyped-def]
    for kind in [*PAYLOADS, "a_kind_from_a_newer_release"]:
        got = db.execute("SELECT sdr_outbox_priority(%s)", (kind,)).fetchone()[0]
        assert got == claim_priority(kind), kind
    assert PRIORITIES == (0, 1, 2)  # the claim function walks 0..2


def test_a_lead_reply_is_claimed_before_mirror_and_crm_queued_earlier(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "piperun_sync", "crm:b", "crm-b")
    enqueue(db, "chatwoot_message", "chatwoot:b", "mirror-b")
    enqueue(db, "meta_capi", "capi:b", "capi-b")
    enqueue(db, "send_text", "reply:a", "reply-a")
    priorities = dict(db.execute("SELECT idempotency_key, priority FROM outbox").fetchall())
    assert priorities == {"crm-b": 2, "mirror-b": 1, "capi-b": 2, "reply-a": 0}

    assert claim(db, limit=1) == ["reply-a"]
    assert claim(db, limit=2) == ["mirror-b", "crm-b"]
    assert claim(db, limit=2) == ["capi-b"]


def test_heads_still_rule_within_an_order_key(db) -> None:  # type: ignore[no-untyped-def]
    note = enqueue(db, "chatwoot_note", "reply:a", "note")
    enqueue(db, "send_text", "reply:a", "after")  # higher priority, queued behind the note
    assert claim(db) == ["note"]
    assert claim(db) == []
    db.execute(
        "UPDATE outbox SET status = 'pending', next_attempt_at = now() + interval '1 hour' WHERE id = %s",
        (note,),
    )
    assert claim(db) == []  # the note retries later: what is behind it waits
    due = db.execute("SELECT sdr_next_outbox_due() > now() + interval '50 minutes'").fetchone()[0]
    assert due is True  # "after" is not due while its head backs off
    db.execute("UPDATE outbox SET status = 'done' WHERE id = %s", (note,))
    assert claim(db) == ["after"]


def test_an_expired_lease_is_claimed_again_before_anything_pending(db) -> None:  # type: ignore[no-untyped-def]
    stuck = enqueue(db, "piperun_sync", "crm:a", "crm-a")
    assert claim(db, owner="dead-instance") == ["crm-a"]
    enqueue(db, "send_text", "reply:b", "reply-b")
    db.execute("UPDATE outbox SET lease_expires_at = now() - interval '1 second' WHERE id = %s", (stuck,))
    assert claim(db, limit=1, owner="B") == ["crm-a"]
    assert claim(db, limit=5, owner="B") == ["reply-b"]
    assert claim(db, owner="B") == []


def test_the_old_claim_function_claims_by_priority_too(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "chatwoot_profile", "chatwoot:a", "profile-a")
    enqueue(db, "send_media", "reply:a", "media-a")
    rows = db.execute("SELECT idempotency_key, lease_expires_at FROM sdr_claim_outbox(5, 60)").fetchall()
    assert [r[0] for r in rows] == ["media-a", "profile-a"] and all(r[1] is not None for r in rows)


def test_items_queued_before_the_file_get_their_priority_and_the_claim_index() -> None:
    require_postgres()
    name = f"t_{secrets.token_hex(6)}"
    earlier = [p for p in migration_files() if p.name < LANES_FILE]
    lanes = [p for p in migration_files() if p.name == LANES_FILE]
    assert lanes, f"{LANES_FILE} is missing"
    with connect() as admin:
        admin.execute(f"CREATE SCHEMA {name}")
        try:
            with connect(name) as conn:
                for path in earlier:
                    conn.execute(path.read_text(encoding="utf-8"))
                enqueue(conn, "piperun_sync", "crm:a", "crm-a")
                enqueue(conn, "chatwoot_message", "chatwoot:a", "mirror-a")
                enqueue(conn, "send_text", "reply:a", "reply-a")
                for _ in range(2):  # re-run safe
                    conn.execute(lanes[0].read_text(encoding="utf-8"))
                priorities = dict(conn.execute("SELECT idempotency_key, priority FROM outbox").fetchall())
                assert priorities == {"crm-a": 2, "mirror-a": 1, "reply-a": 0}
                index = conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'outbox_claim'",
                    (name,),
                ).fetchone()
                assert index and "(priority, next_attempt_at, id)" in index[0], index
                assert claim(conn) == ["reply-a", "mirror-a", "crm-a"]
        finally:
            admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

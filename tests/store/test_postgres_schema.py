"""The Supabase migrations on a real PostgreSQL: schema, RLS, and the rpc functions.

Each test gets a fresh schema with both migrations applied twice (re-run safety). The
concurrency tests use several threads, each with its own connection, the way several
bot instances share one Supabase.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from store.sqlite import schema as sqlite_schema
from tests.store.pg_support import Jsonb, connect, fresh_schema, psycopg

TABLES = [
    "leads",
    "conversations",
    "messages",
    "inbound",
    "outbox",
    "orcamentos",
    "technical_questions",
    "followups",
    "erasures",
    "empresa",
    "conversation_context",
    "turn_leases",
    "rate_slots",
]


@pytest.fixture
def schema():  # type: ignore[no-untyped-def]
    with fresh_schema() as name:
        yield name


@pytest.fixture
def db(schema):  # type: ignore[no-untyped-def]
    with connect(schema) as conn:
        yield conn


def scalar(conn, sql, *args):  # type: ignore[no-untyped-def]
    return conn.execute(sql, args).fetchone()[0]


def add_inbound(conn, contact_key, provider_id, *, channel="whatsapp", text="oi"):  # type: ignore[no-untyped-def]
    return scalar(
        conn,
        "SELECT sdr_add_inbound(%s, %s, %s, %s)",
        channel,
        provider_id,
        contact_key,
        Jsonb({"channel": channel, "provider_message_id": provider_id, "text": text}),
    )


def commit_payload(contact_key="whatsapp:5511999990000", **overrides):  # type: ignore[no-untyped-def]
    channel, _, contact_id = contact_key.partition(":")
    body = {
        "turn_id": "turn-1",
        "contact_key": contact_key,
        "channel": channel,
        "contact_id": contact_id,
        "phone": contact_id,
        "name": "Ana",
        "inbound_ids": [],
        "messages": [
            {"direction": "in", "kind": "text", "text": "quero 10 caixas", "provider_message_id": "wamid.1"},
            {"direction": "out", "kind": "text", "text": "Claro!", "status": "queued", "ref": "r0"},
        ],
        "profile": {"company": "ACME"},
        "score": 40,
        "temperature": "morno",
        "score_reasons": ["pediu orçamento"],
        "lead_messages_added": 1,
        "outbox": [
            {
                "kind": "send_text",
                "order_key": f"reply:{contact_key}",
                "idempotency_key": "turn-1:0",
                "payload": {"text": "Claro!", "message_ref": "r0"},
            }
        ],
        "quotes": [{"products": ["caixa"], "quantity": "10", "summary": "10 caixas"}],
        "technical_questions": [{"question": "Aguenta 20kg?", "context": "caixa"}],
        "handoff": None,
        "opt_out": False,
        "summary": None,
        "new_session": False,
        "follow_up": None,
        "lead_wrote": True,
        "fired_follow_up_id": None,
        "at": None,
        "referral": None,
    }
    body.update(overrides)
    return body


def commit(conn, body):  # type: ignore[no-untyped-def]
    return scalar(conn, "SELECT sdr_commit_turn(%s)", Jsonb(body))


def count(conn, table, where="true", *args):  # type: ignore[no-untyped-def]
    return scalar(conn, f"SELECT count(*) FROM {table} WHERE {where}", *args)


# --- schema ----------------------------------------------------------------------------
def test_every_table_has_rls_a_service_role_policy_and_a_comment(db, schema):
    for table in TABLES:
        row = db.execute(
            "SELECT c.relrowsecurity, obj_description(c.oid, 'pg_class') FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        ).fetchone()
        assert row is not None, f"missing table {table}"
        assert row[0] is True, f"RLS not enabled on {table}"
        assert row[1], f"no COMMENT on {table}"
        policies = db.execute(
            "SELECT roles, cmd FROM pg_policies WHERE schemaname = %s AND tablename = %s", (schema, table)
        ).fetchall()
        assert policies, f"no policy on {table}"
        assert all(roles == ["service_role"] for roles, _cmd in policies), policies


def test_updated_at_triggers_and_unique_keys(db):
    commit(db, commit_payload())
    db.execute("UPDATE leads SET updated_at = now() - interval '1 day'")
    db.execute("UPDATE leads SET name = 'Ana Maria'")
    assert scalar(db, "SELECT updated_at > now() - interval '1 minute' FROM leads")
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO leads (contact_key, channel, contact_id) VALUES ('whatsapp:5511999990000', 'whatsapp', 'x')"
        )
    msg_ids = [r[0] for r in db.execute("SELECT id FROM messages ORDER BY id")]
    db.execute("UPDATE messages SET chatwoot_message_id = 7 WHERE id = %s", (msg_ids[0],))
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("UPDATE messages SET chatwoot_message_id = 7 WHERE id = %s", (msg_ids[1],))
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE outbox SET status = 'lost'")


def _sqlite_columns() -> dict[str, set[str]]:
    tables: dict[str, set[str]] = {}
    for name, body in re.findall(
        r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", sqlite_schema.SCHEMA, flags=re.S
    ):
        cols = set()
        for line in body.strip().splitlines():
            word = line.strip().split()[0] if line.strip() else ""
            if word and word.upper() not in {"UNIQUE", "CHECK", "PRIMARY", "FOREIGN", "CONSTRAINT"}:
                cols.add(word)
        tables[name] = cols
    for table, added in sqlite_schema.ADDED_COLUMNS.items():
        tables.setdefault(table, set()).update(added)
    return tables


def test_every_sqlite_column_exists_in_postgres(db, schema):
    expected = _sqlite_columns()
    assert {"leads", "messages", "inbound", "outbox", "erasures"} <= set(expected)
    for table, columns in expected.items():
        actual = {
            r[0]
            for r in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (schema, table),
            )
        }
        assert actual, f"table {table} missing in Postgres"
        assert columns <= actual, f"{table}: missing {sorted(columns - actual)}"


# --- inbox -----------------------------------------------------------------------------
def test_add_inbound_is_idempotent(db):
    assert add_inbound(db, "whatsapp:1", "wamid.A") is True
    assert add_inbound(db, "whatsapp:1", "wamid.A") is False
    assert add_inbound(db, "whatsapp:1", "wamid.A", channel="instagram") is True
    assert count(db, "inbound", "provider_message_id = 'wamid.A'") == 2
    assert scalar(db, "SELECT status FROM inbound WHERE channel = 'whatsapp'") == "pending"
    assert (
        scalar(
            db, "SELECT sdr_add_inbound('whatsapp', 'wamid.B', 'whatsapp:1', '{}'::jsonb, 'ignored', 'echo')"
        )
        is True
    )
    assert scalar(db, "SELECT reason FROM inbound WHERE provider_message_id = 'wamid.B'") == "echo"


# --- commit_turn -------------------------------------------------------------------------
def test_commit_turn_writes_everything(db):
    key = "whatsapp:5511999990000"
    first = add_inbound(db, key, "wamid.1")
    assert first
    inbound_id = scalar(db, "SELECT id FROM inbound WHERE provider_message_id = 'wamid.1'")
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    result = commit(
        db,
        commit_payload(
            inbound_ids=[inbound_id],
            at=at.isoformat(),
            follow_up={"due_at": (at + timedelta(hours=4)).isoformat(), "attempt": 1},
            referral={"source_id": "ad-1"},
            summary="quer caixas",
        ),
    )
    lead = db.execute(
        "SELECT id, name, profile, score, temperature, score_reasons, lead_message_count, last_inbound_at,"
        " referral, summary, opted_out FROM leads WHERE contact_key = %s",
        (key,),
    ).fetchone()
    assert result["lead_id"] == lead[0]
    assert lead[1:] == (
        "Ana",
        {"company": "ACME"},
        40,
        "morno",
        ["pediu orçamento"],
        1,
        at,
        {"source_id": "ad-1"},
        "quer caixas",
        False,
    )
    assert scalar(db, "SELECT status FROM inbound WHERE id = %s", inbound_id) == "done"
    assert scalar(db, "SELECT processed_at IS NOT NULL FROM inbound WHERE id = %s", inbound_id)
    msgs = db.execute(
        "SELECT id, direction, text, turn_id, conversation_id FROM messages ORDER BY id"
    ).fetchall()
    assert [(m[1], m[2], m[3]) for m in msgs] == [
        ("in", "quero 10 caixas", "turn-1"),
        ("out", "Claro!", "turn-1"),
    ]
    assert result["message_ids"] == {"r0": msgs[1][0]}
    outbox = db.execute("SELECT kind, order_key, payload, status, attempts FROM outbox").fetchall()
    assert outbox == [
        (
            "send_text",
            f"reply:{key}",
            {"text": "Claro!", "message_id": msgs[1][0], "lead_id": lead[0]},
            "pending",
            0,
        )
    ]
    assert db.execute("SELECT products, quantity, summary, conversation_id FROM orcamentos").fetchall() == [
        (["caixa"], "10", "10 caixas", result["conversation_id"])
    ]
    assert db.execute("SELECT question, context, status FROM technical_questions").fetchall() == [
        ("Aguenta 20kg?", "caixa", "aberta")
    ]
    assert db.execute("SELECT attempt, due_at, status FROM followups").fetchall() == [
        (1, at + timedelta(hours=4), "pending")
    ]
    conv = db.execute("SELECT id, started_at, last_message_at FROM conversations").fetchall()
    assert conv == [(result["conversation_id"], at, at)]

    # Second turn, same session: lead merged, nudge cancelled, duplicate outbox ignored,
    # first referral kept, handoff and opt-out recorded.
    later = at + timedelta(minutes=5)
    second = commit(
        db,
        commit_payload(
            turn_id="turn-2",
            name=None,
            at=later.isoformat(),
            messages=[{"direction": "out", "kind": "text", "text": "Anotado", "ref": "r0"}],
            referral={"source_id": "ad-2"},
            handoff={"reason": "pediu humano", "summary": "quer falar com vendedor"},
            opt_out=True,
            follow_up={"due_at": (later + timedelta(hours=4)).isoformat(), "attempt": 1},
            quotes=[],
            technical_questions=[],
        ),
    )
    assert second["conversation_id"] == result["conversation_id"]
    row = db.execute(
        "SELECT name, lead_message_count, referral, handoff_state, handoff_reason, handoff_summary, handoff_at,"
        " opted_out, opted_out_at FROM leads"
    ).fetchone()
    assert row == (
        "Ana",
        2,
        {"source_id": "ad-1"},
        "requested",
        "pediu humano",
        "quer falar com vendedor",
        later,
        True,
        later,
    )
    assert db.execute("SELECT status, reason FROM followups").fetchall() == [("cancelled", "lead_replied")]
    assert count(db, "outbox") == 1  # same idempotency key "turn-1:0"
    assert count(db, "conversations") == 1

    # A follow-up turn (the lead did not write) that starts a new session.
    fired = commit(
        db,
        commit_payload(
            turn_id="turn-3",
            messages=[],
            outbox=[],
            quotes=[],
            technical_questions=[],
            lead_wrote=False,
            new_session=True,
            at=(later + timedelta(days=2)).isoformat(),
        ),
    )
    assert fired["conversation_id"] != result["conversation_id"]
    assert scalar(db, "SELECT last_inbound_at FROM leads") == later


def test_commit_turn_schedules_and_fires_follow_ups(db):
    commit(db, commit_payload(follow_up={"due_at": "2026-11-26T10:00:00+00:00", "attempt": 1}))
    fid = scalar(db, "SELECT id FROM followups")
    commit(
        db,
        commit_payload(
            turn_id="nudge-1",
            messages=[],
            outbox=[],
            quotes=[],
            technical_questions=[],
            lead_wrote=False,
            fired_follow_up_id=fid,
            follow_up={"due_at": "2026-11-27T10:00:00+00:00", "attempt": 2},
        ),
    )
    assert db.execute("SELECT attempt, status, reason FROM followups ORDER BY id").fetchall() == [
        (1, "sent", None),
        (2, "pending", None),
    ]


@pytest.mark.parametrize(
    "broken",
    [
        {
            "outbox": [
                {
                    "kind": "send_text",
                    "order_key": "reply:x",
                    "idempotency_key": "k",
                    "payload": {"message_ref": "missing"},
                }
            ]
        },
        {"messages": [{"direction": "sideways", "kind": "text", "text": "?"}]},
        {"quotes": [{"products": ["caixa"], "quantity": "1", "summary": None}]},
        {"follow_up": {"due_at": "not a date", "attempt": 1}},
    ],
    ids=["missing-message-ref", "bad-direction", "null-summary", "bad-due-at"],
)
def test_commit_turn_is_all_or_nothing(db, broken):
    key = "whatsapp:5511999990000"
    add_inbound(db, key, "wamid.1")
    inbound_id = scalar(db, "SELECT id FROM inbound")
    with pytest.raises(psycopg.Error):
        commit(db, commit_payload(inbound_ids=[inbound_id], **broken))
    for table in (
        "leads",
        "conversations",
        "messages",
        "outbox",
        "orcamentos",
        "technical_questions",
        "followups",
    ):
        assert count(db, table) == 0, table
    assert scalar(db, "SELECT status FROM inbound") == "pending"


# --- outbox --------------------------------------------------------------------------------
def enqueue(conn, order_key, idem, *, kind="send_text"):  # type: ignore[no-untyped-def]
    return scalar(
        conn,
        "INSERT INTO outbox (kind, order_key, idempotency_key, payload, status) VALUES (%s, %s, %s, %s, 'pending')"
        " RETURNING id",
        kind,
        order_key,
        idem,
        Jsonb({"n": idem}),
    )


def claim(conn, limit=10, lease=60):  # type: ignore[no-untyped-def]
    return conn.execute(
        "SELECT id, order_key, status, attempts, lease_expires_at FROM sdr_claim_outbox(%s, %s)",
        (limit, lease),
    ).fetchall()


def test_claim_outbox_takes_only_heads(db):
    a1 = enqueue(db, "reply:a", "a1")
    a2 = enqueue(db, "reply:a", "a2")
    b1 = enqueue(db, "reply:b", "b1")
    rows = claim(db)
    assert sorted(r[0] for r in rows) == [a1, b1]
    assert all(r[2] == "inflight" and r[3] == 1 and r[4] is not None for r in rows)
    assert claim(db) == []
    # The head goes back to retry later: what is behind it must still wait.
    db.execute(
        "UPDATE outbox SET status = 'pending', next_attempt_at = now() + interval '1 hour' WHERE id = %s",
        (a1,),
    )
    assert claim(db) == []
    db.execute("UPDATE outbox SET status = 'done' WHERE id = %s", (a1,))
    assert [r[0] for r in claim(db)] == [a2]


def test_inflight_items_with_an_expired_lease_are_reclaimed(db):
    item = enqueue(db, "reply:a", "a1")
    assert [r[0] for r in claim(db, lease=60)] == [item]
    assert claim(db) == []  # lease still live
    db.execute("UPDATE outbox SET lease_expires_at = now() - interval '1 second' WHERE id = %s", (item,))
    again = claim(db)
    assert [(r[0], r[2], r[3]) for r in again] == [(item, "inflight", 2)]
    # And for real, with a 1 second lease.
    db.execute("UPDATE outbox SET status = 'done' WHERE id = %s", (item,))
    short = enqueue(db, "reply:b", "b1")
    assert [r[0] for r in claim(db, lease=1)] == [short]
    assert claim(db) == []
    time.sleep(1.2)
    assert [(r[0], r[3]) for r in claim(db)] == [(short, 2)]


def test_concurrent_claimers_never_share_a_row_and_keep_key_order(schema):
    keys = [f"reply:whatsapp:{n}" for n in range(50)]
    with connect(schema) as conn:
        for i in range(4):
            for key in keys:
                enqueue(conn, key, f"{key}:{i}")
        total = count(conn, "outbox")
    assert total == 200

    lock = threading.Lock()
    claims: list[tuple[int, str, int]] = []  # (sequence, order_key, id)
    in_flight: set[str] = set()  # order keys with an item claimed and not yet done
    overlaps: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        try:
            with connect(schema) as conn:
                start.wait()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    rows = claim(conn, limit=7, lease=60)
                    with lock:
                        for row in rows:
                            claims.append((len(claims), row[1], row[0]))
                            if row[1] in in_flight:
                                overlaps.append(row[1])
                            in_flight.add(row[1])
                        finished = len(claims) >= total
                    for row in rows:
                        # Forget the key before the row is done: only then can the next
                        # item of that key be claimed, so a claim never races this set.
                        with lock:
                            in_flight.discard(row[1])
                        conn.execute("UPDATE outbox SET status = 'done' WHERE id = %s", (row[0],))
                    if finished:
                        return
                    if not rows:
                        time.sleep(0.002)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert not overlaps, f"two items of one order key were in flight at once: {overlaps[:5]}"
    ids = [c[2] for c in claims]
    assert len(ids) == len(set(ids)) == total, "an item was claimed twice or never"
    per_key: dict[str, list[int]] = defaultdict(list)
    for _seq, key, item_id in sorted(claims):
        per_key[key].append(item_id)
    assert len(per_key) == 50
    for key, seq in per_key.items():
        assert seq == sorted(seq), f"{key} claimed out of order: {seq}"
    with connect(schema) as conn:
        assert scalar(conn, "SELECT max(attempts) FROM outbox") == 1


# --- per-lead leases and cross-instance debounce -------------------------------------------
def test_turn_lease_is_taken_over_only_after_expiry(db):
    key = "whatsapp:1"
    assert scalar(db, "SELECT sdr_claim_contact(%s, 'A', 30)", key) is True
    assert scalar(db, "SELECT sdr_claim_contact(%s, 'B', 30)", key) is False
    assert scalar(db, "SELECT sdr_claim_contact(%s, 'A', 30)", key) is True  # renewal
    assert scalar(db, "SELECT sdr_release_contact(%s, 'B')", key) is False
    assert scalar(db, "SELECT owner FROM turn_leases WHERE contact_key = %s", key) == "A"
    # A dies: its lease runs out and B takes over; A no longer owns it.
    db.execute("UPDATE turn_leases SET expires_at = now() - interval '1 second'")
    assert scalar(db, "SELECT sdr_claim_contact(%s, 'B', 30)", key) is True
    assert scalar(db, "SELECT sdr_claim_contact(%s, 'A', 30)", key) is False
    assert scalar(db, "SELECT sdr_release_contact(%s, 'A')", key) is False
    assert scalar(db, "SELECT sdr_release_contact(%s, 'B')", key) is True
    assert scalar(db, "SELECT sdr_claim_contact(%s, 'A', 1)", key) is True
    assert scalar(db, "SELECT sdr_claim_contact(%s, 'B', 30)", key) is False
    time.sleep(1.2)
    assert scalar(db, "SELECT sdr_claim_contact(%s, 'B', 30)", key) is True


def test_concurrent_contact_claims_have_one_winner(schema):
    winners: list[str] = []
    start = threading.Barrier(8)

    def worker(owner: str) -> None:
        with connect(schema) as conn:
            start.wait()
            if scalar(conn, "SELECT sdr_claim_contact('whatsapp:9', %s, 30)", owner):
                winners.append(owner)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1


def pending_contacts(conn, owner, *, quiet=5, max_wait=60, limit=10, lease=30):  # type: ignore[no-untyped-def]
    return [
        r[0]
        for r in conn.execute(
            "SELECT * FROM sdr_claim_pending_contacts(%s, %s, %s, %s, %s)",
            (owner, limit, quiet, max_wait, lease),
        )
    ]


def test_claim_pending_contacts_debounces_across_instances(db):
    def received(provider_id, seconds_ago):  # type: ignore[no-untyped-def]
        db.execute(
            "UPDATE inbound SET received_at = now() - make_interval(secs => %s) WHERE provider_message_id = %s",
            (seconds_ago, provider_id),
        )

    # quiet: last message 10 s ago; typing: last message just now; chatty: keeps typing
    # but its first message waited 100 s (> max wait); done: nothing pending.
    add_inbound(db, "whatsapp:quiet", "q1")
    received("q1", 10)
    add_inbound(db, "whatsapp:typing", "t1")
    received("t1", 30)
    add_inbound(db, "whatsapp:typing", "t2")
    add_inbound(db, "whatsapp:chatty", "c1")
    received("c1", 100)
    add_inbound(db, "whatsapp:chatty", "c2")
    add_inbound(db, "whatsapp:done", "d1")
    received("d1", 100)
    db.execute("UPDATE inbound SET status = 'done' WHERE provider_message_id = 'd1'")

    assert pending_contacts(db, "A") == ["whatsapp:quiet", "whatsapp:chatty"]  # oldest first
    assert scalar(db, "SELECT count(*) FROM turn_leases WHERE owner = 'A'") == 2
    # Another instance gets nothing while A holds the leases...
    assert pending_contacts(db, "B") == []
    # ...nor a contact whose turn another instance is running right now.
    received("t2", 10)
    assert scalar(db, "SELECT sdr_claim_contact('whatsapp:typing', 'A', 30)") is True
    assert pending_contacts(db, "B") == []
    # A dies: after its leases expire, B picks the contacts up.
    db.execute("UPDATE turn_leases SET expires_at = now() - interval '1 second'")
    assert pending_contacts(db, "B", limit=2) == ["whatsapp:quiet", "whatsapp:typing"]
    assert pending_contacts(db, "B") == ["whatsapp:chatty"]
    # A wider quiet window holds a contact back, the max wait overrides it.
    db.execute("DELETE FROM turn_leases")
    assert pending_contacts(db, "C", quiet=20, max_wait=60) == ["whatsapp:chatty"]
    db.execute("DELETE FROM turn_leases")
    assert pending_contacts(db, "C", quiet=20, max_wait=200) == []


def test_concurrent_pending_contact_claims_split_the_contacts(schema):
    with connect(schema) as conn:
        for n in range(40):
            add_inbound(conn, f"whatsapp:{n}", f"m{n}")
        conn.execute("UPDATE inbound SET received_at = now() - interval '1 minute'")
    got: dict[str, list[str]] = {}
    start = threading.Barrier(6)

    def worker(owner: str) -> None:
        with connect(schema) as conn:
            start.wait()
            got[owner] = pending_contacts(conn, owner, limit=40)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    every = [key for keys in got.values() for key in keys]
    assert len(every) == len(set(every)), "a contact was given to two instances"
    assert set(every) == {f"whatsapp:{n}" for n in range(40)}


# --- erasure ------------------------------------------------------------------------------
def test_forget_lead_erases_and_audits(db):
    key = "whatsapp:5511999990000"
    other = "whatsapp:5511888880000"
    add_inbound(db, key, "wamid.1")
    add_inbound(db, key, "wamid.2")
    commit(db, commit_payload(follow_up={"due_at": "2026-11-26T10:00:00+00:00", "attempt": 1}))
    commit(db, commit_payload(other, turn_id="other-1", outbox=[], messages=[]))
    lead_id = scalar(db, "SELECT id FROM leads WHERE contact_key = %s", key)
    db.execute("INSERT INTO conversation_context (lead_id, summary) VALUES (%s, 'x')", (lead_id,))
    db.execute("SELECT sdr_claim_contact(%s, 'A', 30)", (key,))

    assert scalar(db, "SELECT sdr_forget_lead(%s)", key) is True
    assert count(db, "leads", "contact_key = %s", key) == 0
    assert count(db, "inbound", "contact_key = %s", key) == 0
    assert count(db, "outbox", "order_key = %s", f"reply:{key}") == 0
    for table in (
        "messages",
        "orcamentos",
        "technical_questions",
        "followups",
        "conversations",
        "conversation_context",
    ):
        assert count(db, table, "lead_id = %s", lead_id) == 0, table
    assert count(db, "turn_leases") == 0
    erasure = db.execute(
        "SELECT channel, lead_created_at IS NOT NULL, temperature, rows_deleted FROM erasures"
    ).fetchall()
    assert erasure == [
        (
            "whatsapp",
            True,
            "morno",
            {
                "inbound": 2,
                "outbox": 1,
                "messages": 2,
                "orcamentos": 1,
                "technical_questions": 1,
                "followups": 1,
                "conversations": 1,
            },
        )
    ]
    # The other lead is untouched, and forgetting twice is a no-op.
    assert count(db, "leads", "contact_key = %s", other) == 1
    assert count(db, "orcamentos") == 1
    assert scalar(db, "SELECT sdr_forget_lead(%s)", key) is False
    assert count(db, "erasures") == 1


def test_forget_lead_with_only_inbound_messages(db):
    add_inbound(db, "instagram:42", "mid.1", channel="instagram")
    assert scalar(db, "SELECT sdr_forget_lead('instagram:42')") is True
    assert db.execute("SELECT channel, lead_created_at, rows_deleted FROM erasures").fetchall() == [
        ("instagram", None, {"inbound": 1, "outbox": 0})
    ]

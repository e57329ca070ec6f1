"""The store-API functions (supabase/migrations/20261125000003_store_api.sql) on a real
PostgreSQL: what several bot instances sharing one Supabase rely on.

Each test gets a fresh schema with every migration applied twice. Concurrency tests use
several threads, each with its own connection, as several instances would.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.store.pg_support import Jsonb, apply_migrations, connect, fresh_schema, psycopg
from tests.store.test_postgres_schema import add_inbound, commit_payload, count, scalar

LANES = ("reply", "chatwoot", "crm", "capi", "hooks")


@pytest.fixture
def schema():  # type: ignore[no-untyped-def]
    with fresh_schema() as name:
        yield name


@pytest.fixture
def db(schema):  # type: ignore[no-untyped-def]
    with connect(schema) as conn:
        yield conn


def enqueue(conn, order_key, idem, *, kind="send_text"):  # type: ignore[no-untyped-def]
    scalar(conn, "SELECT sdr_enqueue(%s, %s, %s, %s)", kind, order_key, idem, Jsonb({"idem": idem}))
    return scalar(conn, "SELECT id FROM outbox WHERE idempotency_key = %s", idem)


def claim(conn, owner="bot-a", *, limit=10, lease=60.0, now=None):  # type: ignore[no-untyped-def]
    return conn.execute(
        "SELECT id, order_key, status, attempts, claimed_by FROM sdr_claim_outbox_for(%s, %s, %s, %s)",
        (owner, limit, now or datetime.now(UTC), lease),
    ).fetchall()


def run_threads(target, args_list, timeout=60):  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def wrapped(*args):  # type: ignore[no-untyped-def]
        try:
            target(*args)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=args) for args in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not errors, errors


# --- schema -------------------------------------------------------------------------------


def test_new_columns_and_the_commit_record_table_are_in_place(db, schema):  # type: ignore[no-untyped-def]
    columns = {
        r[0]
        for r in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'leads'",
            (schema,),
        )
    }
    assert {"crm_person_id", "crm_company_id", "crm_deal_id"} <= columns
    rls, comment = db.execute(
        "SELECT c.relrowsecurity, obj_description(c.oid, 'pg_class') FROM pg_class c"
        " WHERE c.relnamespace = %s::regnamespace AND c.relname = 'turn_commits'",
        (schema,),
    ).fetchone()
    assert rls is True and comment
    assert db.execute(
        "SELECT roles FROM pg_policies WHERE schemaname = %s AND tablename = 'turn_commits'", (schema,)
    ).fetchall() == [(["service_role"],)]


def test_rerunning_every_migration_keeps_the_data(db):  # type: ignore[no-untyped-def]
    commit(db)
    db.execute("UPDATE leads SET crm_deal_id = 303")
    apply_migrations(db)
    assert scalar(db, "SELECT crm_deal_id FROM leads") == 303
    assert count(db, "turn_commits") == 1


# --- commit once per request --------------------------------------------------------------


def commit(conn, request_id="req-1", **overrides):  # type: ignore[no-untyped-def]
    return scalar(conn, "SELECT sdr_commit_turn_once(%s, %s)", request_id, Jsonb(commit_payload(**overrides)))


def test_a_commit_retried_with_its_request_id_is_written_once(db):  # type: ignore[no-untyped-def]
    first = commit(db)
    again = commit(db)
    assert again == {**first, "replayed": True}
    assert (count(db, "messages"), count(db, "orcamentos"), count(db, "conversations")) == (2, 1, 1)
    assert scalar(db, "SELECT lead_message_count FROM leads") == 1
    # Another request is another turn.
    commit(db, "req-2", turn_id="turn-2", outbox=[])
    assert count(db, "messages") == 4


def test_a_failed_commit_leaves_no_record_so_its_retry_runs(db):  # type: ignore[no-untyped-def]
    broken = {
        "kind": "send_text",
        "order_key": "reply:x",
        "idempotency_key": "k",
        "payload": {"message_ref": "nope"},
    }
    with pytest.raises(psycopg.Error):
        commit(db, outbox=[broken])
    assert count(db, "turn_commits") == 0 and count(db, "leads") == 0
    result = commit(db)
    assert "replayed" not in result and count(db, "messages") == 2


def test_concurrent_duplicates_of_one_commit_have_one_effect(schema):  # type: ignore[no-untyped-def]
    """The first attempt is still running when its retry arrives: the retry waits on the
    request id and then answers the first attempt's result."""
    results: list[dict] = []
    with connect(schema) as first:
        first.execute("BEGIN")
        first_result = commit(first)
        run = threading.Thread(target=lambda: results.append(_commit_in(schema)))
        run.start()
        time.sleep(0.3)
        assert run.is_alive(), "the retry must wait for the first attempt"
        first.execute("COMMIT")
        run.join(10)
    assert results == [{**first_result, "replayed": True}]
    with connect(schema) as conn:
        assert count(conn, "messages") == 2


def _commit_in(schema):  # type: ignore[no-untyped-def]
    with connect(schema) as conn:
        return commit(conn)


# --- outbox claims across instances ---------------------------------------------------------


def test_concurrent_claimers_never_share_an_item_and_keep_key_order(schema):  # type: ignore[no-untyped-def]
    keys = [f"reply:whatsapp:{n}" for n in range(30)]
    with connect(schema) as conn:
        for i in range(3):
            for key in keys:
                enqueue(conn, key, f"{key}:{i}")
    lock = threading.Lock()
    claimed: list[tuple[int, str, int]] = []

    def worker(owner: str) -> None:
        with connect(schema) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = claim(conn, owner, limit=5)
                with lock:
                    claimed.extend((len(claimed), r[1], r[0]) for r in rows)
                    done = len(claimed) >= 90
                for row in rows:
                    assert row[4] == owner
                    conn.execute("UPDATE outbox SET status = 'done' WHERE id = %s", (row[0],))
                if done:
                    return
                if not rows:
                    time.sleep(0.002)

    run_threads(worker, [(f"bot-{n}",) for n in range(6)])
    ids = [c[2] for c in claimed]
    assert len(ids) == len(set(ids)) == 90
    per_key: dict[str, list[int]] = {}
    for _seq, key, item_id in sorted(claimed):
        per_key.setdefault(key, []).append(item_id)
    assert all(seq == sorted(seq) for seq in per_key.values())


def test_a_dead_instances_items_are_taken_over_when_the_lease_expires(db):  # type: ignore[no-untyped-def]
    item = enqueue(db, "reply:a", "a1")
    assert [r[0] for r in claim(db, "bot-dead", lease=0.2)] == [item]
    assert claim(db, "bot-b") == []  # the lease is live
    time.sleep(0.3)
    assert [(r[0], r[3], r[4]) for r in claim(db, "bot-b")] == [(item, 2, "bot-b")]


def test_release_takes_back_own_and_expired_items_only(db):  # type: ignore[no-untyped-def]
    mine = enqueue(db, "k1", "m1")
    others = enqueue(db, "k2", "o1")
    expired = enqueue(db, "k3", "e1")
    claim(db, "bot-a", limit=1)
    claim(db, "bot-b", limit=1)
    claim(db, "bot-dead", limit=1, lease=0.05)
    time.sleep(0.1)
    assert scalar(db, "SELECT sdr_release_outbox('bot-a')") == 2
    status = dict(db.execute("SELECT id, status FROM outbox").fetchall())
    assert (status[mine], status[others], status[expired]) == ("pending", "inflight", "pending")
    assert scalar(db, "SELECT claimed_by FROM outbox WHERE id = %s", others) == "bot-b"
    assert scalar(db, "SELECT sdr_release_outbox('bot-a')") == 0


def test_claim_looks_ahead_with_the_callers_clock_but_never_lags_the_database(db):  # type: ignore[no-untyped-def]
    item = enqueue(db, "k1", "a1")
    db.execute("UPDATE outbox SET next_attempt_at = now() + interval '1 hour' WHERE id = %s", (item,))
    assert claim(db, now=datetime.now(UTC) + timedelta(minutes=59)) == []
    assert [r[0] for r in claim(db, now=datetime.now(UTC) + timedelta(minutes=61))] == [item]
    # A fresh item is due now on the database clock, even for a caller whose clock lags.
    fresh = enqueue(db, "k2", "b1")
    assert [r[0] for r in claim(db, now=datetime.now(UTC) - timedelta(minutes=5))] == [fresh]


def test_next_due_sees_only_heads_and_expired_leases(db):  # type: ignore[no-untyped-def]
    assert scalar(db, "SELECT sdr_next_outbox_due()") is None
    head = enqueue(db, "k1", "a1")
    enqueue(db, "k1", "a2")
    claim(db, lease=0.05)
    assert scalar(db, "SELECT sdr_next_outbox_due()") is None  # a2 waits behind a live claim
    time.sleep(0.1)
    due = scalar(db, "SELECT sdr_next_outbox_due()")
    assert due == scalar(db, "SELECT lease_expires_at FROM outbox WHERE id = %s", head)


def test_replay_keeps_the_idempotency_key_and_defer_gives_the_attempt_back(db):  # type: ignore[no-untyped-def]
    item = enqueue(db, "k1", "idem-1")
    claim(db)
    db.execute("UPDATE outbox SET status = 'dead', last_error = 'HTTP 400' WHERE id = %s", (item,))
    assert scalar(db, "SELECT sdr_replay_outbox(%s)", item) is True
    assert db.execute("SELECT idempotency_key, status, attempts FROM outbox").fetchall() == [
        ("idem-1", "pending", 0)
    ]
    assert scalar(db, "SELECT sdr_replay_outbox(%s)", item) is False  # not dead any more
    assert scalar(db, "SELECT sdr_enqueue('send_text', 'k1', 'idem-1', '{}')") is False  # still unique

    claim(db)
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert scalar(db, "SELECT sdr_defer_outbox(%s, %s, 'circuit_open')", item, later) is True
    row = db.execute(
        "SELECT status, attempts, next_attempt_at, last_error, claimed_by FROM outbox"
    ).fetchone()
    assert row == ("pending", 0, later, "circuit_open", None)
    assert scalar(db, "SELECT sdr_defer_outbox(%s, %s, 'again')", item, later) is False  # only inflight


def test_replay_dead_by_kind_and_stats_per_kind(db):  # type: ignore[no-untyped-def]
    enqueue(db, "k1", "a", kind="send_text")
    enqueue(db, "k2", "b", kind="piperun_sync")
    enqueue(db, "k3", "c", kind="piperun_sync")
    db.execute("UPDATE outbox SET status = 'dead' WHERE idempotency_key IN ('a', 'b')")
    db.execute("UPDATE outbox SET status = 'done' WHERE idempotency_key = 'c'")
    assert scalar(db, "SELECT sdr_outbox_stats()") == {
        "send_text": {"dead": 1},
        "piperun_sync": {"dead": 1, "done": 1},
    }
    assert scalar(db, "SELECT sdr_replay_dead('piperun_sync')") == 1
    assert scalar(db, "SELECT sdr_replay_dead(NULL)") == 1
    assert scalar(db, "SELECT sdr_replay_dead(NULL)") == 0


# --- turn leases and ready contacts -----------------------------------------------------------


def test_a_fractional_contact_lease_is_taken_over_after_expiry(db):  # type: ignore[no-untyped-def]
    assert scalar(db, "SELECT sdr_lease_contact('whatsapp:1', 'bot-dead', 0.2)") is True
    assert scalar(db, "SELECT sdr_lease_contact('whatsapp:1', 'bot-b', 30)") is False
    time.sleep(0.3)
    assert scalar(db, "SELECT sdr_lease_contact('whatsapp:1', 'bot-b', 30)") is True
    assert scalar(db, "SELECT sdr_lease_contact('whatsapp:1', 'bot-dead', 30)") is False


def test_concurrent_contact_leases_have_one_winner(schema):  # type: ignore[no-untyped-def]
    winners: list[str] = []
    start = threading.Barrier(8)

    def worker(owner: str) -> None:
        with connect(schema) as conn:
            start.wait()
            if scalar(conn, "SELECT sdr_lease_contact('whatsapp:9', %s, 30)", owner):
                winners.append(owner)

    run_threads(worker, [(f"bot-{n}",) for n in range(8)])
    assert len(winners) == 1


def ready(conn, owner, *, limit=100, quiet=0.0, max_wait=60.0, lease=30.0):  # type: ignore[no-untyped-def]
    return [
        r[0]
        for r in conn.execute(
            "SELECT * FROM sdr_claim_ready_contacts(%s, %s, %s, %s, %s)",
            (owner, limit, quiet, max_wait, lease),
        )
    ]


def test_concurrent_ready_claims_never_give_a_contact_to_two_instances(schema):  # type: ignore[no-untyped-def]
    with connect(schema) as conn:
        for n in range(60):
            add_inbound(conn, f"whatsapp:{n}", f"m{n}")
        conn.execute("UPDATE inbound SET received_at = now() - interval '1 minute'")
    got: dict[str, set[str]] = {}
    start = threading.Barrier(6)

    def worker(owner: str) -> None:
        with connect(schema) as conn:
            start.wait()
            mine: set[str] = set()
            for _ in range(4):  # a caller's own leases come back renewed, new ones are added
                mine |= set(ready(conn, owner, limit=25))
            got[owner] = mine

    run_threads(worker, [(f"bot-{n}",) for n in range(6)])
    owners = Counter(key for keys in got.values() for key in keys)
    assert [k for k, n in owners.items() if n > 1] == [], "a contact went to two instances"
    assert set(owners) == {f"whatsapp:{n}" for n in range(60)}


def test_ready_contacts_skip_other_owners_but_renew_the_callers_own(db):  # type: ignore[no-untyped-def]
    for key in ("whatsapp:a", "whatsapp:b", "whatsapp:c"):
        add_inbound(db, key, key)
    db.execute("UPDATE inbound SET received_at = now() - interval '10 seconds'")
    assert scalar(db, "SELECT sdr_lease_contact('whatsapp:b', 'bot-2', 30)") is True
    assert scalar(db, "SELECT sdr_lease_contact('whatsapp:c', 'bot-1', 30)") is True
    assert ready(db, "bot-1", quiet=5) == ["whatsapp:a", "whatsapp:c"]
    assert ready(db, "bot-3", quiet=5) == []
    # The quiet window is measured on received_at; a lead still typing is not ready.
    add_inbound(db, "whatsapp:d", "d1")
    assert "whatsapp:d" not in ready(db, "bot-4", quiet=5)


# --- leads, messages, erasure -----------------------------------------------------------------


def test_erasure_drops_every_lane_of_the_lead_and_nothing_else(db):  # type: ignore[no-untyped-def]
    key, other = "whatsapp:5511999990000", "whatsapp:5511888880000"
    add_inbound(db, key, "wamid.1")
    commit(db)
    commit(db, "req-other", contact_key=other, turn_id="other-1", outbox=[])
    for lane in LANES:
        enqueue(db, f"{lane}:{key}", f"{lane}-mine")
        enqueue(db, f"{lane}:{other}", f"{lane}-other")
    lanes = [f"{lane}:{key}" for lane in LANES]
    assert scalar(db, "SELECT sdr_erase_lead(%s, %s)", key, lanes) is True
    left = {r[0] for r in db.execute("SELECT order_key FROM outbox WHERE kind <> 'lead_erasure'")}
    assert left == {f"{lane}:{other}" for lane in LANES}
    assert count(db, "leads") == 1 and count(db, "messages", "lead_id <> 0") == 2
    [(rows_deleted, channel)] = db.execute("SELECT rows_deleted, channel FROM erasures").fetchall()
    assert channel == "whatsapp" and rows_deleted["outbox"] == 6 and rows_deleted["inbound"] == 1
    assert scalar(db, "SELECT sdr_erase_lead(%s, %s)", key, lanes) is False


def test_delivery_reports_never_move_a_message_back(db):  # type: ignore[no-untyped-def]
    commit(db)
    msg = scalar(db, "SELECT id FROM messages WHERE direction = 'out'")
    assert scalar(db, "SELECT sdr_mark_message_sent(%s, 'wamid.OUT')", msg) is True
    report = "SELECT sdr_record_delivery_status('wamid.OUT', %s, %s)"
    assert scalar(db, report, "read", None) is True
    assert scalar(db, report, "delivered", None) is True
    assert scalar(db, "SELECT status FROM messages WHERE id = %s", msg) == "read"
    assert scalar(db, report, "failed", "131047 re-engagement") is True
    assert scalar(db, report, "read", None) is True  # a late "read" does not undo the failure
    assert db.execute("SELECT status, error FROM messages WHERE id = %s", (msg,)).fetchone() == (
        "failed",
        "131047 re-engagement",
    )
    assert scalar(db, "SELECT sdr_record_delivery_status('wamid.NOPE', 'read', NULL)") is False
    assert scalar(db, "SELECT sdr_message_contact('wamid.OUT')") == "whatsapp:5511999990000"


def test_business_messages_pause_the_bot_unless_they_are_its_own(db):  # type: ignore[no-untyped-def]
    until = datetime.now(UTC) + timedelta(hours=12)
    note = "SELECT sdr_note_business_message(%s, %s, %s, %s)"
    # A seller writing first to a new prospect: the lead exists from now on, paused.
    assert scalar(db, note, "whatsapp:5511777770000", "wamid.S1", "Oi!", until) is True
    assert db.execute(
        "SELECT channel, contact_id, paused_until FROM leads WHERE contact_key = 'whatsapp:5511777770000'"
    ).fetchone() == ("whatsapp", "5511777770000", until)
    commit(db)
    # The echo of the bot's own reply (same text, just sent) is not a person talking.
    assert scalar(db, note, "whatsapp:5511999990000", "wamid.ECHO", "Claro!", until) is False
    assert scalar(db, note, "whatsapp:5511999990000", "wamid.S2", "Aqui é o Carlos", until) is True
    assert scalar(db, "SELECT paused_until FROM leads WHERE contact_key = 'whatsapp:5511999990000'") == until


def test_human_replies_are_recorded_once_and_not_mistaken_for_the_bot(db):  # type: ignore[no-untyped-def]
    commit(db)
    db.execute("UPDATE leads SET chatwoot_conversation_id = 55")
    human = "SELECT sdr_record_human_reply('whatsapp:5511999990000', 'Sou o Carlos', 901)"
    message_id = scalar(db, human)
    assert message_id is not None and scalar(db, human) is None
    assert scalar(db, "SELECT sdr_is_own_chatwoot_message(901, 55, 'Sou o Carlos')") is False
    # A bot message not yet linked to its Chatwoot id is recognised by its text.
    assert scalar(db, "SELECT sdr_is_own_chatwoot_message(902, 55, 'Claro!')") is True
    assert scalar(db, "SELECT sdr_is_own_chatwoot_message(902, NULL, 'Claro!')") is False


def test_get_lead_by_each_key_and_counts_by_temperature(db):  # type: ignore[no-untyped-def]
    commit(db)
    db.execute("UPDATE leads SET chatwoot_conversation_id = 55, crm_deal_id = 303")
    by_key = scalar(db, "SELECT sdr_get_lead(p_contact_key => 'whatsapp:5511999990000')")
    assert by_key["conversation_id"] == scalar(db, "SELECT max(id) FROM conversations")
    assert scalar(db, "SELECT sdr_get_lead(p_chatwoot_conversation_id => 55)") == by_key
    assert scalar(db, "SELECT sdr_get_lead(p_crm_deal_id => 303)") == by_key
    assert scalar(db, "SELECT sdr_get_lead(p_crm_deal_id => 404)") is None
    assert scalar(db, "SELECT sdr_lead_counts()") == {"morno": 1}

"""The erasure migration (supabase/migrations/20261202000001_erasure.sql) on a real
PostgreSQL: the tombstone is a true HMAC under a key only the database holds, nobody but
the service role can read either table, and an erasure racing a webhook or a turn commit
cannot be undone by it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time

import pytest

from tests.store.pg_support import Jsonb, apply_migrations, connect, fresh_schema
from tests.store.test_postgres_schema import add_inbound, commit_payload, count, scalar

KEY = "whatsapp:5511999990000"
LANES = [f"{lane}:{KEY}" for lane in ("reply", "chatwoot", "crm", "capi", "hooks")]


@pytest.fixture
def schema():  # type: ignore[no-untyped-def]
    with fresh_schema() as name:
        yield name


@pytest.fixture
def db(schema):  # type: ignore[no-untyped-def]
    with connect(schema) as conn:
        yield conn


def _python_hmac(db, value: str) -> str:  # type: ignore[no-untyped-def]
    ipad, opad = db.execute("SELECT k_ipad, k_opad FROM erasure_secret").fetchone()
    key = bytes(b ^ 0x36 for b in ipad)[:32]
    assert bytes(b ^ 0x5C for b in opad)[:32] == key and set(bytes(b ^ 0x36 for b in ipad)[32:]) == {0}
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def test_the_tombstone_holds_hmac_sha256_hashes_only_under_a_key_kept_across_reapplies(db):  # type: ignore[no-untyped-def]
    add_inbound(db, KEY, "wamid.1")
    assert scalar(db, "SELECT sdr_erase_lead(%s, %s)", KEY, LANES) is True
    hashes = {r[0] for r in db.execute("SELECT hash FROM tombstones")}
    assert hashes == {_python_hmac(db, f"contact:{KEY}"), _python_hmac(db, "message:wamid.1")}
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
    apply_migrations(db)  # an upgrade re-runs every file: the key must not change
    assert scalar(db, "SELECT sdr_is_erased(%s)", KEY) is True
    assert count(db, "erasure_secret") == 1


def test_only_the_service_role_reaches_the_tombstone_and_its_key(db, schema):  # type: ignore[no-untyped-def]
    for table in ("tombstones", "erasure_secret"):
        rls, public, service = db.execute(
            "SELECT c.relrowsecurity,"
            " has_table_privilege('public', c.oid, 'SELECT'),"
            " has_table_privilege('service_role', c.oid, 'SELECT, INSERT')"
            " FROM pg_class c WHERE c.relnamespace = %s::regnamespace AND c.relname = %s",
            (schema, table),
        ).fetchone()
        assert (rls, public, service) == (True, False, True), table
    for function in ("sdr_is_erased", "sdr_erasure_hash", "sdr_erase_lead"):
        assert scalar(
            db,
            "SELECT bool_and(has_function_privilege('service_role', p.oid, 'EXECUTE'))"
            " FROM pg_proc p WHERE p.pronamespace = %s::regnamespace AND p.proname = %s",
            schema,
            function,
        ), function


def _race_an_erasure(schema: str, late):  # type: ignore[no-untyped-def]
    """Run `late` while an erasure has run but not committed yet (the race window); True
    when `late` had to wait for the erasure, and what it returned. The erasure is always
    ended (committed, or rolled back on failure) so the schema can be dropped."""
    eraser = connect(schema)
    eraser.autocommit = False
    eraser_pid = eraser.info.backend_pid
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(value=late()), daemon=True)
    try:
        assert eraser.execute("SELECT sdr_erase_lead(%s, %s)", (KEY, LANES)).fetchone()[0] is True
        thread.start()
        # Not a guess with a timer: either `late` finishes (it slipped past), or Postgres
        # shows its session blocked by the eraser's transaction. Both are final states.
        waited = False
        with connect(schema) as watcher:
            deadline = time.monotonic() + 20
            while thread.is_alive() and time.monotonic() < deadline:
                blocked = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    (eraser_pid,),
                ).fetchone()[0]
                if blocked:
                    waited = True
                    break
                time.sleep(0.01)
        eraser.commit()
    finally:
        eraser.rollback()
        eraser.close()
        thread.join(10)
    return waited, result.get("value")


def test_a_webhook_stored_while_an_erasure_runs_does_not_survive_it(db, schema):  # type: ignore[no-untyped-def]
    add_inbound(db, KEY, "wamid.1")

    def late_webhook():  # type: ignore[no-untyped-def]
        with connect(schema) as other:
            return add_inbound(other, KEY, "wamid.2")

    waited, stored = _race_an_erasure(schema, late_webhook)
    assert waited  # it waits for the erasure's outcome instead of slipping past it
    assert stored is False
    assert count(db, "inbound") == 0


def test_a_turn_committing_while_an_erasure_runs_writes_nothing(db, schema):  # type: ignore[no-untyped-def]
    add_inbound(db, KEY, "wamid.1")

    def late_commit():  # type: ignore[no-untyped-def]
        with connect(schema) as other:
            return scalar(other, "SELECT sdr_commit_turn_once(%s, %s)", "req-1", Jsonb(commit_payload(KEY)))

    waited, result = _race_an_erasure(schema, late_commit)
    assert waited
    assert result == {"erased": True}
    assert count(db, "leads") == 0 and count(db, "messages") == 0
    assert [r[0] for r in db.execute("SELECT kind FROM outbox")] == ["lead_erasure"]

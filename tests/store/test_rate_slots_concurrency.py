"""Rate slots taken at the same moment by several instances never collide.

Postgres: threads with a connection each call sdr_take_rate_slot at once, as instances
behind a load balancer would (supabase/migrations/20261202000002_issue15.sql). SQLite:
threads with a store handle each on one file, as the web and worker processes. Either
way every slot handed out is a different one, and together they keep to the rate.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from store.sqlite import SqliteStore
from tests.helpers.busy_store import retried_while_busy

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
THREADS, TAKES, RATE, BURST = 4, 25, 20.0, 5


def run_together(work: Callable[[], list[float]]) -> list[float]:
    """`work` on THREADS threads released at once; every wait they got."""
    start = threading.Barrier(THREADS)
    results: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def thread() -> None:
        try:
            start.wait()
            waits = work()
            with lock:
                results.extend(waits)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def assert_one_meter(waits: list[float]) -> None:
    """The burst free, then exactly one slot per interval: none shared, none skipped."""
    expected = [0.0] * BURST + [k / RATE for k in range(1, THREADS * TAKES - BURST + 1)]
    assert sorted(waits) == pytest.approx(expected)


def test_postgres_instances_taking_slots_at_once_share_one_meter() -> None:
    from tests.store.pg_support import connect, fresh_schema

    with fresh_schema() as schema:

        def work() -> list[float]:
            with connect(schema) as conn:
                return [
                    conn.execute(
                        "SELECT sdr_take_rate_slot(%s, %s, %s, %s)", ("zapi", RATE, BURST, T0)
                    ).fetchone()[0]
                    for _ in range(TAKES)
                ]

        assert_one_meter(run_together(work))


def test_sqlite_processes_taking_slots_at_once_share_one_meter(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"

    async def takes() -> list[float]:
        store = SqliteStore(path)
        await store.open()
        try:
            return [
                # A busy file is retried, as the delivery that meters a send does.
                await retried_while_busy(
                    lambda: store.take_rate_slot("zapi", rate_per_s=RATE, burst=BURST, now=T0)
                )
                for _ in range(TAKES)
            ]
        finally:
            await store.close()

    async def create() -> None:  # the schema, before the race
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(create())
    assert_one_meter(run_together(lambda: asyncio.run(takes())))

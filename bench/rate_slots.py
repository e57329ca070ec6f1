"""What metering a provider's rate in the store costs per send, and whether instances
sharing it keep to the rate.

    python bench/rate_slots.py [--takes 2000] [--instances 1,4] [--rate 20]
                               [--database-url postgresql://postgres@127.0.0.1:5432/test]

Each take is one `take_rate_slot` call: SQLite (`SqliteStore`, one `BEGIN IMMEDIATE`)
and the real PostgreSQL (`sdr_take_rate_slot`, called directly as the Supabase store's
RPC would, no PostgREST). With several instances (threads with a connection each on
Postgres; asyncio tasks sharing the connection on SQLite) the slots handed out are
checked against the rate: the n-th slot must not come before burst + n/rate allows.

The Postgres half needs the dev extra (`pip install -e '.[dev]'`: psycopg and
tests/store/pg_support.py) and says "skipped" without it or without a reachable server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from store.sqlite import SqliteStore  # noqa: E402

START = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def report(label: str, latencies: list[float], waits: list[float], rate: float, burst: int) -> None:
    elapsed = sum(latencies)
    p50 = statistics.median(latencies) * 1000
    p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
    slots = sorted(waits)
    # The n-th slot (0-based) may not come before (n - burst + 1) intervals.
    early = sum(1 for n, w in enumerate(slots) if w + 1e-9 < max(0, n - burst + 1) / rate)
    print(
        f"{label:34} {len(latencies):6} takes  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  "
        f"{len(latencies) / elapsed:8.0f} takes/s per caller  slots before their time: {early}"
    )


async def sqlite_run(takes: int, instances: int, rate: float, burst: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.sqlite3")
        await store.open()
        latencies: list[float] = []
        waits: list[float] = []

        async def caller(count: int) -> None:
            for _ in range(count):
                started = time.perf_counter()
                waits.append(await store.take_rate_slot("zapi", rate_per_s=rate, burst=burst, now=START))
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(caller(takes // instances) for _ in range(instances)))
        await store.close()
    report(f"sqlite, {instances} caller(s)", latencies, waits, rate, burst)


def postgres_run(takes: int, instances: int, rate: float, burst: int) -> None:
    try:
        from tests.store.pg_support import connect, fresh_schema
    except Exception as exc:  # psycopg missing (no dev extra)
        print(f"postgres: skipped ({exc})")
        return
    try:
        with fresh_schema(apply_times=1) as schema:
            latencies: list[float] = []
            waits: list[float] = []
            lock = threading.Lock()

            def caller(count: int) -> None:
                with connect(schema) as conn:
                    for _ in range(count):
                        started = time.perf_counter()
                        row = conn.execute(
                            "SELECT sdr_take_rate_slot(%s, %s, %s, %s)", ("zapi", rate, burst, START)
                        ).fetchone()
                        took = time.perf_counter() - started
                        with lock:
                            latencies.append(took)
                            waits.append(float(row[0]))

            threads = [threading.Thread(target=caller, args=(takes // instances,)) for _ in range(instances)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    except BaseException as exc:  # unreachable server: pytest's skip is a BaseException
        print(f"postgres: skipped ({type(exc).__name__}: {str(exc)[:120]})")
        return
    report(f"postgres, {instances} instance(s)", latencies, waits, rate, burst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--takes", type=int, default=2000)
    parser.add_argument("--instances", default="1,4")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if args.database_url:
        import os

        os.environ["TEST_DATABASE_URL"] = args.database_url
    burst = max(1, int(args.rate))
    print(f"rate {args.rate}/s, burst {burst}; every take at the same instant, so waits grow by 1/rate")
    for instances in (int(n) for n in args.instances.split(",")):
        asyncio.run(sqlite_run(args.takes, instances, args.rate, burst))
        postgres_run(args.takes, instances, args.rate, burst)


if __name__ == "__main__":
    main()

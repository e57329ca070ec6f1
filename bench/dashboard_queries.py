"""The sales dashboard's aggregates (issue 20) on 100,000 leads: SQLite, and the real
PostgreSQL when reachable.

    python bench/dashboard_queries.py [--leads 100000] [--days 90] [--runs 5]
                                      [--database-url postgresql://postgres@127.0.0.1:5432/test]

Generates `--leads` leads over `--days` days with their messages, inbound rows, turns'
usage and meetings (tests/store/analytics_data.py `realistic_dataset`: ~80% answered in
2-6 turns, ~40% qualified, handoffs, meetings, wins, opt-outs), writes them straight
into the tables (SQLite in a temporary directory; Postgres in a throwaway schema with
the migrations applied, dropped at the end), then times `Store.funnel` by week and by
source over the last 7 days, the last 30 days and the whole period: the p50 of `--runs`
runs after one warm-up, and prints the data sizes and the figures of the last run.

Postgres is timed twice: the SQL functions alone (psycopg, what the database spends),
and `SupabaseStore.funnel` end to end through the suite's PostgREST stand-in
(tests/helpers/postgrest_bridge.py: the same SQL, plus JSON both ways and the Python
aggregation), which is what a dashboard request costs minus the network. It needs the
dev extra (psycopg) and says "skipped" without it or without a reachable Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.analytics import Funnel  # noqa: E402
from store.base import Store  # noqa: E402
from store.sqlite import SqliteStore  # noqa: E402
from tests.store.analytics_data import WEEK1, Dataset, realistic_dataset, write_sqlite  # noqa: E402

TIMEZONE = "America/Sao_Paulo"
BRL_PER_USD = 5.0


def sizes(data: Dataset) -> str:
    return (
        f"{len(data.leads):,} leads, {len(data.messages):,} messages, {len(data.inbound):,} inbound,"
        f" {len(data.usage):,} turn usage rows, {len(data.meetings):,} meetings"
    )


def periods(days: int) -> dict[str, tuple[datetime, datetime]]:
    end = WEEK1 + timedelta(days=days)
    return {
        "last 7 days": (end - timedelta(days=7), end),
        "last 30 days": (end - timedelta(days=30), end),
        f"all {days} days": (WEEK1, end),
    }


async def p50_ms(call: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, Any]:
    result = await call()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def describe(result: Funnel) -> str:
    total, cost = result.total, result.cost
    stages = " > ".join(f"{s.name} {s.leads:,}" for s in total.stages)
    return (
        f"{stages}; first reply p50 {total.first_reply_p50_s} s p90 {total.first_reply_p90_s} s;"
        f" opt-outs {total.opt_outs:,}; {len(result.groups)} groups; cost US$ {cost.total.usd:,.2f}"
        f" (R$ {cost.total.brl:,.2f}), US$ {cost.usd_per_lead:.4f}/lead,"
        f" US$ {cost.usd_per_qualified_lead:.4f}/qualified lead"
    )


async def time_store(name: str, store: Store, days: int, runs: int) -> None:
    for label, (since, until) in periods(days).items():
        for group_by in ("week", "source"):

            async def call(
                since: datetime = since, until: datetime = until, group_by: Any = group_by
            ) -> Funnel:
                return await store.funnel(
                    since, until, group_by=group_by, timezone=TIMEZONE, brl_per_usd=BRL_PER_USD
                )

            ms, result = await p50_ms(call, runs)
            print(
                f"  {name:<22} {label:<13} by {group_by:<6} p50 {ms:8.1f} ms  ({result.total.stages[0].leads:,} leads)"
            )
            if group_by == "week":
                print(f"    {describe(result)}")


async def bench_sqlite(data: Dataset, days: int, runs: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sdr-dashboard-"))
    try:
        store = SqliteStore(tmp / "bench.sqlite3")
        await store.open()
        started = time.perf_counter()
        write_sqlite(store.db, data)
        store.db.execute("ANALYZE")
        size_mb = (tmp / "bench.sqlite3").stat().st_size / 1e6
        print(f"SQLite: written in {time.perf_counter() - started:.1f} s, file {size_mb:.0f} MB")
        await time_store("SqliteStore.funnel", store, days, runs)
        await store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pg_sql_ms(conn: Any, function: str, since: datetime, until: datetime, runs: int) -> float:
    conn.execute(f"SELECT {function}(%s, %s)", (since, until)).fetchone()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(f"SELECT {function}(%s, %s)", (since, until)).fetchone()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def bench_postgres(data: Dataset, days: int, runs: int, url: str | None) -> None:
    if url:
        os.environ["TEST_DATABASE_URL"] = url
    try:
        from tests.store.pg_support import connect
    except ImportError as exc:  # pragma: no cover - depends on the environment
        print(f"Postgres: skipped ({exc})")
        return
    try:
        with connect() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        print(f"Postgres: skipped (not reachable: {exc})")
        return
    await _bench_postgres(data, days, runs)


async def _bench_postgres(data: Dataset, days: int, runs: int) -> None:
    from store.supabase import SupabaseStore
    from tests.helpers.postgrest_bridge import PostgrestBridge
    from tests.store.analytics_data import write_postgres
    from tests.store.pg_support import connect, fresh_schema

    with fresh_schema(apply_times=1) as schema:
        with connect(schema) as conn:
            started = time.perf_counter()
            write_postgres(conn, data)
            print(f"Postgres: written in {time.perf_counter() - started:.1f} s (COPY)")
            for label, (since, until) in periods(days).items():
                leads = pg_sql_ms(conn, "sdr_analytics_leads", since, until, runs)
                usage = pg_sql_ms(conn, "sdr_analytics_usage", since, until, runs)
                print(
                    f"  SQL functions          {label:<13} leads p50 {leads:8.1f} ms, usage p50 {usage:8.1f} ms"
                )
        bridge = PostgrestBridge(schema, api_key="bench-key")
        store = SupabaseStore("https://sdr-bench.supabase.co", "bench-key", transport=bridge.transport())
        await store.open()
        try:
            await time_store("SupabaseStore.funnel", store, days, runs)
        finally:
            await store.close()
            bridge.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    data = realistic_dataset(args.leads, days=args.days)
    print(f"Generated {sizes(data)} over {args.days} days in {time.perf_counter() - started:.1f} s")
    await bench_sqlite(data, args.days, args.runs)
    if not args.no_postgres:
        await bench_postgres(data, args.days, args.runs, args.database_url)


if __name__ == "__main__":
    asyncio.run(main())

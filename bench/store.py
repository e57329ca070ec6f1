"""Store throughput and outbox claim latency: SQLite, and the real PostgreSQL with the
Supabase SQL functions called directly (no PostgREST, no network to Supabase).

    python bench/store.py [--turns 2000] [--items 2000] [--leads 200] [--workers 1,4]
                          [--database-url postgresql://postgres@127.0.0.1:5432/test]

The SQLite half needs only the app's own dependencies; the Postgres half needs the dev
extra (`pip install -e '.[dev]'`: psycopg and the suite's tests/store/pg_support.py) and
says "skipped" without it, as it does when Postgres is unreachable.

Turns: each turn marks two waiting inbound messages done, stores two messages, merges
the lead and enqueues one reply (SQLite: `SqliteStore.commit_turn`; Postgres:
`sdr_commit_turn_once` with the body the Supabase store sends). Workers own disjoint
leads, as turn leases make them in production. The inbound rows are written before the
clock starts.

Claims: the outbox holds `--items` items over `--leads` order keys; workers claim
(limit 10) and complete what they got until it is drained (SQLite: `claim_outbox` +
`complete_outbox`; Postgres: `sdr_claim_outbox_for` + the single-row update the store
sends as a PATCH). The latency of every claim call that returned items is recorded.

Concurrency: SQLite workers are asyncio tasks sharing the store's one connection, the
way the bot runs it; Postgres workers are threads with a connection each, the way
several bot instances share one Supabase. Postgres runs in a throwaway schema with the
migrations applied, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.models import InboundMessage, MessageKind  # noqa: E402
from core.outbox import SendText  # noqa: E402
from core.records import NewMessage, OutboxItem, TurnCommit, lane_key  # noqa: E402
from store.sqlite import SqliteStore  # noqa: E402
from store.supabase.rows import commit_body  # noqa: E402

CLAIM_LIMIT = 10


@dataclass
class Result:
    backend: str
    workers: int
    turns_per_s: float
    commit_ms: list[float]
    claim_ms: list[float]
    items_per_s: float


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))]


def contact(lead: int) -> str:
    return f"55119{lead:08d}"


def inbound(lead: int, n: int) -> InboundMessage:
    return InboundMessage(
        channel="zapi",
        contact_id=contact(lead),
        provider_message_id=f"3EB0BENCH{lead:06d}{n:06d}",
        kind=MessageKind.TEXT,
        text=f"mensagem {n} do lead {lead}",
        phone=contact(lead),
        name="Lead de Teste",
    )


def turn(lead: int, n: int, inbound_ids: list[int]) -> TurnCommit:
    key = f"whatsapp:{contact(lead)}"
    reply = f"Resposta {n} para o lead {lead}: qual a capacidade por dia?"
    return TurnCommit(
        turn_id=f"bench{lead:06d}{n:06d}",
        contact_key=key,
        channel="zapi",
        contact_id=contact(lead),
        phone=contact(lead),
        name="Lead de Teste",
        inbound_ids=inbound_ids,
        messages=[
            NewMessage("in", "text", f"mensagem {n} do lead {lead}", status="received"),
            NewMessage("out", "text", reply, status="queued", ref="r0"),
        ],
        profile={"name": "Lead", "city": "Londrina", "segment": "frigorifico", "turns": n},
        score=40,
        temperature="morno",
        score_reasons=["segmento: +20", "cidade: +10"],
        lead_messages_added=len(inbound_ids),
        outbox=[
            SendText(channel="zapi", contact_id=contact(lead), text=reply, message_ref="r0").item(
                order_key=lane_key("reply", key), idempotency_key=f"reply:{key}:{n}"
            )
        ],
    )


def plan(turns: int, leads: int, workers: int) -> list[list[tuple[int, int]]]:
    """(lead, turn number) per worker; a lead belongs to one worker."""
    work: list[list[tuple[int, int]]] = [[] for _ in range(workers)]
    for n in range(turns):
        lead = n % leads
        work[lead % workers].append((lead, n))
    return work


# --- SQLite ----------------------------------------------------------------------------


async def sqlite_run(args: argparse.Namespace, workers: int) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix="sdr-bench-store-"))
    store = SqliteStore(tmp / "bench.sqlite3")
    await store.open()
    try:
        work = plan(args.turns, args.leads, workers)
        ids = await sqlite_inbound(store, work)
        commit_ms: list[float] = []

        async def committer(jobs: list[tuple[int, int]]) -> None:
            for lead, n in jobs:
                started = time.perf_counter()
                await store.commit_turn(turn(lead, n, ids[(lead, n)]))
                commit_ms.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0)  # let the other workers in, as awaiting I/O would

        started = time.perf_counter()
        await asyncio.gather(*(committer(jobs) for jobs in work))
        turns_per_s = args.turns / (time.perf_counter() - started)

        store.db.execute("UPDATE outbox SET status = 'done'")  # the turns' replies are not claimed here
        await fill_sqlite_outbox(store, args)
        claim_ms: list[float] = []
        drained = 0

        async def claimer() -> None:
            nonlocal drained
            while drained < args.items:
                started = time.perf_counter()
                items = await store.claim_outbox(limit=CLAIM_LIMIT, now=datetime.now(UTC))
                elapsed = (time.perf_counter() - started) * 1000
                if items:
                    claim_ms.append(elapsed)
                for item in items:
                    await store.complete_outbox(item.id or 0)
                drained += len(items)
                await asyncio.sleep(0)

        started = time.perf_counter()
        await asyncio.gather(*(claimer() for _ in range(workers)))
        items_per_s = args.items / (time.perf_counter() - started)
        return Result("sqlite", workers, turns_per_s, commit_ms, claim_ms, items_per_s)
    finally:
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)  # a run's database is of no use afterwards


async def sqlite_inbound(
    store: SqliteStore, work: list[list[tuple[int, int]]]
) -> dict[tuple[int, int], list[int]]:
    """Two waiting messages per turn; their ids, read back in arrival order per lead."""
    by_lead: dict[int, list[int]] = {}
    for lead, n in sorted(job for jobs in work for job in jobs):
        await store.add_inbound(inbound(lead, 2 * n))
        await store.add_inbound(inbound(lead, 2 * n + 1))
        by_lead.setdefault(lead, []).append(n)
    ids: dict[tuple[int, int], list[int]] = {}
    for lead, numbers in by_lead.items():
        pending = [r.id for r in await store.pending_inbound(f"whatsapp:{contact(lead)}")]
        for i, n in enumerate(numbers):
            ids[(lead, n)] = pending[2 * i : 2 * i + 2]
    return ids


def claim_filler(n: int, leads: int) -> OutboxItem:
    """An item that is only claimed and completed, never dispatched.

    Its payload is a tag, not a `SendText` (it has no channel and no text), so it is not
    built with the typed model: its JSON stays the one every earlier figure was measured
    with. The store's claim reads neither the kind nor the payload's keys."""
    lead = n % leads
    return OutboxItem(
        kind="send_text",
        order_key=f"claim:{lead}",
        idempotency_key=f"claim:{n}",
        payload={"n": n, "contact_id": contact(lead)},
    )


async def fill_sqlite_outbox(store: SqliteStore, args: argparse.Namespace) -> None:
    for n in range(args.items):
        await store.enqueue(claim_filler(n, args.leads))


# --- PostgreSQL --------------------------------------------------------------------------


def postgres_run(args: argparse.Namespace, workers: int) -> Result:
    from psycopg.types.json import Jsonb

    from tests.store.pg_support import connect, fresh_schema

    with fresh_schema(apply_times=1) as schema:
        work = plan(args.turns, args.leads, workers)
        ids: dict[tuple[int, int], list[int]] = {}
        with connect(schema) as conn:
            for jobs in work:
                for lead, n in jobs:
                    ids[(lead, n)] = [postgres_inbound(conn, inbound(lead, 2 * n + i)) for i in range(2)]
        commit_ms: list[float] = []
        lock = threading.Lock()

        def committer(jobs: list[tuple[int, int]]) -> None:
            with connect(schema) as conn:
                for lead, n in jobs:
                    body = Jsonb(commit_body(turn(lead, n, ids[(lead, n)])))
                    started = time.perf_counter()
                    conn.execute("SELECT sdr_commit_turn_once(%s, %s)", (uuid.uuid4().hex, body))
                    with lock:
                        commit_ms.append((time.perf_counter() - started) * 1000)

        turns_per_s = args.turns / threaded([lambda jobs=jobs: committer(jobs) for jobs in work])

        with connect(schema) as conn:
            conn.execute("UPDATE outbox SET status = 'done'")
            for n in range(args.items):
                item = claim_filler(n, args.leads)
                conn.execute(
                    "SELECT sdr_enqueue(%s, %s, %s, %s)",
                    (item.kind, item.order_key, item.idempotency_key, Jsonb(item.payload)),
                )
        claim_ms: list[float] = []
        drained = [0]

        def claimer(owner: str) -> None:
            with connect(schema) as conn:
                while drained[0] < args.items:
                    started = time.perf_counter()
                    rows = conn.execute(
                        "SELECT id FROM sdr_claim_outbox_for(%s, %s, now(), 300)", (owner, CLAIM_LIMIT)
                    ).fetchall()
                    elapsed = (time.perf_counter() - started) * 1000
                    for (item_id,) in rows:
                        conn.execute(
                            "UPDATE outbox SET status = 'done', last_error = NULL, claimed_by = NULL,"
                            " lease_expires_at = NULL WHERE id = %s",
                            (item_id,),
                        )
                    with lock:
                        if rows:
                            claim_ms.append(elapsed)
                        drained[0] += len(rows)
                    if not rows:
                        time.sleep(0.0005)

        items_per_s = args.items / threaded([lambda o=f"bench-{w}": claimer(o) for w in range(workers)])
        return Result("postgres", workers, turns_per_s, commit_ms, claim_ms, items_per_s)


def postgres_inbound(conn, message: InboundMessage) -> int:  # type: ignore[no-untyped-def]
    from psycopg.types.json import Jsonb

    conn.execute(
        "SELECT sdr_add_inbound(%s, %s, %s, %s)",
        (
            message.channel,
            message.provider_message_id,
            message.contact_key,
            Jsonb(message.model_dump(mode="json")),
        ),
    )
    return conn.execute(
        "SELECT id FROM inbound WHERE channel = %s AND provider_message_id = %s",
        (message.channel, message.provider_message_id),
    ).fetchone()[0]


def threaded(jobs: list[Callable[[], None]]) -> float:
    """Run each job in its own thread, all started together; the wall time they took."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs) + 1)

    def run(job: Callable[[], None]) -> None:
        start.wait()
        try:
            job()
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return elapsed


# --- report -----------------------------------------------------------------------------


def report(results: list[Result], args: argparse.Namespace, postgres: str) -> None:
    print(
        f"store benchmark: {args.turns} turns over {args.leads} leads; {args.items} outbox items over "
        f"{args.leads} order keys, claimed {CLAIM_LIMIT} at a time; {os.cpu_count()} CPUs; postgres: {postgres}"
    )
    header = (
        f"{'backend':10}{'workers':>8}{'turns/s':>10}{'commit p50':>12}{'commit p99':>12}"
        f"{'claim p50':>11}{'claim p99':>11}{'items/s':>10}"
    )
    print(header)
    print(f"{'':18}{'':10}{'ms':>12}{'ms':>12}{'ms':>11}{'ms':>11}")
    for r in results:
        print(
            f"{r.backend:10}{r.workers:>8}{r.turns_per_s:>10.0f}"
            f"{percentile(r.commit_ms, 50):>12.2f}{percentile(r.commit_ms, 99):>12.2f}"
            f"{percentile(r.claim_ms, 50):>11.2f}{percentile(r.claim_ms, 99):>11.2f}{r.items_per_s:>10.0f}"
        )
    claims = {(r.backend, r.workers): len(r.claim_ms) for r in results}
    print("claim calls that returned items: " + ", ".join(f"{b}/{w}: {n}" for (b, w), n in claims.items()))
    if results:
        print(f"mean commit ms, all runs: {statistics.fmean(x for r in results for x in r.commit_ms):.2f}")


def dev_extra_installed() -> bool:
    """The Postgres half borrows the suite's helpers, which need pytest and psycopg."""
    return all(importlib.util.find_spec(name) is not None for name in ("pytest", "psycopg"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument("--workers", default="1,4", help="comma-separated worker counts")
    parser.add_argument("--database-url", default=None, help="default: TEST_DATABASE_URL or local Postgres")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    if args.database_url:
        os.environ["TEST_DATABASE_URL"] = args.database_url
    counts = [int(w) for w in args.workers.split(",")]

    results = [asyncio.run(sqlite_run(args, w)) for w in counts]
    postgres = "skipped"
    if not args.skip_postgres and not dev_extra_installed():
        postgres = "skipped (needs the dev extra: pip install -e '.[dev]')"
    elif not args.skip_postgres:
        from tests.store.pg_support import database_url, psycopg

        try:
            with psycopg.connect(database_url(), connect_timeout=5) as conn:
                postgres = conn.execute("SHOW server_version").fetchone()[0]
        except psycopg.OperationalError as exc:
            postgres = f"unreachable ({exc.__class__.__name__})"
        else:
            results += [postgres_run(args, w) for w in counts]
    report(results, args, postgres)


if __name__ == "__main__":
    main()

"""A flood in the outbox (issue 18): 10,000 new contacts queued at once, then the real
dispatcher claiming from it while their turns and new leads' turns end.

    python bench/flood.py [--contacts 10000] [--workers 8] [--send-ms 5] [--new-leads 20]
                          [--lead-every 0.25] [--flood-turns-per-s 50] [--old-claim-runs 5]

Needs only the app's own dependencies. No model, no network: the senders are fakes that
take `--send-ms` each (a provider on loopback), and turns are committed without a model.

1. Flood: `--contacts` new contacts committed through `SqliteStore.commit_turn` into a
   fresh SQLite file, each with what its first message queues before any turn: the
   Chatwoot mirror of the message(s) and the contact card, the PipeRun sync, a
   Conversions API Lead and three outbound webhooks (~7.3 items a contact: the ~73k
   items of the issue for 10,000 contacts).
2. The claim the old release ran (the heads of every open key, joined, in due order),
   read-only on that queue, `--old-claim-runs` times: the figure this issue started from.
3. Drain: `runtime.dispatcher.OutboxDispatcher` with `--workers` workers (OUTBOX_WORKERS)
   and a fake handler for every kind, on that store. Meanwhile the flood's own turns end
   at `--flood-turns-per-s` (two reply bubbles and a mirror message each: the model's
   pace, not modelled), and every `--lead-every` s a new lead's turn ends the same way;
   the dispatcher is woken after each commit, as the runtime does. A new lead's wait is
   from its commit to its first bubble's handler starting. Every `claim_outbox` call is
   timed. The run ends when every new lead's reply has started.

Figures: the claim's p50/p99/max over every call (with items or not), each new lead's
wait, deliveries per second and per priority during the drain, and what is left.
Targets (issue 18): claim p50 < 5 ms, a new lead's reply starting within 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tenacity import retry_if_exception, stop_after_attempt, wait_fixed  # noqa: E402

from core.logging import configure_logging  # noqa: E402
from core.outbox import (  # noqa: E402
    PAYLOADS,
    PRIORITIES,
    CapiEvent,
    ChatwootMessage,
    ChatwootProfile,
    OutboundWebhook,
    PipeRunSync,
    SendText,
    chatwoot_lane,
    claim_priority,
)
from core.records import NewMessage, OutboxItem, TurnCommit, lane_key  # noqa: E402
from runtime.dispatcher import OutboxDispatcher  # noqa: E402
from runtime.policies import DeliveryPolicy, is_transient  # noqa: E402
from store.sqlite import SqliteStore  # noqa: E402
from store.sqlite.connection import BUSY_TIMEOUT_MS  # noqa: E402

# The claim every release before issue 18 ran: it joined the head of every open key.
OLD_CLAIM = (
    "SELECT o.* FROM outbox o JOIN (SELECT order_key, MIN(id) AS head FROM outbox"
    " WHERE status IN ('pending', 'inflight') GROUP BY order_key) h ON h.head = o.id"
    " WHERE o.status = 'pending' AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at, o.id LIMIT ?"
)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))]


def phone(n: int, *, new: bool = False) -> str:
    return f"5541{'9' if new else '8'}{n:08d}"


def turn(n: int, outbox: list[OutboxItem], messages: list[NewMessage], *, new: bool, tag: str) -> TurnCommit:
    return TurnCommit(
        turn_id=f"{tag}{'new' if new else ''}{n}",
        contact_key=f"zapi:{phone(n, new=new)}",
        channel="zapi",
        contact_id=phone(n, new=new),
        phone=phone(n, new=new),
        name="Lead do Formulário",
        inbound_ids=[],
        messages=messages,
        profile={"segment": "alimentos"},
        score=30,
        temperature="morno",
        score_reasons=["formulário: +30"],
        lead_messages_added=1,
        outbox=outbox,
    )


def arrival(n: int) -> TurnCommit:
    """What a new contact's first message queues before any turn (no model yet): the
    Chatwoot mirror of its message(s) and its card, the PipeRun sync, a Conversions API
    Lead, three outbound webhooks; a third of them wrote twice. ~7.3 items a contact."""
    key = f"zapi:{phone(n)}"
    texts = ["Oi, quero um orçamento", "de caixas"][: 2 if n % 3 == 0 else 1]
    mirror = [ChatwootMessage(contact_key=key, direction="in", text=text) for text in texts]
    mirror.append(ChatwootProfile(contact_key=key, attributes={"segment": "alimentos"}, temperature="morno"))
    items = [
        m.item(order_key=chatwoot_lane(key), idempotency_key=f"cw:{key}:{i}") for i, m in enumerate(mirror)
    ]
    items += [
        PipeRunSync(contact_key=key, reason="new_lead").item(
            order_key=lane_key("crm", key), idempotency_key=f"crm:{key}"
        ),
        CapiEvent(contact_key=key, stage="lead").item(
            order_key=lane_key("capi", key), idempotency_key=f"capi:{key}"
        ),
    ]
    for endpoint, event in (("e1", "lead.created"), ("e1", "message.received"), ("e2", "lead.created")):
        hook = OutboundWebhook(contact_key=key, endpoint_id=endpoint, event=event)
        items.append(
            hook.item(
                order_key=lane_key("hooks", key) + f"#{endpoint}",
                idempotency_key=f"hook:{key}:{event}:{endpoint}",
            )
        )
    return turn(
        n,
        items,
        [NewMessage("in", "text", text, status="received") for text in texts],
        new=False,
        tag="arrival",
    )


def reply(n: int, *, new: bool = False) -> TurnCommit:
    """A turn's answer: two bubbles to the lead and the mirror of the first."""
    key = f"zapi:{phone(n, new=new)}"
    texts = ["Olá! Sou o assistente da Embalagens Sul.", "Qual a quantidade por mês?"]
    items: list[OutboxItem] = [
        SendText.bot_reply(
            channel="zapi",
            contact_id=phone(n, new=new),
            contact_key=key,
            text=text,
            typing_s=1,
            message_ref=f"r{i}",
            turn_id=f"reply{n}",
        ).to_item(f"reply:{key}:{i}")
        for i, text in enumerate(texts)
    ]
    out = ChatwootMessage(contact_key=key, direction="out", text=texts[0], message_ref="r0")
    items.append(out.item(order_key=chatwoot_lane(key), idempotency_key=f"cw:{key}:out"))
    messages = [NewMessage("out", "text", text, status="queued", ref=f"r{i}") for i, text in enumerate(texts)]
    return turn(n, items, messages, new=new, tag="reply")


async def flood(store: SqliteStore, contacts: int) -> tuple[float, int]:
    started = time.perf_counter()
    for n in range(contacts):
        await store.commit_turn(arrival(n))
    elapsed = time.perf_counter() - started
    items = store.db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
    return elapsed, items


def old_claim_ms(path: Path, runs: int, limit: int) -> list[float]:
    """The old claim's SELECT on the same queue, on a connection of its own (read-only)."""
    db = sqlite3.connect(str(path))
    try:
        now = datetime.now(UTC).isoformat()
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            db.execute(OLD_CLAIM, (now, limit)).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
        return timings
    finally:
        db.close()


class Drain:
    """The dispatcher's view of the run: every claim's latency, every delivery's kind,
    when each new lead's reply was committed and when its sending started."""

    def __init__(self, store: SqliteStore, send_s: float) -> None:
        self.store = store
        self.send_s = send_s
        self.claim_ms: list[float] = []
        self.delivered: Counter[int] = Counter()
        self.committed: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self._claim = store.claim_outbox
        store.claim_outbox = self.timed_claim  # type: ignore[method-assign]

    async def timed_claim(self, *, limit: int, now: datetime) -> list[OutboxItem]:
        started = time.perf_counter()
        items = await self._claim(limit=limit, now=now)
        self.claim_ms.append((time.perf_counter() - started) * 1000)
        return items

    async def send(self, item: OutboxItem) -> None:
        key = item.payload.get("contact_key") or ""
        if item.kind == SendText.KIND and key in self.committed and key not in self.started:
            self.started[key] = time.perf_counter()
        await asyncio.sleep(self.send_s)
        self.delivered[claim_priority(item.kind)] += 1


async def new_leads(
    store: SqliteStore, dispatcher: OutboxDispatcher, drain: Drain, args: argparse.Namespace
) -> None:
    """A new lead's turn ends every `--lead-every` s: its reply is committed, the
    dispatcher woken (as runtime/notifier.py does after a commit)."""
    for n in range(args.new_leads):
        await asyncio.sleep(args.lead_every)
        commit = reply(n, new=True)
        await store.commit_turn(commit)
        drain.committed[commit.contact_key] = time.perf_counter()
        dispatcher.wake()


async def flood_turns(store: SqliteStore, dispatcher: OutboxDispatcher, args: argparse.Namespace) -> int:
    """Meanwhile the flood's own turns end at `--flood-turns-per-s` (the model's pace):
    their replies share the lead priority with the new leads'."""
    done = 0
    while done < args.contacts:
        await asyncio.sleep(1 / args.flood_turns_per_s)
        await store.commit_turn(reply(done))
        dispatcher.wake()
        done += 1
    return done


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sdr-bench-flood-"))
    path = tmp / "flood.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        flood_s, queued = await flood(store, args.contacts)
        old = old_claim_ms(path, args.old_claim_runs, args.workers)
        drain = Drain(store, args.send_ms / 1000)
        policy = DeliveryPolicy(
            name="bench",
            stop=stop_after_attempt(3),
            wait=wait_fixed(1.0),
            retry=retry_if_exception(is_transient),
        )
        dispatcher = OutboxDispatcher(store, workers=args.workers, poll_s=1.0)
        for kind in PAYLOADS:
            dispatcher.register(kind, drain.send, policy)
        await dispatcher.start()
        started = time.perf_counter()
        turns = asyncio.create_task(flood_turns(store, dispatcher, args))
        await new_leads(store, dispatcher, drain, args)
        while len(drain.started) < args.new_leads and time.perf_counter() - started < args.timeout:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        turns.cancel()
        await dispatcher.stop(timeout=0.1)
        left = dict(
            store.db.execute(
                "SELECT priority, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY priority"
            )
        )
        waits = [drain.started[k] - at for k, at in drain.committed.items() if k in drain.started]
        return {
            "flood_s": flood_s,
            "queued": queued,
            "old": old,
            "drain": drain,
            "elapsed": elapsed,
            "waits": waits,
            "missing": args.new_leads - len(waits),
            "left": left,
        }
    finally:
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)  # a run's database is of no use afterwards


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    drain: Drain = r["drain"]
    claims = drain.claim_ms
    waits = r["waits"]
    delivered = sum(drain.delivered.values())
    print(
        f"settings: contacts={args.contacts} workers={args.workers} send_ms={args.send_ms}"
        f" new_leads={args.new_leads} lead_every={args.lead_every}s flood_turns_per_s={args.flood_turns_per_s}"
        f" busy_timeout={BUSY_TIMEOUT_MS}ms"
        f" | python {platform.python_version()} sqlite {sqlite3.sqlite_version} cpus={os.cpu_count()}"
    )
    print(
        f"flood: {args.contacts} contacts committed in {r['flood_s']:.1f} s"
        f" ({args.contacts / r['flood_s']:.0f}/s), {r['queued']} items pending"
    )
    print(
        f"old claim (heads of every key, read-only): p50 {percentile(r['old'], 50):.1f} ms"
        f" max {max(r['old']):.1f} ms over {len(r['old'])} runs"
    )
    print(
        f"claim: p50 {percentile(claims, 50):.2f} ms  p99 {percentile(claims, 99):.2f} ms"
        f"  max {max(claims):.2f} ms over {len(claims)} calls (target p50 < 5 ms)"
    )
    missing = f", {r['missing']} never started" if r["missing"] else ""
    print(
        f"new lead reply wait (commit -> send starts): p50 {percentile(waits, 50) * 1000:.0f} ms"
        f"  max {max(waits, default=float('nan')) * 1000:.0f} ms over {len(waits)} leads{missing} (target < 5 s)"
    )
    by_priority = ", ".join(f"p{p} {drain.delivered[p]}" for p in PRIORITIES)
    left = ", ".join(f"p{p} {r['left'].get(p, 0)}" for p in PRIORITIES)
    print(
        f"drain: {delivered} deliveries in {r['elapsed']:.1f} s ({delivered / r['elapsed']:.0f}/s)"
        f" by priority: {by_priority}; still pending: {left}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8, help="dispatcher workers (OUTBOX_WORKERS)")
    parser.add_argument("--send-ms", type=float, default=5.0, help="each fake delivery takes this long")
    parser.add_argument("--new-leads", type=int, default=20)
    parser.add_argument("--lead-every", type=float, default=0.25, help="seconds between new leads")
    parser.add_argument("--flood-turns-per-s", type=float, default=50.0, help="the flood's own turns ending")
    parser.add_argument("--old-claim-runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0, help="give up waiting for new leads after")
    args = parser.parse_args()
    configure_logging(level="WARNING")  # a line per delivery would be most of the run
    report(asyncio.run(run(args)), args)


if __name__ == "__main__":
    main()

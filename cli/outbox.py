"""`python main.py outbox ...`: what the operator reads and replays of the side-effect queue.

stats / list / show ID / replay ID / replay --all-dead [--kind K]. A replay keeps the
item's idempotency key, so a provider that already got it does not act twice.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.records import OutboxItem
from store.base import Store


async def run_outbox(store: Store, args: argparse.Namespace) -> int:
    """Open `store`, run one action, close it."""
    await store.open()
    try:
        return await _outbox_action(store, args)
    finally:
        await store.close()


async def _outbox_action(store: Store, args: argparse.Namespace) -> int:
    actions = {"stats": _outbox_stats, "list": _outbox_list, "show": _outbox_show, "replay": _outbox_replay}
    return await actions[args.action](store, args)


async def _outbox_stats(store: Store, _args: argparse.Namespace) -> int:
    stats = await store.outbox_stats()
    print(f"pending={stats.pending} inflight={stats.inflight} dead={stats.dead} done={stats.done}")
    for kind, per in sorted((await store.outbox_stats_by_kind()).items()):
        print(f"  {kind}: pending={per.pending} inflight={per.inflight} dead={per.dead}")
    return 0


async def _outbox_list(store: Store, args: argparse.Namespace) -> int:
    items = await store.list_outbox(status=args.status, kind=args.kind, limit=args.limit)
    if not items:
        print("no side effects match")
    for item in items:
        error = f"  last_error={item.last_error[:80]!r}" if item.last_error else ""
        when = item.updated_at.isoformat(timespec="seconds") if item.updated_at else "-"
        print(f"{item.id:>7}  {item.status:<8} {item.kind:<18} attempts={item.attempts}  {when}{error}")
    return 0


async def _outbox_show(store: Store, args: argparse.Namespace) -> int:
    if args.id is None:
        print(
            "error: say which item: python main.py outbox show ID (ids: python main.py outbox list)",
            file=sys.stderr,
        )
        return 2
    item = await store.get_outbox(args.id)
    if item is None:
        print(f"error: no side effect with id {args.id} (ids: python main.py outbox list)", file=sys.stderr)
        return 1
    print(json.dumps(_item_view(item), ensure_ascii=False, indent=2, default=str))
    return 0


async def _outbox_replay(store: Store, args: argparse.Namespace) -> int:
    if args.id is not None:
        if await store.replay_outbox(args.id):
            print(
                f"item {args.id} is back in the queue (same idempotency key); a running bot delivers it now."
            )
            return 0
        item = await store.get_outbox(args.id)
        reason = "does not exist" if item is None else f"is {item.status}, not dead"
        print(f"error: item {args.id} {reason}: nothing replayed", file=sys.stderr)
        return 1
    if not args.all_dead:
        print("error: say which: python main.py outbox replay ID, or --all-dead [--kind K]", file=sys.stderr)
        return 2
    count = await store.replay_dead(kind=args.kind)
    print(f"{count} dead item(s) put back in the queue; a running bot delivers them now.")
    return 0


def _item_view(item: OutboxItem) -> dict[str, object]:
    return {
        "id": item.id,
        "kind": item.kind,
        "status": item.status,
        "attempts": item.attempts,
        "last_error": item.last_error,
        "order_key": item.order_key,
        "idempotency_key": item.idempotency_key,
        "next_attempt_at": item.next_attempt_at,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "payload": item.payload,
    }

"""The outbox: side effects waiting to happen, claimed head-first per order key, retried
and dead-lettered by the dispatcher, replayed by an operator."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from core.clock import utc_now
from core.outbox import PRIORITIES
from core.records import OutboxItem, OutboxStats, OutboxStatus
from store.sqlite.connection import SqliteConnection, unavailable_on_error
from store.timestamps import iso

# Pending heads of one priority that are due, in claim order: the range of the
# `outbox_claim` index a claim reads (store/sqlite/outbox_order.py keeps `head`). Named,
# not left to the planner: statistics from an ANALYZE must not turn it into a scan.
_CLAIMABLE = (
    "SELECT * FROM outbox INDEXED BY outbox_claim"
    " WHERE status = 'pending' AND head = 1 AND priority = ? AND next_attempt_at <= ?"
    " ORDER BY next_attempt_at, id LIMIT ?"
)
_NEXT_DUE = (
    "SELECT next_attempt_at FROM outbox INDEXED BY outbox_claim"
    " WHERE status = 'pending' AND head = 1 AND priority = ? ORDER BY next_attempt_at, id LIMIT 1"
)


def _outbox_item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        kind=row["kind"],
        order_key=row["order_key"],
        idempotency_key=row["idempotency_key"],
        payload=json.loads(row["payload"]),
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=datetime.fromisoformat(row["next_attempt_at"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


class Outbox(SqliteConnection):
    @unavailable_on_error
    async def enqueue(self, item: OutboxItem) -> bool:
        now = iso(utc_now())
        cur = self.db.execute(
            "INSERT INTO outbox (kind, order_key, idempotency_key, payload, status, next_attempt_at,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (
                item.kind,
                item.order_key,
                item.idempotency_key,
                json.dumps(item.payload, ensure_ascii=False),
                now,
                now,
                now,
            ),
        )
        return cur.rowcount == 1

    async def claim_outbox(self, *, limit: int, now: datetime) -> list[OutboxItem]:
        """Claim due items, at most one per order key, and only the head of each key:
        a later reply never overtakes an earlier one that is still retrying. Replies to
        leads go before the Chatwoot mirror, and both before the CRM and the rest; each
        priority is one index range, so a claim reads about as many rows as it claims."""
        rows: list[sqlite3.Row] = []
        with self._tx() as db:
            for priority in PRIORITIES:
                if len(rows) >= limit:
                    break
                rows += db.execute(_CLAIMABLE, (priority, iso(now), limit - len(rows))).fetchall()
            if rows:
                marks = ",".join("?" * len(rows))
                db.execute(
                    f"UPDATE outbox SET status = 'inflight', attempts = attempts + 1, updated_at = ?"
                    f" WHERE id IN ({marks})",
                    (iso(now), *[r["id"] for r in rows]),
                )
        items = [_outbox_item(r) for r in rows]
        for item in items:
            item.status = "inflight"
            item.attempts += 1
        return items

    async def outbox_progress(self, item_id: int, payload: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE outbox SET payload = ?, updated_at = ? WHERE id = ?",
            (json.dumps(payload, ensure_ascii=False), iso(utc_now()), item_id),
        )

    async def complete_outbox(self, item_id: int) -> None:
        self.db.execute(
            "UPDATE outbox SET status = 'done', last_error = NULL, updated_at = ? WHERE id = ?",
            (iso(utc_now()), item_id),
        )

    async def retry_outbox(self, item_id: int, *, error: str, next_attempt_at: datetime) -> None:
        self.db.execute(
            "UPDATE outbox SET status = 'pending', last_error = ?, next_attempt_at = ?, updated_at = ?"
            " WHERE id = ?",
            (error[:1000], iso(next_attempt_at), iso(utc_now()), item_id),
        )

    async def kill_outbox(self, item_id: int, *, error: str) -> None:
        self.db.execute(
            "UPDATE outbox SET status = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
            (error[:1000], iso(utc_now()), item_id),
        )

    async def release_inflight(self) -> int:
        cur = self.db.execute(
            "UPDATE outbox SET status = 'pending', updated_at = ? WHERE status = 'inflight'",
            (iso(utc_now()),),
        )
        return cur.rowcount

    async def defer_outbox(self, item_id: int, *, next_attempt_at: datetime, reason: str) -> None:
        self.db.execute(
            "UPDATE outbox SET status = 'pending', attempts = MAX(attempts - 1, 0), next_attempt_at = ?,"
            " last_error = ?, updated_at = ? WHERE id = ? AND status = 'inflight'",
            (iso(next_attempt_at), reason[:1000], iso(utc_now()), item_id),
        )

    async def next_outbox_due(self) -> datetime | None:
        # Only heads of their order key can be claimed: a follow-up waiting behind an
        # in-flight or backing-off reply is not "due", or the dispatcher would spin.
        due = [row[0] for p in PRIORITIES if (row := self.db.execute(_NEXT_DUE, (p,)).fetchone())]
        return datetime.fromisoformat(min(due)) if due else None

    # --- what an operator and /metrics see ------------------------------------------
    async def outbox_stats(self) -> OutboxStats:
        counts = dict(self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        return OutboxStats(
            pending=counts.get("pending", 0),
            inflight=counts.get("inflight", 0),
            dead=counts.get("dead", 0),
            done=counts.get("done", 0),
        )

    async def outbox_stats_by_kind(self) -> dict[str, OutboxStats]:
        out: dict[str, dict[str, int]] = {}
        for kind, status, count in self.db.execute(
            "SELECT kind, status, COUNT(*) FROM outbox WHERE status IN ('pending', 'inflight', 'dead')"
            " GROUP BY kind, status"
        ).fetchall():
            out.setdefault(kind, {})[status] = count
        return {
            kind: OutboxStats(
                pending=c.get("pending", 0), inflight=c.get("inflight", 0), dead=c.get("dead", 0), done=0
            )
            for kind, c in out.items()
        }

    async def list_outbox(
        self, *, status: OutboxStatus | None = None, kind: str | None = None, limit: int = 50
    ) -> list[OutboxItem]:
        sql = "SELECT * FROM outbox WHERE 1 = 1"
        args: list[Any] = []
        if status:
            sql += " AND status = ?"
            args.append(status)
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(0, limit))
        return [_outbox_item(r) for r in self.db.execute(sql, args).fetchall()]

    async def get_outbox(self, item_id: int) -> OutboxItem | None:
        row = self.db.execute("SELECT * FROM outbox WHERE id = ?", (item_id,)).fetchone()
        return _outbox_item(row) if row else None

    async def replay_dead(self, *, kind: str | None = None) -> int:
        sql = (
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?"
            " WHERE status = 'dead'"
        )
        args: list[Any] = [iso(utc_now()), iso(utc_now())]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        return self.db.execute(sql, args).rowcount

    async def replay_outbox(self, item_id: int) -> bool:
        now = iso(utc_now())
        cur = self.db.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?"
            " WHERE id = ? AND status = 'dead'",
            (now, now, item_id),
        )
        return cur.rowcount == 1

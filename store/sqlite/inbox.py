"""The inbox: webhook messages stored before the provider gets its 200, group-committed."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from typing import Any

from core.clock import utc_now
from core.errors import StoreUnavailable
from core.models import InboundMessage
from core.records import InboundRecord, InboundStatus, contact_tombstone, message_tombstone
from store.sqlite.connection import BUSY_TIMEOUT_MS, SqliteConnection, log
from store.timestamps import iso

# Webhook inserts retry a busy write lock this often, without blocking the loop.
_FLUSH_RETRY_S = 0.0003

_Batch = list[tuple[tuple[Any, ...], asyncio.Future[bool]]]


class Inbox(SqliteConnection):
    async def add_inbound(
        self, message: InboundMessage, *, status: InboundStatus = "pending", reason: str | None = None
    ) -> bool:
        """Group commit: inserts arriving in the same loop iteration share one transaction.

        Each caller still gets its answer only after the commit that made its row
        durable, so "stored before 200 OK" holds; under load, one commit serves many
        webhooks instead of one each.
        """
        row = (
            message.channel,
            message.provider_message_id,
            message.contact_key,
            message.model_dump_json(),
            status,
            reason,
            iso(utc_now()),
            contact_tombstone(self._erasure_key, message.contact_key),
            message_tombstone(self._erasure_key, message.provider_message_id),
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._inbound_batch.append((row, future))
        if len(self._inbound_batch) == 1:
            loop.call_soon(self._flush_inbound)
        return await future

    def _flush_inbound(self, batch: _Batch | None = None, deadline: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        if batch is None:
            batch, self._inbound_batch = self._inbound_batch, []
            deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
        assert deadline is not None
        try:
            db = self.db
            self._reclaim_disk()
            if not self._begin_without_waiting(db):
                # Another process (the turn worker) holds the write lock for a moment.
                # Waiting inside SQLite would block the loop in whole milliseconds; retry
                # shortly instead, so other webhooks are read meanwhile.
                if loop.time() < deadline:
                    loop.call_later(_FLUSH_RETRY_S, self._flush_inbound, batch, deadline)
                    return
                raise StoreUnavailable("sqlite busy: the write lock was not released in time")
            try:
                results = [self._insert_inbound(db, row) for row, _future in batch]
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, StoreUnavailable) as exc:
            if isinstance(exc, sqlite3.Error):
                self._note_failure(exc)
            error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(str(exc))
            for _row, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_row, future), inserted in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(inserted)

    @staticmethod
    def _insert_inbound(db: sqlite3.Connection, row: tuple[Any, ...]) -> bool:
        values, hashes = row[:7], row[7:]
        if db.execute(
            f"SELECT 1 FROM tombstones WHERE hash IN ({','.join('?' * len(hashes))})", hashes
        ).fetchone():
            log.info("inbound_dropped", reason="lead_erased", channel=row[0])
            return False
        return (
            db.execute(
                "INSERT INTO inbound (channel, provider_message_id, contact_key, message, status,"
                " reason, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (channel, provider_message_id) DO NOTHING",
                values,
            ).rowcount
            == 1
        )

    async def pending_contacts(self) -> list[str]:
        rows = self.db.execute(
            "SELECT contact_key FROM inbound WHERE status = 'pending' GROUP BY contact_key ORDER BY MIN(id)"
        ).fetchall()
        return [r[0] for r in rows]

    async def pending_inbound(self, contact_key: str) -> list[InboundRecord]:
        rows = self.db.execute(
            "SELECT id, message, attempts, received_at FROM inbound"
            " WHERE contact_key = ? AND status = 'pending' ORDER BY id",
            (contact_key,),
        ).fetchall()
        return [
            InboundRecord(
                id=r["id"],
                message=InboundMessage.model_validate_json(r["message"]),
                attempts=r["attempts"],
                received_at=datetime.fromisoformat(r["received_at"]),
            )
            for r in rows
        ]

    async def record_turn_failure(self, inbound_ids: list[int], error: str) -> None:
        if not inbound_ids:
            return
        marks = ",".join("?" * len(inbound_ids))
        self.db.execute(
            f"UPDATE inbound SET attempts = attempts + 1, last_error = ? WHERE id IN ({marks})",
            (error[:500], *inbound_ids),
        )

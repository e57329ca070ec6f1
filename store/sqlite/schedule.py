"""When work is due: the per-contact turn leases and the follow-ups waiting for their time.

One process uses SQLite, but the lease contract is the same as the shared store's, so
the runtime does not care which one it talks to.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.clock import utc_now
from core.records import DueFollowUp
from store.sqlite.connection import SqliteConnection
from store.timestamps import iso


class Schedule(SqliteConnection):
    # --- turn leases ----------------------------------------------------------------
    async def claim_contact(self, contact_key: str, *, owner: str, lease_s: float) -> bool:
        now = utc_now()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO turn_leases (contact_key, owner, expires_at, acquired_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (contact_key) DO UPDATE SET owner = excluded.owner,"
                "   expires_at = excluded.expires_at,"
                "   acquired_at = CASE WHEN turn_leases.owner = excluded.owner"
                "                      THEN turn_leases.acquired_at ELSE excluded.acquired_at END"
                " WHERE turn_leases.owner = excluded.owner OR turn_leases.expires_at <= ?",
                (
                    contact_key,
                    owner,
                    iso(now + timedelta(seconds=max(lease_s, 0.001))),
                    iso(now),
                    iso(now),
                ),
            )
            return cur.rowcount == 1

    async def release_contact(self, contact_key: str, *, owner: str) -> None:
        self.db.execute("DELETE FROM turn_leases WHERE contact_key = ? AND owner = ?", (contact_key, owner))

    async def claim_ready_contacts(
        self, *, owner: str, limit: int, quiet_s: float, max_wait_s: float, lease_s: float
    ) -> list[str]:
        now = utc_now()
        rows = self.db.execute(
            "SELECT i.contact_key FROM inbound i WHERE i.status = 'pending'"
            " GROUP BY i.contact_key"
            " HAVING MAX(i.received_at) <= ? OR MIN(i.received_at) <= ?"
            " ORDER BY MIN(i.id)",
            (iso(now - timedelta(seconds=quiet_s)), iso(now - timedelta(seconds=max_wait_s))),
        ).fetchall()
        claimed: list[str] = []
        for (contact_key,) in rows:
            if len(claimed) >= limit:
                break
            held = self.db.execute(
                "SELECT owner FROM turn_leases WHERE contact_key = ? AND expires_at > ?",
                (contact_key, iso(now)),
            ).fetchone()
            if held is not None and held[0] != owner:
                continue
            if await self.claim_contact(contact_key, owner=owner, lease_s=lease_s):
                claimed.append(contact_key)
        return claimed

    # --- follow-ups -------------------------------------------------------------------
    async def due_follow_ups(self, *, now: datetime, limit: int) -> list[DueFollowUp]:
        rows = self.db.execute(
            "SELECT id, contact_key, attempt, due_at, scheduled_at FROM followups"
            " WHERE status = 'pending' AND due_at <= ? ORDER BY due_at LIMIT ?",
            (iso(now), limit),
        ).fetchall()
        return [
            DueFollowUp(
                id=r["id"],
                contact_key=r["contact_key"],
                attempt=r["attempt"],
                due_at=datetime.fromisoformat(r["due_at"]),
                scheduled_at=datetime.fromisoformat(r["scheduled_at"]),
            )
            for r in rows
        ]

    async def cancel_follow_up(self, follow_up_id: int, *, reason: str) -> None:
        self.db.execute(
            "UPDATE followups SET status = 'cancelled', reason = ?, updated_at = ? WHERE id = ?",
            (reason, iso(utc_now()), follow_up_id),
        )

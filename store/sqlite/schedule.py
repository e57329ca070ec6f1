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

# Waiting messages in arrival order, a page at a time (the `inbound_waiting` index).
_WAITING_PAGE = "SELECT id, contact_key FROM inbound WHERE status = 'pending' AND id > ? ORDER BY id LIMIT ?"
_PAGE = 256


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
        """Lease up to `limit` contacts whose burst is over (quiet for `quiet_s`, or
        waiting for `max_wait_s`), oldest waiting message first. The waiting messages are
        read in pages in arrival order and the walk stops once `limit` are leased: under
        a flood (10,000 contacts waiting) a poll reads about the contacts it leases, not
        every waiting message as a GROUP BY over them would."""
        now = utc_now()
        quiet_cut = iso(now - timedelta(seconds=quiet_s))
        wait_cut = iso(now - timedelta(seconds=max_wait_s))
        claimed: list[str] = []
        seen: set[str] = set()
        after = 0
        while len(claimed) < limit:
            page = self.db.execute(_WAITING_PAGE, (after, _PAGE)).fetchall()
            for row_id, contact_key in page:
                after = row_id
                if contact_key in seen or len(claimed) >= limit:
                    continue
                seen.add(contact_key)  # its first waiting message: the group's MIN(id)
                if self._burst_over(contact_key, quiet_cut, wait_cut) and await self._lease_free(
                    contact_key, owner=owner, lease_s=lease_s, now=now
                ):
                    claimed.append(contact_key)
            if len(page) < _PAGE:
                break
        return claimed

    def _burst_over(self, contact_key: str, quiet_cut: str, wait_cut: str) -> bool:
        first, last = self.db.execute(
            "SELECT MIN(received_at), MAX(received_at) FROM inbound WHERE contact_key = ? AND status = 'pending'",
            (contact_key,),
        ).fetchone()
        return last is not None and (last <= quiet_cut or first <= wait_cut)

    async def _lease_free(self, contact_key: str, *, owner: str, lease_s: float, now: datetime) -> bool:
        held = self.db.execute(
            "SELECT owner FROM turn_leases WHERE contact_key = ? AND expires_at > ?",
            (contact_key, iso(now)),
        ).fetchone()
        if held is not None and held[0] != owner:
            return False
        return await self.claim_contact(contact_key, owner=owner, lease_s=lease_s)

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

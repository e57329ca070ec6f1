"""Which seller takes a lead: the round-robin of prompts/sellers.toml kept in the file.

`seller_rotation` holds, per seller, the order of its latest assignment (`rotation_seq`,
one more than the highest so far: a counter, not a clock, so leads assigned in the same
instant still queue); `seller_assignments` the seller of each lead. Reading the rotation
and recording the pick happen in one `BEGIN IMMEDIATE` transaction, so two processes on
the file never hand the same "least recent" seller two leads at once. The same rules as
the Supabase store's sdr_assign_seller.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from core.clock import utc_now
from store.sqlite.connection import SqliteConnection, unavailable_on_error
from store.timestamps import iso


def check_candidates(candidates: list[str]) -> list[str]:
    """At least one seller key, none empty: an empty list is a caller's bug."""
    if not candidates or not all(isinstance(c, str) and c for c in candidates):
        raise ValueError("assign_seller needs at least one candidate seller key")
    return list(candidates)


class Sellers(SqliteConnection):
    @unavailable_on_error
    async def assign_seller(
        self, contact_key: str, candidates: list[str], *, now: datetime | None = None
    ) -> str:
        keys = check_candidates(candidates)
        now_text = iso(now or utc_now())
        with self._tx() as db:
            row = db.execute(
                "SELECT seller_key FROM seller_assignments WHERE contact_key = ?", (contact_key,)
            ).fetchone()
            if row is not None and row[0] in keys:
                return str(row[0])
            seller = _least_recent(db, keys)
            if self._tombstoned(db, contact_key):
                return seller  # nothing recorded of an erased lead
            db.execute(
                "INSERT INTO seller_rotation (seller_key, rotation_seq, last_assigned_at)"
                " VALUES (?, (SELECT coalesce(max(rotation_seq), 0) + 1 FROM seller_rotation), ?)"
                " ON CONFLICT (seller_key) DO UPDATE SET rotation_seq = excluded.rotation_seq,"
                " last_assigned_at = excluded.last_assigned_at",
                (seller, now_text),
            )
            db.execute(
                "INSERT INTO seller_assignments (contact_key, seller_key, assigned_at) VALUES (?, ?, ?)"
                " ON CONFLICT (contact_key) DO UPDATE SET seller_key = excluded.seller_key,"
                " assigned_at = excluded.assigned_at",
                (contact_key, seller, now_text),
            )
        return seller

    async def lead_seller(self, contact_key: str) -> str | None:
        row = self.db.execute(
            "SELECT seller_key FROM seller_assignments WHERE contact_key = ?", (contact_key,)
        ).fetchone()
        return str(row[0]) if row is not None else None


def _least_recent(db: sqlite3.Connection, keys: list[str]) -> str:
    """Never assigned first, then the oldest latest assignment; ties in the list's order."""
    marks = ",".join("?" * len(keys))
    seqs: dict[str, int | None] = {
        row[0]: row[1]
        for row in db.execute(
            f"SELECT seller_key, rotation_seq FROM seller_rotation WHERE seller_key IN ({marks})", keys
        )
    }
    # min() keeps the first of equals: ties go to the earlier candidate.
    return min(keys, key=lambda k: (seqs.get(k) is not None, seqs.get(k) or 0))

"""Provider rate limits metered in the database file, for processes that share it.

The same GCRA as runtime/ratelimit.py and as the Supabase store's sdr_take_rate_slot:
the row keeps the next free slot; a caller takes `max(next, now - (burst - 1) * interval)`
and moves the row one interval past it. Read and write happen in one `BEGIN IMMEDIATE`
transaction, so two processes on the file never take the same slot.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.clock import utc_now
from store.sqlite.connection import SqliteConnection, unavailable_on_error
from store.timestamps import iso


def slot_interval(rate_per_s: float) -> timedelta:
    """One send's share of a second, in whole microseconds as both stores keep it."""
    if not rate_per_s > 0:
        raise ValueError("rate_per_s must be positive")
    return max(timedelta(seconds=1.0 / rate_per_s), timedelta(microseconds=1))


class RateSlots(SqliteConnection):
    @unavailable_on_error
    async def take_rate_slot(
        self, name: str, *, rate_per_s: float, burst: int, now: datetime | None = None
    ) -> float:
        interval = slot_interval(rate_per_s)
        now_text = iso(now or utc_now())  # one host: its clock is every process's
        at = datetime.fromisoformat(now_text)
        # Capacity left unused piles up to `burst` sends, no more.
        earliest = at - (max(1, burst) - 1) * interval
        with self._tx() as db:
            row = db.execute("SELECT next_slot_at FROM rate_slots WHERE name = ?", (name,)).fetchone()
            slot = max(datetime.fromisoformat(row[0]), earliest) if row else earliest
            db.execute(
                "INSERT INTO rate_slots (name, next_slot_at, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET next_slot_at = excluded.next_slot_at,"
                " updated_at = excluded.updated_at",
                (name, iso(slot + interval), now_text),
            )
        return max(0.0, (slot - at).total_seconds())

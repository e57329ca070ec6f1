"""One source of "now" for what the bot decides by the calendar.

Business hours, holidays, session expiry, the bot's pause while a person talks and the
follow-up schedule all ask this clock, so a test (or the scenario suite) can say "a
Saturday at 22:00" or "two days later" without touching the machine's time. Outbox due
times and audit stamps stay on the real clock the store and the dispatcher share.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


__all__ = ["Clock", "utc_now"]

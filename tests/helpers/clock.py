"""A clock for tests: starts at a chosen instant, ticks with real time, jumps on demand.

The app under test is built with it (`create_app(..., clock=...)`), so business hours,
holidays, sessions, pauses and follow-ups never depend on when the suite runs. It ticks
(rather than standing still) so that retries and leases measured in seconds still pass.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def sp(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An instant given as São Paulo wall time."""
    return datetime(year, month, day, hour, minute, tzinfo=SAO_PAULO)


# The instants that matter to prompts/business_hours.toml (Mon-Fri 08-18, Sat 08-12).
WEEKDAY_IN_HOURS = sp(2026, 12, 2, 10, 30)  # a Wednesday morning: the team is in
WEEKDAY_3AM = sp(2026, 12, 2, 3, 0)  # the same Wednesday before opening
SATURDAY_NIGHT = sp(2026, 12, 5, 22, 0)  # closed until Monday 08:00
NATIONAL_HOLIDAY = sp(2026, 12, 25, 10, 30)  # Christmas, a Friday: closed until Saturday 08:00

INSTANTS = {
    "weekday_in_hours": WEEKDAY_IN_HOURS,
    "weekday_3am": WEEKDAY_3AM,
    "saturday_night": SATURDAY_NIGHT,
    "national_holiday": NATIONAL_HOLIDAY,
}
# When a person answers a hand-off, as the lead is told at each instant (None: now).
NEXT_OPENING = {
    "weekday_in_hours": None,
    "weekday_3am": "hoje às 8h",
    "saturday_night": "na segunda-feira (07/12) às 8h",
    "national_holiday": "amanhã às 8h",
}


class TestClock:
    __test__ = False  # not a test class, despite the name

    def __init__(self, start: datetime = WEEKDAY_IN_HOURS) -> None:
        self._start = start
        self._t0 = time.monotonic()
        self._jumped = timedelta(0)

    def __call__(self) -> datetime:
        return self._start + self._jumped + timedelta(seconds=time.monotonic() - self._t0)

    @property
    def now(self) -> datetime:
        return self()

    def advance(self, **delta: float) -> datetime:
        """Jump forward ("two hours later"); returns the new now."""
        self._jumped += timedelta(**delta)
        return self()

"""From a seller's busy calendar to the few meeting times offered to a lead.

Pure: the calendar client reads the busy intervals, the seller routing picks the
seller, and this module only decides. A time is offered when it

- starts no earlier than now plus the minimum notice (`earliest_start_min`);
- lies entirely inside the company's opening hours (`prompts/business_hours.toml`) and,
  when the seller has hours of their own, inside those too (both must hold: the bot
  never books a meeting while the company says it is closed), on a meeting weekday
  that is not a holiday;
- keeps `buffer_min` clear of every busy interval on both sides;
- falls within the horizon: today plus the next `horizon_business_days` meeting days,
  counted in the company's zone;
- starts on the `step_min` grid of the company's wall clock (9h, 9h30...).

Among those, `options` are offered. With `prefer_spread` the earliest time of each
(day, morning/afternoon) is taken first, as a seller would offer "amanhã às 10h,
amanhã às 15h ou quinta-feira (10/12) às 9h"; only when there are fewer periods than
options are nearby times of the same period added.

Every time is said in the lead's own zone (`core.timezones_br.timezone_for`); when that
clock differs from the company's, the label adds the company's hour so the seller and
the lead agree: "amanhã às 9h (10h de Brasília)". Hours and days are reasoned on wall
clocks (company's for opening hours, seller's for theirs, lead's for words), instants
are compared in UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from agent.business_hours import MAX_SEARCH_DAYS, BusinessHours, WeeklySchedule
from core.timezones_br import zone_city
from runtime.meeting_rules import MeetingRules

Span = tuple[datetime, datetime]

# Wall-clock hour (lead's zone) from which a time counts as afternoon for spreading.
AFTERNOON_FROM_HOUR = 12

_WEEKDAYS_PT: tuple[str, ...] = (
    "segunda-feira",
    "terça-feira",
    "quarta-feira",
    "quinta-feira",
    "sexta-feira",
    "sábado",
    "domingo",
)


@dataclass(frozen=True)
class Slot:
    """One meeting time to offer: `start`/`end` in UTC, `label` as the lead reads it."""

    start: datetime
    end: datetime
    label: str


def free_slots(
    *,
    busy: list[tuple[datetime, datetime]],
    now: datetime,
    rules: MeetingRules,
    hours: BusinessHours,
    seller_hours: WeeklySchedule | None = None,
    lead_tz: tzinfo | None = None,
    seller_tz: tzinfo | None = None,
) -> list[Slot]:
    """The meeting times to offer, earliest first; [] when the calendar has no room.

    `seller_hours` are read on `seller_tz` (default: the company's zone); None means
    the company's hours alone. `lead_tz` None says every time in the company's zone.
    """
    now_utc = _utc(now, "now")
    company_tz = hours.zone
    days = _meeting_days(now_utc.astimezone(company_tz).date(), rules, hours)
    open_spans = _open_spans(days, hours.weekly, company_tz)
    if seller_hours is not None:
        open_spans = _intersect(open_spans, _open_spans(days, seller_hours, seller_tz or company_tz))
    pad = timedelta(minutes=rules.buffer_min)
    blocked = _merge([(_utc(s, "busy start") - pad, _utc(e, "busy end") + pad) for s, e in busy if e > s])
    free = _subtract(open_spans, blocked)
    earliest = now_utc + timedelta(minutes=rules.earliest_start_min)
    starts = list(_starts(free, earliest, rules, company_tz))
    chosen = _choose(starts, rules, lead_tz or company_tz)
    duration = timedelta(minutes=rules.duration_min)
    return [
        Slot(start, start + duration, label(start, now=now_utc, company_tz=company_tz, lead_tz=lead_tz))
        for start in chosen
    ]


def label(
    at: datetime,
    *,
    now: datetime,
    company_tz: tzinfo,
    lead_tz: tzinfo | None = None,
    relative: bool = True,
) -> str:
    """A time as the lead says it, relative to `now` on the lead's calendar.

    "hoje às 16h", "amanhã às 9h30", "quinta-feira (10/12) às 10h"; with the company's
    hour added when the lead's clock differs: "amanhã às 9h (10h de Brasília)". Reused
    for confirmations and reminders, so the lead always reads the same form.
    `relative=False`: never "hoje"/"amanhã", for a text that may be read on another day
    (a template the closed window may hold).
    """
    view = lead_tz or company_tz
    local = _utc(at, "at").astimezone(view)
    today = _utc(now, "now").astimezone(view).date()
    day = _day_words(local.date(), today) if relative else _weekday_words(local.date())
    text = f"{day} {_at_clock(local)}"
    company_local = at.astimezone(company_tz)
    if lead_tz is not None and local.utcoffset() != company_local.utcoffset():
        text += f" ({_clock(company_local)} de {zone_city(company_tz)})"
    return text


# --------------------------------------------------------------------------------------
# Which days, which spans
# --------------------------------------------------------------------------------------


def _is_meeting_day(day: date, rules: MeetingRules, hours: BusinessHours) -> bool:
    return (
        day not in hours.holidays
        and rules.meets_on(day.weekday())
        and bool(hours.weekly.for_weekday(day.weekday()))
    )


def _meeting_days(today: date, rules: MeetingRules, hours: BusinessHours) -> list[date]:
    """Today (if a meeting day) and the next `horizon_business_days` meeting days."""
    days: list[date] = []
    counted = 0
    for offset in range(MAX_SEARCH_DAYS + 1):
        day = today + timedelta(days=offset)
        if not _is_meeting_day(day, rules, hours):
            continue
        if offset > 0:
            counted += 1
            if counted > rules.horizon_business_days:
                break
        days.append(day)
    return days


def _wall(day: date, minutes: int, tz: tzinfo) -> datetime:
    # Wall-clock arithmetic on purpose: minute 1440 ("24:00") is the next midnight.
    return (datetime.combine(day, time(0), tz) + timedelta(minutes=minutes)).astimezone(UTC)


def _open_spans(days: list[date], weekly: WeeklySchedule, tz: tzinfo) -> list[Span]:
    return _merge(
        [
            (_wall(day, interval.start, tz), _wall(day, interval.end, tz))
            for day in days
            for interval in weekly.for_weekday(day.weekday())
        ]
    )


def _merge(spans: list[Span]) -> list[Span]:
    """Sorted, with overlapping or touching spans joined."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _intersect(first: list[Span], second: list[Span]) -> list[Span]:
    both: list[Span] = []
    i = j = 0
    while i < len(first) and j < len(second):
        start = max(first[i][0], second[j][0])
        end = min(first[i][1], second[j][1])
        if start < end:
            both.append((start, end))
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return both


def _subtract(spans: list[Span], blocked: list[Span]) -> list[Span]:
    free: list[Span] = []
    for start, end in spans:
        cursor = start
        for b_start, b_end in blocked:
            if b_end <= cursor or b_start >= end:
                continue
            if b_start > cursor:
                free.append((cursor, b_start))
            cursor = max(cursor, b_end)
        if cursor < end:
            free.append((cursor, end))
    return free


# --------------------------------------------------------------------------------------
# Which starts, which options
# --------------------------------------------------------------------------------------


def _align_up(moment: datetime, step_min: int, tz: tzinfo) -> datetime:
    """The first instant at or after `moment` on the `step_min` grid of `tz`'s wall clock."""
    local = moment.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    step_s = step_min * 60
    elapsed_s = (local - midnight).total_seconds()
    steps = -(-elapsed_s // step_s)
    return (midnight + timedelta(seconds=steps * step_s)).astimezone(UTC)


def _starts(free: list[Span], earliest: datetime, rules: MeetingRules, tz: tzinfo) -> Iterator[datetime]:
    duration = timedelta(minutes=rules.duration_min)
    step = timedelta(minutes=rules.step_min)
    for span_start, span_end in free:
        if span_end - duration < earliest:
            continue
        start = _align_up(max(span_start, earliest), rules.step_min, tz)
        while start + duration <= span_end:
            yield start
            start += step


def _choose(starts: list[datetime], rules: MeetingRules, view_tz: tzinfo) -> list[datetime]:
    if not rules.prefer_spread:
        return starts[: rules.options]
    duration = timedelta(minutes=rules.duration_min)
    chosen: list[datetime] = []
    periods: set[tuple[date, bool]] = set()

    def new_period(start: datetime) -> bool:
        local = start.astimezone(view_tz)
        return (local.date(), local.hour >= AFTERNOON_FROM_HOUR) not in periods

    def apart(start: datetime) -> bool:
        return all(abs(start - other) >= duration for other in chosen)

    passes: tuple[Callable[[datetime], bool], ...] = (new_period, apart, lambda _start: True)
    for wanted in passes:
        for start in starts:
            if len(chosen) == rules.options:
                return sorted(chosen)
            if start not in chosen and wanted(start):
                chosen.append(start)
                local = start.astimezone(view_tz)
                periods.add((local.date(), local.hour >= AFTERNOON_FROM_HOUR))
    return sorted(chosen)


# --------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"meeting slots need aware datetimes (with a time zone); {what} is naive")
    return moment.astimezone(UTC)


def _day_words(day: date, today: date) -> str:
    days = (day - today).days
    if days == 0:
        return "hoje"
    if days == 1:
        return "amanhã"
    return _weekday_words(day)


def _weekday_words(day: date) -> str:
    return f"{_WEEKDAYS_PT[day.weekday()]} ({day:%d/%m})"


def _clock(moment: datetime) -> str:
    """ "10h", "15h30": how a Brazilian writes an hour."""
    return f"{moment.hour}h{moment.minute:02d}" if moment.minute else f"{moment.hour}h"


def _at_clock(moment: datetime) -> str:
    """ "às 10h", "à 1h", "à meia-noite": the preposition agrees with the hour."""
    if moment.hour == 0 and moment.minute == 0:
        return "à meia-noite"
    text = _clock(moment)
    return f"à {text}" if moment.hour in (0, 1) else f"às {text}"


__all__ = ["AFTERNOON_FROM_HOUR", "Slot", "Span", "free_slots", "label"]

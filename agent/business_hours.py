"""Business hours: when a human can take over, so the bot never promises the impossible.

Outside hours the bot keeps qualifying, but a lead who needs a person must hear when
one will be there, with the day and time named. The hours, holidays and that sentence
live in `prompts/business_hours.toml` so a sales manager changes them without code;
the file is checked once at start and any mistake names the file and the key.

All reasoning is done on the wall clock of the company's time zone: an interval
"08:00-18:00" means 8 a.m. as the company's clocks show it, on both sides of a DST
change, and "amanhã" means the company's next calendar day, whatever zone the caller's
datetime is in.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from core.config_files import read_toml
from core.paths import PROJECT_ROOT

DEFAULT_BUSINESS_HOURS_PATH = PROJECT_ROOT / "prompts" / "business_hours.toml"
DEFAULT_TIMEZONE = "America/Sao_Paulo"

# Far enough to cross a year of holidays, short enough that a schedule which never
# opens fails fast instead of looping.
MAX_SEARCH_DAYS = 370

WEEKDAY_KEYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)

# (article, name) so a sentence reads "na segunda-feira" but "no sábado".
_WEEKDAYS_PT: tuple[tuple[str, str], ...] = (
    ("na", "segunda-feira"),
    ("na", "terça-feira"),
    ("na", "quarta-feira"),
    ("na", "quinta-feira"),
    ("na", "sexta-feira"),
    ("no", "sábado"),
    ("no", "domingo"),
)

PLACEHOLDERS: frozenset[str] = frozenset({"quando"})
_PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")

# En and em dashes too: word processors turn "08:00-12:00" into "08:00–12:00".
_INTERVAL_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–—]\s*(\d{1,2}):(\d{2})\s*$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_MINUTES_PER_DAY = 24 * 60


class BusinessHoursError(ValueError):
    """The business-hours file is unusable; raised at load so no lead gets a wrong promise."""


class _Config(BaseModel):
    # A misspelt key must fail loudly, not silently leave a day closed.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _format_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_hhmm(hours: str, minutes: str, *, is_end: bool) -> int:
    h, m = int(hours), int(minutes)
    if h == 24 and m == 0 and is_end:
        return _MINUTES_PER_DAY
    if not (0 <= h <= 23 and 0 <= m <= 59):
        hint = " (24:00 only as an end)" if h == 24 and m == 0 else ""
        raise ValueError(f"{hours}:{minutes} is not a valid time of day{hint}")
    return h * 60 + m


class Interval(_Config):
    """One opening stretch of a day, in minutes after local midnight.

    Minutes rather than `time` so that "24:00" (open until midnight) is expressible and
    comparisons stay plain integers. The start is inclusive and the end exclusive, so
    back-to-back intervals never count a minute twice.
    """

    start: int = Field(ge=0, lt=_MINUTES_PER_DAY)
    end: int = Field(gt=0, le=_MINUTES_PER_DAY)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _INTERVAL_RE.match(value)
        if match is None:
            raise ValueError(f'{value!r} is not an interval; write it like "08:00-12:00"')
        start = _parse_hhmm(match[1], match[2], is_end=False)
        end = _parse_hhmm(match[3], match[4], is_end=True)
        return {"start": start, "end": end}

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if self.end <= self.start:
            raise ValueError(
                f"{self} ends before it starts; an interval past midnight must be split, "
                f'e.g. "22:00-24:00" on one day and "00:00-02:00" on the next'
            )
        return self

    def contains(self, minute: int) -> bool:
        return self.start <= minute < self.end

    def __str__(self) -> str:
        return f"{_format_hhmm(self.start)}-{_format_hhmm(self.end)}"


DaySchedule = list[Interval]


class WeeklySchedule(_Config):
    """Every weekday is required: a forgotten day must not silently mean "closed"."""

    monday: DaySchedule
    tuesday: DaySchedule
    wednesday: DaySchedule
    thursday: DaySchedule
    friday: DaySchedule
    saturday: DaySchedule
    sunday: DaySchedule

    @field_validator(*WEEKDAY_KEYS)
    @classmethod
    def _no_overlap(cls, intervals: DaySchedule) -> DaySchedule:
        ordered = sorted(intervals, key=lambda iv: (iv.start, iv.end))
        for before, after in zip(ordered, ordered[1:], strict=False):
            if after.start < before.end:
                raise ValueError(f"intervals {before} and {after} overlap")
        return ordered

    @model_validator(mode="after")
    def _opens_at_all(self) -> WeeklySchedule:
        if not any(self.for_weekday(day) for day in range(7)):
            raise ValueError("no opening hours on any day; a human handoff could never be promised")
        return self

    def for_weekday(self, weekday: int) -> DaySchedule:
        """Intervals for `date.weekday()` (0 = Monday), sorted by start."""
        schedule: DaySchedule = getattr(self, WEEKDAY_KEYS[weekday])
        return schedule


class Messages(_Config):
    handoff_promise: str

    @field_validator("handoff_promise")
    @classmethod
    def _known_placeholders(cls, text: str) -> str:
        text = text.strip()
        if not text:
            raise ValueError("must not be empty")
        used = set(_PLACEHOLDER_RE.findall(text))
        unknown = used - PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted('{' + u + '}' for u in unknown)}; only {{quando}} is filled"
            )
        if "quando" not in used:
            raise ValueError('must contain {quando}, replaced by the next opening (e.g. "amanhã às 8h")')
        return text


def _zone_for(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "America/Sao_Paulo":
            # Slim images may lack tzdata; Brasília time has had no DST since 2019.
            return timezone(timedelta(hours=-3), "BRT")
        raise ValueError(
            f'unknown time zone {name!r}; use an IANA name such as "America/Sao_Paulo"'
        ) from None


class BusinessHours(_Config):
    """When the sales team is reachable; built by `load_business_hours`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # "timezone" in the file, like company.toml; `tz` in code so it never shadows
    # `datetime.timezone`.
    tz: str = Field(default=DEFAULT_TIMEZONE, alias="timezone")
    weekly: WeeklySchedule
    holidays: dict[date, str] = Field(default_factory=dict)
    messages: Messages

    _zone: tzinfo = PrivateAttr()

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        _zone_for(name)
        return name

    @field_validator("holidays", mode="before")
    @classmethod
    def _iso_dates(cls, value: Any) -> Any:
        # Pydantic alone would also take "2026-4-3" or a Unix timestamp; a manager
        # writing a date should get exactly one accepted form.
        if not isinstance(value, dict):
            return value
        parsed: dict[date, Any] = {}
        for key, name in value.items():
            if isinstance(key, date):
                parsed[key] = name
                continue
            text = str(key)
            try:
                if not _DATE_RE.match(text):
                    raise ValueError
                day = date.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-04-03") from None
            if not isinstance(name, str):
                raise ValueError(f'{text}: the holiday name must be text (or "")')
            parsed[day] = name
        return parsed

    def model_post_init(self, __context: Any) -> None:
        self._zone = _zone_for(self.tz)

    @property
    def zone(self) -> tzinfo:
        return self._zone

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("business hours need an aware datetime (with a time zone); got a naive one")
        return at.astimezone(self._zone)

    def _open_on_wall_clock(self, local: datetime) -> bool:
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(iv.contains(minute) for iv in self.weekly.for_weekday(local.weekday()))

    def is_open(self, at: datetime) -> bool:
        return self._open_on_wall_clock(self._local(at))

    def next_opening(self, at: datetime) -> datetime:
        """The first instant at or after `at` when the team is in, in the company's zone."""
        local = self._local(at)
        if self._open_on_wall_clock(local):
            return local
        for offset in range(MAX_SEARCH_DAYS + 1):
            day = local.date() + timedelta(days=offset)
            if day in self.holidays:
                continue
            for interval in self.weekly.for_weekday(day.weekday()):
                start = datetime.combine(day, time(interval.start // 60, interval.start % 60), self._zone)
                # A round trip through UTC moves a start that falls in a DST gap to the
                # real instant the clocks show it; the re-check drops one that vanished.
                start = start.astimezone(UTC).astimezone(self._zone)
                # Compared in UTC: same-zone comparisons in Python ignore `fold`.
                later = start.astimezone(UTC) > at.astimezone(UTC)
                if later and self._open_on_wall_clock(start):
                    return start
        raise BusinessHoursError(
            f"no opening within {MAX_SEARCH_DAYS} days after {local:%Y-%m-%d %H:%M} "
            f"({self.tz}); check the weekly hours and holidays"
        )

    def describe_next_opening(self, at: datetime) -> str:
        """The next opening as a lead would say it, relative to `at` in the company's zone.

        "agora" when open, else "hoje às 13h30", "amanhã às 8h" or
        "na segunda-feira (02/03) às 8h"; the date is kept from the third day on so a
        lead never has to guess which Monday.
        """
        local = self._local(at)
        if self._open_on_wall_clock(local):
            return "agora"
        opening = self.next_opening(local)
        clock = _at_clock(opening)
        days = (opening.date() - local.date()).days
        if days == 0:
            return f"hoje {clock}"
        if days == 1:
            return f"amanhã {clock}"
        article, weekday = _WEEKDAYS_PT[opening.weekday()]
        return f"{article} {weekday} ({opening:%d/%m}) {clock}"

    def handoff_promise(self, at: datetime) -> str | None:
        """The sentence promising a human at the next opening; None while someone is in."""
        if self.is_open(at):
            return None
        when = self.describe_next_opening(at)
        # One pass over a closed list of names: other braces in the text stay as written.
        return _PLACEHOLDER_RE.sub(
            lambda m: when if m.group(1) == "quando" else m.group(0), self.messages.handoff_promise
        )


def _at_clock(moment: datetime) -> str:
    """ "às 8h", "às 13h30", "à 1h", "à meia-noite": the preposition agrees with the hour."""
    hour, minute = moment.hour, moment.minute
    if hour == 0 and minute == 0:
        return "à meia-noite"
    text = f"{hour}h{minute:02d}" if minute else f"{hour}h"
    return f"à {text}" if hour in (0, 1) else f"às {text}"


def load_business_hours(path: Path | str | None = None) -> BusinessHours:
    """Read and check the hours file once, at start; every mistake names the file and key."""
    hours_path = Path(path) if path is not None else DEFAULT_BUSINESS_HOURS_PATH
    data = read_toml(hours_path, what="business hours", error=BusinessHoursError)
    try:
        return BusinessHours.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(err['loc'])}: {_explain(err)}" for err in exc.errors())
        raise BusinessHoursError(f"invalid business hours in {hours_path}: {problems}") from exc


def _where(loc: tuple[Any, ...]) -> str:
    # Pydantic numbers list items from 0; a manager counts intervals from 1.
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[interval {part + 1}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(file)"


def _explain(err: ErrorDetails) -> str:
    loc = err["loc"]
    if err["type"] == "missing":
        if len(loc) == 2 and loc[0] == "weekly":
            return "missing (write [] for a day the company is closed)"
        return "missing"
    if err["type"] == "extra_forbidden":
        if len(loc) == 2 and loc[0] == "weekly":
            return f"unknown weekday; use {', '.join(WEEKDAY_KEYS)}"
        return "unknown key (misspelt?)"
    return str(err["msg"]).removeprefix("Value error, ")


__all__ = [
    "DEFAULT_BUSINESS_HOURS_PATH",
    "DEFAULT_TIMEZONE",
    "MAX_SEARCH_DAYS",
    "WEEKDAY_KEYS",
    "BusinessHours",
    "BusinessHoursError",
    "Interval",
    "Messages",
    "WeeklySchedule",
    "load_business_hours",
]

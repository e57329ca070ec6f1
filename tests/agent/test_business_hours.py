"""Business hours: a lead outside hours is promised a human at a real, named opening."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from agent import business_hours as bh
from agent.business_hours import (
    DEFAULT_BUSINESS_HOURS_PATH,
    MAX_SEARCH_DAYS,
    BusinessHours,
    BusinessHoursError,
    load_business_hours,
)

SP = ZoneInfo("America/Sao_Paulo")


def sp(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SP)


def make(**overrides: Any) -> BusinessHours:
    """The default company's week (with a lunch break) unless a test says otherwise."""
    data: dict[str, Any] = {
        "timezone": "America/Sao_Paulo",
        "weekly": {
            "monday": ["08:00-12:00", "13:30-18:00"],
            "tuesday": ["08:00-12:00", "13:30-18:00"],
            "wednesday": ["08:00-12:00", "13:30-18:00"],
            "thursday": ["08:00-12:00", "13:30-18:00"],
            "friday": ["08:00-12:00", "13:30-18:00"],
            "saturday": ["08:00-12:00"],
            "sunday": [],
        },
        "holidays": {"2026-04-21": "Tiradentes"},
        "messages": {"handoff_promise": "Voltamos {quando}."},
    }
    data.update(overrides)
    return BusinessHours.model_validate(data)


GOOD_TOML = """\
timezone = "America/Sao_Paulo"

[weekly]
monday = ["08:00-18:00"]
tuesday = ["08:00-18:00"]
wednesday = ["08:00-18:00"]
thursday = ["08:00-18:00"]
friday = ["08:00-18:00"]
saturday = ["08:00-12:00"]
sunday = []

[holidays]
2026-04-03 = "Sexta-feira Santa"

[messages]
handoff_promise = "Voltamos {quando}."
"""


@pytest.fixture(scope="module")
def shipped() -> BusinessHours:
    return load_business_hours()


@pytest.fixture
def hours() -> BusinessHours:
    return make()


# --- the shipped file --------------------------------------------------------------------


def test_shipped_file_loads_with_the_default_company_hours(shipped: BusinessHours) -> None:
    assert DEFAULT_BUSINESS_HOURS_PATH.name == "business_hours.toml"
    assert DEFAULT_BUSINESS_HOURS_PATH.parent.name == "prompts"
    assert shipped.tz == "America/Sao_Paulo"
    # Monday 2026-03-02 .. Sunday 2026-03-08, no holidays that week.
    for day in range(2, 7):
        assert not shipped.is_open(sp(2026, 3, day, 7, 59))
        assert shipped.is_open(sp(2026, 3, day, 8, 0))
        assert shipped.is_open(sp(2026, 3, day, 12, 30))
        assert shipped.is_open(sp(2026, 3, day, 17, 59))
        assert not shipped.is_open(sp(2026, 3, day, 18, 0))
    assert shipped.is_open(sp(2026, 3, 7, 11, 59))
    assert not shipped.is_open(sp(2026, 3, 7, 12, 0))
    assert not shipped.is_open(sp(2026, 3, 8, 10, 0))


def test_shipped_file_knows_the_movable_holidays(shipped: BusinessHours) -> None:
    assert date(2026, 4, 3) in shipped.holidays  # Sexta-feira Santa (Easter 2026-04-05)
    assert date(2026, 6, 4) in shipped.holidays  # Corpus Christi
    assert date(2027, 3, 26) in shipped.holidays  # Sexta-feira Santa (Easter 2027-03-28)
    assert date(2027, 5, 27) in shipped.holidays  # Corpus Christi
    assert not shipped.is_open(sp(2026, 4, 3, 10, 0))
    assert not shipped.is_open(sp(2026, 6, 4, 10, 0))


def test_shipped_file_has_the_fixed_national_holidays(shipped: BusinessHours) -> None:
    for year in (2026, 2027):
        for month, day in [(1, 1), (4, 21), (5, 1), (9, 7), (10, 12), (11, 2), (11, 15), (11, 20), (12, 25)]:
            assert date(year, month, day) in shipped.holidays, (year, month, day)
    assert shipped.holidays[date(2026, 11, 20)].startswith("Dia Nacional de Zumbi")


def test_shipped_carnaval_is_left_to_the_company(shipped: BusinessHours) -> None:
    # Ponto facultativo: commented out in the file, so the team works unless it opts in.
    assert date(2026, 2, 16) not in shipped.holidays
    assert shipped.is_open(sp(2026, 2, 16, 10, 0))


def test_shipped_promise_names_the_time(shipped: BusinessHours) -> None:
    promise = shipped.handoff_promise(sp(2026, 3, 3, 19, 0))  # Tuesday evening
    assert promise is not None
    assert "amanhã às 8h" in promise
    assert "{quando}" not in promise


# --- is_open -------------------------------------------------------------------------------


def test_start_is_inclusive_and_end_exclusive(hours: BusinessHours) -> None:
    assert not hours.is_open(sp(2026, 3, 2, 7, 59))
    assert hours.is_open(sp(2026, 3, 2, 8, 0))
    assert hours.is_open(sp(2026, 3, 2, 11, 59))
    assert not hours.is_open(sp(2026, 3, 2, 12, 0))


def test_lunch_break_is_closed(hours: BusinessHours) -> None:
    assert not hours.is_open(sp(2026, 3, 2, 12, 45))
    assert not hours.is_open(sp(2026, 3, 2, 13, 29))
    assert hours.is_open(sp(2026, 3, 2, 13, 30))
    assert hours.is_open(sp(2026, 3, 2, 17, 59))
    assert not hours.is_open(sp(2026, 3, 2, 18, 0))


def test_saturday_half_day_and_sunday_closed(hours: BusinessHours) -> None:
    assert hours.is_open(sp(2026, 3, 7, 9, 0))
    assert not hours.is_open(sp(2026, 3, 7, 12, 0))
    assert not hours.is_open(sp(2026, 3, 7, 14, 0))
    assert not hours.is_open(sp(2026, 3, 8, 10, 0))


def test_a_weekday_holiday_is_closed_all_day(hours: BusinessHours) -> None:
    assert not hours.is_open(sp(2026, 4, 21, 10, 0))  # Tiradentes, a Tuesday
    assert hours.is_open(sp(2026, 4, 22, 10, 0))


def test_any_time_zone_is_accepted_for_the_instant(hours: BusinessHours) -> None:
    # 10:30 UTC is 07:30 in São Paulo; 11:00 UTC is 08:00.
    assert not hours.is_open(datetime(2026, 3, 2, 10, 30, tzinfo=UTC))
    assert hours.is_open(datetime(2026, 3, 2, 11, 0, tzinfo=UTC))
    # The company's calendar day decides: 01:00 UTC Monday is still Sunday in São Paulo.
    assert not hours.is_open(datetime(2026, 3, 9, 1, 0, tzinfo=UTC))


def test_naive_datetimes_are_rejected(hours: BusinessHours) -> None:
    with pytest.raises(ValueError, match="aware"):
        hours.is_open(datetime(2026, 3, 2, 10, 0))
    with pytest.raises(ValueError, match="aware"):
        hours.next_opening(datetime(2026, 3, 2, 10, 0))
    with pytest.raises(ValueError, match="aware"):
        hours.handoff_promise(datetime(2026, 3, 2, 10, 0))


def test_open_until_midnight() -> None:
    hours = make(weekly={**make().weekly.model_dump(), "sunday": ["18:00-24:00"]})
    assert hours.is_open(sp(2026, 3, 8, 23, 59))
    assert not hours.is_open(sp(2026, 3, 9, 0, 0) - timedelta(hours=6, minutes=1))  # 17:59


# --- next_opening --------------------------------------------------------------------------


def test_next_opening_is_now_when_open(hours: BusinessHours) -> None:
    at = sp(2026, 3, 2, 9, 15)
    assert hours.next_opening(at) == at
    assert hours.next_opening(at).tzinfo == SP


def test_next_opening_after_lunch_the_same_day(hours: BusinessHours) -> None:
    assert hours.next_opening(sp(2026, 3, 2, 12, 0)) == sp(2026, 3, 2, 13, 30)


def test_next_opening_before_dawn_is_the_same_morning(hours: BusinessHours) -> None:
    assert hours.next_opening(sp(2026, 3, 3, 5, 0)) == sp(2026, 3, 3, 8, 0)


def test_next_opening_across_the_weekend(hours: BusinessHours) -> None:
    assert hours.next_opening(sp(2026, 3, 7, 12, 0)) == sp(2026, 3, 9, 8, 0)  # Sat noon -> Mon
    assert hours.next_opening(sp(2026, 3, 6, 18, 0)) == sp(2026, 3, 7, 8, 0)  # Fri 18h -> Sat


def test_next_opening_skips_a_holiday(hours: BusinessHours) -> None:
    # Monday evening before Tiradentes (Tuesday) -> Wednesday.
    assert hours.next_opening(sp(2026, 4, 20, 18, 30)) == sp(2026, 4, 22, 8, 0)


def test_next_opening_skips_a_holiday_before_a_weekend(shipped: BusinessHours) -> None:
    # Thursday evening before Good Friday 2026 -> Saturday morning.
    assert shipped.next_opening(sp(2026, 4, 2, 18, 0)) == sp(2026, 4, 4, 8, 0)
    # Saturday noon after Good Friday 2027 (and Easter Sunday) -> Monday.
    assert shipped.next_opening(sp(2027, 3, 27, 12, 0)) == sp(2027, 3, 29, 8, 0)


def test_next_opening_is_in_the_company_zone_and_dst_free_in_sao_paulo(hours: BusinessHours) -> None:
    # Brazil dropped DST in 2019: January (old summer time) is still UTC-3.
    at = datetime(2026, 1, 10, 18, 0, tzinfo=UTC)  # Saturday 15:00 in São Paulo
    opening = hours.next_opening(at)
    assert opening == sp(2026, 1, 12, 8, 0)
    assert opening.utcoffset() == timedelta(hours=-3)
    assert opening.astimezone(UTC) == datetime(2026, 1, 12, 11, 0, tzinfo=UTC)
    assert opening.tzinfo == SP


def test_next_opening_in_a_fixed_offset_zone() -> None:
    hours = make(timezone="Etc/GMT+4")  # POSIX sign: UTC-4, never DST
    opening = hours.next_opening(datetime(2026, 7, 3, 22, 30, tzinfo=UTC))  # Fri 18:30 local
    assert opening.utcoffset() == timedelta(hours=-4)
    assert opening.astimezone(UTC) == datetime(2026, 7, 4, 12, 0, tzinfo=UTC)  # Sat 08:00 local


def test_next_opening_is_bounded() -> None:
    # Only Sundays open, and every Sunday for longer than the search horizon is a holiday.
    first = date(2026, 3, 8)
    holidays = {(first + timedelta(weeks=w)).isoformat(): "" for w in range(60)}
    closed = {day: [] for day in bh.WEEKDAY_KEYS}
    hours = make(weekly={**closed, "sunday": ["08:00-12:00"]}, holidays=holidays)
    with pytest.raises(BusinessHoursError, match=f"{MAX_SEARCH_DAYS} days"):
        hours.next_opening(sp(2026, 3, 2, 10, 0))


def test_non_brazil_zone_with_dst() -> None:
    try:
        lisbon = ZoneInfo("Europe/Lisbon")
    except ZoneInfoNotFoundError:  # pragma: no cover - only on images without tzdata
        pytest.skip("tzdata not installed")
    weekday = ["09:00-18:00"]
    hours = make(
        timezone="Europe/Lisbon",
        weekly={**dict.fromkeys(bh.WEEKDAY_KEYS[:5], weekday), "saturday": [], "sunday": []},
        holidays={},
    )
    # Friday 2026-03-27 is winter time (UTC+0); clocks go forward on Sunday 2026-03-29.
    assert hours.is_open(datetime(2026, 3, 27, 9, 0, tzinfo=UTC))
    assert not hours.is_open(datetime(2026, 3, 27, 18, 0, tzinfo=UTC))
    opening = hours.next_opening(datetime(2026, 3, 27, 18, 30, tzinfo=UTC))
    assert opening == datetime(2026, 3, 30, 9, 0, tzinfo=lisbon)
    assert opening.utcoffset() == timedelta(hours=1)
    assert opening.astimezone(UTC) == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    # Summer time: 08:30 UTC is 09:30 in Lisbon, open; 17:30 UTC is 18:30, closed.
    assert hours.is_open(datetime(2026, 3, 30, 8, 30, tzinfo=UTC))
    assert not hours.is_open(datetime(2026, 3, 30, 17, 30, tzinfo=UTC))
    # An instant given in São Paulo time is judged on Lisbon's clock.
    assert hours.is_open(sp(2026, 3, 30, 6, 0))  # 10:00 in Lisbon
    assert hours.describe_next_opening(sp(2026, 3, 27, 20, 0)) == "na segunda-feira (30/03) às 9h"


def test_an_opening_inside_a_dst_gap_moves_to_the_real_instant() -> None:
    try:
        lisbon = ZoneInfo("Europe/Lisbon")
    except ZoneInfoNotFoundError:  # pragma: no cover
        pytest.skip("tzdata not installed")
    closed = {day: [] for day in bh.WEEKDAY_KEYS}
    hours = make(timezone="Europe/Lisbon", weekly={**closed, "sunday": ["01:30-03:00"]}, holidays={})
    # On 2026-03-29 Lisbon skips from 01:00 to 02:00: 01:30 never shows on the clock.
    opening = hours.next_opening(datetime(2026, 3, 29, 0, 0, tzinfo=UTC))  # 00:00 local
    assert opening.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert (opening.hour, opening.minute) == (2, 30)
    assert hours.is_open(opening)
    assert opening.tzinfo == lisbon


# --- describe_next_opening / handoff_promise -----------------------------------------------


def test_describe_today(hours: BusinessHours) -> None:
    assert hours.describe_next_opening(sp(2026, 3, 2, 12, 10)) == "hoje às 13h30"
    assert hours.describe_next_opening(sp(2026, 3, 2, 6, 0)) == "hoje às 8h"


def test_describe_tomorrow(hours: BusinessHours) -> None:
    assert hours.describe_next_opening(sp(2026, 3, 2, 18, 0)) == "amanhã às 8h"
    assert hours.describe_next_opening(sp(2026, 3, 6, 21, 0)) == "amanhã às 8h"  # Fri -> Sat


def test_describe_a_later_weekday_with_its_date(hours: BusinessHours) -> None:
    assert hours.describe_next_opening(sp(2026, 2, 28, 12, 0)) == "na segunda-feira (02/03) às 8h"
    assert hours.describe_next_opening(sp(2026, 4, 20, 19, 0)) == "na quarta-feira (22/04) às 8h"


def test_describe_uses_the_masculine_article_for_the_weekend() -> None:
    hours = make(holidays={"2026-03-05": "", "2026-03-06": ""})
    # Wednesday evening, Thursday and Friday off -> Saturday.
    assert hours.describe_next_opening(sp(2026, 3, 4, 19, 0)) == "no sábado (07/03) às 8h"


def test_describe_is_relative_to_the_company_day_not_the_callers() -> None:
    hours = make()
    # 02:00 UTC Tuesday is 23:00 Monday in São Paulo: Tuesday 8h is "amanhã" there.
    assert hours.describe_next_opening(datetime(2026, 3, 3, 2, 0, tzinfo=UTC)) == "amanhã às 8h"


def test_describe_when_open_is_agora(hours: BusinessHours) -> None:
    assert hours.describe_next_opening(sp(2026, 3, 2, 9, 0)) == "agora"


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("00:00-02:00", "amanhã à meia-noite"),
        ("00:30-02:00", "amanhã à 0h30"),
        ("01:00-02:00", "amanhã à 1h"),
        ("12:00-13:00", "amanhã às 12h"),
        ("09:05-10:00", "amanhã às 9h05"),
    ],
)
def test_describe_reads_the_hour_right(interval: str, expected: str) -> None:
    hours = make(weekly={day: [interval] for day in bh.WEEKDAY_KEYS})
    assert hours.describe_next_opening(sp(2026, 3, 2, 20, 0)) == expected


def test_handoff_promise_is_none_when_open(hours: BusinessHours) -> None:
    assert hours.handoff_promise(sp(2026, 3, 2, 10, 0)) is None


def test_handoff_promise_fills_the_time(hours: BusinessHours) -> None:
    assert hours.handoff_promise(sp(2026, 3, 7, 12, 0)) == "Voltamos na segunda-feira (09/03) às 8h."


def test_handoff_promise_leaves_other_braces_alone() -> None:
    hours = make(messages={"handoff_promise": "Voltamos {quando} :-{ }"})
    assert hours.handoff_promise(sp(2026, 3, 2, 12, 0)) == "Voltamos hoje às 13h30 :-{ }"


# --- broken files --------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "business_hours.toml"
    path.write_text(text, encoding="utf-8")
    return path


def broken(tmp_path: Path, old: str, new: str) -> str:
    assert old in GOOD_TOML
    path = write(tmp_path, GOOD_TOML.replace(old, new, 1))
    with pytest.raises(BusinessHoursError) as info:
        load_business_hours(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_a_good_file_in_tmp_loads(tmp_path: Path) -> None:
    hours = load_business_hours(write(tmp_path, GOOD_TOML))
    assert hours.weekly.saturday[0].start == 8 * 60
    assert hours.holidays == {date(2026, 4, 3): "Sexta-feira Santa"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BusinessHoursError, match="not found"):
        load_business_hours(tmp_path / "nope.toml")


def test_invalid_toml(tmp_path: Path) -> None:
    message = broken(tmp_path, "sunday = []", "sunday = [")
    assert "not valid TOML" in message


def test_bad_time(tmp_path: Path) -> None:
    message = broken(tmp_path, 'monday = ["08:00-18:00"]', 'monday = ["08:00-25:00"]')
    assert "weekly.monday[interval 1]" in message
    assert "25:00 is not a valid time" in message


def test_bad_interval_text(tmp_path: Path) -> None:
    message = broken(tmp_path, 'monday = ["08:00-18:00"]', 'monday = ["8h-18h"]')
    assert "weekly.monday" in message
    assert "'8h-18h' is not an interval" in message


def test_end_before_start(tmp_path: Path) -> None:
    message = broken(tmp_path, 'tuesday = ["08:00-18:00"]', 'tuesday = ["18:00-08:00"]')
    assert "weekly.tuesday" in message
    assert "18:00-08:00 ends before it starts" in message


def test_overlapping_intervals(tmp_path: Path) -> None:
    message = broken(tmp_path, 'wednesday = ["08:00-18:00"]', 'wednesday = ["08:00-12:00", "11:30-18:00"]')
    assert "weekly.wednesday" in message
    assert "overlap" in message


def test_back_to_back_intervals_are_not_an_overlap(tmp_path: Path) -> None:
    text = GOOD_TOML.replace('monday = ["08:00-18:00"]', 'monday = ["13:00-18:00", "08:00-13:00"]')
    hours = load_business_hours(write(tmp_path, text))
    assert [str(iv) for iv in hours.weekly.monday] == ["08:00-13:00", "13:00-18:00"]
    assert hours.is_open(sp(2026, 3, 2, 13, 0))


def test_unknown_weekday_key(tmp_path: Path) -> None:
    message = broken(tmp_path, "sunday = []", 'sunday = []\nsegunda = ["08:00-18:00"]')
    assert "weekly.segunda" in message
    assert "unknown weekday" in message
    assert "monday" in message


def test_missing_weekday(tmp_path: Path) -> None:
    message = broken(tmp_path, "sunday = []\n", "")
    assert "weekly.sunday" in message
    assert "missing" in message


def test_bad_timezone(tmp_path: Path) -> None:
    message = broken(tmp_path, '"America/Sao_Paulo"', '"America/Sao_Paolo"')
    assert "timezone" in message
    assert "America/Sao_Paolo" in message


def test_bad_holiday_date(tmp_path: Path) -> None:
    message = broken(tmp_path, "2026-04-03", "2026-02-30")
    assert "holidays" in message
    assert "'2026-02-30' is not a date" in message


def test_holiday_date_in_another_format(tmp_path: Path) -> None:
    message = broken(tmp_path, "2026-04-03", '"03/04/2026"')
    assert "'03/04/2026' is not a date" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = broken(tmp_path, "timezone = ", 'fuso = "x"\ntimezone = ')
    assert "fuso: unknown key" in message


def test_promise_without_quando(tmp_path: Path) -> None:
    message = broken(tmp_path, '"Voltamos {quando}."', '"Voltamos logo."')
    assert "messages.handoff_promise" in message
    assert "{quando}" in message


def test_promise_with_an_unknown_placeholder(tmp_path: Path) -> None:
    message = broken(tmp_path, '"Voltamos {quando}."', '"Voltamos {quando}, {nome}."')
    assert "{nome}" in message


def test_a_week_that_never_opens(tmp_path: Path) -> None:
    text = GOOD_TOML
    for old in ('["08:00-18:00"]', '["08:00-12:00"]'):
        text = text.replace(old, "[]")
    path = write(tmp_path, text)
    with pytest.raises(BusinessHoursError, match="no opening hours on any day"):
        load_business_hours(path)


def test_sao_paulo_survives_missing_tzdata(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_tzdata(name: str) -> Any:
        raise ZoneInfoNotFoundError(name)

    monkeypatch.setattr(bh, "ZoneInfo", no_tzdata)
    hours = make()
    assert hours.next_opening(datetime(2026, 3, 7, 15, 0, tzinfo=UTC)).astimezone(UTC) == datetime(
        2026, 3, 9, 11, 0, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="unknown time zone"):
        make(timezone="Europe/Lisbon")

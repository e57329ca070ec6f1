"""Meeting times offered to a lead: real free gaps, inside hours, said on the lead's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.business_hours import BusinessHours, WeeklySchedule, load_business_hours
from core.timezones_br import timezone_for
from runtime.meeting_rules import DEFAULT_MEETINGS_PATH, MeetingRules, MeetingRulesError, load_meeting_rules
from runtime.meeting_slots import Slot, free_slots, label
from tests.helpers.clock import SAO_PAULO, WEEKDAY_IN_HOURS, sp

MANAUS = ZoneInfo("America/Manaus")
HOURS = load_business_hours()  # prompts/business_hours.toml: Mon-Fri 08-18, Sat 08-12


def rules(**overrides: Any) -> MeetingRules:
    """Test rules; `options` above the file's limit of 10 lists every free time."""
    options = overrides.pop("options", 3)
    data: dict[str, Any] = {
        "duration_min": 30,
        "buffer_min": 0,
        "earliest_start_min": 0,
        "horizon_business_days": 5,
        "options": min(options, 10),
        "step_min": 30,
        "prefer_spread": False,
    }
    return MeetingRules.model_validate({**data, **overrides}).model_copy(update={"options": options})


def slots(now: datetime, *, busy: list[tuple[datetime, datetime]] | None = None, **kw: Any) -> list[Slot]:
    hours = kw.pop("hours", HOURS)
    seller_hours = kw.pop("seller_hours", None)
    lead_tz = kw.pop("lead_tz", None)
    return free_slots(
        busy=busy or [], now=now, rules=rules(**kw), hours=hours, seller_hours=seller_hours, lead_tz=lead_tz
    )


def starts(found: list[Slot]) -> list[datetime]:
    return [slot.start.astimezone(SAO_PAULO) for slot in found]


def week(**days: list[str]) -> dict[str, list[str]]:
    base = {d: ["08:00-18:00"] for d in ("monday", "tuesday", "wednesday", "thursday", "friday")}
    return {**base, "saturday": ["08:00-12:00"], "sunday": [], **days}


# --------------------------------------------------------------------------------------
# The rules file
# --------------------------------------------------------------------------------------


def test_the_shipped_rules_file_loads() -> None:
    loaded = load_meeting_rules()
    assert loaded == load_meeting_rules(DEFAULT_MEETINGS_PATH)
    assert (loaded.duration_min, loaded.options, loaded.step_min) == (30, 3, 30)
    assert loaded.prefer_spread
    assert loaded.weekdays == ("monday", "tuesday", "wednesday", "thursday", "friday")


GOOD = """\
duration_min = 45
buffer_min = 10
earliest_start_min = 60
horizon_business_days = 3
options = 2
step_min = 15
"""


def test_optional_keys_have_defaults(tmp_path: Path) -> None:
    path = tmp_path / "meetings.toml"
    path.write_text(GOOD)
    loaded = load_meeting_rules(path)
    assert loaded.duration_min == 45 and loaded.prefer_spread and len(loaded.weekdays) == 5


@pytest.mark.parametrize(
    ("text", "key", "why"),
    [
        (GOOD.replace("options = 2\n", ""), "options", "missing"),
        (GOOD + "opitons = 3\n", "opitons", "unknown key"),
        (GOOD.replace("step_min = 15", "step_min = 7"), "step_min", "does not divide the day"),
        (GOOD.replace("duration_min = 45", "duration_min = 0"), "duration_min", "greater than or equal"),
        (GOOD + 'weekdays = ["segunda"]\n', "weekdays", "unknown weekday"),
        (GOOD + "weekdays = []\n", "weekdays", "no weekday left"),
    ],
)
def test_a_broken_rules_file_names_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, why: str
) -> None:
    path = tmp_path / "meetings.toml"
    path.write_text(text)
    with pytest.raises(MeetingRulesError) as caught:
        load_meeting_rules(path)
    assert str(path) in str(caught.value) and f"{key}:" in str(caught.value) and why in str(caught.value)


def test_a_missing_or_garbled_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MeetingRulesError, match="not found"):
        load_meeting_rules(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("options = ")
    with pytest.raises(MeetingRulesError, match="not valid TOML"):
        load_meeting_rules(tmp_path / "bad.toml")


# --------------------------------------------------------------------------------------
# Which times are free
# --------------------------------------------------------------------------------------


def test_an_empty_calendar_offers_the_first_times_on_the_grid() -> None:
    found = slots(sp(2026, 12, 2, 10, 7))  # Wednesday 10:07
    assert starts(found) == [sp(2026, 12, 2, 10, 30), sp(2026, 12, 2, 11, 0), sp(2026, 12, 2, 11, 30)]
    assert all(slot.end - slot.start == timedelta(minutes=30) for slot in found)
    assert all(slot.start.tzinfo is UTC and slot.end.tzinfo is UTC for slot in found)
    assert [slot.label for slot in found] == ["hoje às 10h30", "hoje às 11h", "hoje às 11h30"]


def test_a_busy_calendar_leaves_only_the_free_gaps() -> None:
    busy = [(sp(2026, 12, 2, 8), sp(2026, 12, 2, 12)), (sp(2026, 12, 2, 13), sp(2026, 12, 2, 18))]
    found = slots(sp(2026, 12, 2, 7), busy=busy, horizon_business_days=0, options=10)
    assert starts(found) == [sp(2026, 12, 2, 12), sp(2026, 12, 2, 12, 30)]


def test_overlapping_busy_intervals_from_two_calendars_are_merged() -> None:
    busy = [
        (sp(2026, 12, 2, 8), sp(2026, 12, 2, 15)),
        (sp(2026, 12, 2, 14), sp(2026, 12, 2, 17, 30)),
        (sp(2026, 12, 2, 9), sp(2026, 12, 2, 10)),
    ]
    found = slots(sp(2026, 12, 2, 7), busy=busy, horizon_business_days=0, options=10)
    assert starts(found) == [sp(2026, 12, 2, 17, 30)]


def test_the_buffer_keeps_clear_of_other_appointments_on_both_sides() -> None:
    busy = [(sp(2026, 12, 2, 10), sp(2026, 12, 2, 11))]
    found = slots(
        sp(2026, 12, 2, 8), busy=busy, buffer_min=15, step_min=15, horizon_business_days=0, options=40
    )
    times = starts(found)
    assert sp(2026, 12, 2, 9, 15) in times  # ends 09:45, fifteen minutes before the visit
    assert sp(2026, 12, 2, 11, 15) in times  # fifteen minutes after it
    assert not [t for t in times if sp(2026, 12, 2, 9, 15) < t < sp(2026, 12, 2, 11, 15)]


def test_the_minimum_notice_is_respected() -> None:
    found = slots(sp(2026, 12, 2, 10, 30), earliest_start_min=120)
    assert starts(found)[0] == sp(2026, 12, 2, 12, 30)


def test_a_meeting_never_crosses_the_lunch_break_or_the_closing_time() -> None:
    lunch = BusinessHours.model_validate(
        {
            "weekly": week(wednesday=["08:00-12:00", "13:30-18:00"]),
            "messages": {"handoff_promise": "Voltamos {quando}."},
        }
    )
    found = slots(
        sp(2026, 12, 2, 11), hours=lunch, duration_min=45, step_min=15, horizon_business_days=0, options=40
    )
    times = starts(found)
    assert times[:2] == [sp(2026, 12, 2, 11), sp(2026, 12, 2, 11, 15)]  # 11:15-12:00 still fits
    assert sp(2026, 12, 2, 11, 30) not in times
    assert times[2] == sp(2026, 12, 2, 13, 30)
    assert times[-1] == sp(2026, 12, 2, 17, 15)  # ends exactly at 18:00


def test_a_holiday_and_the_weekend_are_skipped() -> None:
    found = slots(sp(2026, 12, 24, 17, 40))  # Thursday before Christmas (Friday 25/12)
    assert starts(found)[0] == sp(2026, 12, 28, 8)
    assert found[0].label == "segunda-feira (28/12) às 8h"


def test_friday_afternoon_offers_monday() -> None:
    """The company opens Saturday morning, but meetings are booked Monday to Friday."""
    found = slots(sp(2026, 12, 4, 16), earliest_start_min=120)
    assert [t.date() for t in starts(found)] == [sp(2026, 12, 7).date()] * 3
    assert found[0].label == "segunda-feira (07/12) às 8h"


def test_saturday_meetings_when_the_rules_allow_them() -> None:
    days = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
    found = slots(sp(2026, 12, 4, 16), earliest_start_min=120, weekdays=days)
    assert starts(found)[0] == sp(2026, 12, 5, 8)
    assert found[0].label == "amanhã às 8h"


def test_the_horizon_ends_the_search() -> None:
    # Wednesday and Thursday fully booked: with one business day ahead nothing is left...
    busy = [(sp(2026, 12, 2, 0), sp(2026, 12, 4, 0))]
    assert slots(sp(2026, 12, 2, 9), busy=busy, horizon_business_days=1) == []
    # ...with two, Friday opens up.
    found = slots(sp(2026, 12, 2, 9), busy=busy, horizon_business_days=2)
    assert starts(found)[0] == sp(2026, 12, 4, 8)


def test_the_horizon_counts_business_days_not_calendar_days() -> None:
    # Friday evening, horizon 1: the next business day is Monday, not Saturday.
    found = slots(sp(2026, 12, 4, 19), horizon_business_days=1, options=100)
    assert {t.date() for t in starts(found)} == {sp(2026, 12, 7).date()}


def test_a_full_calendar_offers_nothing() -> None:
    busy = [(sp(2026, 12, 1), sp(2027, 1, 31))]
    assert slots(WEEKDAY_IN_HOURS, busy=busy, prefer_spread=True) == []


def test_the_seller_s_own_hours_narrow_the_company_s() -> None:
    afternoons = WeeklySchedule.model_validate(
        week(**{d: ["14:00-20:00"] for d in ("monday", "tuesday", "wednesday", "thursday", "friday")})
    )
    found = slots(sp(2026, 12, 2, 9), seller_hours=afternoons, options=100, horizon_business_days=0)
    times = starts(found)
    assert times[0] == sp(2026, 12, 2, 14) and times[-1] == sp(2026, 12, 2, 17, 30)  # company closes at 18


def test_a_seller_on_another_clock() -> None:
    mornings = WeeklySchedule.model_validate(week(wednesday=["08:00-10:00"]))
    found = free_slots(
        busy=[],
        now=sp(2026, 12, 2, 7),
        rules=rules(options=100, horizon_business_days=0),
        hours=HOURS,
        seller_hours=mornings,
        seller_tz=MANAUS,
    )
    assert starts(found)[0] == sp(2026, 12, 2, 9) and starts(found)[-1] == sp(2026, 12, 2, 10, 30)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        slots(datetime(2026, 12, 2, 9))
    with pytest.raises(ValueError, match="naive"):
        slots(WEEKDAY_IN_HOURS, busy=[(datetime(2026, 12, 2, 9), datetime(2026, 12, 2, 10))])


# --------------------------------------------------------------------------------------
# Which options, said how
# --------------------------------------------------------------------------------------


def test_spread_offers_different_days_and_periods() -> None:
    found = slots(WEEKDAY_IN_HOURS, earliest_start_min=120, prefer_spread=True)  # Wed 10:30
    assert starts(found) == [sp(2026, 12, 2, 12, 30), sp(2026, 12, 3, 8), sp(2026, 12, 3, 12)]
    assert [slot.label for slot in found] == ["hoje às 12h30", "amanhã às 8h", "amanhã às 12h"]


def test_spread_skips_a_period_that_is_booked() -> None:
    busy = [(sp(2026, 12, 3, 8), sp(2026, 12, 3, 12))]  # Thursday morning taken
    found = slots(sp(2026, 12, 2, 16), busy=busy, prefer_spread=True)
    assert starts(found) == [sp(2026, 12, 2, 16), sp(2026, 12, 3, 12), sp(2026, 12, 4, 8)]


def test_spread_with_one_period_left_keeps_the_options_apart() -> None:
    found = slots(sp(2026, 12, 2, 16), prefer_spread=True, horizon_business_days=0)
    assert starts(found) == [sp(2026, 12, 2, 16), sp(2026, 12, 2, 16, 30), sp(2026, 12, 2, 17)]
    found = slots(sp(2026, 12, 2, 16), prefer_spread=True, horizon_business_days=0, duration_min=60)
    assert starts(found) == [sp(2026, 12, 2, 16), sp(2026, 12, 2, 16, 30), sp(2026, 12, 2, 17)]
    found = slots(sp(2026, 12, 2, 15), prefer_spread=True, horizon_business_days=0, duration_min=60)
    assert starts(found) == [sp(2026, 12, 2, 15), sp(2026, 12, 2, 16), sp(2026, 12, 2, 17)]


def test_a_manaus_lead_reads_the_times_one_hour_earlier() -> None:
    found = slots(sp(2026, 12, 2, 10, 7), lead_tz=MANAUS)
    sao_paulo = slots(sp(2026, 12, 2, 10, 7))
    assert [s.start for s in found] == [s.start for s in sao_paulo]  # same instants
    assert [slot.label for slot in found] == [
        "hoje às 9h30 (10h30 de Brasília)",
        "hoje às 10h (11h de Brasília)",
        "hoje às 10h30 (11h30 de Brasília)",
    ]


def test_unknown_uf_falls_back_to_the_area_code() -> None:
    lead_tz = timezone_for(None, "5592991234567")  # DDD 92: Manaus
    found = slots(sp(2026, 12, 4, 16), earliest_start_min=120, lead_tz=lead_tz)
    assert found[0].label == "segunda-feira (07/12) às 7h (8h de Brasília)"


def test_a_lead_on_brasilia_time_gets_no_second_clock() -> None:
    fortaleza = timezone_for("CE", None)
    found = slots(sp(2026, 12, 2, 10, 7), lead_tz=fortaleza)
    assert found[0].label == "hoje às 10h30"


def test_relative_words_follow_the_lead_s_calendar() -> None:
    # 00:30 in São Paulo is still the previous evening in Manaus: "amanhã" there is Thursday.
    now = sp(2026, 12, 3, 0, 30)  # Thursday 00:30 SP = Wednesday 23:30 Manaus
    at = sp(2026, 12, 3, 9)
    assert label(at, now=now, company_tz=SAO_PAULO) == "hoje às 9h"
    assert label(at, now=now, company_tz=SAO_PAULO, lead_tz=MANAUS) == "amanhã às 8h (9h de Brasília)"


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (sp(2026, 12, 10, 10), "quinta-feira (10/12) às 10h"),
        (sp(2026, 12, 10, 15, 30), "quinta-feira (10/12) às 15h30"),
        (sp(2026, 12, 5, 1), "sábado (05/12) à 1h"),
        (sp(2026, 12, 6, 0), "domingo (06/12) à meia-noite"),
        (sp(2026, 12, 1, 9), "terça-feira (01/12) às 9h"),
    ],
)
def test_label_words(at: datetime, expected: str) -> None:
    assert label(at, now=WEEKDAY_IN_HOURS, company_tz=SAO_PAULO) == expected

"""The lead's clock from the state or the area code: Manaus is not São Paulo."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from core import timezones_br
from core.lead_fields import UFS
from core.timezones_br import (
    UF_BY_DDD,
    ZONE_BY_UF,
    ddd_of,
    timezone_for,
    uf_for_phone,
    zone,
    zone_city,
    zone_name,
)


def test_every_state_has_a_zone_the_tz_database_knows() -> None:
    assert set(ZONE_BY_UF) == UFS
    for name in ZONE_BY_UF.values():
        ZoneInfo(name)


def test_the_fallback_offsets_match_the_tz_database() -> None:
    # Brazil has no daylight saving time since 2019: a summer and a winter date agree.
    for name, hours in timezones_br._FIXED_OFFSET_HOURS.items():
        for moment in (datetime(2026, 1, 15, 12), datetime(2026, 7, 15, 12)):
            assert ZoneInfo(name).utcoffset(moment) == timedelta(hours=hours), name


@pytest.mark.parametrize(
    ("uf", "expected", "offset"),
    [
        ("SP", "America/Sao_Paulo", -3),
        ("AM", "America/Manaus", -4),
        ("AC", "America/Rio_Branco", -5),
        ("MT", "America/Cuiaba", -4),
        ("MS", "America/Campo_Grande", -4),
        ("RO", "America/Porto_Velho", -4),
        ("RR", "America/Boa_Vista", -4),
        ("BA", "America/Bahia", -3),
        ("MA", "America/Fortaleza", -3),
        ("TO", "America/Araguaina", -3),
        ("AP", "America/Belem", -3),
    ],
)
def test_state_to_zone(uf: str, expected: str, offset: int) -> None:
    tz = timezone_for(uf, None)
    assert tz is not None and zone_name(tz) == expected
    assert tz.utcoffset(datetime(2026, 12, 2, 12)) == timedelta(hours=offset)


def test_every_area_code_is_known_and_every_state_has_one() -> None:
    assert len(UF_BY_DDD) == 67
    assert set(UF_BY_DDD.values()) == UFS
    assert all(11 <= ddd <= 99 and ddd % 10 != 0 for ddd in UF_BY_DDD)
    assert {20, 23, 25, 26, 29, 30, 36, 39, 40, 50, 52, 56, 57, 58, 59, 60, 70, 72, 76, 78, 80, 90} & set(
        UF_BY_DDD
    ) == set()


@pytest.mark.parametrize(
    ("phone", "ddd", "uf"),
    [
        ("5592991234567", 92, "AM"),  # mobile with country code
        ("559232345678", 92, "AM"),  # landline with country code
        ("92991234567", 92, "AM"),  # without it
        ("+55 (68) 99999-0000", 68, "AC"),
        ("5511987654321", 11, "SP"),
        ("5597981234567", 97, "AM"),
        ("5599981234567", 99, "MA"),
        ("5520981234567", 20, None),  # no such DDD
        ("4915112345678", None, None),  # a German number
        ("351912345678", None, None),  # a Portuguese number
        ("9876543", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_area_code_of_a_phone(phone: str | None, ddd: int | None, uf: str | None) -> None:
    assert ddd_of(phone) == ddd
    assert uf_for_phone(phone) == uf


def test_unknown_state_falls_back_to_the_area_code() -> None:
    tz = timezone_for(None, "5592991234567")
    assert tz is not None and zone_name(tz) == "America/Manaus"
    tz = timezone_for("Atlântida", "5592991234567")  # a state that does not exist
    assert tz is not None and zone_name(tz) == "America/Manaus"


def test_the_state_the_lead_said_wins_over_the_phone() -> None:
    tz = timezone_for("SP", "5592991234567")
    assert tz is not None and zone_name(tz) == "America/Sao_Paulo"
    tz = timezone_for("mato grosso do sul", None)
    assert tz is not None and zone_name(tz) == "America/Campo_Grande"


def test_nothing_known_means_no_zone() -> None:
    assert timezone_for(None, None) is None
    assert timezone_for("", "4915112345678") is None


def test_city_names_for_a_second_clock() -> None:
    assert zone_city(ZoneInfo("America/Sao_Paulo")) == "Brasília"
    assert zone_city(ZoneInfo("America/Manaus")) == "Manaus"
    assert zone_city(ZoneInfo("America/Cuiaba")) == "Cuiabá"
    assert zone_city(ZoneInfo("Europe/Lisbon")) == "Lisbon"


def test_without_the_tz_database_a_fixed_offset_stands_in(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> ZoneInfo:
        raise ZoneInfoNotFoundError(name)

    monkeypatch.setattr(timezones_br, "ZoneInfo", missing)
    tz = timezone_for("AM", None)
    assert tz is not None
    assert tz.utcoffset(None) == timedelta(hours=-4)
    assert zone_city(tz) == "Manaus"
    with pytest.raises(ValueError, match="unknown time zone"):
        zone("Mars/Olympus_Mons")

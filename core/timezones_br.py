"""Which clock a Brazilian lead reads: the time zone from the state (UF) or the phone's DDD.

Brazil has four offsets and no daylight saving time since 2019, so "10h" means 10h in
São Paulo but 9h in Manaus and 8h in Rio Branco. A meeting offered or confirmed to a
lead is said in the lead's own time; this module finds that zone.

The zone of each UF follows the comments of the IANA tz database's `zone.tab` for
Brazil. Two states span two zones, and the whole state gets the zone of its capital:

- AM: `America/Manaus` (UTC-4). The south-western municipalities (Eirunepé, Envira,
  Guajará, Ipixuna, Boca do Acre...) keep Acre's time (`America/Eirunepe`, UTC-5), but
  they share DDD 97 with UTC-4 cities such as Tefé and Tabatinga, so neither the UF nor
  the DDD can tell them apart: the capital's hour is wrong for far fewer leads.
- PA: `America/Belem`. West Pará has its own entry (`America/Santarem`) but the same
  UTC-3 since 2008, so it makes no difference.

Fernando de Noronha (UTC-2) is a district of Pernambuco with PE's DDD 81: neither source
can single it out, so its few leads are read as Recife.

The UF the lead said wins over the phone (a lead may keep a number from another state);
the DDD is the fallback when the UF is unknown.
"""

from __future__ import annotations

from datetime import timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.lead_fields import normalize_uf

ZONE_BY_UF: dict[str, str] = {
    "AC": "America/Rio_Branco",
    "AM": "America/Manaus",
    "RR": "America/Boa_Vista",
    "RO": "America/Porto_Velho",
    "MT": "America/Cuiaba",
    "MS": "America/Campo_Grande",
    "PA": "America/Belem",
    "AP": "America/Belem",
    "TO": "America/Araguaina",
    "MA": "America/Fortaleza",
    "PI": "America/Fortaleza",
    "CE": "America/Fortaleza",
    "RN": "America/Fortaleza",
    "PB": "America/Fortaleza",
    "PE": "America/Recife",
    "AL": "America/Maceio",
    "SE": "America/Maceio",
    "BA": "America/Bahia",
    "GO": "America/Sao_Paulo",
    "DF": "America/Sao_Paulo",
    "MG": "America/Sao_Paulo",
    "ES": "America/Sao_Paulo",
    "RJ": "America/Sao_Paulo",
    "SP": "America/Sao_Paulo",
    "PR": "America/Sao_Paulo",
    "SC": "America/Sao_Paulo",
    "RS": "America/Sao_Paulo",
}

# Every Brazilian area code (DDD) in use, by state (Anatel's national numbering plan).
# DDD 61 also serves Goiás towns around Brasília; both are on Brasília time.
_DDDS_BY_UF: dict[str, tuple[int, ...]] = {
    "SP": (11, 12, 13, 14, 15, 16, 17, 18, 19),
    "RJ": (21, 22, 24),
    "ES": (27, 28),
    "MG": (31, 32, 33, 34, 35, 37, 38),
    "PR": (41, 42, 43, 44, 45, 46),
    "SC": (47, 48, 49),
    "RS": (51, 53, 54, 55),
    "DF": (61,),
    "GO": (62, 64),
    "TO": (63,),
    "MT": (65, 66),
    "MS": (67,),
    "AC": (68,),
    "RO": (69,),
    "BA": (71, 73, 74, 75, 77),
    "SE": (79,),
    "PE": (81, 87),
    "AL": (82,),
    "PB": (83,),
    "RN": (84,),
    "CE": (85, 88),
    "PI": (86, 89),
    "PA": (91, 93, 94),
    "AM": (92, 97),
    "RR": (95,),
    "AP": (96,),
    "MA": (98, 99),
}
UF_BY_DDD: dict[int, str] = {ddd: uf for uf, ddds in _DDDS_BY_UF.items() for ddd in ddds}

# Offsets used only when the machine has no tz database (slim images without tzdata):
# Brazil has had no daylight saving time since 2019, so a fixed offset is exact.
_FIXED_OFFSET_HOURS: dict[str, int] = {
    "America/Noronha": -2,
    "America/Belem": -3,
    "America/Fortaleza": -3,
    "America/Recife": -3,
    "America/Araguaina": -3,
    "America/Maceio": -3,
    "America/Bahia": -3,
    "America/Sao_Paulo": -3,
    "America/Santarem": -3,
    "America/Campo_Grande": -4,
    "America/Cuiaba": -4,
    "America/Porto_Velho": -4,
    "America/Boa_Vista": -4,
    "America/Manaus": -4,
    "America/Eirunepe": -5,
    "America/Rio_Branco": -5,
}

# How a Brazilian names another zone's clock: "11h de Brasília", "9h de Manaus".
_CITY_BY_ZONE: dict[str, str] = {
    "America/Sao_Paulo": "Brasília",
    "BRT": "Brasília",  # agent.business_hours' fallback when tzdata is missing
    "America/Noronha": "Fernando de Noronha",
    "America/Belem": "Belém",
    "America/Fortaleza": "Fortaleza",
    "America/Recife": "Recife",
    "America/Araguaina": "Araguaína",
    "America/Maceio": "Maceió",
    "America/Bahia": "Salvador",
    "America/Santarem": "Santarém",
    "America/Campo_Grande": "Campo Grande",
    "America/Cuiaba": "Cuiabá",
    "America/Porto_Velho": "Porto Velho",
    "America/Boa_Vista": "Boa Vista",
    "America/Manaus": "Manaus",
    "America/Eirunepe": "Eirunepé",
    "America/Rio_Branco": "Rio Branco",
}


def zone(name: str) -> tzinfo:
    """The IANA zone, or its fixed offset when the machine lacks the tz database."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        hours = _FIXED_OFFSET_HOURS.get(name)
        if hours is None:
            raise ValueError(f"unknown time zone {name!r}") from None
        # Named after the IANA key so `zone_city` still recognises it.
        return timezone(timedelta(hours=hours), name)


def ddd_of(phone: str | None) -> int | None:
    """The area code of a Brazilian number: "5592991234567" or "92991234567" -> 92.

    None for a foreign number (another country code) or one too short to hold a DDD.
    """
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) in (12, 13) and digits.startswith("55"):
        digits = digits[2:]
    elif len(digits) not in (10, 11):
        return None
    return int(digits[:2])


def uf_for_phone(phone: str | None) -> str | None:
    ddd = ddd_of(phone)
    return UF_BY_DDD.get(ddd) if ddd is not None else None


def _known_uf(state: str | None) -> str | None:
    try:
        return normalize_uf(state)
    except ValueError:
        return None


def timezone_for(state: str | None, phone: str | None) -> tzinfo | None:
    """The lead's zone: from the UF if known, else from the phone's DDD; None if neither.

    A `ZoneInfo` whenever the tz database is installed (a fixed offset otherwise).
    """
    uf = _known_uf(state) or uf_for_phone(phone)
    if uf is None:
        return None
    return zone(ZONE_BY_UF[uf])


def zone_name(tz: tzinfo) -> str:
    """The IANA key of a zone ("America/Manaus"), or its fixed-offset name."""
    key = getattr(tz, "key", None)  # ZoneInfo
    if isinstance(key, str):
        return key
    return tz.tzname(None) or str(tz)


def zone_city(tz: tzinfo) -> str:
    """The city a Brazilian names a clock by: "Brasília" for São Paulo's zone, "Manaus"..."""
    name = zone_name(tz)
    return _CITY_BY_ZONE.get(name) or name.rsplit("/", 1)[-1].replace("_", " ")


__all__ = [
    "UF_BY_DDD",
    "ZONE_BY_UF",
    "ddd_of",
    "timezone_for",
    "uf_for_phone",
    "zone",
    "zone_city",
    "zone_name",
]

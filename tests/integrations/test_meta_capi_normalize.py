"""Our user_data normalisation against Meta's own SDK rules, on one table.

`sdk_normal_form` is a line-by-line port of `Normalize.normalize(field, data,
hash_field=False)` from facebook-python-business-sdk
facebook_business/adobjects/serverside/normalize.py (mirror commit 94914f9), without the
SHA-256 step (the same on both sides) and with its raised errors read as "left out"
(None). Only `is_valid_country_code` is narrowed: it asks pycountry, here a fixed set of
ISO codes large enough for the table. Rows in AGREE give the SDK's normal form; rows in
DIFFER are the deliberate differences documented in integrations/meta_capi/hashing.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from integrations.meta_capi import (
    hash_user_data,
    normalize_city,
    normalize_country,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_state,
    normalize_zip,
    sha256_hex,
)
from integrations.meta_capi.hashing import normalize_external_id

# --- normalize.py, ported ---------------------------------------------------------------
location_excluded_chars = re.compile(r"[0-9.\s\-()]")
isocode_included_chars = re.compile(r"[^a-z]")
email_pattern = re.compile(r".+@.+\..+")
_ISO_ALPHA_2 = {"us", "br", "gb", "fr", "au", "pt", "ar", "de"}


def _international_number(phone_number: str) -> str | None:
    phone_number = re.sub(r"^\+?0{0,2}", "", phone_number)
    if phone_number.startswith("0"):
        return None
    matched = re.compile(r"^\d{1,4}\(?\d{2,3}\)?\d{4,}$").match(phone_number)
    return None if matched is None else matched.group()


def sdk_normal_form(field: str, data: str) -> str | None:
    normalized_data = data.lower().strip()
    if field == "em":
        return normalized_data if email_pattern.match(normalized_data) else None
    if field in ("ct", "st"):
        return location_excluded_chars.sub("", normalized_data)
    if field == "zp":
        normalized_data = re.sub(r"\s", "", normalized_data)
        return normalized_data.split("-")[0]
    if field == "country":
        normalized_data = isocode_included_chars.sub("", normalized_data)
        return normalized_data if normalized_data in _ISO_ALPHA_2 else None
    if field == "ph":
        normalized_data = re.sub(r"[\s\-()]", "", normalized_data)
        normalized_data = re.sub(r"^\+?0{0,2}", "", normalized_data)
        return _international_number(normalized_data)
    return normalized_data  # fn, ln and everything else: lower().strip() only


# --- ours, per field (a phone's first candidate is the one Meta gets first) --------------
def _first_phone(value: str) -> str | None:
    phones = normalize_phone(value)
    return phones[0] if phones else None


OURS: dict[str, Callable[[str], str | None]] = {
    "em": normalize_email,
    "ph": _first_phone,
    "fn": normalize_name,
    "ln": normalize_name,
    "ct": normalize_city,
    "st": normalize_state,
    "zp": lambda v: normalize_zip(v, country="us" if v.startswith("94035") else None),
    "country": normalize_country,
    "external_id": normalize_external_id,
}

AGREE = [
    ("em", "John_Smith@gmail.com", "john_smith@gmail.com"),  # Meta's own example
    ("em", "  Maria@BoiBom.com.br ", "maria@boibom.com.br"),
    ("ph", "+1 (650) 555-1212", "16505551212"),  # Meta's own example, as dialled
    ("ph", "+55 (11) 98765-4321", "5511987654321"),
    ("ph", "0055 11 98765-4321", "5511987654321"),
    ("ph", "+55 11 3222-1234", "551132221234"),
    ("ph", "5511987654321", "5511987654321"),
    ("fn", "Mary", "mary"),
    ("fn", "정", "정"),
    ("fn", "Valéry", "valéry"),
    ("ln", "  SOUZA ", "souza"),
    ("fn", "João", "joão"),
    ("ct", "Paris", "paris"),
    ("ct", "New York", "newyork"),
    ("ct", "São Paulo", "sãopaulo"),
    ("ct", "St. Louis", "stlouis"),
    ("ct", "Ribeirão Preto - SP", "ribeirãopretosp"),
    ("st", "AZ", "az"),
    ("st", " ca ", "ca"),
    ("st", "SP", "sp"),
    ("zp", "94035-1234", "94035"),
    ("zp", "M1 1AE", "m11ae"),
    ("zp", "75018", "75018"),
    ("country", "US", "us"),
    ("country", " BR ", "br"),
    ("external_id", "whatsapp:5511987654321", "whatsapp:5511987654321"),
]

DIFFER = [
    # (field, input, the SDK's normal form, ours): see integrations/meta_capi/hashing.py
    ("ph", "(11) 98765-4321", "11987654321", "5511987654321"),
    ("ph", "551187654321", "551187654321", "5511987654321"),
    ("ph", "(11) 98765.4321", None, "5511987654321"),
    ("fn", "D'Ávila", "d'ávila", "dávila"),
    ("ln", "Silva-Souza.", "silva-souza.", "silvasouza"),
    ("ct", "Santa Bárbara d'Oeste", "santabárbarad'oeste", "santabárbaradoeste"),
    ("st", "São Paulo", "sãopaulo", "sp"),
    ("zp", "01310-100", "01310", "01310100"),
    ("country", "Brasil", None, "br"),
    ("country", "United States", None, "us"),  # Meta's own table: "United States" -> "us"
    ("em", "joao silva@agro.com.br", "joao silva@agro.com.br", None),
]


@pytest.mark.parametrize(("field", "raw", "normal"), AGREE)
def test_same_normal_form_as_the_sdk(field: str, raw: str, normal: str) -> None:
    assert sdk_normal_form(field, raw) == normal
    assert OURS[field](raw) == normal


@pytest.mark.parametrize(("field", "raw", "sdk", "ours"), DIFFER)
def test_documented_differences_from_the_sdk(field: str, raw: str, sdk: str | None, ours: str | None) -> None:
    assert sdk_normal_form(field, raw) == sdk
    assert OURS[field](raw) == ours


def test_a_nine_less_mobile_is_sent_in_both_forms() -> None:
    assert normalize_phone("551187654321") == ["5511987654321", "551187654321"]


def test_the_hashes_are_of_those_normal_forms_and_nothing_else_is_sent() -> None:
    data = hash_user_data(
        phone="(11) 98765-4321",
        email=" Maria@BoiBom.com.br",
        first_name="D'Ávila",
        city="São Paulo",
        state="São Paulo",
        external_id="whatsapp:5511987654321",
    )
    assert data == {
        "ph": [sha256_hex("5511987654321")],
        "em": [sha256_hex("maria@boibom.com.br")],
        "fn": sha256_hex("dávila"),
        "ct": sha256_hex("sãopaulo"),
        "st": sha256_hex("sp"),
        "country": sha256_hex("br"),  # from the +55 number
        # The SDK sends external_id as given; ours is the contact key (a phone): hashed.
        "external_id": [sha256_hex("whatsapp:5511987654321")],
    }
    assert not {"ge", "db", "doby", "dobm", "dobd"} & set(data)  # never collected

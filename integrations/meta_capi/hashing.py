"""Customer information as Meta wants it: normalised, then SHA-256 hashed.

`user_data` normalisation and hashing rules:
https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/customer-information-parameters
Only hashes leave this module: personal data never reaches an event, a log or an error.

The reference implementation is Meta's Python SDK
(facebook-python-business-sdk facebook_business/adobjects/serverside/normalize.py):
every field is `lower().strip()`ed there, and we give the same normal form wherever it
follows the page above (tests/integrations/test_meta_capi_normalize.py runs both on one
table). Deliberate differences, each where the SDK does less than the page asks:
- ph: a Brazilian number typed without the country code gets 55 ("(11) 98765-4321" is
  "5511987654321"; the SDK keeps "11987654321", which Meta reads as a +1 number), a
  mobile without its ninth digit is sent in both forms, any non-digit is dropped and an
  unusable number is left out (the SDK raises);
- fn/ln and ct: punctuation goes ("no punctuation"): "D'Ávila" is "dávila", "Santa
  Bárbara d'Oeste" "santabárbaradoeste" (the SDK only drops digits, spaces, ".", "-",
  "(" and ")" from a city, nothing from a name);
- st: a Brazilian state name becomes its UF ("São Paulo" -> "sp", "the 2-character ANSI
  abbreviation code"); the SDK would send "sãopaulo";
- zp: only a U.S. ZIP is cut to 5 digits; a CEP keeps its 8 ("01310-100" is "01310100",
  "no dash"), where the SDK keeps what precedes the dash ("01310");
- country: a name is mapped ("Brasil", "United States" -> the page's own "us"); the SDK
  raises on anything but an ISO code;
- em: an address with spaces or two "@" is left out; the SDK accepts any "x@y.z";
- external_id: normalised and hashed (it is our contact key, which holds the phone);
  the SDK sends it as given;
- already-hashed values are not recognised (we never receive any); gender and date of
  birth are never collected, so never sent.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

# Brazilian states by name (accents and case stripped) -> UF, Meta's "2-character code".
_BR_STATES = {
    "acre": "ac", "alagoas": "al", "amapa": "ap", "amazonas": "am", "bahia": "ba",
    "ceara": "ce", "distrito federal": "df", "espirito santo": "es", "goias": "go",
    "maranhao": "ma", "mato grosso": "mt", "mato grosso do sul": "ms",
    "minas gerais": "mg", "para": "pa", "paraiba": "pb", "parana": "pr",
    "pernambuco": "pe", "piaui": "pi", "rio de janeiro": "rj",
    "rio grande do norte": "rn", "rio grande do sul": "rs", "rondonia": "ro",
    "roraima": "rr", "santa catarina": "sc", "sao paulo": "sp", "sergipe": "se",
    "tocantins": "to",
}  # fmt: skip
# Country names a CRM or a lead is likely to type instead of the ISO code.
_COUNTRY_NAMES = {
    "brasil": "br", "brazil": "br", "portugal": "pt", "argentina": "ar",
    "paraguai": "py", "paraguay": "py", "uruguai": "uy", "uruguay": "uy",
    "chile": "cl", "mexico": "mx", "estados unidos": "us", "eua": "us", "usa": "us",
    "united states": "us", "united states of america": "us",
}  # fmt: skip


def sha256_hex(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def _nfc_lower(value: str | None) -> str:
    # NFC so a decomposed "e + combining acute" hashes like Meta's UTF-8 "é".
    return unicodedata.normalize("NFC", value or "").strip().lower()


def _ascii_fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _letters_only(value: str) -> str:
    return "".join(ch for ch in value if unicodedata.category(ch).startswith("L"))


def normalize_email(value: str | None) -> str | None:
    """Meta: "Trim any leading and trailing spaces. Convert all characters to lowercase."
    Anything that is not an address is dropped: a hash of garbage matches no one."""
    email = _nfc_lower(value)
    return email if _EMAIL.fullmatch(email) else None


def _is_br_national(digits: str) -> bool:
    """DDD (two digits 1-9) + a 9-digit mobile (9...) or 8 digits: a landline (2-5...)
    or a mobile still written without its ninth digit (6-9...)."""
    if len(digits) not in (10, 11) or "0" in digits[:2]:
        return False
    local = digits[2:]
    if len(local) == 9:
        return local[0] == "9"
    return local[0] in "23456789"


def _br_variants(international: str) -> list[str]:
    """A Brazilian mobile written without its ninth digit (common in WhatsApp ids) gets
    the current form first, and keeps the received form as a second candidate."""
    if len(international) == 12 and international.startswith("55") and international[4] in "6789":
        return [international[:4] + "9" + international[4:], international]
    return [international]


def normalize_phone(value: str | None, *, default_country_code: str = "55") -> list[str]:
    """Digits only, country code included, no leading zeros (Meta's `ph` rules).

    Brazilian numbers given without a country code get `default_country_code`; a number
    written with `+` or `00` is taken as already international. Returns every candidate
    worth hashing (one, or two for a nine-less Brazilian mobile); [] when unusable.
    """
    raw = unicodedata.normalize("NFKC", value or "").strip()
    digits = "".join(ch for ch in raw if ch.isdigit())
    if not digits:
        return []
    explicit = raw.startswith("+") or digits.startswith("00")
    stripped = digits.lstrip("0")
    if not explicit:
        if _is_br_national(stripped):
            return _br_variants(default_country_code + stripped)
        # Long-distance dialling: 0 + carrier code (2 digits) + DDD + number.
        if digits.startswith("0") and _is_br_national(stripped[2:]):
            return _br_variants(default_country_code + stripped[2:])
    if stripped.startswith("55") and _is_br_national(stripped[2:]):
        return _br_variants(stripped)
    # E.164 allows at most 15 digits; fewer than 8 cannot carry a country code and a number.
    return [stripped] if 8 <= len(stripped) <= 15 else []


def normalize_name(value: str | None) -> str | None:
    """Meta: "Lowercase only with no punctuation ... encoded in UTF-8". Accents stay (its
    example hashes "valéry"), punctuation and symbols go, spaces collapse."""
    text = _nfc_lower(value)
    kept = "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")
    name = " ".join(kept.split())
    return name or None


def normalize_city(value: str | None) -> str | None:
    """Meta: "Lowercase only with no punctuation, no special characters, and no spaces"."""
    return _letters_only(_nfc_lower(value)) or None


def normalize_state(value: str | None) -> str | None:
    """A 2-letter code in lowercase; Brazilian state names become their UF."""
    text = _nfc_lower(value)
    if not text:
        return None
    letters = _letters_only(text)
    if len(letters) == 2 and letters.isascii():
        return letters
    key = " ".join("".join(ch if ch.isalpha() else " " for ch in _ascii_fold(text)).split())
    return _BR_STATES.get(key) or letters or None


def normalize_zip(value: str | None, *, country: str | None = None) -> str | None:
    """Meta: "Use lowercase with no spaces and no dash. Use only the first 5 digits for U.S.
    zip codes." Only for the U.S.: a Brazilian CEP keeps its 8 digits ("01310-100" ->
    "01310100")."""
    text = "".join(ch for ch in _nfc_lower(value) if ch.isalnum())
    if country == "us":
        digits = "".join(ch for ch in text if ch.isdigit())
        return digits[:5] if len(digits) >= 5 else None
    return text or None


def normalize_country(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 in lowercase; common names ("Brasil") are mapped."""
    text = _nfc_lower(value)
    letters = "".join(ch for ch in _ascii_fold(text) if ch.isalpha() and ch.isascii())
    if len(letters) == 2:
        return letters
    key = " ".join("".join(ch if ch.isalpha() else " " for ch in _ascii_fold(text)).split())
    return _COUNTRY_NAMES.get(key)


def normalize_external_id(value: str | None) -> str | None:
    """Meta only says "hashing recommended"; trimmed and lowercased like its SDKs do, so
    the same contact always yields the same hash."""
    return _nfc_lower(value) or None


def split_name(full_name: str | None) -> tuple[str | None, str | None]:
    """First and last word of a display name: what `fn`/`ln` expect from "Maria da Silva"."""
    parts = (full_name or "").split()
    if not parts:
        return None, None
    return parts[0], (parts[-1] if len(parts) > 1 else None)


def hash_user_data(
    *,
    phone: str | None = None,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    city: str | None = None,
    state: str | None = None,
    zip_code: str | None = None,
    country: str | None = None,
    external_id: str | None = None,
) -> dict[str, Any]:
    """Normalise then hash; a field whose normalised value is empty is left out."""
    out: dict[str, Any] = {}
    phones = normalize_phone(phone)
    country_code = normalize_country(country)
    if country_code is None and phones and phones[0].startswith("55") and _is_br_national(phones[0][2:]):
        # Meta: "Always include your customers' countries"; a +55 number is Brazilian.
        country_code = "br"
    if phones:
        out["ph"] = [sha256_hex(p) for p in phones]
    if (em := normalize_email(email)) is not None:
        out["em"] = [sha256_hex(em)]
    singles = {
        "fn": normalize_name(first_name),
        "ln": normalize_name(last_name),
        "ct": normalize_city(city),
        "st": normalize_state(state),
        "zp": normalize_zip(zip_code, country=country_code),
        "country": country_code,
    }
    out.update({key: sha256_hex(v) for key, v in singles.items() if v})
    if (ext := normalize_external_id(external_id)) is not None:
        out["external_id"] = [sha256_hex(ext)]
    return out


__all__ = [
    "hash_user_data",
    "normalize_city",
    "normalize_country",
    "normalize_email",
    "normalize_external_id",
    "normalize_name",
    "normalize_phone",
    "normalize_state",
    "normalize_zip",
    "sha256_hex",
    "split_name",
]

"""Who a lead is in PipeRun, and how its personal data is kept out of errors and logs.

Existing people (and through them their open deals) are matched only on identity nobody
could type: our own external code, and the WhatsApp number the provider reported for the
chat. What the lead TYPED (a phone, an e-mail, in the profile) is written onto the lead's
own person as data and never looked up: a stranger who types a customer's phone must not
be posted on that customer's deal, and a later "deal won" on it must not become the
stranger's Purchase. A person we created for another lead (another `sdr-` code) is never
matched by phone either, since its phones may be what that lead typed. The worst case is
a duplicate person a seller can merge.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from core.models import mask_phone

if TYPE_CHECKING:
    from integrations.piperun.schema import PipeRunPerson


def _digits(value: str | None) -> str:
    return "".join(ch for ch in (value or "") if ch.isdigit())


_EMAIL_IN_TEXT = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
_DIGIT_RUN = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def redact(text: str) -> str:
    """PipeRun's messages may echo what we sent (a 422 about a phone): keep it out of errors."""
    text = _EMAIL_IN_TEXT.sub("[email]", text)
    return _DIGIT_RUN.sub(lambda m: mask_phone(m.group(0)), text)


def phone_key(value: str | None) -> str | None:
    """One spelling per Brazilian number, to compare what the CRM stored with the lead's.

    `+55 (11) 98765-4321`, `011 98765-4321`, `11987654321` and the pre-2016 `1187654321`
    (mobile without the 9th digit) all give `5511987654321`. Foreign numbers keep their
    digits. None when there is nothing dialable.
    """
    digits = _digits(value)
    international = (value or "").strip().startswith("+") or digits.startswith("00")
    if digits.startswith("00"):  # international call prefix
        digits = digits[2:]
    national: str | None = None
    if international:
        if digits.startswith("55") and len(digits) in (12, 13):
            national = digits[2:]
    elif digits.startswith("0") and len(digits) in (11, 12):  # trunk prefix + DDD
        national = digits[1:]
    elif len(digits) in (10, 11):
        national = digits
    elif digits.startswith("55") and len(digits) in (12, 13):
        national = digits[2:]
    if national is None:
        return digits if len(digits) >= 8 else None
    ddd, local = national[:2], national[2:]
    if ddd[0] == "0":
        return None
    if len(local) == 8 and local[0] in "6789":
        local = "9" + local
    return f"55{ddd}{local}"


def phone_variants(value: str | None) -> list[str]:
    """Spellings the same number may be stored under in the CRM, most likely first.

    The person search is exact-match at best, so the lead's number is tried with and
    without the country code, and for mobiles with and without the 9th digit (records
    typed before 2016, or WhatsApp ids of some regions, lack it).
    """
    key = phone_key(value)
    if key is None:
        return []
    if not (key.startswith("55") and len(key) in (12, 13)):
        return [key]
    ddd, local = key[2:4], key[4:]
    variants = [f"55{ddd}{local}", f"{ddd}{local}"]
    if len(local) == 9 and local[0] == "9" and local[1] in "6789":
        variants += [f"55{ddd}{local[1:]}", f"{ddd}{local[1:]}"]
    return variants


def email_key(value: str | None) -> str | None:
    text = (value or "").strip().lower().removeprefix("mailto:")
    return text if "@" in text else None


def cnpj_key(value: str | None) -> str | None:
    raw = re.sub(r"[\s./\-]", "", (value or "").upper())
    return raw or None


EXTERNAL_CODE_PREFIX = "sdr-"


def external_code_for(contact_key: str) -> str:
    """Our id for a lead inside PipeRun: stable, unique, and not personal data.

    Stored as the person's `external_code`, the deal's `reference` and a line of the
    note, so anything we created is found again after a crash lost its id.
    """
    return EXTERNAL_CODE_PREFIX + hashlib.sha256(contact_key.encode("utf-8")).hexdigest()[:20]


def another_leads_person(person: PipeRunPerson, reference: str) -> bool:
    """We created this person for a different lead: its phones may be what that lead typed."""
    code = (person.external_code or "").strip()
    return code.startswith(EXTERNAL_CODE_PREFIX) and code != reference


__all__ = [
    "EXTERNAL_CODE_PREFIX",
    "another_leads_person",
    "cnpj_key",
    "email_key",
    "external_code_for",
    "phone_key",
    "phone_variants",
    "redact",
]

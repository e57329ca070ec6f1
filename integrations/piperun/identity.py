"""Who a lead is in PipeRun, and how its personal data is kept out of errors and logs.

A lead is linked to an existing PipeRun record only when it is provably the lead's own:
the ids we stored when we created it (the caller's link, saved after every call), or
our reference written on it at creation (the person's `observation`, the company's
`external_code`, the deal's `reference`), found again after a crash lost an id. The
published API ([listar-pessoas] GET /persons) documents no phone or e-mail filter, so
the channel-verified WhatsApp number cannot be looked up either: an existing customer
who writes to the bot gets a new person beside the old one, which a seller can merge.
What the lead TYPED (a phone, an e-mail, a CNPJ, a company name) is written on the lead's
own records as data and never looked up: a stranger who types a customer's phone or
CNPJ must not be posted on that customer's deal or filed under that customer's company,
and a later "deal won" on it must not become the stranger's Purchase.
"""

from __future__ import annotations

import hashlib
import re

from core.models import mask_phone


def _digits(value: str | None) -> str:
    return "".join(ch for ch in (value or "") if ch.isdigit())


_EMAIL_IN_TEXT = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
_DIGIT_RUN = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def redact(text: str) -> str:
    """PipeRun's messages may echo what we sent (a 422 about a phone): keep it out of errors."""
    text = _EMAIL_IN_TEXT.sub("[email]", text)
    return _DIGIT_RUN.sub(lambda m: mask_phone(m.group(0)), text)


def phone_key(value: str | None) -> str | None:
    """One spelling per Brazilian number: the lead's phones are written to the CRM in it.

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


def email_key(value: str | None) -> str | None:
    text = (value or "").strip().lower().removeprefix("mailto:")
    return text if "@" in text else None


EXTERNAL_CODE_PREFIX = "sdr-"


def external_code_for(contact_key: str) -> str:
    """Our id for a lead inside PipeRun: stable, unique, and not personal data.

    Written on the person's `observation` (as `reference_marker`), the company's
    `external_code`, the deal's `reference` and a line of each note, so anything we
    created is found again after a crash lost its id.
    """
    return EXTERNAL_CODE_PREFIX + hashlib.sha256(contact_key.encode("utf-8")).hexdigest()[:20]


def reference_marker(reference: str) -> str:
    """What a person we created carries in its `observation` (searched for exactly)."""
    return f"Ref. SDR: {reference.strip()}"


__all__ = [
    "EXTERNAL_CODE_PREFIX",
    "email_key",
    "external_code_for",
    "phone_key",
    "redact",
    "reference_marker",
]

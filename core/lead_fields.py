"""How each field of the lead profile is read: one normaliser per field.

Extraction is noisy (a UF spelt out, a CNPJ with punctuation or a wrong check digit, a
volume said in words and per shift), so each field has one function that turns whatever
came in into the one form the profile keeps, or None when it cannot be trusted. Used by
the merge rules in core/lead.py and by every floor that reads a field back.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal, get_args

Urgency = Literal["imediata", "ate_30_dias", "ate_90_dias", "sem_pressa"]
DecisionRole = Literal["decisor", "influenciador", "usuario"]

URGENCY_VALUES: tuple[str, ...] = get_args(Urgency)
DECISION_ROLE_VALUES: tuple[str, ...] = get_args(DecisionRole)

# Free text is capped so a rambling extraction cannot blow up the prompt or the lead card.
MAX_TEXT_LEN = 200

# --------------------------------------------------------------------------------------
# Brazilian states
# --------------------------------------------------------------------------------------

UF_NAMES: dict[str, str] = {
    "AC": "Acre",
    "AL": "Alagoas",
    "AP": "Amapá",
    "AM": "Amazonas",
    "BA": "Bahia",
    "CE": "Ceará",
    "DF": "Distrito Federal",
    "ES": "Espírito Santo",
    "GO": "Goiás",
    "MA": "Maranhão",
    "MT": "Mato Grosso",
    "MS": "Mato Grosso do Sul",
    "MG": "Minas Gerais",
    "PA": "Pará",
    "PB": "Paraíba",
    "PR": "Paraná",
    "PE": "Pernambuco",
    "PI": "Piauí",
    "RJ": "Rio de Janeiro",
    "RN": "Rio Grande do Norte",
    "RS": "Rio Grande do Sul",
    "RO": "Rondônia",
    "RR": "Roraima",
    "SC": "Santa Catarina",
    "SP": "São Paulo",
    "SE": "Sergipe",
    "TO": "Tocantins",
}
UFS: frozenset[str] = frozenset(UF_NAMES)


def fold(text: str) -> str:
    """Lower-case and strip accents, so "São Paulo", "sao paulo" and "SÃO PAULO" compare equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower().strip()


_UF_BY_FOLDED_NAME = {fold(name): uf for uf, name in UF_NAMES.items()}


# --------------------------------------------------------------------------------------
# Field normalisers: return the canonical value, or raise ValueError when it is unusable.
# Shared by the profile's validators (strict) and `merge_lead` (drops the field).
# --------------------------------------------------------------------------------------


def _clean_text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    text = " ".join(value.split())
    if not text:
        return None
    return text[:MAX_TEXT_LEN]


def normalize_uf(value: Any) -> str | None:
    """Accept "SP", "sp", "São Paulo"; the model often answers with the full state name."""
    text = _clean_text(value)
    if text is None:
        return None
    upper = text.upper()
    if upper in UFS:
        return upper
    by_name = _UF_BY_FOLDED_NAME.get(fold(text))
    if by_name:
        return by_name
    raise ValueError(f"not a Brazilian state (UF): {text!r}")


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")


def normalize_email(value: Any) -> str | None:
    """Loose on purpose: only catch what is clearly not an address (no @, no domain)."""
    text = _clean_text(value)
    if text is None:
        return None
    text = text.lower().removeprefix("mailto:").strip()
    if not _EMAIL_RE.match(text):
        raise ValueError("not an e-mail address")
    return text


def normalize_phone(value: Any) -> str | None:
    """Digits with country code, the same shape channels use as contact ids.

    A 10/11-digit number is a Brazilian number written with its area code (DDD) and
    gets 55 in front; anything shorter cannot be dialled back and is refused.
    """
    text = _clean_text(value)
    if text is None:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) in (10, 11):
        return "55" + digits
    if 12 <= len(digits) <= 15:
        return digits
    raise ValueError("not a phone number")


_CNPJ_W1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_W2 = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_RE = re.compile(r"^[0-9A-Z]{12}[0-9]{2}$")


def _cnpj_digit(body: str, weights: tuple[int, ...]) -> int:
    # Character value is its code minus 48: digits keep their value and letters
    # (alphanumeric CNPJ, valid from July 2026) map A=17, B=18, ... as Receita defines.
    total = sum((ord(ch) - 48) * w for ch, w in zip(body, weights, strict=False))
    rest = total % 11
    return 0 if rest < 2 else 11 - rest


def normalize_cnpj(value: Any) -> str | None:
    """14 characters without punctuation, check digits verified.

    A CNPJ with wrong check digits is almost always a typo or a hallucination, and
    pushing it to the CRM would create a bogus company record.
    """
    text = _clean_text(value)
    if text is None:
        return None
    raw = re.sub(r"[\s./\-]", "", text.upper())
    if not _CNPJ_RE.match(raw) or len(set(raw)) == 1:
        raise ValueError("not a valid CNPJ")
    if _cnpj_digit(raw[:12], _CNPJ_W1) != int(raw[12]):
        raise ValueError("CNPJ check digits do not match")
    if _cnpj_digit(raw[:13], _CNPJ_W2) != int(raw[13]):
        raise ValueError("CNPJ check digits do not match")
    return raw


def format_cnpj(cnpj: str) -> str:
    """The XX.XXX.XXX/XXXX-XX form people recognise, for cards and prompts."""
    if len(cnpj) != 14:
        return cnpj
    return f"{cnpj[:2]}.{cnpj[2:5]}.{cnpj[5:8]}/{cnpj[8:12]}-{cnpj[12:]}"


_URGENCY_SYNONYMS: dict[str, str] = {
    "imediata": "imediata",
    "imediato": "imediata",
    "urgente": "imediata",
    "urgencia": "imediata",
    "agora": "imediata",
    "ja": "imediata",
    "ate_30_dias": "ate_30_dias",
    "30_dias": "ate_30_dias",
    "este_mes": "ate_30_dias",
    "esse_mes": "ate_30_dias",
    "ate_90_dias": "ate_90_dias",
    "90_dias": "ate_90_dias",
    "3_meses": "ate_90_dias",
    "sem_pressa": "sem_pressa",
    "sem_urgencia": "sem_pressa",
    "pesquisando": "sem_pressa",
}

_ROLE_SYNONYMS: dict[str, str] = {
    "decisor": "decisor",
    "decide": "decisor",
    "dono": "decisor",
    "proprietario": "decisor",
    "socio": "decisor",
    "influenciador": "influenciador",
    "influencia": "influenciador",
    "usuario": "usuario",
    "operador": "usuario",
}


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", fold(value)).strip("_")


def normalize_urgency(value: Any) -> str | None:
    text = _clean_text(value)
    if text is None:
        return None
    mapped = _URGENCY_SYNONYMS.get(_slug(text))
    if mapped is None:
        raise ValueError(f"unknown urgency: {text!r}")
    return mapped


def normalize_decision_role(value: Any) -> str | None:
    text = _clean_text(value)
    if text is None:
        return None
    mapped = _ROLE_SYNONYMS.get(_slug(text))
    if mapped is None:
        raise ValueError(f"unknown decision role: {text!r}")
    return mapped


_TRUE_WORDS = {"sim", "s", "yes", "true", "1", "conhece", "ja_conhece"}
_FALSE_WORDS = {"nao", "n", "no", "false", "0", "nao_conhece"}


def normalize_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = _clean_text(value)
    if text is None:
        return None
    slug = _slug(text)
    if slug in _TRUE_WORDS:
        return True
    if slug in _FALSE_WORDS:
        return False
    raise ValueError(f"not a yes/no answer: {text!r}")


# Volume sanity bound: beyond this it is a unit mix-up (grams, a phone number), not demand.
MAX_VOLUME_PER_DAY = 10_000_000


def normalize_volume_per_day(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("not a volume")
    if isinstance(value, str):
        if not value.strip():
            return None
        parsed = parse_volume_per_day(value)
        if parsed is None:
            digits = value.strip().replace(".", "").replace(" ", "")
            if not digits.isdigit():
                raise ValueError("not a volume")
            parsed = int(digits)
        value = parsed
    if isinstance(value, float):
        value = int(round(value))
    if not isinstance(value, int) or not 0 < value <= MAX_VOLUME_PER_DAY:
        raise ValueError("volume per day out of range")
    return value


# How many hours/days an "x por hora/semana/mês" figure stands for when turned into a
# daily figure: one 8-hour shift, a 6-day week (common in butchers and meat plants),
# 26 working days a month. Only used when the model did not give volume_per_day itself.
HOURS_PER_SHIFT = 8
DAYS_PER_WEEK = 6
DAYS_PER_MONTH = 26

_NUMBER_RE = re.compile(
    r"(?P<num>\d{1,3}(?:\.\d{3})+(?!\d)|\d+,\d+|\d+\.\d{1,2}(?!\d)|\d+)\s*(?P<mil>mil\b|k\b)?"
)
_PERIODS: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(r"(/\s*h\b|por hora|/\s*hora|\bhora\b|\bhoras\b)"), HOURS_PER_SHIFT),
    (re.compile(r"(/\s*dia|por dia|ao dia|\bdia\b|diari|\bdias\b)"), 1),
    (re.compile(r"(/\s*semana|por semana|\bsemana|semanal)"), 1 / DAYS_PER_WEEK),
    (re.compile(r"(/\s*mes|por mes|\bmes\b|mensal|\bmeses\b)"), 1 / DAYS_PER_MONTH),
)


def parse_volume_per_day(text: str | None) -> int | None:
    """Best-effort "500 hambúrgueres/dia" -> 500, "3 mil por dia" -> 3000.

    Only answers when both a number and a period are present: "500 hambúrgueres"
    alone could be per day or per week, and a guessed number would mislead scoring.
    Ranges ("500 a 600") take the lower bound, the conservative figure.
    """
    if not text:
        return None
    folded = fold(text)
    match = _NUMBER_RE.search(folded)
    if not match:
        return None
    number_text = match.group("num")
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+", number_text):
        number = float(number_text.replace(".", ""))
    else:
        number = float(number_text.replace(",", "."))
    if match.group("mil"):
        number *= 1000
    for pattern, factor in _PERIODS:
        if pattern.search(folded):
            per_day = int(round(number * factor))
            if 0 < per_day <= MAX_VOLUME_PER_DAY:
                return per_day
            return None
    return None

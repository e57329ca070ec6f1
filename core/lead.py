"""The lead profile sales relies on, and the only way it changes: `merge_lead`.

The LLM extracts a `LeadUpdate` every turn. Extraction is noisy (a field comes back
null, blank, mangled or in another spelling), so the rules that keep the profile
trustworthy live here, in code, not in the prompt:

- a non-null value wins, so a later correction by the lead replaces the old one;
- null or blank never erases what is known, so one bad extraction cannot drop data;
- each field is validated on its own, so a bad UF or an invalid CNPJ is dropped while
  the rest of the update still applies;
- every change records which message said it (`provenance`), so a seller can check.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

log = structlog.get_logger(__name__)

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


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------

FieldValue = str | int | bool | None


class FieldSource(BaseModel):
    """Which message set a field, so a seller can see where a fact came from."""

    model_config = ConfigDict(extra="ignore")

    message_id: str | None
    at: datetime
    value: FieldValue


_TEXT_FIELDS = (
    "name",
    "company",
    "city",
    "segment",
    "product_interest",
    "volume",
    "timeline",
    "budget_signal",
)

NORMALIZERS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(_TEXT_FIELDS, _clean_text),
    "cnpj": normalize_cnpj,
    "state": normalize_uf,
    "volume_per_day": normalize_volume_per_day,
    "urgency": normalize_urgency,
    "decision_role": normalize_decision_role,
    "knows_company": normalize_bool,
    "email": normalize_email,
    "phone": normalize_phone,
}


class LeadProfile(BaseModel):
    """What sales knows about one lead. Always valid: built only from normalised values."""

    # Stored rows outlive code versions; an unknown key from an older/newer row is ignored.
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    company: str | None = None
    cnpj: str | None = None
    city: str | None = None
    state: str | None = None
    segment: str | None = None
    product_interest: str | None = None
    volume: str | None = None
    volume_per_day: int | None = None
    urgency: Urgency | None = None
    timeline: str | None = None
    budget_signal: str | None = None
    decision_role: DecisionRole | None = None
    knows_company: bool | None = None
    email: str | None = None
    phone: str | None = None
    provenance: dict[str, FieldSource] = Field(default_factory=dict)

    @field_validator(*NORMALIZERS, mode="before")
    @classmethod
    def _normalize(cls, value: Any, info: Any) -> Any:
        return NORMALIZERS[info.field_name](value)

    def known_fields(self) -> list[str]:
        return [name for name in PROFILE_FIELDS if getattr(self, name) is not None]


PROFILE_FIELDS: tuple[str, ...] = tuple(name for name in LeadProfile.model_fields if name != "provenance")


def _lenient(normalizer: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run(value: Any) -> Any:
        try:
            return normalizer(value)
        except ValueError:
            # Dropped here rather than failing the whole update; merge_lead then
            # simply sees "not said" for this one field.
            return None

    return run


# Shaped for OpenAI structured outputs in strict mode: every field is required and
# nullable, no defaults, no free-form dicts, no `format`/range keywords. Validation is
# done in code (merge_lead) instead, field by field, so one bad value never rejects the
# rest. A missing key (a scripted fake, a non-strict model) is read as null for the same
# reason. The class docstring and field descriptions are sent to the model as part of
# the schema, hence in pt-BR and written as instructions.
class LeadUpdate(BaseModel):
    """Dados do lead ditos na conversa. Use null para o que o lead não informou; nunca invente."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(description="Nome da pessoa com quem falamos.")
    company: str | None = Field(description="Nome da empresa do lead.")
    cnpj: str | None = Field(description="CNPJ da empresa, se o lead informou.")
    city: str | None = Field(description="Cidade do lead.")
    state: str | None = Field(description="Estado, sigla UF com 2 letras (ex.: SP, MG).")
    segment: str | None = Field(
        description="Segmento do negócio (ex.: frigorífico, açougue, restaurante, hamburgueria, "
        "fábrica de alimentos)."
    )
    product_interest: str | None = Field(description="Produto ou tipo de equipamento de interesse.")
    volume: str | None = Field(
        description="Volume/capacidade necessária, como o lead disse (ex.: '500 hambúrgueres/dia')."
    )
    volume_per_day: int | None = Field(
        description="O mesmo volume em unidades (ou kg) por dia, quando dá para calcular; "
        "por hora = x8 (um turno). null se não der."
    )
    urgency: Urgency | None = Field(description="Urgência da compra.")
    timeline: str | None = Field(description="Prazo da compra como o lead disse.")
    budget_signal: str | None = Field(description="Qualquer sinal de orçamento ou verba citado.")
    decision_role: DecisionRole | None = Field(
        description="decisor = decide a compra; influenciador = participa/indica; "
        "usuario = vai operar o equipamento."
    )
    knows_company: bool | None = Field(description="Se o lead já conhecia a empresa.")
    email: str | None = Field(description="E-mail informado pelo lead.")
    phone: str | None = Field(description="Telefone informado pelo lead, se diferente do WhatsApp.")

    @model_validator(mode="before")
    @classmethod
    def _missing_is_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {**dict.fromkeys(cls.model_fields), **data}
        return data

    @field_validator("urgency", mode="before")
    @classmethod
    def _urgency(cls, value: Any) -> Any:
        return _lenient(normalize_urgency)(value)

    @field_validator("decision_role", mode="before")
    @classmethod
    def _role(cls, value: Any) -> Any:
        return _lenient(normalize_decision_role)(value)

    @field_validator("knows_company", mode="before")
    @classmethod
    def _knows(cls, value: Any) -> Any:
        return _lenient(normalize_bool)(value)

    @field_validator("volume_per_day", mode="before")
    @classmethod
    def _volume_per_day(cls, value: Any) -> Any:
        return _lenient(normalize_volume_per_day)(value)

    @field_validator(
        "name",
        "company",
        "cnpj",
        "city",
        "state",
        "segment",
        "product_interest",
        "volume",
        "timeline",
        "budget_signal",
        "email",
        "phone",
        mode="before",
    )
    @classmethod
    def _stringish(cls, value: Any) -> Any:
        # A number where text was expected (a CNPJ or phone as int) is still information.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value


# --------------------------------------------------------------------------------------
# Merge
# --------------------------------------------------------------------------------------

_CITY_UF_RE = re.compile(r"^(?P<city>.+?)\s*(?:-|/|,|\()\s*(?P<uf>[A-Za-z]{2})\)?$")


def merge_lead(
    profile: LeadProfile,
    update: LeadUpdate,
    *,
    message_id: str | None,
    at: datetime | None = None,
) -> tuple[LeadProfile, list[str]]:
    """Apply one extraction to the profile; returns the new profile and what changed."""
    at = at or datetime.now(UTC)
    incoming: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        raw = getattr(update, name)
        try:
            value = NORMALIZERS[name](raw)
        except ValueError as exc:
            log.info("lead_field_discarded", field=name, reason=str(exc).split(":")[0])
            continue
        if value is not None:
            incoming[name] = value

    # "Campinas - SP" in the city slot: keep the city, and use the UF unless stated apart.
    city = incoming.get("city")
    if city:
        match = _CITY_UF_RE.match(city)
        if match and match.group("uf").upper() in UFS:
            incoming["city"] = match.group("city").strip()
            incoming.setdefault("state", match.group("uf").upper())

    # Volume said in words but not normalised by the model: derive it here, only when
    # the words are new (or nothing is known), so the model's own earlier figure for the
    # same words is not replaced by our rougher estimate.
    if (
        "volume" in incoming
        and "volume_per_day" not in incoming
        and (incoming["volume"] != profile.volume or profile.volume_per_day is None)
    ):
        derived = parse_volume_per_day(incoming["volume"])
        if derived is not None:
            incoming["volume_per_day"] = derived

    changes: dict[str, Any] = {}
    for name, value in incoming.items():
        if getattr(profile, name) != value:
            changes[name] = value

    # A corrected volume we could not turn into a number must not keep scoring with
    # the old figure: the lead's own words are the truth, the stale number is not.
    if "volume" in changes and "volume_per_day" not in incoming and profile.volume_per_day is not None:
        changes["volume_per_day"] = None

    if not changes:
        return profile, []

    provenance = dict(profile.provenance)
    for name, value in changes.items():
        if value is None:
            provenance.pop(name, None)
        else:
            provenance[name] = FieldSource(message_id=message_id, at=at, value=value)
    new_profile = profile.model_copy(update={**changes, "provenance": provenance})
    changed = [name for name in PROFILE_FIELDS if name in changes]
    return new_profile, changed


# --------------------------------------------------------------------------------------
# What is missing, and how to say it in pt-BR
# --------------------------------------------------------------------------------------

FIELD_LABELS: dict[str, str] = {
    "name": "Nome",
    "company": "Empresa",
    "cnpj": "CNPJ",
    "city": "Cidade",
    "state": "Estado (UF)",
    "segment": "Segmento",
    "product_interest": "Produto de interesse",
    "volume": "Volume/capacidade necessária",
    "volume_per_day": "Volume por dia",
    "urgency": "Urgência da compra",
    "timeline": "Prazo",
    "budget_signal": "Orçamento",
    "decision_role": "Papel na decisão de compra",
    "knows_company": "Já conhece a empresa",
    "email": "E-mail",
    "phone": "Telefone",
}

URGENCY_LABELS: dict[str, str] = {
    "imediata": "imediata",
    "ate_30_dias": "até 30 dias",
    "ate_90_dias": "até 90 dias",
    "sem_pressa": "sem pressa",
}

DECISION_ROLE_LABELS: dict[str, str] = {
    "decisor": "decisor (decide a compra)",
    "influenciador": "influenciador (participa da decisão)",
    "usuario": "usuário (vai operar o equipamento)",
}

# The order sales wants these asked: who, what, how much, where, then the rest.
QUALIFICATION_ORDER: tuple[str, ...] = (
    "name",
    "product_interest",
    "volume",
    "city",
    "state",
    "company",
    "segment",
    "urgency",
    "decision_role",
    "knows_company",
)


def missing_fields(profile: LeadProfile) -> list[str]:
    """Qualification fields still unknown, most important first (steers the next question)."""
    missing: list[str] = []
    for name in QUALIFICATION_ORDER:
        if name == "volume":
            if profile.volume is None and profile.volume_per_day is None:
                missing.append(name)
        elif getattr(profile, name) is None:
            missing.append(name)
    return missing


def field_label(name: str) -> str:
    return FIELD_LABELS.get(name, name)


def format_int_br(value: int) -> str:
    return f"{value:,}".replace(",", ".")


def display_value(name: str, value: Any) -> str:
    """A field's value as a Brazilian seller reads it (sim/não, até 30 dias, 12.345/dia)."""
    if value is None:
        return "-"
    if name == "urgency":
        return URGENCY_LABELS.get(value, str(value))
    if name == "decision_role":
        return DECISION_ROLE_LABELS.get(value, str(value))
    if isinstance(value, bool):
        return "sim" if value else "não"
    if name == "cnpj":
        return format_cnpj(value)
    if name == "volume_per_day":
        return f"{format_int_br(value)}/dia"
    return str(value)


def describe_lead(profile: LeadProfile, *, include_phone: bool = True) -> list[str]:
    """ "Label: value" lines of the known fields only, for prompts, notes and lead cards."""
    lines: list[str] = []
    for name in PROFILE_FIELDS:
        value = getattr(profile, name)
        if value is None:
            continue
        if name == "phone" and not include_phone:
            lines.append(f"{FIELD_LABELS[name]}: informado")
            continue
        if name == "volume_per_day" and profile.volume is not None:
            continue  # shown next to the volume the lead said
        text = display_value(name, value)
        if name == "volume" and profile.volume_per_day is not None:
            text = f"{text} (~{display_value('volume_per_day', profile.volume_per_day)})"
        lines.append(f"{FIELD_LABELS[name]}: {text}")
    return lines


__all__ = [
    "DECISION_ROLE_LABELS",
    "DECISION_ROLE_VALUES",
    "FIELD_LABELS",
    "DecisionRole",
    "FieldSource",
    "LeadProfile",
    "LeadUpdate",
    "PROFILE_FIELDS",
    "QUALIFICATION_ORDER",
    "UFS",
    "UF_NAMES",
    "URGENCY_LABELS",
    "URGENCY_VALUES",
    "Urgency",
    "describe_lead",
    "display_value",
    "field_label",
    "fold",
    "format_cnpj",
    "format_int_br",
    "merge_lead",
    "missing_fields",
    "normalize_cnpj",
    "normalize_email",
    "normalize_phone",
    "normalize_uf",
    "parse_volume_per_day",
]

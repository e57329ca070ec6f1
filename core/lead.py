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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.lead_fields import (
    UFS,
    DecisionRole,
    Urgency,
    _clean_text,
    format_cnpj,
    normalize_bool,
    normalize_cnpj,
    normalize_decision_role,
    normalize_email,
    normalize_phone,
    normalize_uf,
    normalize_urgency,
    normalize_volume_per_day,
    parse_volume_per_day,
)

log = structlog.get_logger(__name__)


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
# reason. The field descriptions are sent to the model as part of the schema, hence in
# pt-BR and written as instructions; they are billed on every call, so a field whose
# name says it all (city, email, the urgency enum) has none (issue 18).
class LeadUpdate(BaseModel):
    """Dados do lead ditos na conversa. Use null para o que o lead não informou; nunca invente."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(description="Da pessoa com quem falamos.")
    company: str | None
    cnpj: str | None
    city: str | None
    state: str | None = Field(description="Sigla UF (ex.: SP).")
    segment: str | None = Field(description="Ex.: frigorífico, açougue, restaurante, hamburgueria.")
    product_interest: str | None = Field(description="Produto ou tipo de equipamento.")
    volume: str | None = Field(description="Como o lead disse (ex.: 500 hambúrgueres/dia).")
    volume_per_day: int | None = Field(
        description="O volume em unidades (ou kg) por dia; por hora = x8 (um turno); null se não der."
    )
    urgency: Urgency | None
    timeline: str | None = Field(description="Prazo da compra, como o lead disse.")
    budget_signal: str | None = Field(description="Sinal de orçamento ou verba citado.")
    decision_role: DecisionRole | None = Field(
        description="decisor decide a compra; influenciador participa/indica; usuario vai operar."
    )
    knows_company: bool | None = Field(description="Se já conhecia a empresa.")
    email: str | None
    phone: str | None = Field(description="Se diferente do WhatsApp.")

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
    "FIELD_LABELS",
    "FieldSource",
    "LeadProfile",
    "LeadUpdate",
    "PROFILE_FIELDS",
    "QUALIFICATION_ORDER",
    "URGENCY_LABELS",
    "describe_lead",
    "display_value",
    "field_label",
    "format_int_br",
    "merge_lead",
    "missing_fields",
]

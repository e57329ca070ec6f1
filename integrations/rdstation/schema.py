"""RD Station Marketing's conversion webhook, read into `FormSubmission`s.

RD Station Marketing posts `{"leads": [...]}` when a lead converts (a form, a landing
page) or is marked an opportunity, as set up in its "Integrações > Webhooks" screen.
Source of the shape: RD Station developers, "Como migrar webhooks?" - "Payload padrão,
API 1.x" (https://developers.rdstation.com/docs/como-migrar-webhooks; the older
https://developers.rdstation.com/pt-BR/migration/webhooks), kept as
tests/fixtures/rdstation/conversion_published_example.json. Everything is optional and
loosely typed on purpose: RD sends numbers and booleans as strings ("3", "false"), each
account adds its own form fields to `content`, and a field we cannot read must not cost
the lead (RD retries the whole POST on any non-2xx, so one odd lead must not fail the
batch: it is skipped and counted instead).

Mapping:
- the form's fields (`content` and the lead's `custom_fields`, RD's `cf_` prefix dropped)
  go through the same rules as any form, prompts/lead_forms.toml (core/form_fields.py):
  its built-in names (nome, email_lead, empresa, cidade, estado, cnpj, segmento,
  produto, volume...) and the company's own `[campos]`, per RD conversion identifier in
  `[formularios."<identificador>"]`; the rest are answers labelled by the rules or by
  the field's name ("quantos_pedidos_por_mes" -> "Quantos pedidos por mes");
- profile: the lead's own `name`, `email`, `company`, `city`, `state` win over the form's;
- phone: `mobile_phone`, `personal_phone`, then the form's whatsapp/celular/telefone (and
  a field the company mapped to the phone); the first one that is a number with area
  code (the store refuses a lead without one);
- answers: the job title as "Cargo", then the form's other fields;
- attribution: `content.identificador` as the conversion identifier, the conversion's
  `conversion_origin` (source, medium, campaign, value) as utm_source/medium/campaign/term,
  or the form's own utm_* / traffic_* fields;
- id: `<lead uuid or id>:<conversion created_at or identificador>`, so RD resending the
  same conversion is a duplicate and a new conversion of the same person is a new form
  (for the same lead: the lead is keyed by the phone).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from core.form_fields import FormFieldMap
from core.forms import (
    MAX_ANSWER_CHARS,
    MAX_FORM_ANSWERS,
    UTM_FIELDS,
    FormAnswer,
    FormAttribution,
    FormSource,
    FormSubmission,
)
from core.lead_fields import normalize_phone

# RD Station is a Brazilian product: a date without an offset is São Paulo's wall time.
RD_TIMEZONE = ZoneInfo("America/Sao_Paulo")
MAX_FIELD_CHARS = 500
MAX_MESSAGE_CHARS = 4000
MAX_EXTERNAL_ID_CHARS = 200


def _text(value: Any) -> str | None:
    """Any scalar RD sends as text ("3", 3, "false", false); blank, objects and lists
    are "not said"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        text = " ".join(value.split())
        return text or None
    return None


Text = Annotated[str | None, BeforeValidator(_text)]


def _object(value: Any) -> Any:
    return value if isinstance(value, dict) else None


def _mapping(value: Any) -> Any:
    return value if isinstance(value, dict) else {}


class RdModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RdConversionOrigin(RdModel):
    source: Text = None
    medium: Text = None
    value: Text = None
    campaign: Text = None
    channel: Text = None


class RdConversion(RdModel):
    content: Annotated[dict[str, Any], BeforeValidator(_mapping)] = {}
    created_at: Text = None
    cumulative_sum: Text = None
    source: Text = None
    conversion_origin: Annotated[RdConversionOrigin | None, BeforeValidator(_object)] = None


class RdLead(RdModel):
    id: Text = None
    uuid: Text = None
    email: Text = None
    name: Text = None
    company: Text = None
    job_title: Text = None
    created_at: Text = None
    first_conversion: Annotated[RdConversion | None, BeforeValidator(_object)] = None
    last_conversion: Annotated[RdConversion | None, BeforeValidator(_object)] = None
    custom_fields: Annotated[dict[str, Any], BeforeValidator(_mapping)] = {}
    personal_phone: Text = None
    mobile_phone: Text = None
    city: Text = None
    state: Text = None


def _fold(key: str) -> str:
    """`Cidade`, `cidade `, `cf_cidade`, `Órgão` -> `cidade`, `cidade`, `cidade`, `orgao`."""
    decomposed = unicodedata.normalize("NFKD", key.strip().lower())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    plain = "_".join(plain.replace("-", " ").split())
    return plain.removeprefix("cf_")


PHONE_ALIASES = (
    "whatsapp",
    "celular",
    "telefone_celular",
    "mobile_phone",
    "telefone",
    "personal_phone",
    "phone",
)
JOB_TITLE_ALIASES = ("cargo", "job_title")
MESSAGE_ALIASES = ("mensagem", "message", "comentario", "comentarios", "observacoes", "duvida")
PAGE_URL_ALIASES = ("page_url", "form_url", "conversion_url", "url")
# RD's and the page script's own bookkeeping in `content`: never a question the lead answered.
TRACKING_KEYS = frozenset(
    {
        "identificador",
        "token_rdstation",
        "c_utmz",
        "client_id",
        "redirect_to",
        "legal_bases",
        "conversion_identifier",
    }
)
TRACKING_PREFIXES = ("_", "traffic_", "utm_", "__")


@dataclass(frozen=True)
class RdBatch:
    """What one POST holds: the forms read, and a reason per lead that is not one."""

    submissions: list[FormSubmission] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class RdPayloadError(ValueError):
    """The body is not RD Station's `{"leads": [...]}` at all (a 422: nothing to retry)."""


def parse_rdstation_batch(
    payload: Any, *, received_at: datetime, fields: FormFieldMap | None = None
) -> RdBatch:
    """Every lead of the POST that can be a form; the others skipped with a reason.
    `received_at` stands in for a conversion without a readable date; `fields`: the
    company's prompts/lead_forms.toml (the built-in names without it)."""
    rules = fields if fields is not None else FormFieldMap()
    if not isinstance(payload, dict) or not isinstance(payload.get("leads"), list):
        raise RdPayloadError('expected RD Station\'s conversion webhook body: {"leads": [...]}')
    batch = RdBatch()
    for index, raw in enumerate(payload["leads"]):
        if not isinstance(raw, dict):
            batch.skipped.append(f"leads[{index}] is not an object")
            continue
        try:
            lead = RdLead.model_validate(raw)
            batch.submissions.append(_submission(lead, raw, received_at, rules))
        except ValidationError as exc:  # a value no form can hold (lengths, types)
            unusable = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            batch.skipped.append(f"leads[{index}]: unusable {', '.join(unusable)[:200]}")
    return batch


def parse_rdstation_conversion(
    payload: Any, *, received_at: datetime, fields: FormFieldMap | None = None
) -> list[FormSubmission]:
    """The forms of an RD Station Marketing conversion webhook (see the module doc);
    raises `RdPayloadError` when the body is not one."""
    return parse_rdstation_batch(payload, received_at=received_at, fields=fields).submissions


class _Content:
    """The conversion's form fields by folded name, and which of them were used."""

    def __init__(self, *sources: dict[str, Any]) -> None:
        self.values: dict[str, tuple[str, str]] = {}  # folded -> (original name, text)
        for source in sources:
            for key, value in source.items():
                text = _answer_text(value)
                folded = _fold(str(key))
                if text is not None and folded and folded not in self.values:
                    self.values[folded] = (str(key), text)
        self.used: set[str] = set()

    def pick(self, aliases: tuple[str, ...]) -> str | None:
        for alias in aliases:
            if alias in self.values:
                self.used.add(alias)
                return self.values[alias][1]
        return None

    def all_of(self, aliases: tuple[str, ...]) -> list[str]:
        found = [self.values[a][1] for a in aliases if a in self.values]
        self.used.update(a for a in aliases if a in self.values)
        return found

    def rest(self) -> list[tuple[str, str]]:
        """The fields nothing took yet, named without RD's `cf_` (custom field) prefix."""
        return [
            (name[3:] if name.lower().startswith("cf_") else name, text)
            for folded, (name, text) in self.values.items()
            if folded not in self.used
            and folded not in TRACKING_KEYS
            and not folded.startswith(TRACKING_PREFIXES)
        ]


def _answer_text(value: Any) -> str | None:
    if isinstance(value, list):  # a multiple-choice field
        parts = [t for t in (_text(v) for v in value) if t]
        return ", ".join(parts) or None
    return _text(value)


def _submission(
    lead: RdLead, raw: dict[str, Any], received_at: datetime, fields: FormFieldMap
) -> FormSubmission:
    conversion = lead.last_conversion or lead.first_conversion or RdConversion()
    content = _Content(conversion.content, lead.custom_fields)
    # RD's own parts of the form first (taken, so never an answer): where the lead came
    # from, their message, their job title and every phone-like field.
    attribution = _attribution(conversion, content)
    message = content.pick(MESSAGE_ALIASES)
    said_title = content.pick(JOB_TITLE_ALIASES)  # taken either way: never a second "Cargo"
    job_title = lead.job_title or said_title
    phones = [p for p in (lead.mobile_phone, lead.personal_phone) if p] + content.all_of(PHONE_ALIASES)
    mapped = fields.map(attribution.conversion_identifier, content.rest())
    if mapped.form_name:
        attribution = attribution.model_copy(update={"form_name": mapped.form_name})
    own = {
        "name": lead.name,
        "email": lead.email,
        "company": lead.company,
        "city": lead.city,
        "state": lead.state,
    }
    said = {**mapped.profile, **{name: value for name, value in own.items() if value}}
    profile = {name: value[:MAX_FIELD_CHARS] for name, value in said.items()}
    if mapped.phone:
        phones.append(mapped.phone)
    answers: list[FormAnswer] = []
    if job_title:
        answers.append(FormAnswer(question="Cargo", answer=job_title[:MAX_ANSWER_CHARS]))
    answers += mapped.answers[: MAX_FORM_ANSWERS - len(answers)]
    return FormSubmission(
        source=FormSource.RDSTATION,
        external_id=_external_id(lead, conversion, raw),
        submitted_at=_conversion_time(conversion.created_at or lead.created_at, received_at),
        phone=_best_phone(phones),
        profile=profile,
        answers=answers,
        attribution=attribution,
        message=message[:MAX_MESSAGE_CHARS] if message else None,
    )


def _attribution(conversion: RdConversion, content: _Content) -> FormAttribution:
    origin = conversion.conversion_origin or RdConversionOrigin()
    utm = {key: content.pick((key,)) for key in UTM_FIELDS}
    return FormAttribution(
        conversion_identifier=content.pick(("identificador", "conversion_identifier")) or conversion.source,
        page_url=content.pick(PAGE_URL_ALIASES),
        utm_source=origin.source or utm["utm_source"] or content.pick(("traffic_source",)),
        utm_medium=origin.medium or utm["utm_medium"] or content.pick(("traffic_medium",)),
        utm_campaign=origin.campaign or utm["utm_campaign"] or content.pick(("traffic_campaign",)),
        utm_term=utm["utm_term"] or origin.value or content.pick(("traffic_value",)),
        utm_content=utm["utm_content"],
    )


def _best_phone(candidates: list[str]) -> str | None:
    """The first number one can dial back (with area code); else the first given, so
    the refusal names a bad number rather than a missing one."""
    for candidate in candidates:
        try:
            if normalize_phone(candidate):
                return candidate
        except ValueError:
            continue
    return candidates[0] if candidates else None


def _external_id(lead: RdLead, conversion: RdConversion, raw: dict[str, Any]) -> str:
    who = lead.uuid or lead.id or lead.email
    which = conversion.created_at or _text(conversion.content.get("identificador")) or conversion.source
    if who and which:
        composed = f"{who}:{which}"
        if len(composed) <= MAX_EXTERNAL_ID_CHARS:
            return composed
    # No id to go by: the lead's own JSON, so the same POST resent is still one form.
    canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _conversion_time(value: str | None, received_at: datetime) -> datetime:
    """When the lead converted (so a conversion RD retried for hours is not answered as
    fresh); never later than its arrival, and the arrival when unreadable."""
    if value:
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return received_at
        if at.tzinfo is None:
            at = at.replace(tzinfo=RD_TIMEZONE)
        return min(at, received_at)
    return received_at

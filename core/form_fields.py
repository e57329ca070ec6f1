"""Which answer of a lead form fills which field of the lead profile: prompts/lead_forms.toml.

A Meta Lead Ads form answers as `field_data`, a list of `{name, values}`: `name` is
Meta's key for a standard question (`full_name`, `phone_number`, `email`, `city`...,
https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving) or the key
the advertiser gave a custom question (often the question itself, in Portuguese). The
standard keys and the usual Portuguese names work with no configuration; a company maps
its own custom questions in prompts/lead_forms.toml, globally (`[campos]`) or per form
(`[formularios."<form_id>"]`). Whatever maps to no profile field is kept as a
`FormAnswer`, so nothing the lead wrote is lost.

Values stay as the lead typed them: normalising (phone digits, UF, CNPJ) is the profile
merge's job (core/lead.py), which drops what is not valid. Pure: no I/O except reading
the TOML file `load_form_field_map` is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from core.config_files import read_toml
from core.forms import MAX_ANSWER_CHARS, MAX_FORM_ANSWERS, FormAnswer
from core.lead import PROFILE_FIELDS
from core.lead_fields import fold

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "lead_forms.toml"

MAX_QUESTION_CHARS = 200

# Special destinations besides the profile's fields.
IGNORE = "ignore"  # the answer is dropped
ANSWER = "answer"  # kept as a question/answer for the agent and the sellers
FIRST_NAME = "first_name"  # joined with LAST_NAME into `name`
LAST_NAME = "last_name"
PHONE = "phone"  # the lead's number: MappedForm.phone, the first touch's address

# What a company may write in the TOML, in Portuguese or as the profile's own field name.
_TARGET_WORDS: dict[str, str] = {
    **{name: name for name in PROFILE_FIELDS},
    "ignorar": IGNORE,
    "resposta": ANSWER,
    "nome": "name",
    "primeiro_nome": FIRST_NAME,
    "sobrenome": LAST_NAME,
    "telefone": PHONE,
    "whatsapp": PHONE,
    "e_mail": "email",
    "empresa": "company",
    "cidade": "city",
    "estado": "state",
    "uf": "state",
    "segmento": "segment",
    "produto": "product_interest",
    "volume_por_dia": "volume_per_day",
    "urgencia": "urgency",
    "prazo": "timeline",
    "orcamento": "budget_signal",
    "papel_na_decisao": "decision_role",
    "conhece_a_empresa": "knows_company",
}
_TARGETS = frozenset(_TARGET_WORDS.values())

# Meta's keys for the standard (prefill) questions of an Instant Form, and the names
# Brazilian forms commonly give their questions. Keys are slugs (see `field_key`).
_BUILTIN_FIELDS: dict[str, str] = {
    # Meta standard questions
    "full_name": "name",
    "first_name": FIRST_NAME,
    "last_name": LAST_NAME,
    "email": "email",
    "work_email": "email",
    "phone_number": PHONE,
    "phone": PHONE,
    "work_phone_number": PHONE,
    "city": "city",
    "state": "state",
    "province": "state",
    "company_name": "company",
    # Portuguese names
    "nome": "name",
    "nome_completo": "name",
    "seu_nome": "name",
    "primeiro_nome": FIRST_NAME,
    "sobrenome": LAST_NAME,
    "ultimo_nome": LAST_NAME,
    "telefone": PHONE,
    "celular": PHONE,
    "whatsapp": PHONE,
    "telefone_celular": PHONE,
    "telefone_whatsapp": PHONE,
    "numero_de_telefone": PHONE,
    "numero_do_whatsapp": PHONE,
    "fone": PHONE,
    "e_mail": "email",
    "email_corporativo": "email",
    "empresa": "company",
    "nome_da_empresa": "company",
    "razao_social": "company",
    "cidade": "city",
    "estado": "state",
    "uf": "state",
    "produto": "product_interest",
    "produto_de_interesse": "product_interest",
    "cnpj": "cnpj",
    "cnpj_da_empresa": "cnpj",
    "segmento": "segment",
    "ramo": "segment",
    "ramo_de_atividade": "segment",
    "volume": "volume",
    # English names some page builders (and RD Station's forms) give their fields
    "email_lead": "email",
    "name": "name",
    "company": "company",
    "segment": "segment",
    "product": "product_interest",
}

# Standard questions the profile has no field for: kept as answers, labelled in pt-BR.
_BUILTIN_LABELS: dict[str, str] = {
    "job_title": "Cargo",
    "cargo": "Cargo",
    "work_email": "E-mail de trabalho",
    "work_phone_number": "Telefone comercial",
    "zip_code": "CEP",
    "zip": "CEP",
    "post_code": "CEP",
    "postal_code": "CEP",
    "cep": "CEP",
    "street_address": "Endereço",
    "country": "País",
    "date_of_birth": "Data de nascimento",
    "dob": "Data de nascimento",
    "gender": "Gênero",
    "marital_status": "Estado civil",
    "relationship_status": "Estado civil",
    "military_status": "Situação militar",
    "id_cpf": "CPF",
    "cpf": "CPF",
}


class FormFieldsError(ValueError):
    """prompts/lead_forms.toml is missing, malformed or names an unknown destination."""


def field_key(name: str) -> str:
    """How a form's field name is matched: lower case, no accents, runs of anything but
    letters and digits as one "_" ("E-mail" and "e_mail", "Telefone (WhatsApp)" and
    "telefone_whatsapp" are the same key)."""
    return re.sub(r"[^a-z0-9]+", "_", fold(name)).strip("_")


def question_text(name: str) -> str:
    """A custom question's text when nobody labelled it: Meta's key with underscores as
    spaces, first letter capitalised ("qual_o_seu_segmento?" -> "Qual o seu segmento?")."""
    text = " ".join(name.replace("_", " ").split())
    return (text[:1].upper() + text[1:])[:MAX_QUESTION_CHARS]


@dataclass(frozen=True)
class FormRules:
    """One form's overrides (`[formularios."<form_id>"]`)."""

    name: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MappedForm:
    """A form's answers sorted out: `profile` keyed by `LeadProfile` field names, the raw
    `phone` the lead typed, and every other answer as a question/answer."""

    profile: dict[str, str]
    phone: str | None
    answers: list[FormAnswer]
    form_name: str | None = None


@dataclass(frozen=True)
class FormFieldMap:
    """The company's rules on top of the built-in names; the empty map is the built-ins."""

    fields: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    forms: Mapping[str, FormRules] = field(default_factory=dict)

    def _target(self, key: str, rules: FormRules | None) -> str:
        if rules is not None and key in rules.fields:
            return rules.fields[key]
        if key in self.fields:
            return self.fields[key]
        if key in _BUILTIN_FIELDS:
            return _BUILTIN_FIELDS[key]
        return ANSWER

    def _label(self, key: str, name: str, rules: FormRules | None) -> str:
        if rules is not None and key in rules.labels:
            return rules.labels[key]
        if key in self.labels:
            return self.labels[key]
        return _BUILTIN_LABELS.get(key) or question_text(name) or "Pergunta"

    def map(self, form_id: str | None, fields: Iterable[tuple[str, str]]) -> MappedForm:
        """Sort one form's `(field name, value)` pairs. The first value for a profile
        field wins; a later one for the same field (a work e-mail after the e-mail) is
        kept as an answer rather than lost. `full_name` wins over first + last name."""
        rules = self.forms.get(form_id.strip()) if form_id else None
        profile: dict[str, str] = {}
        phone: str | None = None
        first: str | None = None
        last: str | None = None
        answers: list[FormAnswer] = []

        def keep(key: str, name: str, value: str) -> None:
            if len(answers) < MAX_FORM_ANSWERS:
                answers.append(
                    FormAnswer(question=self._label(key, name, rules), answer=value[:MAX_ANSWER_CHARS])
                )

        for name, raw in fields:
            value = raw.strip()
            if not value:
                continue
            key = field_key(name)
            target = self._target(key, rules)
            if target == IGNORE:
                continue
            if target == PHONE:
                if phone is None:
                    phone = value
                else:
                    keep(key, name, value)
            elif target == FIRST_NAME and first is None:
                first = value
            elif target == LAST_NAME and last is None:
                last = value
            elif target in PROFILE_FIELDS and target not in profile:
                profile[target] = value
            else:
                keep(key, name, value)

        if "name" not in profile:
            joined = " ".join(part for part in (first, last) if part)
            if joined:
                profile["name"] = joined
        return MappedForm(
            profile=profile, phone=phone, answers=answers, form_name=rules.name if rules else None
        )


# --------------------------------------------------------------------------------------
# Loading prompts/lead_forms.toml
# --------------------------------------------------------------------------------------


def _table(value: Any, where: str, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormFieldsError(f"{path}: {where} must be a table ([{where}])")
    return value


def _fields(table: dict[str, Any], where: str, path: Path) -> dict[str, str]:
    known = ", ".join(sorted(w for w in _TARGET_WORDS if w not in PROFILE_FIELDS))
    out: dict[str, str] = {}
    for name, value in table.items():
        key = field_key(name)
        if not key:
            raise FormFieldsError(f"{path}: [{where}] has an empty field name {name!r}")
        if not isinstance(value, str):
            raise FormFieldsError(f'{path}: [{where}] {name} must be text, e.g. {name} = "empresa"')
        target = _TARGET_WORDS.get(field_key(value))
        if target is None:
            raise FormFieldsError(
                f"{path}: [{where}] {name} = {value!r} is not a destination; use one of: {known}"
            )
        if out.get(key, target) != target:
            raise FormFieldsError(f"{path}: [{where}] maps {name!r} twice, to different destinations")
        out[key] = target
    return out


def _labels(table: dict[str, Any], where: str, path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in table.items():
        if not isinstance(value, str) or not value.strip():
            raise FormFieldsError(f"{path}: [{where}] {name} must be the question's text")
        if len(value.strip()) > MAX_QUESTION_CHARS:
            raise FormFieldsError(f"{path}: [{where}] {name} is longer than {MAX_QUESTION_CHARS} characters")
        out[field_key(name)] = " ".join(value.split())
    return out


def parse_form_field_map(data: Mapping[str, Any], path: Path = DEFAULT_PATH) -> FormFieldMap:
    """The rules in an already-read TOML document; `path` only names the file in errors."""
    unknown = sorted(set(data) - {"campos", "rotulos", "formularios"})
    if unknown:
        raise FormFieldsError(
            f'{path}: unknown section(s) {", ".join(unknown)}; expected [campos], [rotulos], [formularios."<id>"]'
        )
    fields = _fields(_table(data.get("campos"), "campos", path), "campos", path)
    labels = _labels(_table(data.get("rotulos"), "rotulos", path), "rotulos", path)
    forms: dict[str, FormRules] = {}
    for form_id, raw in _table(data.get("formularios"), "formularios", path).items():
        where = f'formularios."{form_id}"'
        body = _table(raw, where, path)
        extra = sorted(set(body) - {"nome", "campos", "rotulos"})
        if extra:
            raise FormFieldsError(
                f"{path}: [{where}] has unknown key(s) {', '.join(extra)}; expected nome, campos, rotulos"
            )
        name = body.get("nome")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise FormFieldsError(f"{path}: [{where}] nome must be the form's name, as text")
        forms[form_id.strip()] = FormRules(
            name=name.strip() if isinstance(name, str) else None,
            fields=MappingProxyType(
                _fields(_table(body.get("campos"), f"{where}.campos", path), f"{where}.campos", path)
            ),
            labels=MappingProxyType(
                _labels(_table(body.get("rotulos"), f"{where}.rotulos", path), f"{where}.rotulos", path)
            ),
        )
    return FormFieldMap(
        fields=MappingProxyType(fields), labels=MappingProxyType(labels), forms=MappingProxyType(forms)
    )


def load_form_field_map(path: Path = DEFAULT_PATH) -> FormFieldMap:
    """prompts/lead_forms.toml as rules; FormFieldsError (naming the file) when broken."""
    data = read_toml(path, what="lead forms", error=FormFieldsError)
    return parse_form_field_map(data, path)


__all__ = [
    "DEFAULT_PATH",
    "FormFieldMap",
    "FormFieldsError",
    "FormRules",
    "MappedForm",
    "field_key",
    "load_form_field_map",
    "parse_form_field_map",
    "question_text",
]

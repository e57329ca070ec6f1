"""PipeRun's records as it answers them, and the bodies we send.

Sources: PipeRun API v1 reference (https://developers.pipe.run/reference), read from the
OpenAPI export kept in github.com/LesserWords/n8n-nodes-piperun-openapi
`schemas/latest.Piperun.openapi.json` (fetched 2026-04-30). Every answer is an envelope
`{"success": true, "message": "OK"|"Created", "data": ..., "meta": {"cursor": {"next":
...}}}`; [adicionar-empresa]'s documented 201 carries `data` as a LIST holding the
company. Response models are frozen: what PipeRun said is not edited on our side.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Deal status codes of [listar-oportunidades].
DEAL_STATUS_OPEN = 0
# Our temperatures -> PipeRun's deal temperature (1 muito quente, 2 quente, 3 morna, 4 fria).
DEAL_TEMPERATURE = {"quente": 2, "morno": 3, "frio": 4}

# --- response models --------------------------------------------------------------------
# PipeRun adds fields freely and answers ids as numbers or strings: unknown keys are
# ignored and ids coerced.


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _collect(raw: Any, key: str) -> list[str]:
    """Values of `key` from a PipeRun contact relation: a list of objects/strings, or one object."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, dict):
            value = item.get(key)
            if isinstance(value, (str, int)) and str(value).strip():
                out.append(str(value).strip())
        elif isinstance(item, (str, int)) and str(item).strip():
            out.append(str(item).strip())
    return out


class PipeRunPerson(_Model):
    id: int
    name: str | None = None
    owner_id: int | None = None
    manager_id: int | None = None
    company_id: int | None = None
    external_code: str | None = None
    # Where we write our reference (see PersonCreate): re-checked on every search hit.
    observation: str | None = None
    # Filled from `contactPhones` (with=contactPhones), `contact_phones` (documented list
    # example: one object) or a flat `phone`.
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _contacts(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        phones: list[str] = []
        for key in ("contactPhones", "contact_phones", "phones", "phone"):
            phones += _collect(data.get(key), "phone")
        emails: list[str] = []
        for key in ("contactEmails", "contact_emails", "emails", "email"):
            emails += _collect(data.get(key), "email")
        data["phones"], data["emails"] = phones, emails
        if data.get("external_code") is not None:
            data["external_code"] = str(data["external_code"])
        return data


class PipeRunCompany(_Model):
    id: int
    name: str | None = None
    company_name: str | None = None
    cnpj: str | None = None
    external_code: str | None = None

    @field_validator("external_code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> Any:
        return None if value is None else str(value)


class PipeRunDeal(_Model):
    id: int
    title: str | None = None
    pipeline_id: int | None = None
    stage_id: int | None = None
    person_id: int | None = None
    company_id: int | None = None
    status: int | None = None
    deleted: bool | None = None
    reference: str | None = None

    @field_validator("deleted", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        return None if value == "" else value


class PipeRunNote(_Model):
    id: int
    deal_id: int | None = None
    text: str | None = None


RecordT = TypeVar("RecordT", bound=_Model)


# --- request payloads -------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class PersonCreate(_Payload):
    """[adicionar-pessoa] POST /persons: only fields of its body schema.

    The schema has no owner: `manager_id` ("ID do CS Responsável da pessoa") is the
    person's responsible user, so PIPERUN_OWNER_ID goes there. It has no
    `external_code` either (only a filter of [listar-pessoas]), so our reference goes in
    `observation`, which is both a body field and a documented filter.
    contactPhones/contactEmails are arrays of strings."""

    name: str = Field(min_length=1)
    contact_phones: list[str] | None = Field(default=None, alias="contactPhones")
    contact_emails: list[str] | None = Field(default=None, alias="contactEmails")
    company_id: int | None = None
    manager_id: int | None = None
    observation: str | None = None


class PersonUpdate(_Payload):
    """[atualizar-pessoa] PUT /persons/{person_id}: the fields the erasure blanks."""

    name: str | None = None
    contact_phones: list[str] | None = Field(default=None, alias="contactPhones")
    contact_emails: list[str] | None = Field(default=None, alias="contactEmails")
    observation: str | None = None


class CompanyCreate(_Payload):
    """[adicionar-empresa] POST /companies: no owner field at all (only a CS
    `manager_id`), and `external_code` is documented both here and as a filter."""

    name: str = Field(min_length=1)
    cnpj: str | None = None
    external_code: str | None = None


class DealCreate(_Payload):
    pipeline_id: int
    stage_id: int
    title: str = Field(min_length=1)
    person_id: int | None = None
    company_id: int | None = None
    origin_id: int | None = None
    owner_id: int | None = None
    temperature: int | None = None
    reference: str | None = None


class DealUpdate(_Payload):
    """[atualizar-oportunidade] PUT /deals/{deal_id}: only what we ever change."""

    title: str | None = Field(default=None, min_length=1)


class NoteCreate(_Payload):
    text: str = Field(min_length=1)
    deal_id: int


class NoteUpdate(_Payload):
    """[atualizar-nota] PUT /notes/{note_id}."""

    text: str


# --- envelope helpers -------------------------------------------------------------------


def _data(payload: Any) -> Any:
    if isinstance(payload, dict) and "data" in payload:
        return payload["data"]
    return payload


def envelope_records(payload: Any) -> list[dict[str, Any]]:
    data = _data(payload)
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return [item for item in data if isinstance(item, dict)]
    return []


def envelope_cursor(payload: Any) -> str | None:
    meta = payload.get("meta") if isinstance(payload, dict) else None
    cursor = meta.get("cursor") if isinstance(meta, dict) else None
    nxt = cursor.get("next") if isinstance(cursor, dict) else None
    return nxt if isinstance(nxt, str) and nxt else None


__all__ = [
    "DEAL_STATUS_OPEN",
    "DEAL_TEMPERATURE",
    "CompanyCreate",
    "DealCreate",
    "DealUpdate",
    "NoteCreate",
    "NoteUpdate",
    "PersonCreate",
    "PersonUpdate",
    "PipeRunCompany",
    "PipeRunDeal",
    "PipeRunNote",
    "PipeRunPerson",
    "RecordT",
    "envelope_cursor",
    "envelope_records",
]

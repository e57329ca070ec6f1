"""PipeRun CRM client and the idempotent "hot lead -> deal" sync.

Standalone building block for the CRM issue: it talks HTTP and decides what to create;
persisting the ids, ordering per lead and retrying belong to the caller (the outbox).

Sources. PipeRun API v1 reference (https://developers.pipe.run/reference), read from the
OpenAPI export kept in github.com/LesserWords/n8n-nodes-piperun-openapi
`schemas/latest.Piperun.openapi.json` (fetched 2026-04-30); operationIds in brackets:
- base `https://api.pipe.run/v1`, auth header `token` (components.securitySchemes.sec0);
- every answer is an envelope `{"success": true, "message": "OK"|"Created", "data": ...,
  "meta": {"cursor": {"next": ...}}}`; failures `{"success": false, "message": "Not
  Found"}` (404) and `{"success": false, "message": "Unprocessable Entity", "data":
  {"<field>": "O campo <field> é obrigatório."}}` (422);
- [listar-pessoas] GET /persons: filters id, company_id, cpf, name, external_code, ...;
  [adicionar-pessoa] POST /persons: `name` required, `contactEmails`/`contactPhones`
  arrays of strings, 201 with the person in `data`;
- [listar-empresas] GET /companies?cnpj= ("XXXXXXXX0001XX" or "XX.XXX.XXX/0001-XX") and
  ?name=; [adicionar-empresa] POST /companies: `name` required, `cnpj`; its documented 201
  carries `data` as a LIST holding the company;
- [listar-oportunidades] GET /deals?person_id=&pipeline_id=&status= (0 open, 1 won,
  3 lost); [adicionar-oportunidade] POST /deals: pipeline_id, stage_id, title required;
  person_id, company_id, origin_id, owner_id, `reference` ("referência para integração
  com outros sistemas"), temperature (1 muito quente, 2 quente, 3 morna, 4 fria);
  [atualizar-oportunidade] PUT /deals/{deal_id};
- [adicionar-nota] POST /notes {text, deal_id}; [listar-notas] GET /notes?deal_id=;
  [atualizar-nota] PUT /notes/{note_id} {text}.

Who a lead is in the CRM. Existing people (and through them their open deals) are
matched only on identity nobody could type: our own external code, and the WhatsApp
number the provider reported for the chat. What the lead TYPED (a phone, an e-mail, in
the profile) is written onto the lead's own person as data and never looked up: a
stranger who types a customer's phone must not be posted on that customer's deal, and a
later "deal won" on it must not become the stranger's Purchase. A person we created for
another lead (another `sdr-` code) is never matched by phone either, since its phones
may be what that lead typed. The worst case is a duplicate person a seller can merge.

Not in that reference, so taken from public integrations and treated with suspicion:
- GET /persons has no documented phone filter. n8n-nodes-piperun
  (github.com/wallacevasques/n8n-nodes-piperun, nodes/Piperun/Piperun.node.ts) sends
  `email=`; `phone=` is the same convention; `with=contactPhones` returns the person's
  `contactPhones[].phone` (public scripts calling /persons/{id}?with=contactPhones). A
  server that ignored an unknown filter would answer with unrelated people, so EVERY
  hit is checked here against the number before it is used.
- `external_code` on POST /persons is set by public integrations that dedupe on it
  (GET /persons?external_code= is documented); we set a hash of the contact key, so a
  person we created is found again even when the phone filter does not work.
- Notes are HTML: public integrations join note lines with `<br>`, so values are
  escaped and lines joined the same way.
- Rate limit: ~100 requests/minute per account (n8n-nodes-piperun's notes) -> 429.

One attempt per call: every failure is a `PipeRunError` whose
`retryable` tells the outbox whether to try again. The token, phone numbers and e-mail
addresses never appear in logs or error texts (phones are masked like `mask_phone`).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.config_files import read_toml
from core.lead import (
    PROFILE_FIELDS,
    LeadProfile,
    describe_lead,
    display_value,
    field_label,
    fold,
    format_cnpj,
    normalize_cnpj,
)
from core.models import WHATSAPP_CHANNELS, mask_contact_key, mask_phone
from core.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from core.records import LeadRecord
    from core.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_API_URL = "https://api.pipe.run/v1"
DEFAULT_TEXTS_PATH = PROJECT_ROOT / "prompts" / "piperun.toml"

# Deal status codes of [listar-oportunidades].
DEAL_STATUS_OPEN = 0
# Our temperatures -> PipeRun's deal temperature (1 muito quente, 2 quente, 3 morna, 4 fria).
DEAL_TEMPERATURE = {"quente": 2, "morno": 3, "frio": 4}
# Notes are rendered as HTML by PipeRun (see module docstring).
NOTE_LINE_BREAK = "<br>"

_ERROR_DETAIL_MAX = 200
_TITLE_MAX = 150
# PipeRun's page size cap is 200 ("show"); a deal with more notes than this is rare.
_NOTES_PAGE = 200
_NOTES_MAX_PAGES = 5


class PipeRunError(Exception):
    """A PipeRun call failed. `retryable`: 429/5xx/timeouts/transport; `auth_failed`: 401/403.
    The outbox policy reads `retryable` (integrations never import channel types).

    `retry_after_s` carries a 429's Retry-After so the outbox can wait at least that long.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        auth_failed: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.auth_failed = auth_failed
        self.retry_after_s = retry_after_s


# --- PII helpers ------------------------------------------------------------------------


def _digits(value: str | None) -> str:
    return "".join(ch for ch in (value or "") if ch.isdigit())


_EMAIL_IN_TEXT = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
_DIGIT_RUN = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def _redact(text: str) -> str:
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


def _email_key(value: str | None) -> str | None:
    text = (value or "").strip().lower().removeprefix("mailto:")
    return text if "@" in text else None


def _cnpj_key(value: str | None) -> str | None:
    raw = re.sub(r"[\s./\-]", "", (value or "").upper())
    return raw or None


EXTERNAL_CODE_PREFIX = "sdr-"


def external_code_for(contact_key: str) -> str:
    """Our id for a lead inside PipeRun: stable, unique, and not personal data.

    Stored as the person's `external_code`, the deal's `reference` and a line of the
    note, so anything we created is found again after a crash lost its id.
    """
    return EXTERNAL_CODE_PREFIX + hashlib.sha256(contact_key.encode("utf-8")).hexdigest()[:20]


def _another_leads_person(person: PipeRunPerson, reference: str) -> bool:
    """We created this person for a different lead: its phones may be what that lead typed."""
    code = (person.external_code or "").strip()
    return code.startswith(EXTERNAL_CODE_PREFIX) and code != reference


# --- response models --------------------------------------------------------------------
# PipeRun adds fields freely and answers ids as numbers or strings: unknown keys are
# ignored and ids coerced.


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


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
    company_id: int | None = None
    external_code: str | None = None
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


_M = TypeVar("_M", bound=_Model)


# --- request payloads -------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class PersonCreate(_Payload):
    # [adicionar-pessoa] types contactPhones/contactEmails as arrays of strings (its
    # example shows objects; public integrations send strings). `external_code` is not in
    # that body schema but is a documented filter and public integrations set it.
    name: str = Field(min_length=1)
    contact_phones: list[str] | None = Field(default=None, alias="contactPhones")
    contact_emails: list[str] | None = Field(default=None, alias="contactEmails")
    company_id: int | None = None
    owner_id: int | None = None
    external_code: str | None = None


class CompanyCreate(_Payload):
    name: str = Field(min_length=1)
    cnpj: str | None = None
    owner_id: int | None = None
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


class NoteCreate(_Payload):
    text: str = Field(min_length=1)
    deal_id: int


# --- envelope helpers -------------------------------------------------------------------


def _data(payload: Any) -> Any:
    if isinstance(payload, dict) and "data" in payload:
        return payload["data"]
    return payload


def _records(payload: Any) -> list[dict[str, Any]]:
    data = _data(payload)
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return [item for item in data if isinstance(item, dict)]
    return []


def _next_cursor(payload: Any) -> str | None:
    meta = payload.get("meta") if isinstance(payload, dict) else None
    cursor = meta.get("cursor") if isinstance(meta, dict) else None
    nxt = cursor.get("next") if isinstance(cursor, dict) else None
    return nxt if isinstance(nxt, str) and nxt else None


def _error_detail(raw: str) -> str:
    """PipeRun's own words: `message`, plus the per-field texts of a 422's `data`."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.strip()
    if not isinstance(data, dict):
        return raw.strip()
    parts: list[str] = []
    message = data.get("message") or data.get("error")
    if isinstance(message, str) and message.strip():
        parts.append(message.strip())
    fields = data.get("data") if data.get("success") is False else data.get("errors")
    if isinstance(fields, dict):
        for value in fields.values():
            texts = value if isinstance(value, list) else [value]
            parts += [str(t).strip() for t in texts if isinstance(t, (str, int)) and str(t).strip()]
    return "; ".join(parts) if parts else raw.strip()


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


# --- client -----------------------------------------------------------------------------


class PipeRunClient:
    """Thin async client over PipeRun's REST API v1 for one account (one token)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str = DEFAULT_API_URL,
        token: str | SecretStr | None,
        timeout_s: float = 15.0,
    ) -> None:
        self._session = session
        self._base = (api_url or DEFAULT_API_URL).rstrip("/")
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._token = (secret or "").strip()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings, session: aiohttp.ClientSession) -> PipeRunClient:
        return cls(
            session,
            api_url=settings.piperun_api_url,
            token=settings.piperun_api_token,
            timeout_s=settings.http_timeout_s,
        )

    @property
    def configured(self) -> bool:
        return bool(self._token)

    # -- HTTP core ------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._token:
            text = text.replace(self._token, "[REDACTED]")
        return _redact(text)

    async def _request(
        self,
        method: str,
        path: str,
        op: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """One HTTP exchange; the decoded body, or None for a 404 when `missing_ok`."""
        if not self._token:
            raise PipeRunError("piperun is not configured: PIPERUN_API_TOKEN is empty", retryable=False)
        kwargs: dict[str, Any] = {
            "headers": {"token": self._token, "Accept": "application/json"},
            "timeout": self._timeout,
        }
        if params is not None:
            kwargs["params"] = {k: str(v) for k, v in params.items()}
        if json_body is not None:
            kwargs["json"] = json_body
        try:
            async with self._session.request(method, self._base + path, **kwargs) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                raw = await resp.text(errors="replace")
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            raise self._fail(op, PipeRunError(f"piperun {op} timed out", retryable=True)) from None
        except aiohttp.ClientError as exc:
            # The exception text can carry the URL (and its query: a phone); only the class is kept.
            raise self._fail(
                op, PipeRunError(f"piperun {op} transport error: {type(exc).__name__}", retryable=True)
            ) from None

        if status == 404 and missing_ok:
            # PipeRun documents 404 "Not Found" on list endpoints too; for a search it means "none".
            return None
        if not 200 <= status < 300:
            raise self._fail(op, self._http_error(op, status, raw, retry_after))
        if not raw.strip():
            return None
        try:
            payload = json.loads(raw)
        except ValueError:
            raise self._fail(
                op,
                PipeRunError(
                    f"piperun {op} answered HTTP {status} with a non-JSON body",
                    status=status,
                    retryable=False,
                ),
            ) from None
        if isinstance(payload, dict) and payload.get("success") is False:
            detail = self._scrub(_error_detail(raw))[:_ERROR_DETAIL_MAX]
            raise self._fail(
                op, PipeRunError(f"piperun {op} refused: {detail}", status=status, retryable=False)
            )
        return payload

    def _http_error(self, op: str, status: int, raw: str, retry_after: str | None) -> PipeRunError:
        if status == 401:
            return PipeRunError(
                f"piperun {op} failed: HTTP 401, the API token was refused (check PIPERUN_API_TOKEN)",
                status=status,
                retryable=False,
                auth_failed=True,
            )
        detail = self._scrub(_error_detail(raw))[:_ERROR_DETAIL_MAX]
        message = f"piperun {op} failed: HTTP {status}"
        if status == 403:
            message += ", the token's user may not do this (check its PipeRun permissions)"
        if detail:
            message = f"{message}: {detail}"
        return PipeRunError(
            message,
            status=status,
            retryable=status in (408, 425, 429) or status >= 500,
            auth_failed=status == 403,
            retry_after_s=_retry_after(retry_after) if status in (429, 503) else None,
        )

    @staticmethod
    def _fail(op: str, error: PipeRunError) -> PipeRunError:
        log.warning(
            "piperun_request_failed",
            op=op,
            status=error.status,
            retryable=error.retryable,
            auth_failed=error.auth_failed,
        )
        return error

    async def _list(
        self, path: str, op: str, params: Mapping[str, str | int], *, max_pages: int = 1
    ) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        query = dict(params)
        for _ in range(max_pages):
            payload = await self._request("GET", path, op, params=query, missing_ok=True)
            if payload is None:
                break
            records += _records(payload)
            cursor = _next_cursor(payload)
            if cursor is None:
                break
            query["cursor"] = cursor
        return records

    def _one(self, payload: Any, model: type[_M], op: str) -> _M:
        """The created/updated record; a missing id is retryable because sync_lead finds
        whatever was created before creating again."""
        for record in _records(payload):
            try:
                return model.model_validate(record)
            except ValidationError:
                continue
        raise self._fail(
            op, PipeRunError(f"piperun {op}: no record with an id in the response", retryable=True)
        )

    @staticmethod
    def _parse_all(records: list[dict[str, Any]], model: type[_M]) -> list[_M]:
        out: list[_M] = []
        for record in records:
            try:
                out.append(model.model_validate(record))
            except ValidationError:
                continue
        return out

    # -- persons --------------------------------------------------------------------

    async def find_person_by_external_code(self, code: str) -> PipeRunPerson | None:
        code = code.strip()
        if not code:
            return None
        records = await self._list("/persons", "person search", {"external_code": code, "show": 20})
        matches = [p for p in self._parse_all(records, PipeRunPerson) if p.external_code == code]
        return min(matches, key=lambda p: p.id) if matches else None

    async def find_person_by_phone(self, phone: str, *, reference: str) -> PipeRunPerson | None:
        """The oldest person holding this number (any spelling), else None.

        Only ever called with a number the channel verified: a number the lead typed
        could be anybody's. Each spelling of `phone_variants` is one request, in order,
        until one gives a person whose stored number is the same number as the lead's;
        persons we created for another lead (`reference` is this lead's code) are skipped.
        There is deliberately no e-mail search: no channel verifies an address.
        """
        wanted = phone_key(phone)
        if wanted is None:
            return None
        for variant in phone_variants(phone):
            records = await self._list(
                "/persons", "person search", {"phone": variant, "with": "contactPhones", "show": 20}
            )
            matches = [
                p
                for p in self._parse_all(records, PipeRunPerson)
                if any(phone_key(stored) == wanted for stored in p.phones)
                and not _another_leads_person(p, reference)
            ]
            if matches:
                return min(matches, key=lambda p: p.id)
        return None

    async def create_person(self, person: PersonCreate) -> PipeRunPerson:
        payload = await self._request("POST", "/persons", "create person", json_body=person.body())
        return self._one(payload, PipeRunPerson, "create person")

    async def delete_person(self, person_id: int) -> bool:
        """[deletar-pessoa] `DELETE /persons/{person_id}` (204). False when PipeRun no
        longer has the person (404): deleting twice is done, not an error."""
        try:
            await self._request("DELETE", f"/persons/{int(person_id)}", "delete person")
        except PipeRunError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def anonymize_person(self, person_id: int, *, name: str) -> bool:
        """[atualizar-pessoa] `PUT /persons/{person_id}` with the personal fields blanked:
        the name replaced, phones, e-mails and notes emptied, our external code cleared
        (it is a plain hash of the lead's contact). The deals stay for the sales team.
        False when the person no longer exists (404)."""
        body = {
            "name": name,
            "contactPhones": [],
            "contactEmails": [],
            "observation": "",
            "external_code": "",
        }
        try:
            await self._request("PUT", f"/persons/{int(person_id)}", "anonymize person", json_body=body)
        except PipeRunError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- companies ------------------------------------------------------------------

    async def find_company_by_cnpj(self, cnpj: str) -> PipeRunCompany | None:
        wanted = _cnpj_key(cnpj)
        if wanted is None:
            return None
        # Both formats are documented as accepted; companies are stored formatted.
        for spelled in dict.fromkeys((format_cnpj(wanted), wanted)):
            records = await self._list("/companies", "company search", {"cnpj": spelled, "show": 20})
            matches = [c for c in self._parse_all(records, PipeRunCompany) if _cnpj_key(c.cnpj) == wanted]
            if matches:
                return min(matches, key=lambda c: c.id)
        return None

    async def find_company_by_name(self, name: str) -> PipeRunCompany | None:
        """Only an exact (case/accents/spacing-insensitive) name match counts."""
        wanted = fold(" ".join(name.split()))
        if not wanted:
            return None
        records = await self._list(
            "/companies", "company search", {"name": " ".join(name.split()), "show": 20}
        )
        matches = [
            c
            for c in self._parse_all(records, PipeRunCompany)
            if wanted
            in {fold(" ".join((c.name or "").split())), fold(" ".join((c.company_name or "").split()))}
        ]
        return min(matches, key=lambda c: c.id) if matches else None

    async def create_company(self, company: CompanyCreate) -> PipeRunCompany:
        payload = await self._request("POST", "/companies", "create company", json_body=company.body())
        return self._one(payload, PipeRunCompany, "create company")

    # -- deals ----------------------------------------------------------------------

    async def find_open_deal(self, person_id: int, pipeline_id: int) -> PipeRunDeal | None:
        """The person's oldest open deal in the pipeline (filters re-checked on our side)."""
        records = await self._list(
            "/deals",
            "deal search",
            {"person_id": person_id, "pipeline_id": pipeline_id, "status": DEAL_STATUS_OPEN, "show": 50},
        )
        matches = [
            d
            for d in self._parse_all(records, PipeRunDeal)
            if d.person_id == person_id
            and d.pipeline_id == pipeline_id
            and d.status in (DEAL_STATUS_OPEN, None)
            and not d.deleted
        ]
        return min(matches, key=lambda d: d.id) if matches else None

    async def create_deal(self, deal: DealCreate) -> PipeRunDeal:
        payload = await self._request("POST", "/deals", "create deal", json_body=deal.body())
        return self._one(payload, PipeRunDeal, "create deal")

    async def update_deal(self, deal_id: int, fields: Mapping[str, Any]) -> PipeRunDeal | None:
        """PUT only the given fields: stage and owner are the sellers' to move, not ours."""
        payload = await self._request("PUT", f"/deals/{int(deal_id)}", "update deal", json_body=dict(fields))
        records = self._parse_all(_records(payload), PipeRunDeal)
        return records[0] if records else None

    # -- notes ----------------------------------------------------------------------

    async def list_deal_notes(self, deal_id: int) -> list[PipeRunNote]:
        records = await self._list(
            "/notes",
            "note search",
            {"deal_id": int(deal_id), "show": _NOTES_PAGE},
            max_pages=_NOTES_MAX_PAGES,
        )
        return [n for n in self._parse_all(records, PipeRunNote) if n.deal_id in (int(deal_id), None)]

    async def create_note(self, note: NoteCreate) -> PipeRunNote:
        payload = await self._request("POST", "/notes", "create note", json_body=note.body())
        return self._one(payload, PipeRunNote, "create note")

    async def update_note(self, note_id: int, text: str) -> PipeRunNote | None:
        """The updated note, or None when it no longer exists (a seller deleted it)."""
        payload = await self._request(
            "PUT", f"/notes/{int(note_id)}", "update note", json_body={"text": text}, missing_ok=True
        )
        if payload is None:
            return None
        records = self._parse_all(_records(payload), PipeRunNote)
        return records[0] if records else PipeRunNote(id=int(note_id), text=text)


# --- lead card and texts ----------------------------------------------------------------

_CHANNEL_NAMES = {
    "whatsapp": "WhatsApp",
    "zapi": "WhatsApp",
    "waha": "WhatsApp",
    "whatsapp_cloud": "WhatsApp",
    "instagram": "Instagram",
}


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = " ".join(value.split())
        return value or None
    return value


class LeadCard(BaseModel):
    """What the sales team gets in the CRM about one lead; built by the caller from the lead.

    `verified_phone` is the number the WhatsApp provider reported for the chat, the only
    phone that may find an existing CRM person; `phone` and `email` may be what the lead
    typed, written on the lead's own records and never used to find anyone.
    """

    model_config = ConfigDict(extra="ignore")

    contact_key: str = Field(min_length=1)
    channel: str
    verified_phone: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    company: str | None = None
    cnpj: str | None = None
    city: str | None = None
    state: str | None = None
    profile: dict[str, Any] = Field(default_factory=dict)
    score: int | None = None
    temperature: str | None = None
    score_reasons: list[str] = Field(default_factory=list)
    summary: str | None = None
    chatwoot_url: str | None = None

    @field_validator(
        "verified_phone",
        "name",
        "phone",
        "company",
        "city",
        "state",
        "temperature",
        "chatwoot_url",
        mode="before",
    )
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("summary", mode="before")
    @classmethod
    def _strip_summary(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> Any:
        return _email_key(value) if isinstance(value, str) else value

    @field_validator("cnpj", mode="before")
    @classmethod
    def _cnpj(cls, value: Any) -> Any:
        # An invalid CNPJ would create a bogus company record: dropped, not pushed.
        try:
            return normalize_cnpj(value)
        except ValueError:
            return None

    @field_validator("profile", "score_reasons", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any, info: Any) -> Any:
        if value is None:
            return {} if info.field_name == "profile" else []
        return value

    @classmethod
    def from_record(cls, lead: LeadRecord, *, chatwoot_url: str | None = None) -> LeadCard:
        """The card of a stored lead: profile values win over the channel's name/phone for
        what the sellers read; only a WhatsApp lead's provider-reported number is verified."""
        profile = dict(lead.profile or {})
        whatsapp = lead.channel in WHATSAPP_CHANNELS or lead.channel == "whatsapp"
        return cls(
            contact_key=lead.contact_key,
            channel=lead.channel,
            verified_phone=lead.phone if whatsapp else None,
            name=profile.get("name") or lead.name,
            phone=profile.get("phone") or lead.phone,
            email=profile.get("email"),
            company=profile.get("company"),
            cnpj=profile.get("cnpj"),
            city=profile.get("city"),
            state=profile.get("state"),
            profile=profile,
            score=lead.score,
            temperature=lead.temperature,
            score_reasons=list(lead.score_reasons or []),
            summary=lead.summary,
            chatwoot_url=chatwoot_url,
        )

    @property
    def channel_name(self) -> str:
        channel = self.channel or self.contact_key.partition(":")[0]
        return _CHANNEL_NAMES.get(channel.lower(), channel.capitalize())


class CrmLink(BaseModel):
    """Where a lead lives in PipeRun; the caller persists it after every change."""

    model_config = ConfigDict(extra="ignore")

    person_id: int | None = None
    company_id: int | None = None
    deal_id: int | None = None
    note_id: int | None = None


class PipeRunTextsError(ValueError):
    """prompts/piperun.toml is unusable; raised at load so a typo never reaches the CRM."""


_PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
NOTE_PLACEHOLDERS = frozenset(
    {"lead", "canal", "temperatura", "pontuacao", "motivos", "perfil", "resumo", "conversa", "referencia"}
)
_TEXT_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "deal_title": frozenset({"lead", "canal", "temperatura"}),
    "person_without_name": frozenset({"canal"}),
    "company_without_name": frozenset({"cnpj"}),
    "note": NOTE_PLACEHOLDERS,
}
# Without {referencia} a note could not be found again after a lost id: a second note.
_REQUIRED = {"note": frozenset({"referencia"})}


@dataclass(frozen=True, slots=True)
class PipeRunTexts:
    deal_title: str
    person_without_name: str
    company_without_name: str
    note: str


def load_piperun_texts(path: Path | str | None = None) -> PipeRunTexts:
    """Read and check prompts/piperun.toml; any problem names the file and the key."""
    file = Path(path) if path is not None else DEFAULT_TEXTS_PATH
    data = read_toml(file, what="PipeRun texts", error=PipeRunTextsError)
    values: dict[str, str] = {}
    for key, allowed in _TEXT_PLACEHOLDERS.items():
        text = data.get(key)
        if not isinstance(text, str) or not text.strip():
            raise PipeRunTextsError(f"{file}: '{key}' is required and must be text")
        used = set(_PLACEHOLDER_RE.findall(text))
        unknown = used - allowed
        if unknown:
            raise PipeRunTextsError(
                f"{file}: '{key}' has unknown placeholder(s) {sorted('{' + u + '}' for u in unknown)}; "
                f"allowed: {sorted('{' + a + '}' for a in allowed)}"
            )
        missing = _REQUIRED.get(key, frozenset()) - used
        if missing:
            raise PipeRunTextsError(f"{file}: '{key}' must contain {sorted('{' + m + '}' for m in missing)}")
        values[key] = text.strip()
    return PipeRunTexts(**values)


@lru_cache(maxsize=1)
def _default_texts() -> PipeRunTexts:
    return load_piperun_texts()


def _fill(template: str, values: Mapping[str, str]) -> str:
    """One pass over a closed list of names: braces inside values are never interpreted."""
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _lead_label(card: LeadCard, texts: PipeRunTexts) -> str:
    if card.name and card.company:
        return f"{card.name} ({card.company})"
    return card.name or card.company or _fill(texts.person_without_name, {"canal": card.channel_name})


def _profile_lines(card: LeadCard) -> list[str]:
    """ "Label: value" lines, the same wording as the Chatwoot card (describe_lead)."""
    merged: dict[str, Any] = {
        k: v for k, v in card.profile.items() if k != "provenance" and v is not None and v != ""
    }
    for name in ("name", "phone", "email", "company", "cnpj", "city", "state"):
        if merged.get(name) is None and getattr(card, name) is not None:
            merged[name] = getattr(card, name)
    known = {k: v for k, v in merged.items() if k in PROFILE_FIELDS}
    try:
        lines = describe_lead(LeadProfile.model_validate(known))
    except ValidationError:
        lines = [f"{field_label(k)}: {display_value(k, v)}" for k, v in known.items()]
    extras = sorted(k for k in merged if k not in PROFILE_FIELDS and not isinstance(merged[k], (dict, list)))
    return lines + [f"{field_label(k)}: {display_value(k, merged[k])}" for k in extras]


def render_deal_title(card: LeadCard, texts: PipeRunTexts | None = None) -> str:
    texts = texts or _default_texts()
    values = {
        "lead": _lead_label(card, texts),
        "canal": card.channel_name,
        "temperatura": card.temperature or "",
    }
    title = " ".join(_fill(texts.deal_title, values).split())
    return title[:_TITLE_MAX] or _lead_label(card, texts)


def render_note(card: LeadCard, *, reference: str, texts: PipeRunTexts | None = None) -> str:
    """The lead card as the note's HTML: template blocks whose data is unknown are left out."""
    texts = texts or _default_texts()
    values = {
        "lead": _lead_label(card, texts),
        "canal": card.channel_name,
        "temperatura": card.temperature or "",
        "pontuacao": "" if card.score is None else str(card.score),
        "motivos": "\n".join(f"• {' '.join(r.split())}" for r in card.score_reasons if r and r.strip()),
        "perfil": "\n".join(_profile_lines(card)),
        "resumo": card.summary or "",
        "conversa": card.chatwoot_url or "",
        "referencia": reference,
    }
    blocks: list[str] = []
    for block in re.split(r"\n[ \t]*\n", texts.note.strip()):
        names = _PLACEHOLDER_RE.findall(block)
        if names and not any(values.get(n) for n in names):
            continue
        lines = []
        for line in block.splitlines():
            used = _PLACEHOLDER_RE.findall(line)
            if used and not any(values.get(n) for n in used):
                continue
            filled = _fill(line, values).split("\n")
            lines += [" ".join(part.split()) for part in filled if part.strip()]
        if lines:
            blocks.append("\n".join(lines))
    text = "\n\n".join(blocks)
    return NOTE_LINE_BREAK.join(html.escape(line, quote=False) for line in text.split("\n"))


# --- the sync ---------------------------------------------------------------------------

ProgressCallback = Callable[[CrmLink], Awaitable[None]]


async def sync_lead(
    client: PipeRunClient,
    card: LeadCard,
    link: CrmLink,
    *,
    pipeline_id: int,
    stage_id: int,
    origin_id: int | None = None,
    owner_id: int | None = None,
    on_progress: ProgressCallback,
    texts: PipeRunTexts | None = None,
) -> CrmLink:
    """Make PipeRun hold one person, (company,) open deal and lead-card note for this lead.

    Safe to run any number of times, and to resume after a crash at any point:
    - ids already in `link` are used as they are (no lookup, no creation);
    - otherwise the record is looked for first (person: our external code, then the
      channel-verified WhatsApp number in all its spellings, never what the lead typed;
      company: CNPJ, else exact name; deal: the person's open deal in the pipeline; note:
      the one carrying our reference) and created only when not found;
    - `on_progress(link)` is awaited right after every id that enters the link (created
      or found), before the next call, so a crash never loses a created record's id for
      long: the next run either has it or finds it again.
    The note is created once and updated (PUT) on later runs. Stage, owner and the other
    deal fields are left to the sellers once the deal exists.
    Raises PipeRunError (check `retryable`); whatever was saved through `on_progress`
    stays valid for the next attempt.
    """
    if not pipeline_id or not stage_id:
        raise PipeRunError(
            "PIPERUN_PIPELINE_ID and PIPERUN_STAGE_ID must be set to create deals", retryable=False
        )
    texts = texts or _default_texts()
    reference = external_code_for(card.contact_key)
    who = mask_contact_key(card.contact_key)
    current = link.model_copy()

    async def advance(**ids: int) -> None:
        nonlocal current
        current = current.model_copy(update=ids)
        await on_progress(current)

    # Company first, so a new person and the deal are created already linked to it.
    if current.company_id is None and (card.cnpj or card.company):
        company = await client.find_company_by_cnpj(card.cnpj) if card.cnpj else None
        if company is None and not card.cnpj and card.company:
            company = await client.find_company_by_name(card.company)
        if company is not None:
            log.info("piperun_company_found", contact=who, company_id=company.id)
        else:
            name = card.company or _fill(texts.company_without_name, {"cnpj": format_cnpj(card.cnpj or "")})
            company = await client.create_company(
                CompanyCreate(
                    name=name,
                    cnpj=format_cnpj(card.cnpj) if card.cnpj else None,
                    owner_id=owner_id,
                )
            )
            log.info("piperun_company_created", contact=who, company_id=company.id)
        await advance(company_id=company.id)

    if current.person_id is None:
        person, found_by = await client.find_person_by_external_code(reference), "external_code"
        if person is None and card.verified_phone:
            person = await client.find_person_by_phone(card.verified_phone, reference=reference)
            found_by = "verified_phone"
        if person is not None:
            log.info("piperun_person_found", contact=who, person_id=person.id, by=found_by)
        else:
            # The verified number first: it is the one a seller (or a CRM automation) reaches.
            phones = [k for k in dict.fromkeys((phone_key(card.verified_phone), phone_key(card.phone))) if k]
            person = await client.create_person(
                PersonCreate(
                    name=card.name or _fill(texts.person_without_name, {"canal": card.channel_name}),
                    contact_phones=phones or None,
                    contact_emails=[card.email] if card.email else None,
                    company_id=current.company_id,
                    owner_id=owner_id,
                    external_code=reference,
                )
            )
            log.info("piperun_person_created", contact=who, person_id=person.id)
        await advance(person_id=person.id)
    assert current.person_id is not None

    if current.deal_id is None:
        deal = await client.find_open_deal(current.person_id, pipeline_id)
        if deal is not None:
            log.info("piperun_deal_found", contact=who, deal_id=deal.id)
        else:
            deal = await client.create_deal(
                DealCreate(
                    pipeline_id=pipeline_id,
                    stage_id=stage_id,
                    title=render_deal_title(card, texts),
                    person_id=current.person_id,
                    company_id=current.company_id,
                    origin_id=origin_id,
                    owner_id=owner_id,
                    temperature=DEAL_TEMPERATURE.get((card.temperature or "").lower()),
                    reference=reference,
                )
            )
            log.info("piperun_deal_created", contact=who, deal_id=deal.id, pipeline_id=pipeline_id)
        await advance(deal_id=deal.id)
    assert current.deal_id is not None

    text = render_note(card, reference=reference, texts=texts)
    if current.note_id is not None:
        if await client.update_note(current.note_id, text) is not None:
            log.info("piperun_note_updated", contact=who, note_id=current.note_id)
            return current
        log.info("piperun_note_gone", contact=who, note_id=current.note_id)
    existing = [n for n in await client.list_deal_notes(current.deal_id) if reference in (n.text or "")]
    if existing:
        note_id = min(n.id for n in existing)
        if await client.update_note(note_id, text) is not None:
            log.info("piperun_note_updated", contact=who, note_id=note_id)
            await advance(note_id=note_id)
            return current
    note = await client.create_note(NoteCreate(text=text, deal_id=current.deal_id))
    log.info("piperun_note_created", contact=who, note_id=note.id, deal_id=current.deal_id)
    await advance(note_id=note.id)
    return current


__all__ = [
    "DEAL_TEMPERATURE",
    "EXTERNAL_CODE_PREFIX",
    "CompanyCreate",
    "CrmLink",
    "DealCreate",
    "LeadCard",
    "NoteCreate",
    "PersonCreate",
    "PipeRunClient",
    "PipeRunCompany",
    "PipeRunDeal",
    "PipeRunError",
    "PipeRunNote",
    "PipeRunPerson",
    "PipeRunTexts",
    "PipeRunTextsError",
    "external_code_for",
    "load_piperun_texts",
    "phone_key",
    "phone_variants",
    "render_deal_title",
    "render_note",
    "sync_lead",
]

"""PipeRun CRM client: one HTTP attempt per call, typed errors, no personal data in them.

Sources. PipeRun API v1 reference (https://developers.pipe.run/reference), read from the
OpenAPI export kept in github.com/LesserWords/n8n-nodes-piperun-openapi
`schemas/latest.Piperun.openapi.json`; operationIds in brackets. Every body we send is a
model of `schema` holding only fields of that operation's request schema, and every query
uses only documented parameters (tests/integrations/test_piperun_contract.py checks both
against a copy of the schema):
- base `https://api.pipe.run/v1`, auth header `token` (components.securitySchemes.sec0);
- failures `{"success": false, "message": "Not Found"}` (404) and `{"success": false,
  "message": "Unprocessable Entity", "data": {"<field>": "O campo <field> é
  obrigatório."}}` (422);
- [listar-pessoas] GET /persons: filters id, company_id, cpf, name, observation,
  external_code, ... but NO phone or e-mail filter and no `with`; [adicionar-pessoa]
  POST /persons: `name` required, `contactEmails`/`contactPhones` arrays of strings,
  `manager_id`, `observation` (no owner_id, no external_code); [atualizar-pessoa] PUT
  and [deletar-pessoa] DELETE /persons/{person_id};
- [listar-empresas] GET /companies?external_code=; [adicionar-empresa] POST /companies:
  `name` required, `cnpj`, `external_code` (no owner_id);
- [listar-oportunidades] GET /deals?person_id=&pipeline_id=&status= (0 open, 1 won,
  3 lost); [adicionar-oportunidade] POST /deals: pipeline_id, stage_id, title required;
  person_id, company_id, origin_id, owner_id, `reference` ("referência para integração
  com outros sistemas"), temperature (1 muito quente, 2 quente, 3 morna, 4 fria);
  [atualizar-oportunidade] PUT /deals/{deal_id};
- [adicionar-nota] POST /notes {text, deal_id}; [listar-notas] GET /notes?deal_id=;
  [atualizar-nota] PUT /notes/{note_id} {text};
- [ver-detalhes-do-funil] GET /pipelines/{id}, [ver-detalhes-da-etapa-de-funil]
  GET /stages/{stage_id} (the doctor's read-only probe).

Not in that reference: the rate limit (~100 requests/minute per account, answered with
429, per public integrations). PIPERUN_RATE_PER_S paces us below it through the `pace`
hook, awaited before every request.

One attempt per call: every failure is a `PipeRunError` leaf, and only
`PipeRunUnavailable` is worth retrying (the outbox does). The token, phone numbers and
e-mail addresses never appear in logs or error texts (phones are masked like `mask_phone`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from pydantic import SecretStr, ValidationError

from core.errors import is_retryable_status
from core.probe import ProbeIO, ProbeResult
from integrations.piperun.activities import (
    ACTIVITY_OPEN,
    ActivityCreate,
    ActivityUpdate,
    PipeRunActivityRecord,
    PipeRunActivityType,
)
from integrations.piperun.errors import (
    PipeRunAuthFailed,
    PipeRunError,
    PipeRunRejected,
    PipeRunUnavailable,
)
from integrations.piperun.identity import redact, reference_marker
from integrations.piperun.probe import probe_pipeline
from integrations.piperun.schema import (
    DEAL_STATUS_OPEN,
    CompanyCreate,
    DealCreate,
    DealUpdate,
    NoteCreate,
    NoteUpdate,
    PersonCreate,
    PersonUpdate,
    PipeRunCompany,
    PipeRunDeal,
    PipeRunNote,
    PipeRunPerson,
    RecordT,
    envelope_cursor,
    envelope_records,
)

log = structlog.get_logger(__name__)

DEFAULT_API_URL = "https://api.pipe.run/v1"

_ERROR_DETAIL_MAX = 200
# PipeRun's page size cap is 200 ("show"); a deal with more notes than this is rare.
_NOTES_PAGE = 200
_NOTES_MAX_PAGES = 5


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


@dataclass(frozen=True, slots=True)
class PipeRunConfig:
    """The PIPERUN_* values the client reads; built from Settings by
    web/configs/integrations.py. Where deals go (pipeline, stage) is here only for the
    doctor's probe: `sync_lead` takes them from its caller."""

    token: SecretStr | None
    api_url: str = DEFAULT_API_URL
    timeout_s: float = 15.0
    pipeline_id: int | None = None
    stage_id: int | None = None

    @property
    def can_sync(self) -> bool:
        """Deals can be created (what PIPERUN_* "configured" means); erasing a lead in
        PipeRun needs the token alone."""
        return bool(self.token and self.pipeline_id and self.stage_id)


Pace = Callable[[], Awaitable[None]]


class PipeRunClient:
    """Thin async client over PipeRun's REST API v1 for one account (one token).

    `pace`, when given, is awaited before every request: the account's rate limit is
    shared by every client of it, so the caller builds one pacer per account (a
    runtime.ratelimit.RateLimiter from PIPERUN_RATE_PER_S, in web/configs) and hands it
    to each client; integrations do not import runtime."""

    def __init__(
        self, config: PipeRunConfig, session: aiohttp.ClientSession, *, pace: Pace | None = None
    ) -> None:
        self._config = config
        self._session = session
        self._pace = pace
        self._base = (config.api_url or DEFAULT_API_URL).rstrip("/")
        self._token = (config.token.get_secret_value() if config.token is not None else "").strip()
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)

    @property
    def configured(self) -> bool:
        return bool(self._token)

    # -- HTTP core ------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"token": self._token, "Accept": "application/json"}

    def _scrub(self, text: str) -> str:
        if self._token:
            text = text.replace(self._token, "[REDACTED]")
        return redact(text)

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
            raise PipeRunRejected("piperun is not configured: PIPERUN_API_TOKEN is empty")
        kwargs: dict[str, Any] = {
            "headers": self._headers(),
            "timeout": self._timeout,
        }
        if params is not None:
            kwargs["params"] = {k: str(v) for k, v in params.items()}
        if json_body is not None:
            kwargs["json"] = json_body
        if self._pace is not None:
            await self._pace()
        try:
            async with self._session.request(method, self._base + path, **kwargs) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                raw = await resp.text(errors="replace")
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            raise self._fail(op, PipeRunUnavailable(f"piperun {op} timed out")) from None
        except aiohttp.ClientError as exc:
            # The exception text can carry the URL (and its query: a phone); only the class is kept.
            raise self._fail(
                op, PipeRunUnavailable(f"piperun {op} transport error: {type(exc).__name__}")
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
                PipeRunRejected(f"piperun {op} answered HTTP {status} with a non-JSON body", status=status),
            ) from None
        if isinstance(payload, dict) and payload.get("success") is False:
            detail = self._scrub(_error_detail(raw))[:_ERROR_DETAIL_MAX]
            raise self._fail(op, PipeRunRejected(f"piperun {op} refused: {detail}", status=status))
        return payload

    def _http_error(self, op: str, status: int, raw: str, retry_after: str | None) -> PipeRunError:
        if status == 401:
            return PipeRunAuthFailed(
                f"piperun {op} failed: HTTP 401, the API token was refused (check PIPERUN_API_TOKEN)",
                status=status,
            )
        detail = self._scrub(_error_detail(raw))[:_ERROR_DETAIL_MAX]
        message = f"piperun {op} failed: HTTP {status}"
        if status == 403:
            message += ", the token's user may not do this (check its PipeRun permissions)"
        if detail:
            message = f"{message}: {detail}"
        if status == 403:
            return PipeRunAuthFailed(message, status=status)
        if is_retryable_status(status):
            wait = _retry_after(retry_after) if status in (429, 503) else None
            return PipeRunUnavailable(message, status=status, retry_after=wait)
        return PipeRunRejected(message, status=status)

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
            records += envelope_records(payload)
            cursor = envelope_cursor(payload)
            if cursor is None:
                break
            query["cursor"] = cursor
        return records

    def _one(self, payload: Any, model: type[RecordT], op: str) -> RecordT:
        """The created/updated record; a missing id is retryable because sync_lead finds
        whatever was created before creating again."""
        for record in envelope_records(payload):
            try:
                return model.model_validate(record)
            except ValidationError:
                continue
        raise self._fail(op, PipeRunUnavailable(f"piperun {op}: no record with an id in the response"))

    @staticmethod
    def _parse_all(records: list[dict[str, Any]], model: type[RecordT]) -> list[RecordT]:
        out: list[RecordT] = []
        for record in records:
            try:
                out.append(model.model_validate(record))
            except ValidationError:
                continue
        return out

    # -- persons --------------------------------------------------------------------

    async def find_person_by_reference(self, reference: str) -> PipeRunPerson | None:
        """The oldest person we created for this lead (our reference in `observation`).

        [listar-pessoas] documents no phone or e-mail filter, so no one else is ever
        looked up; `observation` is a documented filter whose matching (exact or
        partial) is not, so every hit is re-checked here and a server ignoring the filter
        finds nobody."""
        if not reference.strip():
            return None
        marker = reference_marker(reference)
        records = await self._list("/persons", "person search", {"observation": marker, "show": 20})
        matches = [
            p for p in self._parse_all(records, PipeRunPerson) if (p.observation or "").strip() == marker
        ]
        return min(matches, key=lambda p: p.id) if matches else None

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
        the name replaced, phones, e-mails and the observation (our reference, a plain
        hash of the lead's contact) emptied. The deals stay for the sales team.
        False when the person no longer exists (404)."""
        body = PersonUpdate(name=name, contact_phones=[], contact_emails=[], observation="").body()
        try:
            await self._request("PUT", f"/persons/{int(person_id)}", "anonymize person", json_body=body)
        except PipeRunError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- companies ------------------------------------------------------------------

    async def find_company_by_reference(self, reference: str) -> PipeRunCompany | None:
        """The oldest company we created for this lead ([listar-empresas] ?external_code=,
        re-checked here). Never by the CNPJ or name the lead typed: anybody can type a
        customer's CNPJ, and the lead would be filed under that customer's company."""
        code = reference.strip()
        if not code:
            return None
        records = await self._list("/companies", "company search", {"external_code": code, "show": 20})
        matches = [c for c in self._parse_all(records, PipeRunCompany) if c.external_code == code]
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
        body = DealUpdate.model_validate(dict(fields)).body()
        payload = await self._request("PUT", f"/deals/{int(deal_id)}", "update deal", json_body=body)
        records = self._parse_all(envelope_records(payload), PipeRunDeal)
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
            "PUT",
            f"/notes/{int(note_id)}",
            "update note",
            json_body=NoteUpdate(text=text).body(),
            missing_ok=True,
        )
        if payload is None:
            return None
        records = self._parse_all(envelope_records(payload), PipeRunNote)
        return records[0] if records else PipeRunNote(id=int(note_id), text=text)

    # -- activities (integrations/piperun/activities.py) -------------------------------

    async def list_deal_activities(self, deal_id: int) -> list[PipeRunActivityRecord]:
        """[listar-atividades] GET /activities?deal_id= (filter re-checked here)."""
        records = await self._list(
            "/activities",
            "activity search",
            {"deal_id": int(deal_id), "show": _NOTES_PAGE},
            max_pages=_NOTES_MAX_PAGES,
        )
        return [
            a for a in self._parse_all(records, PipeRunActivityRecord) if a.deal_id in (int(deal_id), None)
        ]

    async def create_activity(
        self,
        *,
        deal_id: int,
        title: str,
        start_at: str,
        end_at: str,
        owner_id: int,
        description: str,
        activity_type_id: int,
        meet_url: str | None = None,
        duration: int | None = None,
    ) -> PipeRunActivityRecord:
        """[adicionar-atividade] POST /activities, open (status 0); times as PipeRun's
        "AAAA-MM-DD HH:MM:SS" in the account's zone (activities.piperun_time)."""
        body = ActivityCreate(
            activity_type_id=activity_type_id,
            status=ACTIVITY_OPEN,
            owner_id=owner_id,
            deal_id=int(deal_id),
            title=title,
            description=description,
            appearin_link=meet_url,
            duration=duration,
            start_at=start_at,
            end_at=end_at,
        ).body()
        payload = await self._request("POST", "/activities", "create activity", json_body=body)
        return self._one(payload, PipeRunActivityRecord, "create activity")

    async def update_activity(self, activity_id: int, update: ActivityUpdate) -> PipeRunActivityRecord | None:
        """[atualizar-1] PUT /activities/{id}; None when a seller deleted it (404)."""
        payload = await self._request(
            "PUT",
            f"/activities/{int(activity_id)}",
            "update activity",
            json_body=update.body(),
            missing_ok=True,
        )
        if payload is None:
            return None
        records = self._parse_all(envelope_records(payload), PipeRunActivityRecord)
        return records[0] if records else None

    async def list_activity_types(self) -> list[PipeRunActivityType]:
        """[listar-2] GET /activityTypes?active=1: the account's activity types."""
        records = await self._list("/activityTypes", "activity type search", {"active": 1, "show": 200})
        return self._parse_all(records, PipeRunActivityType)

    # -- doctor ---------------------------------------------------------------------

    async def probe(self, io: ProbeIO) -> ProbeResult:
        """Read the configured pipeline and stage (both read-only GETs, at once)."""
        return await probe_pipeline(
            io,
            base=self._base,
            headers=self._headers(),
            pipeline_id=self._config.pipeline_id,
            stage_id=self._config.stage_id,
        )


__all__ = ["DEFAULT_API_URL", "Pace", "PipeRunClient", "PipeRunConfig"]

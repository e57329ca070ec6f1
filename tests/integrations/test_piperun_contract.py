"""Every request the PipeRun client makes is one PipeRun's published reference documents.

tests/fixtures/piperun/openapi_request_schemas.json is a copy of the request side of
LesserWords/n8n-nodes-piperun-openapi `schemas/latest.Piperun.openapi.json` (PipeRun's
API v1 reference): per operation, its body schema's fields, types and required fields, and
its documented query parameters. `SpecPipeRun` is the in-memory account of
tests/helpers/fake_piperun.py checking each call against that copy, filtering only on
documented parameters, and keeping what the documented bodies carry (a person's
`observation`, a company's `external_code`); the PipeRun scenario tests run against it,
so a field or filter outside the reference fails them.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr

from integrations.piperun import (
    CompanyCreate,
    CrmLink,
    DealCreate,
    LeadCard,
    NoteCreate,
    PersonCreate,
    PipeRunClient,
    PipeRunConfig,
    external_code_for,
    reference_marker,
    sync_lead,
)
from runtime.ratelimit import RateLimiter
from tests.helpers.fake_piperun import BASE, FIXTURES, FakePipeRun, load
from web.configs.integrations import piperun_clients, piperun_pace

SPEC = json.loads((FIXTURES / "openapi_request_schemas.json").read_text(encoding="utf-8"))["operations"]
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _operation(method: str, path: str) -> dict[str, Any] | None:
    for key, op in SPEC.items():
        m, template = key.split(" ", 1)
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", r"[^/]+", re.escape(template)) + "$"
        if m == method and re.match(pattern, path):
            return dict(op)
    return None


def _type_ok(value: Any, kind: str | None) -> bool:
    if kind is None or value is None:
        return True
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[kind])


def contract_violations(method: str, path: str, query: dict[str, str], body: Any) -> list[str]:
    """What in one request the published reference does not document (empty: all of it is)."""
    op = _operation(method, path)
    if op is None:
        return [f"{method} {path}: not an operation of the reference"]
    where = f"{method} {path} [{op['operationId']}]"
    problems = [f"{where}: query parameter {name!r}" for name in query if name not in op["query"]]
    schema = op.get("body")
    if body is None:
        return problems
    if schema is None:
        return [*problems, f"{where}: a body where none is documented"]
    props = schema["properties"]
    for name, value in body.items():
        field = props.get(name)
        if field is None:
            problems.append(f"{where}: body field {name!r}")
        elif not _type_ok(value, field["type"]):
            problems.append(f"{where}: {name!r} is not {field['type']}")
        elif field["type"] == "array" and not all(_type_ok(v, field.get("items")) for v in value):
            problems.append(f"{where}: {name!r} items are not {field.get('items')}")
    problems += [f"{where}: required {name!r} missing" for name in schema["required"] if name not in body]
    return problems


class SpecPipeRun(FakePipeRun):
    """FakePipeRun holding every call to the reference (see the module docstring)."""

    def __init__(self, mocked: aioresponses, *, token: str, ignore_person_filters: bool = False) -> None:
        super().__init__(mocked, token=token, ignore_person_filters=ignore_person_filters)
        self.violations: list[str] = []

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        self.violations += contract_violations(method, path, query, body)
        return super().handle(method, path, query, body)

    def _get_persons(self, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        found = list(self.persons)
        if not self.ignore_person_filters:
            for name in ("observation", "external_code", "name"):
                if name in query:
                    found = [p for p in found if (p.get(name) or "") == query[name]]
        return self._list("persons_list.json", [self._render_person(p, "") for p in found])

    def _post_persons(self, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        status, envelope = super()._post_persons(path, query, body)
        kept = {"observation": body.get("observation", ""), "manager_id": body.get("manager_id")}
        self.persons[-1].update(kept)
        envelope["data"].update(kept)
        return status, envelope

    def _put_deals(self, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        deal = next((d for d in self.deals if d["id"] == int(path.rsplit("/", 1)[1])), None)
        if deal is None:
            return 404, load("error_404.json")
        deal.update(body)
        return 200, {"success": True, "message": "OK", "data": dict(deal)}

    def _get_companies(self, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        status, envelope = super()._get_companies(path, query, body)
        if "external_code" in query:
            envelope["data"] = [
                c for c in envelope["data"] if c.get("external_code") == query["external_code"]
            ]
        return status, envelope

    def _post_companies(self, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        status, envelope = super()._post_companies(path, query, body)
        self.companies[-1]["external_code"] = body.get("external_code")
        envelope["data"][0]["external_code"] = body.get("external_code")
        return status, envelope


TOKEN = "pr-tok-contract-5e1d"
PIPELINE, STAGE, ORIGIN, OWNER = 26447, 141473, 5501, 34970
CONTACT_KEY = "whatsapp:5511987654321"
REF = external_code_for(CONTACT_KEY)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
def fake(mocked: aioresponses) -> SpecPipeRun:
    return SpecPipeRun(mocked, token=TOKEN)


def make_client(session: aiohttp.ClientSession, **kwargs: Any) -> PipeRunClient:
    return PipeRunClient(PipeRunConfig(api_url=BASE, token=SecretStr(TOKEN), timeout_s=5), session, **kwargs)


def full_card() -> LeadCard:
    return LeadCard(
        contact_key=CONTACT_KEY,
        channel="zapi",
        verified_phone="5511987654321",
        name="João Silva",
        phone="(11) 3333-4444",
        email="joao.silva@agrosouza.com.br",
        company="Agro Souza",
        cnpj="11.222.333/0001-81",
        temperature="quente",
        score=82,
    )


async def _progress(link: CrmLink) -> None:
    return None


# --- the checker itself, on the reference's own words ---------------------------------


def test_the_checker_refuses_what_the_reference_does_not_document() -> None:
    assert contract_violations("POST", "/persons", {}, {"name": "x", "owner_id": 1}) == [
        "POST /persons [adicionar-pessoa]: body field 'owner_id'"
    ]
    assert contract_violations("POST", "/persons", {}, {"name": "x", "external_code": "sdr-1"}) != []
    assert contract_violations("POST", "/companies", {}, {"name": "x", "owner_id": 1}) != []
    assert contract_violations("GET", "/persons", {"phone": "5511987654321"}, None) != []
    assert contract_violations("GET", "/persons", {"with": "contactPhones"}, None) != []
    assert contract_violations("POST", "/deals", {}, {"title": "x"}) == [
        "POST /deals [adicionar-oportunidade]: required 'pipeline_id' missing",
        "POST /deals [adicionar-oportunidade]: required 'stage_id' missing",
    ]
    assert contract_violations("POST", "/notes", {}, {"text": "x", "deal_id": "7"}) != []
    assert contract_violations("PUT", "/notes/9", {}, {"text": "x"}) == []
    assert contract_violations("GET", "/persons", {"observation": "x", "show": "20"}, None) == []


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        (
            "POST /persons",
            PersonCreate(
                name="João",
                contact_phones=["5511987654321"],
                contact_emails=["a@b.com"],
                company_id=1,
                manager_id=OWNER,
                observation=reference_marker(REF),
            ).body(),
        ),
        ("POST /companies", CompanyCreate(name="Agro", cnpj="11.222.333/0001-81", external_code=REF).body()),
        (
            "POST /deals",
            DealCreate(
                pipeline_id=PIPELINE,
                stage_id=STAGE,
                title="t",
                person_id=1,
                company_id=2,
                origin_id=ORIGIN,
                owner_id=OWNER,
                temperature=2,
                reference=REF,
            ).body(),
        ),
        ("POST /notes", NoteCreate(text="x", deal_id=3).body()),
    ],
)
def test_every_body_model_fits_its_request_schema(operation: str, body: dict[str, Any]) -> None:
    method, path = operation.split(" ", 1)
    assert contract_violations(method, path, {}, body) == []


# --- what the client actually sends --------------------------------------------------


async def test_a_full_sync_sends_only_documented_fields_and_filters(
    session: aiohttp.ClientSession, fake: SpecPipeRun
) -> None:
    client = make_client(session)
    link = await sync_lead(
        client,
        full_card(),
        CrmLink(),
        pipeline_id=PIPELINE,
        stage_id=STAGE,
        origin_id=ORIGIN,
        owner_id=OWNER,
        on_progress=_progress,
    )
    # A second run (note update), the erasure's calls and a lost-link rerun.
    await sync_lead(
        client, full_card(), link, pipeline_id=PIPELINE, stage_id=STAGE, owner_id=OWNER, on_progress=_progress
    )
    await sync_lead(
        client, full_card(), CrmLink(), pipeline_id=PIPELINE, stage_id=STAGE, on_progress=_progress
    )
    assert link.deal_id is not None and link.person_id is not None
    await client.update_deal(link.deal_id, {"title": "Oportunidade de titular removido (LGPD)"})
    assert fake.persons[0]["observation"] == reference_marker(REF)

    assert {(m, p) for m, p, _, _ in fake.calls} >= {
        ("GET", "/companies"),
        ("POST", "/companies"),
        ("GET", "/persons"),
        ("POST", "/persons"),
        ("GET", "/deals"),
        ("POST", "/deals"),
        ("GET", "/notes"),
        ("POST", "/notes"),
        ("PUT", f"/notes/{link.note_id}"),
        ("PUT", f"/deals/{link.deal_id}"),
    }
    assert fake.violations == []
    [person] = fake.posts("/persons")
    assert person["manager_id"] == OWNER and "owner_id" not in person
    [company] = fake.posts("/companies")
    assert "owner_id" not in company and company["external_code"] == REF
    assert len(fake.posts("/deals")) == len(fake.posts("/notes")) == 1


async def test_the_erasure_update_fits_atualizar_pessoa(session: aiohttp.ClientSession, mocked: Any) -> None:
    seen: list[dict[str, Any]] = []

    def answer(url: Any, **kwargs: Any) -> Any:
        from aioresponses import CallbackResult

        seen.append(kwargs["json"])
        return CallbackResult(status=200, payload={"success": True, "message": "OK", "data": {"id": 748}})

    mocked.put(f"{BASE}/persons/748", callback=answer)
    assert await make_client(session).anonymize_person(748, name="Titular removido (LGPD)") is True
    assert contract_violations("PUT", "/persons/748", {}, seen[0]) == []


async def test_an_undocumented_deal_field_is_refused_before_it_is_sent(
    session: aiohttp.ClientSession,
) -> None:
    with pytest.raises(ValueError, match="stage"):
        await make_client(session).update_deal(1, {"stagee": 3})


# --- PIPERUN_RATE_PER_S ---------------------------------------------------------------


async def test_every_request_waits_for_its_slot_at_the_configured_rate(
    session: aiohttp.ClientSession, fake: SpecPipeRun
) -> None:
    limiter = RateLimiter(4.0, burst=1)
    waits: list[float] = []
    order: list[str] = []

    async def pace() -> None:
        waits.append(limiter.reserve(now=50.0))  # all at once: no time passes in the test
        order.append("pace")

    client = make_client(session, pace=pace)
    fake.calls.clear()
    for _ in range(3):
        await client.find_person_by_reference(REF)
    await client.create_note(NoteCreate(text="x", deal_id=1))

    assert waits == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert len(fake.calls) == len(order) == 4


async def test_the_pace_built_from_settings_sleeps_until_each_slot(tmp_path: Any) -> None:
    from tests.conftest import fast_settings

    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    settings = fast_settings(tmp_path, piperun_rate_per_s=2.0)
    pace = piperun_pace(settings, clock=lambda: 10.0, sleep=sleep)
    for _ in range(5):
        await pace()
    # burst = int(rate): two at once, then one every 1/rate s.
    assert slept == pytest.approx([0.5, 1.0, 1.5])


async def test_the_clients_of_one_app_share_the_accounts_pace(
    tmp_path: Any, session: aiohttp.ClientSession
) -> None:
    from tests.conftest import fast_settings

    settings = fast_settings(tmp_path, piperun_api_token=TOKEN, piperun_rate_per_s=3.0)
    make = piperun_clients(settings, session)
    first, second = make(), make()
    assert first._pace is not None and first._pace is second._pace


def test_fixture_cites_its_source() -> None:
    assert (
        "latest.Piperun.openapi.json"
        in json.loads((FIXTURES / "openapi_request_schemas.json").read_text(encoding="utf-8"))["_source"]
    )
    assert load("error_404.json")["success"] is False

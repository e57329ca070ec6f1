"""PipeRun client and lead sync: dedupe, resume after a crash, note updates, error mapping.

Responses are built from fixtures under tests/fixtures/piperun/, copies of the examples
of PipeRun's API v1 reference (each cites its operation in `_source`). `SpecPipeRun`
keeps persons/companies/deals/notes in memory behind aioresponses, filters them on
documented parameters only, and holds every call to the reference's request schemas
(test_piperun_contract), so a scenario runs end to end and a second run sees what the
first one created.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr
from structlog.testing import capture_logs
from yarl import URL

from integrations.piperun import (
    CrmLink,
    DealCreate,
    LeadCard,
    NoteCreate,
    PersonCreate,
    PipeRunClient,
    PipeRunConfig,
    PipeRunError,
    PipeRunTextsError,
    external_code_for,
    load_piperun_texts,
    phone_key,
    reference_marker,
    render_note,
    sync_lead,
)
from runtime.policies import is_transient
from tests.helpers.fake_piperun import BASE, load, record
from tests.integrations.test_piperun_contract import SpecPipeRun

TOKEN = "pr-tok-SECRET-4f9a8b7c6d5e"
PIPELINE, STAGE, ORIGIN, OWNER = 26447, 141473, 5501, 34970
PHONE = "5511987654321"
EMAIL = "joao.silva@agrosouza.com.br"
CNPJ = "11222333000181"
CONTACT_KEY = f"whatsapp:{PHONE}"
REF = external_code_for(CONTACT_KEY)
MARKER = reference_marker(REF)


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


@pytest.fixture
def fake(mocked: aioresponses) -> Iterator[SpecPipeRun]:
    account = SpecPipeRun(mocked, token=TOKEN)
    yield account
    assert account.violations == []


@pytest.fixture
def client(session: aiohttp.ClientSession) -> PipeRunClient:
    return PipeRunClient(PipeRunConfig(api_url=BASE + "/", token=SecretStr(TOKEN), timeout_s=5), session)


def make_card(**overrides: Any) -> LeadCard:
    values: dict[str, Any] = {
        "contact_key": CONTACT_KEY,
        "channel": "zapi",
        "verified_phone": PHONE,
        "name": "João Silva",
        "phone": PHONE,
        "email": EMAIL,
        "city": "Ribeirão Preto",
        "state": "SP",
        "profile": {
            "name": "João Silva",
            "segment": "cafeicultura",
            "product_interest": "secador rotativo",
            "volume": "200 sacas/dia",
            "urgency": "ate_30_dias",
            "decision_role": "decisor",
        },
        "score": 82,
        "temperature": "quente",
        "score_reasons": ["Segmento-alvo: cafeicultura (+20)", "Urgência: até 30 dias (+15)"],
        "summary": "Quer um secador para 200 sacas/dia antes da colheita.",
        "chatwoot_url": "https://chat.agrosouza.com.br/app/accounts/7/conversations/31",
    }
    values.update(overrides)
    return LeadCard(**values)


class Progress:
    """The caller's persistence: every link handed to on_progress, in order."""

    def __init__(self, crash_when: str | None = None) -> None:
        self.saved: list[CrmLink] = []
        self.crash_when = crash_when

    async def __call__(self, link: CrmLink) -> None:
        if self.crash_when and getattr(link, self.crash_when) is not None:
            self.crash_when = None
            raise RuntimeError("process died before the link was saved")
        self.saved.append(link)

    @property
    def last(self) -> CrmLink:
        return self.saved[-1] if self.saved else CrmLink()


async def run_sync(client: PipeRunClient, card: LeadCard, link: CrmLink, progress: Progress) -> CrmLink:
    return await sync_lead(
        client,
        card,
        link,
        pipeline_id=PIPELINE,
        stage_id=STAGE,
        origin_id=ORIGIN,
        owner_id=OWNER,
        on_progress=progress,
    )


# --- dedupe ---------------------------------------------------------------------------


async def test_an_existing_person_with_the_leads_number_is_not_searched(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    # [listar-pessoas] documents no phone filter: the lead gets its own person, a seller merges.
    seeded = fake.add_person(phones=["(11) 98765-4321"], emails=[])

    link = await run_sync(client, make_card(), CrmLink(), Progress())

    assert link.person_id != seeded["id"]
    assert fake.gets("/persons") == [{"observation": MARKER, "show": "20"}]
    assert len(fake.posts("/persons")) == len(fake.posts("/deals")) == len(fake.posts("/notes")) == 1


async def test_a_person_holding_the_same_email_is_not_the_lead(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    # No channel verifies an e-mail: anybody can type a customer's address.
    seeded = fake.add_person(phones=["(21) 3333-4444"], emails=["Joao.Silva@AgroSouza.com.br"])

    link = await run_sync(client, make_card(), CrmLink(), Progress())

    assert link.person_id != seeded["id"]
    assert [p["contactEmails"] for p in fake.posts("/persons")] == [[EMAIL]]
    assert not any("email" in q or "phone" in q for q in fake.gets("/persons"))


async def test_nothing_found_creates_person_deal_and_note(client: PipeRunClient, fake: SpecPipeRun) -> None:
    progress = Progress()
    card = make_card()

    link = await run_sync(client, card, CrmLink(), progress)

    [person] = fake.posts("/persons")
    assert person == {
        "name": "João Silva",
        "contactPhones": [PHONE],
        "contactEmails": [EMAIL],
        "manager_id": OWNER,
        "observation": MARKER,
    }
    [deal] = fake.posts("/deals")
    assert deal == {
        "pipeline_id": PIPELINE,
        "stage_id": STAGE,
        "title": "João Silva — SDR WhatsApp",
        "person_id": link.person_id,
        "origin_id": ORIGIN,
        "owner_id": OWNER,
        "temperature": 2,
        "reference": REF,
    }
    [note] = fake.posts("/notes")
    assert note == {"text": render_note(card, reference=REF), "deal_id": link.deal_id}
    assert fake.posts("/companies") == []
    assert link.person_id and link.deal_id and link.note_id and link.company_id is None
    # Saved after each creation, each save a superset of the previous one.
    assert [s.model_dump() for s in progress.saved] == [
        {"person_id": link.person_id, "company_id": None, "deal_id": None, "note_id": None},
        {"person_id": link.person_id, "company_id": None, "deal_id": link.deal_id, "note_id": None},
        link.model_dump(),
    ]


async def test_company_created_with_cnpj_and_linked(client: PipeRunClient, fake: SpecPipeRun) -> None:
    card = make_card(company="Agro Souza", cnpj="11.222.333/0001-81")

    link = await run_sync(client, card, CrmLink(), Progress())

    assert fake.gets("/companies") == [{"external_code": REF, "show": "20"}]
    [company] = fake.posts("/companies")
    assert company == {"name": "Agro Souza", "cnpj": "11.222.333/0001-81", "external_code": REF}
    assert link.company_id == fake.companies[0]["id"]
    assert fake.posts("/persons")[0]["company_id"] == link.company_id
    assert fake.posts("/deals")[0]["company_id"] == link.company_id
    assert fake.posts("/deals")[0]["title"] == "João Silva (Agro Souza) — SDR WhatsApp"


async def test_a_typed_cnpj_or_name_never_files_the_lead_under_that_company(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    fake.companies.append(record("companies_list.json"))  # a customer: 11.222.333/0001-81
    fake.companies.append({**record("companies_list.json"), "id": 2, "name": "AGRO SOUZA", "cnpj": None})

    link = await run_sync(client, make_card(company="Agro Souza", cnpj=CNPJ), CrmLink(), Progress())

    assert link.company_id not in (4557647, 2)
    assert not any("cnpj" in q or "name" in q for q in fake.gets("/companies"))
    assert len(fake.posts("/companies")) == 1


async def test_a_refused_company_does_not_stop_the_deal(client: PipeRunClient, fake: SpecPipeRun) -> None:
    fake.fail_next("POST", "/companies", status=422, payload=load("error_422_person.json"))
    card = make_card(company="Agro Souza", cnpj=CNPJ)

    link = await run_sync(client, card, CrmLink(), Progress())

    assert link.company_id is None and link.deal_id is not None
    assert "company_id" not in fake.posts("/deals")[0]
    assert "11.222.333/0001-81" in fake.posts("/notes")[0]["text"]


async def test_invalid_cnpj_is_not_pushed(client: PipeRunClient, fake: SpecPipeRun) -> None:
    card = make_card(company="Agro Souza", cnpj="11.222.333/0001-99")
    assert card.cnpj is None
    await run_sync(client, card, CrmLink(), Progress())
    assert fake.posts("/companies") == [{"name": "Agro Souza", "external_code": REF}]


async def test_ignored_search_filter_never_attaches_someone_else(
    client: PipeRunClient, mocked: aioresponses
) -> None:
    fake = SpecPipeRun(mocked, token=TOKEN, ignore_person_filters=True)
    fake.add_person(phones=["(48) 99111-2222"], emails=["maria@outra.com.br"], name="Maria")

    link = await run_sync(client, make_card(), CrmLink(), Progress())

    assert len(fake.posts("/persons")) == 1
    assert link.person_id != fake.persons[0]["id"]


async def test_person_search_404_means_none(client: PipeRunClient, fake: SpecPipeRun) -> None:
    fake.fail_next("GET", "/persons", status=404, payload=load("error_404.json"))
    assert await client.find_person_by_reference(REF) is None


async def test_lead_without_phone_or_email_is_deduped_by_our_code(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    card = LeadCard(contact_key="instagram:17841400000000001", channel="instagram", temperature="morno")
    first = await run_sync(client, card, CrmLink(), Progress())
    again = await run_sync(client, card, CrmLink(), Progress())  # the saved link was lost

    assert fake.posts("/persons") == [
        {
            "name": "Lead Instagram (sem nome)",
            "manager_id": OWNER,
            "observation": reference_marker(external_code_for(card.contact_key)),
        }
    ]
    assert [sorted(q) for q in fake.gets("/persons")] == [["observation", "show"]] * 2
    assert len(fake.posts("/deals")) == len(fake.posts("/notes")) == 1
    assert fake.posts("/deals")[0]["temperature"] == 3
    assert again == first


def test_card_from_a_stored_lead() -> None:
    lead = SimpleNamespace(
        contact_key=CONTACT_KEY,
        channel="zapi",
        name="Joao WhatsApp",
        phone=PHONE,
        profile={"name": "João Silva", "company": "Agro Souza", "cnpj": CNPJ, "email": EMAIL, "state": "SP"},
        score=82,
        temperature="quente",
        score_reasons=["Segmento-alvo (+20)"],
        summary="  Quer secador.  ",
    )
    card = LeadCard.from_record(lead, chatwoot_url="https://chat.example/app/accounts/7/conversations/31")  # type: ignore[arg-type]
    assert (card.name, card.verified_phone, card.phone, card.company, card.cnpj, card.email) == (
        "João Silva",
        PHONE,
        PHONE,
        "Agro Souza",
        CNPJ,
        EMAIL,
    )
    assert card.summary == "Quer secador." and card.channel_name == "WhatsApp"


# --- resume and updates ---------------------------------------------------------------


async def test_resume_with_person_known_creates_only_what_is_missing(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    seeded = fake.add_person(phones=[PHONE], emails=[EMAIL])

    link = await run_sync(client, make_card(), CrmLink(person_id=seeded["id"]), Progress())

    assert fake.gets("/persons") == [] and fake.posts("/persons") == []
    assert len(fake.posts("/deals")) == 1
    assert len(fake.posts("/notes")) == 1
    assert link.person_id == seeded["id"]


@pytest.mark.parametrize("crash_when", ["person_id", "deal_id", "note_id"])
async def test_crash_before_saving_an_id_never_duplicates(
    client: PipeRunClient, fake: SpecPipeRun, crash_when: str
) -> None:
    progress = Progress(crash_when=crash_when)
    with pytest.raises(RuntimeError):
        await run_sync(client, make_card(), CrmLink(), progress)

    link = await run_sync(client, make_card(), progress.last, progress)

    assert len(fake.posts("/persons")) == 1
    assert len(fake.posts("/deals")) == 1
    assert len(fake.posts("/notes")) == 1
    assert link.person_id == fake.persons[0]["id"]
    assert link.deal_id == fake.deals[0]["id"]
    assert link.note_id == fake.notes[0]["id"]


async def test_failed_note_resumes_without_new_person_or_deal(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    progress = Progress()
    fake.fail_next("POST", "/notes", status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(PipeRunError) as info:
        await run_sync(client, make_card(), CrmLink(), progress)
    assert info.value.retryable

    link = await run_sync(client, make_card(), progress.last, progress)

    assert len(fake.posts("/persons")) == 1 and len(fake.posts("/deals")) == 1
    assert link.note_id == fake.notes[0]["id"]


async def test_second_sync_updates_the_note_and_creates_nothing(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    progress = Progress()
    first = await run_sync(client, make_card(), CrmLink(), progress)
    calls_before = len(fake.calls)

    changed = make_card(
        company="Agro Souza",
        score=91,
        summary="Fechou a capacidade: 250 sacas/dia; quer visita técnica.",
        profile={**make_card().profile, "volume": "250 sacas/dia"},
    )
    # The company is already linked: only the note is touched.
    second = await run_sync(client, changed, first.model_copy(update={"company_id": 4557647}), progress)

    new_calls = fake.calls[calls_before:]
    assert [(m, p) for m, p, _, _ in new_calls] == [("PUT", f"/notes/{first.note_id}")]
    text = new_calls[0][3]["text"]
    assert "Pontuação: 91/100" in text and "250 sacas/dia" in text and f"Ref. SDR: {REF}" in text
    assert fake.notes[0]["text"] == text
    assert second.note_id == first.note_id
    assert len(fake.posts("/notes")) == len(fake.posts("/deals")) == len(fake.posts("/persons")) == 1


async def test_note_deleted_by_a_seller_is_written_again(client: PipeRunClient, fake: SpecPipeRun) -> None:
    progress = Progress()
    first = await run_sync(client, make_card(), CrmLink(), progress)
    fake.notes.clear()

    second = await run_sync(client, make_card(score=90), first, progress)

    assert len(fake.posts("/notes")) == 2
    assert second.note_id == fake.notes[0]["id"] != first.note_id
    assert progress.last == second


async def test_open_deal_of_the_person_is_reused(client: PipeRunClient, fake: SpecPipeRun) -> None:
    # Our person (its id lost in a crash): a seller's deal on it is the lead's.
    seeded = fake.add_person(phones=[PHONE], emails=[], observation=MARKER)
    fake.deals.append(record("deals_list.json") | {"person_id": seeded["id"]})
    fake.deals.append(record("deals_list.json") | {"id": 5, "person_id": seeded["id"], "status": 3})

    link = await run_sync(client, make_card(), CrmLink(), Progress())

    assert fake.posts("/deals") == []
    assert link.deal_id == 10836111
    assert fake.gets("/deals") == [
        {"person_id": str(seeded["id"]), "pipeline_id": str(PIPELINE), "status": "0", "show": "50"}
    ]


async def test_existing_note_with_our_reference_is_updated_not_duplicated(
    client: PipeRunClient, fake: SpecPipeRun
) -> None:
    seeded = fake.add_person(phones=[PHONE], emails=[], observation=MARKER)
    fake.deals.append(record("deals_list.json") | {"person_id": seeded["id"]})
    fake.notes.append(record("notes_list.json"))  # a seller's note
    fake.notes.append(record("notes_list.json") | {"id": 55502, "text": f"antigo<br>Ref. SDR: {REF}"})

    link = await run_sync(client, make_card(), CrmLink(), Progress())

    assert fake.posts("/notes") == []
    assert link.note_id == 55502
    assert fake.notes[0]["text"] == "Cliente pediu retorno à tarde."


# --- note and texts -------------------------------------------------------------------


def test_note_is_escaped_html_and_skips_unknown_blocks() -> None:
    card = make_card(
        name="Ana <script>",
        profile={**make_card().profile, "name": "Ana <script>"},
        summary=None,
        chatwoot_url=None,
        score_reasons=[],
    )
    text = render_note(card, reference=REF)
    assert "<script>" not in text and "Ana &lt;script&gt;" in text
    assert "Resumo" not in text and "Chatwoot" not in text and "Motivos" not in text
    assert text.endswith(f"Ref. SDR: {REF}")
    assert "<br>Urgência da compra: até 30 dias<br>" in text
    assert "<br>Perfil do lead:<br>Nome: Ana &lt;script&gt;<br>Cidade: Ribeirão Preto<br>" in text


def test_texts_file_is_checked(tmp_path: Path) -> None:
    assert "{referencia}" in load_piperun_texts().note
    bad = tmp_path / "piperun.toml"
    base = 'deal_title = "{lead}"\nperson_without_name = "Lead"\ncompany_without_name = "CNPJ {cnpj}"\n'
    bad.write_text(base + 'note = "{lead} {telefone} {referencia}"\n', encoding="utf-8")
    with pytest.raises(PipeRunTextsError, match="telefone"):
        load_piperun_texts(bad)
    bad.write_text(base + 'note = "{lead}"\n', encoding="utf-8")
    with pytest.raises(PipeRunTextsError, match="referencia"):
        load_piperun_texts(bad)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("+55 (11) 98765-4321", PHONE),
        ("11987654321", PHONE),
        ("011 98765-4321", PHONE),
        ("1187654321", PHONE),
        ("551187654321", PHONE),
        ("(11) 3333-4444", "551133334444"),
        ("+1 415 555 0100", "14155550100"),
        ("123", None),
    ],
)
def test_phone_key(raw: str, key: str | None) -> None:
    assert phone_key(raw) == key


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        {"status": 429, "payload": {"success": False, "message": "Too Many Attempts."}},
        {"status": 500, "body": "Internal Server Error"},
        {"status": 503, "body": ""},
        {"exception": TimeoutError()},
        {"exception": aiohttp.ClientConnectionError("api.pipe.run/v1/persons?phone=5511987654321")},
    ],
)
async def test_transient_failures_are_retryable(
    client: PipeRunClient, mocked: aioresponses, response: dict[str, Any]
) -> None:
    mocked.post(f"{BASE}/persons", **response)
    with pytest.raises(PipeRunError) as info:
        await client.create_person(PersonCreate(name="João Silva"))
    assert is_transient(info.value)  # the outbox retries it
    assert info.value.retryable is True
    assert PHONE not in str(info.value)


async def test_429_keeps_retry_after(client: PipeRunClient, mocked: aioresponses) -> None:
    mocked.get(re.compile(rf"^{re.escape(BASE)}/deals\?.*"), status=429, headers={"Retry-After": "42"})
    with pytest.raises(PipeRunError) as info:
        await client.find_open_deal(1, PIPELINE)
    assert info.value.retryable and info.value.status == 429 and info.value.retry_after_s == 42.0


async def test_401_is_a_permanent_bad_token(client: PipeRunClient, mocked: aioresponses) -> None:
    mocked.post(f"{BASE}/persons", status=401, payload=load("error_401.json"))
    with pytest.raises(PipeRunError) as info:
        await client.create_person(PersonCreate(name="João Silva"))
    err = info.value
    assert (err.retryable, err.auth_failed, err.status) == (False, True, 401)
    assert "PIPERUN_API_TOKEN" in str(err) and TOKEN not in str(err)


async def test_422_is_permanent_and_masks_what_it_echoes(client: PipeRunClient, mocked: aioresponses) -> None:
    mocked.post(f"{BASE}/persons", status=422, payload=load("error_422_person.json"))
    with pytest.raises(PipeRunError) as info:
        await client.create_person(PersonCreate(name="João Silva"))
    err = info.value
    assert (err.retryable, err.auth_failed, err.status) == (False, False, 422)
    assert "O campo name é obrigatório." in str(err)
    assert PHONE not in str(err) and EMAIL not in str(err) and "5511***21" in str(err)


async def test_success_false_in_a_200_is_an_error(client: PipeRunClient, mocked: aioresponses) -> None:
    mocked.post(f"{BASE}/notes", status=200, payload={"success": False, "message": "Deal not found"})
    with pytest.raises(PipeRunError, match="Deal not found") as info:
        await client.create_note(NoteCreate(text="x", deal_id=1))
    assert info.value.retryable is False


async def test_created_record_without_id_is_retryable(client: PipeRunClient, mocked: aioresponses) -> None:
    mocked.post(f"{BASE}/deals", status=201, payload={"success": True, "message": "Created", "data": {}})
    with pytest.raises(PipeRunError) as info:
        await client.create_deal(DealCreate(pipeline_id=PIPELINE, stage_id=STAGE, title="x"))
    assert info.value.retryable is True


async def test_missing_token_or_pipeline_is_permanent(session: aiohttp.ClientSession) -> None:
    empty = PipeRunClient(PipeRunConfig(token=None), session)
    assert not empty.configured
    with pytest.raises(PipeRunError, match="PIPERUN_API_TOKEN") as info:
        await empty.find_person_by_reference(REF)
    assert info.value.retryable is False
    with pytest.raises(PipeRunError, match="PIPERUN_PIPELINE_ID"):
        await sync_lead(empty, make_card(), CrmLink(), pipeline_id=0, stage_id=STAGE, on_progress=Progress())


# --- logs -----------------------------------------------------------------------------


async def test_logs_never_hold_the_token_or_personal_data(client: PipeRunClient, fake: SpecPipeRun) -> None:
    fake.add_person(phones=["(21) 3333-4444"], emails=[])
    with capture_logs() as logs:
        link = await run_sync(client, make_card(company="Agro Souza", cnpj=CNPJ), CrmLink(), Progress())
        fake.fail_next("PUT", "/notes", status=422, payload=load("error_422_person.json"))
        with pytest.raises(PipeRunError):
            await run_sync(client, make_card(score=95), link, Progress())

    dumped = repr(logs)
    assert {e["event"] for e in logs} >= {
        "piperun_company_created",
        "piperun_person_created",
        "piperun_deal_created",
        "piperun_note_created",
        "piperun_request_failed",
    }
    assert TOKEN not in dumped
    for secret in (PHONE, "11987654321", "98765-4321", EMAIL, "João", CNPJ, "11.222.333/0001-81"):
        assert secret not in dumped
    assert any(e.get("contact") == "whatsapp:5511***21" for e in logs)


# --- erasure (LGPD) ---------------------------------------------------------------------


async def test_delete_person_is_the_documented_delete_and_a_second_one_is_done(
    client: PipeRunClient, mocked: aioresponses
) -> None:
    """[deletar-pessoa] DELETE /persons/{person_id}: 204 `{}`, 404 `Not Found`."""
    url = f"{BASE}/persons/748"
    mocked.delete(url, status=204, body="")
    mocked.delete(url, status=404, payload=load("error_404.json"))

    assert await client.delete_person(748) is True
    assert await client.delete_person(748) is False
    calls = mocked.requests[("DELETE", URL(url))]
    assert len(calls) == 2 and calls[0].kwargs["headers"]["token"] == TOKEN


async def test_anonymize_person_blanks_every_personal_field(
    client: PipeRunClient, mocked: aioresponses
) -> None:
    """[atualizar-pessoa] PUT /persons/{person_id}: the documented fields name, contactPhones,
    contactEmails and observation (which held our reference)."""
    url = f"{BASE}/persons/748"
    mocked.put(url, payload={"success": True, "message": "OK", "data": record("person_create_response.json")})
    mocked.put(url, status=404, payload=load("error_404.json"))

    assert await client.anonymize_person(748, name="Titular removido (LGPD)") is True
    [call] = mocked.requests[("PUT", URL(url))][:1]
    assert call.kwargs["json"] == {
        "name": "Titular removido (LGPD)",
        "contactPhones": [],
        "contactEmails": [],
        "observation": "",
    }
    assert await client.anonymize_person(748, name="x") is False


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (429, True), (422, False), (401, False)])
async def test_delete_person_failures_say_whether_to_retry(
    client: PipeRunClient, mocked: aioresponses, status: int, retryable: bool
) -> None:
    mocked.delete(
        f"{BASE}/persons/748", status=status, payload={"success": False, "message": f"{PHONE} recusado"}
    )
    with pytest.raises(PipeRunError) as caught:
        await client.delete_person(748)
    assert caught.value.retryable is retryable and caught.value.status == status
    assert TOKEN not in str(caught.value) and PHONE not in str(caught.value)

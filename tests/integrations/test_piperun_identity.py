"""A lead is linked only to its own CRM records.

The attack: lead A writes from WhatsApp 5544999990001 and types the phone and e-mail of
customer B, who already has a person and an open deal in PipeRun. Matching on what A
typed would post A's lead card on B's deal, and the CRM reporting B's deal won would
send Meta a Purchase for A. Existing people are found only by our own reference (written
on the person we created, in a documented field searched by a documented filter); PipeRun
documents no phone filter, so not even the number the WhatsApp provider reported is
looked up. What A typed is written on A's own person.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import CallbackResult, aioresponses
from pydantic import SecretStr

from integrations.piperun import (
    CrmLink,
    LeadCard,
    PipeRunClient,
    PipeRunConfig,
    external_code_for,
    reference_marker,
    sync_lead,
)
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fake_piperun import BASE, FakePipeRun
from tests.helpers.fakes import FakeOpenAI, FakeZapi, load_fixture
from tests.helpers.leads import HOT_LEAD
from tests.helpers.settle import settled
from tests.integrations.test_piperun_contract import SpecPipeRun
from web.app import create_app
from web.keys import STORE

TOKEN = "pr-tok-identity-3d9e1f"
PIPELINE, STAGE, OWNER = 26447, 141473, 34970

STRANGER = "5544999990001"  # lead A: the number Z-API reported for the chat
STRANGER_KEY = f"whatsapp:{STRANGER}"
CUSTOMER_PHONE = "(11) 98765-4321"  # customer B, as a seller typed it in PipeRun
CUSTOMER_PHONE_KEY = "5511987654321"
CUSTOMER_EMAIL = "joao.silva@agrosouza.com.br"


# --- the sync, against PipeRun's HTTP boundary ---------------------------------------


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
    return PipeRunClient(PipeRunConfig(api_url=BASE, token=SecretStr(TOKEN), timeout_s=5), session)


def customer(fake: FakePipeRun) -> tuple[dict[str, Any], dict[str, Any]]:
    """B: a person and an open deal (with a seller's note) already in the CRM."""
    person = fake.add_person(
        phones=[CUSTOMER_PHONE], emails=["Joao.Silva@AgroSouza.com.br"], name="João Silva"
    )
    deal = fake.add_deal(person_id=person["id"], title="João Silva — Secador 200 sacas")
    fake.notes.append({"id": 55501, "deal_id": deal["id"], "text": "Cliente pediu retorno à tarde."})
    return person, deal


def stranger_card(**overrides: Any) -> LeadCard:
    values: dict[str, Any] = {
        "contact_key": STRANGER_KEY,
        "channel": "zapi",
        "verified_phone": STRANGER,
        "name": "Carlos",
        "phone": CUSTOMER_PHONE,
        "email": CUSTOMER_EMAIL,
        "temperature": "quente",
        "score": 80,
    }
    values.update(overrides)
    return LeadCard(**values)


async def sync(client: PipeRunClient, card: LeadCard) -> CrmLink:
    async def progress(link: CrmLink) -> None:
        return None

    return await sync_lead(
        client, card, CrmLink(), pipeline_id=PIPELINE, stage_id=STAGE, owner_id=OWNER, on_progress=progress
    )


def person_searches(fake: FakePipeRun) -> list[dict[str, str]]:
    return fake.gets("/persons")


async def test_a_customers_typed_phone_and_email_never_attach_the_lead_to_the_customers_deal(
    client: PipeRunClient, fake: FakePipeRun
) -> None:
    person_b, deal_b = customer(fake)

    link = await sync(client, stranger_card())

    assert link.person_id != person_b["id"] and link.deal_id != deal_b["id"]
    # Only A's own reference was looked up; B's phone and e-mail never were.
    assert person_searches(fake) == [
        {"observation": reference_marker(external_code_for(STRANGER_KEY)), "show": "20"}
    ]
    # What A typed is on A's own, new person, after the verified number.
    [person_a] = fake.posts("/persons")
    assert person_a["contactPhones"] == [STRANGER, CUSTOMER_PHONE_KEY]
    assert person_a["contactEmails"] == [CUSTOMER_EMAIL]
    assert person_a["observation"] == reference_marker(external_code_for(STRANGER_KEY))
    [deal_a] = fake.posts("/deals")
    assert deal_a["person_id"] == link.person_id
    # B's deal keeps only the seller's note; A's card went to A's deal.
    assert [n["id"] for n in fake.notes if n["deal_id"] == deal_b["id"]] == [55501]
    assert [n["deal_id"] for n in fake.posts("/notes")] == [link.deal_id]
    assert fake.puts("/") == []


async def test_a_server_ignoring_the_search_filter_still_gives_the_lead_its_own_person(
    client: PipeRunClient, mocked: aioresponses
) -> None:
    fake = SpecPipeRun(mocked, token=TOKEN, ignore_person_filters=True)
    person_b, deal_b = customer(fake)

    link = await sync(client, stranger_card())

    assert link.person_id != person_b["id"] and link.deal_id != deal_b["id"]
    assert len(fake.posts("/persons")) == len(fake.posts("/deals")) == 1


async def test_an_instagram_lead_is_found_only_by_our_code(client: PipeRunClient, fake: FakePipeRun) -> None:
    person_b, deal_b = customer(fake)
    card = LeadCard(
        contact_key="instagram:17841400000000077",
        channel="instagram",
        name="Carlos",
        phone=CUSTOMER_PHONE,
        email=CUSTOMER_EMAIL,
        temperature="quente",
    )

    link = await sync(client, card)

    assert [sorted(q) for q in fake.gets("/persons")] == [["observation", "show"]]
    assert link.person_id != person_b["id"] and link.deal_id != deal_b["id"]
    [person] = fake.posts("/persons")
    assert (person["contactPhones"], person["contactEmails"]) == ([CUSTOMER_PHONE_KEY], [CUSTOMER_EMAIL])


async def test_a_number_typed_by_another_lead_does_not_hand_its_owner_to_that_lead(
    client: PipeRunClient, fake: FakePipeRun
) -> None:
    # X, on Instagram, types A's number: it lands on X's person as data ...
    x_card = LeadCard(
        contact_key="instagram:17841400000000099", channel="instagram", phone=STRANGER, temperature="quente"
    )
    x_link = await sync(client, x_card)
    # ... and when A, who owns that number, writes on WhatsApp, A gets a person of its own.
    a_link = await sync(client, stranger_card(phone=STRANGER, email=None))  # as from_record builds it

    assert a_link.person_id != x_link.person_id and a_link.deal_id != x_link.deal_id
    assert [p["observation"] for p in fake.posts("/persons")] == [
        reference_marker(external_code_for(x_card.contact_key)),
        reference_marker(external_code_for(STRANGER_KEY)),
    ]
    notes_on_x_deal = [n for n in fake.notes if n["deal_id"] == x_link.deal_id]
    assert len(notes_on_x_deal) == 1 and external_code_for(STRANGER_KEY) not in notes_on_x_deal[0]["text"]


async def test_a_customer_writing_from_their_own_number_gets_a_person_of_its_own(
    client: PipeRunClient, fake: FakePipeRun
) -> None:
    # [listar-pessoas] documents no phone filter, so even the verified number finds no one:
    # a duplicate person (and deal) a seller can merge, never a guess.
    person_b, deal_b = customer(fake)
    card = stranger_card(
        contact_key=f"whatsapp:{CUSTOMER_PHONE_KEY}",
        verified_phone=CUSTOMER_PHONE_KEY,
        phone="(44) 3333-4444",
        email=None,
    )

    link = await sync(client, card)

    assert link.person_id != person_b["id"] and link.deal_id != deal_b["id"]
    assert not any("phone" in q for q in person_searches(fake))
    [person] = fake.posts("/persons")
    assert person["contactPhones"] == [CUSTOMER_PHONE_KEY, "554433334444"]


def lead_record(channel: str, contact_id: str, phone: str | None, profile: dict[str, Any]) -> Any:
    key = f"{'whatsapp' if channel == 'zapi' else channel}:{contact_id}"
    return SimpleNamespace(
        contact_key=key,
        channel=channel,
        contact_id=contact_id,
        name=None,
        phone=phone,
        profile=profile,
        score=80,
        temperature="quente",
        score_reasons=[],
        summary=None,
    )


def test_only_the_number_the_provider_reported_is_verified() -> None:
    typed = {"phone": CUSTOMER_PHONE_KEY, "email": CUSTOMER_EMAIL}
    whatsapp = LeadCard.from_record(lead_record("zapi", STRANGER, STRANGER, typed))
    instagram = LeadCard.from_record(lead_record("instagram", "17841400000000077", None, typed))
    assert (whatsapp.verified_phone, whatsapp.phone) == (STRANGER, CUSTOMER_PHONE_KEY)
    assert (instagram.verified_phone, instagram.phone) == (None, CUSTOMER_PHONE_KEY)


# --- end to end: the bot, PipeRun, the CRM webhook and Meta ---------------------------

SECRET = "crm-hook-identity-7a2c"
PIXEL = "123456789012345"
CAPI_URL = f"https://graph.facebook.com/v21.0/{PIXEL}/events"


class FakeMeta:
    def __init__(self, mock: aioresponses) -> None:
        self.events: list[dict[str, Any]] = []
        mock.post(CAPI_URL, callback=self._post, repeat=True)

    async def _post(self, url: Any, **kwargs: Any) -> CallbackResult:
        body = kwargs["json"] if kwargs.get("json") is not None else json.loads(kwargs["data"])
        self.events.extend(body["data"])
        return CallbackResult(status=200, payload=load_fixture("meta_capi/success.json"))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event_name"] == name]


@pytest.fixture
def piperun(http_mock: aioresponses) -> FakePipeRun:
    return FakePipeRun(http_mock, token=TOKEN)


@pytest.fixture
def meta(http_mock: aioresponses) -> FakeMeta:
    return FakeMeta(http_mock)


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    piperun: FakePipeRun,
    meta: FakeMeta,
    clock: TestClock,
) -> TestClient:
    settings = fast_settings(
        tmp_path,
        piperun_api_token=TOKEN,
        piperun_pipeline_id=PIPELINE,
        piperun_stage_id=STAGE,
        piperun_owner_id=OWNER,
        crm_webhook_secret=SECRET,
        meta_pixel_id=PIXEL,
        meta_access_token="EAAB-capi-token-0001",
    )
    return await aiohttp_client(create_app(settings, clock=clock))


async def won(bot: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await bot.post(
        "/webhooks/crm", json={"event": "deal.won", **body}, headers={"X-Webhook-Secret": SECRET}
    )
    assert response.status == 200
    return dict(await response.json())


async def test_the_customers_won_deal_is_never_the_strangers_purchase(
    bot: TestClient, openai_fake: FakeOpenAI, piperun: FakePipeRun, meta: FakeMeta
) -> None:
    person_b, deal_b = customer(piperun)
    typed = {**HOT_LEAD, "phone": CUSTOMER_PHONE, "email": CUSTOMER_EMAIL}
    openai_fake.then(reply="Perfeito! Vou chamar nosso time.", lead=typed)
    response = await bot.post(
        "/webhooks/zapi",
        json=zapi_message(
            message_id="3EB0IDENT0000001", phone=STRANGER, text="Meu telefone é (11) 98765-4321"
        ),
    )
    assert response.status == 200
    await settled(bot)

    lead = await bot.app[STORE].get_lead(STRANGER_KEY)
    assert lead is not None and lead.crm_deal_id is not None
    assert lead.crm_person_id != person_b["id"] and lead.crm_deal_id != deal_b["id"]
    assert [n["id"] for n in piperun.notes if n["deal_id"] == deal_b["id"]] == [55501]
    [person_a] = piperun.posts("/persons")
    assert person_a["contactPhones"] == [STRANGER, CUSTOMER_PHONE_KEY]
    assert person_a["contactEmails"] == [CUSTOMER_EMAIL]
    [note_a] = piperun.posts("/notes")
    assert note_a["deal_id"] == lead.crm_deal_id and CUSTOMER_EMAIL in note_a["text"]

    # B closes a 250,000 BRL sale: the CRM reports B's deal, with B's phone.
    answer = await won(bot, {"deal_id": deal_b["id"], "phone": "+55 " + CUSTOMER_PHONE, "value": 250000})
    await settled(bot)
    assert answer == {"status": "ignored", "reason": "unknown_lead"}
    assert meta.named("Purchase") == []

    # A's own deal won is A's Purchase, hashed to the number A wrote from.
    answer = await won(bot, {"deal_id": lead.crm_deal_id, "value": 15000})
    await settled(bot)
    assert answer == {"status": "ok", "queued": ["meta_capi"]}
    [purchase] = meta.named("Purchase")
    assert purchase["custom_data"]["value"] == 15000
    assert hashlib.sha256(STRANGER.encode()).hexdigest() in purchase["user_data"]["ph"]

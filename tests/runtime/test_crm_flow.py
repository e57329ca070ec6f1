"""A hot lead lands in PipeRun once: its own person, one deal in the configured
pipeline/stage/origin, a note with the lead card that later turns update, and one more
note per quote request or technical question (CrmSync.note). PipeRun failing for a
while, or the sync dying half-way, never yields a duplicate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses
from pydantic import SecretStr
from structlog.testing import capture_logs

from agent.prompts import load_prompt_bundle
from core.outbox import PipeRunNote
from core.records import OutboxItem, lane_key
from integrations.piperun import PipeRunClient, PipeRunConfig, load_piperun_texts
from runtime.crm_sync import CrmSync, CrmSyncConfig
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fake_piperun import FakePipeRun
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.leads import HOT_LEAD
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import DISPATCHER, STORE

TOKEN = "pr-tok-crm-flow-81c2d"
PIPELINE, STAGE, ORIGIN, ORIGIN_IG, OWNER = 26447, 141473, 5501, 5502, 34970
LEAD = "5544999999999"
KEY = f"whatsapp:{LEAD}"

HOT = HOT_LEAD
HANDOFF_NOW = load_prompt_bundle().message("handoff_now")


@pytest.fixture
def piperun(http_mock: aioresponses) -> FakePipeRun:
    return FakePipeRun(http_mock, token=TOKEN)


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    piperun: FakePipeRun,
    clock: TestClock,
) -> TestClient:
    settings = fast_settings(
        tmp_path,
        piperun_api_token=TOKEN,
        piperun_pipeline_id=PIPELINE,
        piperun_stage_id=STAGE,
        piperun_origin_id_whatsapp=ORIGIN,
        piperun_origin_id_instagram=ORIGIN_IG,
        piperun_owner_id=OWNER,
    )
    return await aiohttp_client(create_app(settings, clock=clock))


async def say(bot: TestClient, message_id: str, text: str) -> None:
    response = await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id=message_id, phone=LEAD, text=text)
    )
    assert response.status == 200


async def crm_items_done(bot: TestClient, count: int) -> bool:
    items = await bot.app[STORE].list_outbox(kind="piperun_sync")
    return len(items) == count and all(i.status == "done" for i in items)


async def test_a_lead_turning_hot_becomes_one_deal_and_later_turns_update_its_note(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, piperun: FakePipeRun
) -> None:
    openai_fake.then(reply="Olá! Como posso ajudar?")
    await say(bot, "3EB0CRMF00000001", "Oi")
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Olá! Como posso ajudar?"]
    assert piperun.calls == []  # a cold lead is not the CRM's business

    openai_fake.then(reply="Perfeito, Maria! Vou chamar nosso time.", lead=HOT)
    await say(bot, "3EB0CRMF00000002", "Sou a Maria, do Frigorífico Boi Bom...")
    await settled(bot)
    assert zapi_fake.texts_to(LEAD)[1:] == ["Perfeito, Maria! Vou chamar nosso time.", HANDOFF_NOW]
    assert len(piperun.deals) == 1 and len(piperun.notes) == 1
    assert await crm_items_done(bot, 1)
    [deal] = piperun.posts("/deals")
    assert (deal["pipeline_id"], deal["stage_id"], deal["origin_id"], deal["owner_id"]) == (
        PIPELINE,
        STAGE,
        ORIGIN,
        OWNER,
    )
    assert len(piperun.persons) == 1
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None and lead.crm_deal_id == piperun.deals[0]["id"]
    assert lead.crm_person_id == piperun.persons[0]["id"]

    openai_fake.then(reply="Anotado!", lead={**HOT, "email": "maria@boibom.com.br"})
    await say(bot, "3EB0CRMF00000003", "Meu email é maria@boibom.com.br")
    await settled(bot)
    assert zapi_fake.texts_to(LEAD)[3:] == ["Anotado!"]
    assert len(piperun.deals) == 1 and len(piperun.persons) == 1 and len(piperun.notes) == 1
    [(_, note)] = piperun.puts("/notes/")
    assert "maria@boibom.com.br" in note["text"]


async def test_a_person_already_in_the_crm_is_not_looked_up_by_phone(
    bot: TestClient, openai_fake: FakeOpenAI, piperun: FakePipeRun
) -> None:
    # PipeRun's GET /persons documents no phone filter: the lead gets a person of its own
    # (a seller merges the two) instead of a guess.
    existing = piperun.add_person(phones=["(44) 99999-9999"], emails=[])
    openai_fake.then(reply="Perfeito!", lead=HOT)
    await say(bot, "3EB0CRMF00000011", "Sou a Maria, quero 3 mil por dia, urgente")
    await settled(bot)
    assert len(piperun.deals) == 1 and len(piperun.notes) == 1
    assert await crm_items_done(bot, 1)
    assert not any("phone" in q for q in piperun.gets("/persons"))
    assert len(piperun.posts("/persons")) == 1
    assert piperun.deals[0]["person_id"] != existing["id"]


async def test_piperun_down_for_a_while_then_back_still_gives_exactly_one_deal(
    bot: TestClient, openai_fake: FakeOpenAI, piperun: FakePipeRun
) -> None:
    for _ in range(3):
        piperun.fail_next("POST", "/deals", status=503)
    openai_fake.then(reply="Perfeito!", lead=HOT)
    await say(bot, "3EB0CRMF00000021", "Quero comprar, é urgente")
    await settled(bot, timeout=5)
    assert await crm_items_done(bot, 1)
    assert len(piperun.posts("/deals")) == 4  # three 503s, then the one that landed
    assert len(piperun.deals) == 1 and len(piperun.notes) == 1
    assert len(piperun.persons) == 1  # the retries resumed from the saved person id
    assert len(piperun.posts("/persons")) == 1


async def test_a_hot_lead_then_a_handoff_in_quick_succession_is_still_one_deal(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, piperun: FakePipeRun
) -> None:
    for _ in range(2):
        piperun.fail_next("POST", "/deals", status=500)  # keep the first sync busy
    openai_fake.then(reply="Perfeito!", lead=HOT)
    await say(bot, "3EB0CRMF00000031", "Quero comprar")
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Perfeito!", HANDOFF_NOW]
    openai_fake.then(
        reply="Já chamo um vendedor.",
        lead=HOT,
        tools=[{"tool": "handoff_to_human", "reason": "pediu_humano", "summary": "Quer falar com vendedor"}],
    )
    await say(bot, "3EB0CRMF00000032", "Quero falar com um vendedor")
    await settled(bot)
    assert zapi_fake.texts_to(LEAD)[2:] == ["Já chamo um vendedor."]  # handed off already: no second notice
    assert len(piperun.notes) == 1
    assert len(piperun.deals) == 1 and len(piperun.persons) == 1 and len(piperun.posts("/persons")) == 1


async def test_a_dead_crm_push_replayed_by_the_operator_is_delivered_once(
    bot: TestClient, openai_fake: FakeOpenAI, piperun: FakePipeRun
) -> None:
    piperun.fail_next(
        "POST", "/deals", status=422, payload={"success": False, "message": "O campo stage_id é inválido."}
    )
    openai_fake.then(reply="Perfeito!", lead=HOT)
    await say(bot, "3EB0CRMF00000041", "Quero comprar")
    store = bot.app[STORE]
    await settled(bot)  # a 422 is not retried: the item is dead, a terminal state
    [item] = await store.list_outbox(kind="piperun_sync")
    assert item.status == "dead" and item.attempts == 1
    assert "422" in (item.last_error or "") and piperun.deals == []

    # The operator fixes the stage and runs `python main.py outbox replay ID`.
    assert await store.replay_outbox(item.id or 0)
    bot.app[DISPATCHER].wake()
    await settled(bot, timeout=5)
    assert len(piperun.deals) == 1 and len(piperun.notes) == 1
    assert len(piperun.posts("/deals")) == 2  # the rejected one, then the replay
    replayed = await store.get_outbox(item.id or 0)
    assert (
        replayed is not None
        and replayed.status == "done"
        and replayed.idempotency_key == item.idempotency_key
    )
    assert len(piperun.persons) == 1  # the person created before the failure was reused


# --- CrmSync.note: a quote request or a technical question on the deal ------------------

QUOTE = "Pedido de orçamento: 2 secadores <3 mil sacas/dia>"


def note_item(text: str, key: str, item_id: int) -> tuple[OutboxItem, PipeRunNote]:
    payload = PipeRunNote(contact_key=KEY, text=text)
    item = payload.item(order_key=lane_key("crm", KEY), idempotency_key=key)
    item.id = item_id
    return item, payload


async def run_note(bot: TestClient, item: OutboxItem, payload: PipeRunNote) -> None:
    async with aiohttp.ClientSession() as session:
        client = PipeRunClient(PipeRunConfig(token=SecretStr(TOKEN)), session)
        crm = CrmSync(client, bot.app[STORE], CrmSyncConfig(PIPELINE, STAGE), load_piperun_texts())
        await crm.note(item, payload)


async def test_a_quote_request_is_one_note_on_the_leads_deal_even_when_retried(
    bot: TestClient, openai_fake: FakeOpenAI, piperun: FakePipeRun
) -> None:
    openai_fake.then(reply="Perfeito!", lead=HOT)
    await say(bot, "3EB0CRMF00000051", "Quero comprar")
    await settled(bot)
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None and lead.crm_deal_id is not None

    item, payload = note_item(QUOTE, "quote:turn-51", 9001)
    await run_note(bot, item, payload)
    await run_note(bot, item, payload)  # the answer was lost: the outbox runs it again

    quote_notes = [n for n in piperun.posts("/notes") if n["text"].startswith("Pedido")]
    assert quote_notes == [
        {"text": quote_notes[0]["text"], "deal_id": lead.crm_deal_id},
    ]
    assert "2 secadores &lt;3 mil sacas/dia&gt;<br><br>Ref. SDR: sdr-" in quote_notes[0]["text"]
    assert len(piperun.notes) == 2  # the lead card and the quote


async def test_no_deal_or_an_erased_lead_skips_the_note(
    bot: TestClient, openai_fake: FakeOpenAI, piperun: FakePipeRun
) -> None:
    openai_fake.then(reply="Olá!")
    await say(bot, "3EB0CRMF00000061", "Oi")  # a cold lead: no deal
    await settled(bot)
    with capture_logs() as logs:
        await run_note(bot, *note_item(QUOTE, "quote:turn-61", 9002))
        erased = PipeRunNote(contact_key="whatsapp:5511900000000", text=QUOTE)
        await run_note(bot, erased.item(order_key="crm:x", idempotency_key="k"), erased)
    assert piperun.calls == []
    reasons = [e.get("reason") for e in logs if e["event"] == "piperun_note_skipped"]
    assert reasons == ["no_deal", "lead_erased"]


async def test_the_leads_routed_seller_owns_the_new_deal(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    piperun: FakePipeRun,
    clock: TestClock,
) -> None:
    # With meetings on, a lead routed to a seller (prompts/sellers.toml) gets a deal owned
    # by that seller's PipeRun user, not the default PIPERUN_OWNER_ID.
    settings = fast_settings(
        tmp_path,
        piperun_api_token=TOKEN,
        piperun_pipeline_id=PIPELINE,
        piperun_stage_id=STAGE,
        piperun_owner_id=OWNER,
        meetings_enabled=True,
    )
    bot = await aiohttp_client(create_app(settings, clock=clock))
    assert await bot.app[STORE].assign_seller(KEY, ["exemplo-carlos"]) == "exemplo-carlos"

    openai_fake.then(reply="Perfeito, Maria! Vou chamar nosso time.", lead=HOT)
    await say(bot, "3EB0CRMO00000001", "Sou a Maria, do Frigorífico Boi Bom...")
    await settled(bot)

    [deal] = piperun.posts("/deals")
    assert deal["owner_id"] == 1002  # exemplo-carlos's piperun_user_id

"""When the bot must stay quiet, checked at the last moment (not only when a turn starts):
a person writing from the phone, an opt-out, a nudge overtaken by the lead's reply."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from aiohttp.test_utils import TestClient

from agent.guardrails import is_opt_out
from tests.conftest import zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually
from tests.helpers.settle import settled
from web.keys import FOLLOW_UPS, RUNNER, STORE

LEAD = "5544999999999"


def rows(bot: TestClient, sql: str) -> list[tuple]:
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        return db.execute(sql).fetchall()


async def post(bot: TestClient, payload: dict) -> dict:
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200, await response.text()
    return await response.json()


def from_phone(message_id: str, text: str) -> dict:
    payload = zapi_message("received_from_me.json", message_id=message_id, phone=LEAD)
    payload["text"] = {"message": text}
    return payload


async def test_a_person_answering_while_the_model_thinks_wins_over_the_bots_reply(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Oi! Sou o assistente virtual.", delay=0.4)
    await post(bot, zapi_message(message_id="3EB0RACE00000001", text="Oi"))
    # The model is busy on purpose (0.4 s): wait for its one call to start, a count that
    # cannot go past 1 here, so the person writes while the bot is thinking.
    await eventually(lambda: openai_fake.calls_started == 1)
    await post(bot, from_phone("3EB0RACE00000002", "Oi! Aqui é o Pedro, já te atendo."))
    await settled(bot)
    assert rows(bot, "SELECT status FROM outbox") == [("done",)]
    assert openai_fake.calls_started == 1
    assert zapi_fake.sent == []
    status, error = rows(bot, "SELECT status, error FROM messages WHERE direction = 'out'")[0]
    assert status == "failed" and "person" in error


async def test_a_seller_writing_first_to_a_new_prospect_keeps_the_bot_out(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await post(bot, from_phone("3EB0FIRST0000001", "Olá! Vi seu cadastro na feira, posso ajudar?"))
    await post(bot, zapi_message(message_id="3EB0FIRST0000002", text="Oi Pedro, quero sim"))
    await settled(bot)
    assert rows(bot, "SELECT status FROM inbound WHERE provider_message_id = '3EB0FIRST0000002'") == [
        ("done",)
    ]
    assert openai_fake.calls_started == 0
    assert zapi_fake.sent == []


async def test_sair_while_a_person_is_talking_still_opts_out(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await post(bot, from_phone("3EB0SAIR00000001", "Oi, aqui é o Pedro do comercial."))
    await post(bot, zapi_message(message_id="3EB0SAIR00000002", text="SAIR"))
    await settled(bot)
    assert rows(bot, "SELECT opted_out FROM leads") == [(1,)]
    assert zapi_fake.texts_to(LEAD) == [bot.app[RUNNER].agent.deps.prompts.message("opt_out_confirmation")]


async def test_a_provider_retry_of_a_from_me_message_does_not_extend_the_pause(
    bot: TestClient, clock: TestClock
) -> None:
    payload = from_phone("3EB0RETRY0000001", "Oi, aqui é o Pedro.")
    await post(bot, payload)
    first = rows(bot, "SELECT paused_until FROM leads")[0][0]
    assert first is not None
    clock.advance(hours=6)
    await post(bot, payload)
    assert rows(bot, "SELECT paused_until FROM leads")[0][0] == first


async def test_a_nudge_overtaken_by_the_leads_reply_is_never_sent(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, clock: TestClock
) -> None:
    openai_fake.then(reply="Prazer! Quantos hambúrgueres por dia?", lead={"name": "Maria"})
    await post(bot, zapi_message(message_id="3EB0NUDGE0000001", text="Oi, sou a Maria"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Prazer! Quantos hambúrgueres por dia?"]
    clock.advance(hours=3)  # past the first nudge's due time
    openai_fake.then(reply="Oi Maria, conseguiu ver a quantidade?", delay=0.3)  # the nudge, slow
    openai_fake.then(reply="Ótimo, 500 por dia! A FBM100 atende.")
    nudge = asyncio.create_task(bot.app[FOLLOW_UPS].run_due())
    # The nudge's model call is slow on purpose: wait for it to start (a count that cannot
    # go past 2 here), so the lead's reply arrives while the nudge is being written.
    await eventually(lambda: openai_fake.calls_started == 2)
    await post(bot, zapi_message(message_id="3EB0NUDGE0000002", text="Uns 500 por dia"))
    assert await nudge == ["lead_replied"]
    await settled(bot)
    assert openai_fake.calls_started == 3
    assert [s["message"] for s in zapi_fake.sent] == [
        "Prazer! Quantos hambúrgueres por dia?",
        "Ótimo, 500 por dia! A FBM100 atende.",
    ]


async def test_a_store_failure_mid_turn_does_not_strand_the_lead(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = bot.app[STORE]
    real_commit = store.commit_turn
    calls = {"n": 0}

    async def flaky_commit(commit):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("disk I/O error")
        await real_commit(commit)

    monkeypatch.setattr(store, "commit_turn", flaky_commit)
    await post(bot, zapi_message(message_id="3EB0FLAKY0000001", text="Oi"))
    await settled(bot, timeout=10)
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]
    assert len(zapi_fake.sent) == 1
    assert calls["n"] == 2  # the failed commit, then the retried turn's


@pytest.mark.parametrize(
    "text",
    [
        "Não quero mais receber ligação, prefiro por aqui",
        "quero sair da lista de espera e comprar logo",
        "Para já!",
    ],
)
def test_sentences_about_something_else_are_not_opt_outs(text: str) -> None:
    assert not is_opt_out(text)

"""Follow-up nudges: a lead who goes silent mid-qualification gets up to
`FOLLOW_UP_DELAYS_H` short messages written by the agent, and never after a reply,
an opt-out or a handoff.

The whole app runs (`bot` fixture) on the test clock (tests/helpers/clock.py), moved by
the test ("two hours later"); a scheduler pass is run by hand with `FOLLOW_UPS.run_due()`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.models import InboundMessage, MessageKind, contact_key_for
from core.records import FollowUp, TurnCommit
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import FOLLOW_UPS, RUNNER, SETTINGS, STORE

LEAD = "5544999999999"
KEY = f"whatsapp:{LEAD}"
NUDGE_1 = "Oi, Maria! Conseguiu ver a FB300? Me conta quantos hambúrgueres vocês fazem por dia."
NUDGE_2 = "Maria, fico à disposição se quiser retomar. Qual seria o volume diário?"
FIRST_REPLY = "Prazer, Maria! Quantos hambúrgueres vocês fazem por dia?"


async def post(bot: TestClient, payload: object) -> None:
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200, await response.text()


def db_rows(bot: TestClient, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        return db.execute(sql, args).fetchall()


def follow_ups(bot: TestClient) -> list[tuple]:
    return db_rows(bot, "SELECT attempt, status, reason, due_at FROM followups ORDER BY id")


def pending(bot: TestClient) -> list[tuple]:
    return [f for f in follow_ups(bot) if f[1] == "pending"]


async def run_due(bot: TestClient) -> list[str]:
    return await bot.app[FOLLOW_UPS].run_due()


def inbound_text(message_id: str, text: str) -> InboundMessage:
    return InboundMessage(
        channel="zapi",
        contact_id=LEAD,
        provider_message_id=message_id,
        kind=MessageKind.TEXT,
        text=text,
        phone=LEAD,
        name="Maria Souza",
    )


async def first_turn(
    bot: TestClient,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    *,
    sent: list[str] | None = None,
    **step: Any,
) -> None:
    """Maria says who she is and what she wants, then goes silent mid-qualification.

    `sent`: what she receives, when it is not just the scripted reply."""
    step = {
        "reply": FIRST_REPLY,
        "lead": {"name": "Maria", "product_interest": "FB300"},
        **step,
    }
    openai_fake.then(**step)
    await post(
        bot, zapi_message(message_id="3EB0FOLLOW0000001", text="Oi, sou a Maria e quero saber da FB300")
    )
    await settled(bot)
    assert db_rows(bot, "SELECT status FROM inbound") == [("done",)]
    assert db_rows(bot, "SELECT COUNT(*) FROM outbox WHERE status != 'done'") == [(0,)]
    assert zapi_fake.texts_to(LEAD) == (sent if sent is not None else [step["reply"]])
    assert openai_fake.chat_calls == 1


# --- scheduling and firing -------------------------------------------------------------------


async def test_a_silent_lead_gets_one_follow_up_due_after_the_first_delay(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    delays = bot.app[SETTINGS].follow_up_delays_h
    assert delays == [2.0, 22.0]

    [(attempt, status, reason, due_at)] = follow_ups(bot)
    assert (attempt, status, reason) == (1, "pending", None)
    assert abs(datetime.fromisoformat(due_at) - (clock.now + timedelta(hours=delays[0]))) < timedelta(
        seconds=1
    )


async def test_nothing_fires_before_it_is_due(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    clock.advance(hours=1, minutes=59)
    assert await run_due(bot) == []
    await settled(bot)
    assert openai_fake.chat_calls == 1
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY]
    assert len(zapi_fake.sent) == 1
    assert [f[1] for f in follow_ups(bot)] == ["pending"]


async def test_when_due_the_agent_writes_one_nudge_from_the_conversation_and_it_is_sent(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    openai_fake.then(reply=NUDGE_1)
    clock.advance(hours=2, minutes=1)

    assert await run_due(bot) == ["sent"]
    await settled(bot)
    assert [s["message"] for s in zapi_fake.sent] == [FIRST_REPLY, NUDGE_1]
    assert zapi_fake.sent[1]["phone"] == LEAD
    assert zapi_fake.sent[1]["message"] == NUDGE_1
    assert openai_fake.chat_calls == 2

    messages = openai_fake.chat_requests[1]["messages"]
    instruction = (
        bot.app[RUNNER].agent.deps.prompts.message("follow_up_instruction").replace("{tentativa}", "1")
    )
    # The conversation so far, then the instruction: no new message from the lead.
    assert messages[-1] == {"role": "system", "content": instruction}
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "Oi, sou a Maria e quero saber da FB300"
    ]
    assert {
        "role": "assistant",
        "content": "Prazer, Maria! Quantos hambúrgueres vocês fazem por dia?",
    } in messages
    assert "Maria" in messages[-2]["content"]  # the profile is in the turn's context (system)

    # Stored as the bot's message; the lead did not write.
    assert db_rows(bot, "SELECT direction, text FROM messages ORDER BY id")[-1] == ("out", NUDGE_1)
    assert db_rows(bot, "SELECT lead_message_count FROM leads") == [(1,)]
    # Running the scheduler again does not send it twice.
    assert await run_due(bot) == []
    await settled(bot)
    assert [s["message"] for s in zapi_fake.sent] == [FIRST_REPLY, NUDGE_1]
    assert openai_fake.chat_calls == 2


async def test_the_second_nudge_follows_and_there_is_no_third(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    delays = bot.app[SETTINGS].follow_up_delays_h

    lead_wrote_at = clock.now
    openai_fake.then(reply=NUDGE_1)
    clock.advance(hours=delays[0], minutes=1)
    assert await run_due(bot) == ["sent"]
    [(attempt, status, _, due_at)] = pending(bot)
    assert (attempt, status) == (2, "pending")
    # Counted from the lead's last message, so both nudges fit in a 24 h window.
    assert abs(datetime.fromisoformat(due_at) - (lead_wrote_at + timedelta(hours=delays[1]))) < timedelta(
        seconds=5
    )
    assert [(f[0], f[1]) for f in follow_ups(bot)] == [(1, "sent"), (2, "pending")]

    clock.advance(hours=delays[1] - delays[0] - 1)
    assert await run_due(bot) == []

    openai_fake.then(reply=NUDGE_2)
    clock.advance(hours=1, minutes=1)
    assert await run_due(bot) == ["sent"]
    await settled(bot)
    assert [s["message"] for s in zapi_fake.sent] == [FIRST_REPLY, NUDGE_1, NUDGE_2]
    instruction = openai_fake.chat_requests[2]["messages"][-1]
    assert instruction["role"] == "system" and "2" in instruction["content"]

    # The configured list is exhausted: nothing more, however long she stays silent.
    assert pending(bot) == []
    assert [(f[0], f[1]) for f in follow_ups(bot)] == [(1, "sent"), (2, "sent")]
    clock.advance(days=30)
    assert await run_due(bot) == []
    await settled(bot)
    assert [s["message"] for s in zapi_fake.sent] == [FIRST_REPLY, NUDGE_1, NUDGE_2]
    assert openai_fake.chat_calls == 3


# --- cancelled ---------------------------------------------------------------------------------


async def test_a_reply_from_the_lead_cancels_the_pending_nudge(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    clock.advance(hours=1)
    openai_fake.then(
        reply="Ótimo, 3.000 por dia! De qual cidade você fala?", lead={"volume": "3.000 por dia"}
    )
    await post(bot, zapi_message(message_id="3EB0FOLLOW0000002", text="uns 3 mil por dia"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY, "Ótimo, 3.000 por dia! De qual cidade você fala?"]

    # The first nudge is cancelled because she replied; her new turn scheduled a fresh one.
    assert [(f[0], f[1], f[2]) for f in follow_ups(bot)] == [
        (1, "cancelled", "lead_replied"),
        (1, "pending", None),
    ]
    clock.advance(hours=1, minutes=30)  # the old one would be due now, the new one is not
    assert await run_due(bot) == []
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY, "Ótimo, 3.000 por dia! De qual cidade você fala?"]
    assert len(zapi_fake.sent) == 2
    assert openai_fake.chat_calls == 2


async def test_a_nudge_due_while_the_leads_message_waits_is_cancelled_not_sent(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    # Her message is in the inbox but her turn has not run yet (the debounce window).
    await bot.app[STORE].add_inbound(inbound_text("3EB0FOLLOW0000003", "oi, voltei"))
    clock.advance(hours=2, minutes=1)
    assert await run_due(bot) == ["lead_replied"]
    assert openai_fake.chat_calls == 1
    assert [(f[1], f[2]) for f in follow_ups(bot)] == [("cancelled", "lead_replied")]

    # Her debounce window ends and her turn runs: she gets its answer and nothing else
    # (no nudge went out before, nor after it).
    bot.app[RUNNER].notify(contact_key_for("zapi", LEAD))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY, openai_fake.default_reply]
    assert len(zapi_fake.sent) == 2
    assert openai_fake.chat_calls == 2
    assert openai_fake.user_contents()[-1] == "oi, voltei"


async def test_a_nudge_due_while_the_lead_is_being_answered_waits_and_is_then_cancelled(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    openai_fake.then(reply="Ótimo! De qual cidade você fala?", delay=0.5)
    await post(bot, zapi_message(message_id="3EB0FOLLOW0000006", text="uns 500 por dia"))
    await eventually(lambda: openai_fake.calls_started == 2)

    clock.advance(hours=2, minutes=1)
    assert await run_due(bot) == ["busy"]  # her turn is running: the nudge does not cut in

    await settled(bot)
    assert [(f[1], f[2]) for f in follow_ups(bot)] == [("cancelled", "lead_replied"), ("pending", None)]
    assert [s["message"] for s in zapi_fake.sent] == [FIRST_REPLY, "Ótimo! De qual cidade você fala?"]
    assert openai_fake.chat_calls == 2


async def test_an_opt_out_cancels_the_nudges_for_good(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    # The scheduler picked the nudge up just before her opt-out committed.
    [stale] = await bot.app[STORE].due_follow_ups(now=clock.now + timedelta(hours=3), limit=10)
    await post(bot, zapi_message(message_id="3EB0FOLLOW0000004", text="SAIR"))
    await settled(bot)
    confirmation = bot.app[RUNNER].agent.deps.prompts.message("opt_out_confirmation")
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY, confirmation]
    assert [(f[1], f[2]) for f in follow_ups(bot)] == [("cancelled", "lead_replied")]

    clock.advance(days=2)
    assert await run_due(bot) == []
    assert await bot.app[RUNNER].run_follow_up(stale) == "opted_out"
    await settled(bot)
    # The reply and the opt-out confirmation, nothing more.
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY, confirmation]
    assert len(zapi_fake.sent) == 2
    assert openai_fake.chat_calls == 1
    assert pending(bot) == []


async def test_a_handoff_cancels_the_nudges(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    [stale] = await bot.app[STORE].due_follow_ups(now=clock.now + timedelta(hours=3), limit=10)
    openai_fake.then(
        reply="Claro, vou chamar um vendedor.",
        tools=[{"tool": "handoff_to_human", "reason": "pediu_humano", "summary": "Pediu um vendedor."}],
    )
    await post(bot, zapi_message(message_id="3EB0FOLLOW0000005", text="quero falar com um vendedor"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY, "Claro, vou chamar um vendedor."]
    assert db_rows(bot, "SELECT handoff_state FROM leads") == [("requested",)]

    assert pending(bot) == []  # handed off: no new nudge scheduled
    clock.advance(days=2)
    assert await run_due(bot) == []
    assert await bot.app[RUNNER].run_follow_up(stale) == "handed_off"
    await settled(bot)
    assert openai_fake.chat_calls == 2
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY, "Claro, vou chamar um vendedor."]


async def test_a_hot_lead_gets_no_nudge(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(
        bot,
        openai_fake,
        zapi_fake,
        reply="Perfeito, Maria! Já vou passar para o nosso time comercial.",
        sent=[
            "Perfeito, Maria! Já vou passar para o nosso time comercial.",
            bot.app[RUNNER].agent.deps.prompts.message("handoff_now"),  # weekday, in hours
        ],
        lead={
            "name": "Maria",
            "company": "Frigorífico Boi Bom",
            "segment": "frigorífico",
            "product_interest": "FB300",
            "volume": "3.000 hambúrgueres por dia",
            "volume_per_day": 3000,
            "urgency": "imediata",
            "decision_role": "decisor",
            "city": "Londrina",
            "state": "PR",
        },
    )
    assert db_rows(bot, "SELECT temperature, handoff_state FROM leads") == [("quente", "requested")]
    assert follow_ups(bot) == []
    clock.advance(days=2)
    assert await run_due(bot) == []


async def test_no_nudge_when_the_model_is_down_the_nudge_waits(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    attempts = bot.app[SETTINGS].openai_max_attempts
    for _ in range(attempts):
        openai_fake.then(status=503)
    clock.advance(hours=2, minutes=1)

    assert await run_due(bot) == ["deferred"]
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY]
    assert len(zapi_fake.sent) == 1
    assert [(f[1], f[2]) for f in follow_ups(bot)] == [("pending", None)]

    # The model is back: the next pass sends it.
    openai_fake.then(reply=NUDGE_1)
    assert await run_due(bot) == ["sent"]
    await settled(bot)
    assert [s["message"] for s in zapi_fake.sent] == [FIRST_REPLY, NUDGE_1]


async def test_follow_ups_can_be_turned_off(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    monkeypatch.setenv("FOLLOW_UP_DELAYS_H", "[]")
    settings = fast_settings(tmp_path)
    assert settings.follow_up_delays_h == []
    c = TestClock()
    client = await aiohttp_client(create_app(settings, clock=c))

    await first_turn(client, openai_fake, zapi_fake)
    assert follow_ups(client) == []
    c.advance(days=3)
    assert await run_due(client) == []
    await settled(client)
    assert [s["message"] for s in zapi_fake.sent] == [FIRST_REPLY]
    assert openai_fake.chat_calls == 1


async def test_custom_delays_are_honoured(
    aiohttp_client: Callable[..., Any], tmp_path: Path, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    c = TestClock()
    client = await aiohttp_client(create_app(fast_settings(tmp_path, follow_up_delays_h=[0.5]), clock=c))
    await first_turn(client, openai_fake, zapi_fake)

    c.advance(minutes=29)
    assert await run_due(client) == []
    openai_fake.then(reply=NUDGE_1)
    c.advance(minutes=2)
    assert await run_due(client) == ["sent"]
    await settled(client)
    assert [s["message"] for s in zapi_fake.sent] == [FIRST_REPLY, NUDGE_1]
    assert pending(client) == []  # only one configured


async def test_a_forgotten_lead_gets_no_nudge(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await first_turn(bot, openai_fake, zapi_fake)
    [stale] = await bot.app[STORE].due_follow_ups(now=clock.now + timedelta(hours=3), limit=10)
    assert await bot.app[STORE].forget_lead(KEY) is True
    clock.advance(hours=3)
    assert await run_due(bot) == []
    assert await bot.app[RUNNER].run_follow_up(stale) == "lead_gone"
    await settled(bot)
    assert openai_fake.chat_calls == 1
    assert [s["message"] for s in zapi_fake.sent] == [FIRST_REPLY]


async def test_on_a_24h_window_channel_no_nudge_goes_out_after_the_window(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    """WhatsApp Cloud only allows free text within 24 h of the lead's last message: a
    nudge that comes due later (the bot was down, a long delay) is dropped, not sent."""
    await bot.app[STORE].commit_turn(
        TurnCommit(
            turn_id="cloud0001",
            contact_key="whatsapp_cloud:5511987650001",
            channel="whatsapp_cloud",
            contact_id="5511987650001",
            phone="5511987650001",
            name="Ana",
            inbound_ids=[],
            messages=[],
            profile={"name": "Ana"},
            score=5,
            temperature="frio",
            score_reasons=[],
            lead_messages_added=1,
            follow_up=FollowUp(due_at=clock.now + timedelta(hours=2), attempt=1),
            at=clock.now,  # she wrote on the test clock, as the runtime's commits say
        )
    )
    clock.advance(hours=25)
    assert await run_due(bot) == ["outside_24h_window"]
    await settled(bot)
    assert openai_fake.chat_calls == 0
    assert zapi_fake.sent == []
    assert db_rows(bot, "SELECT status, reason FROM followups") == [("cancelled", "outside_24h_window")]


async def test_the_answer_to_the_last_nudge_is_read_with_the_conversation_in_view(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    """With the defaults (nudges after 2 h and 22 h, sessions idle after 24 h) the second
    nudge goes out 24 h after the lead's last message. When she answers it, the bot must
    still see what it just asked her, not start a conversation from scratch."""
    settings = bot.app[SETTINGS]
    assert (settings.follow_up_delays_h, settings.session_idle_hours) == ([2.0, 22.0], 24.0)
    await first_turn(bot, openai_fake, zapi_fake)

    openai_fake.then(reply=NUDGE_1)
    clock.advance(hours=2, minutes=1)
    assert await run_due(bot) == ["sent"]
    openai_fake.then(reply=NUDGE_2)
    clock.advance(hours=22, minutes=1)
    assert await run_due(bot) == ["sent"]

    clock.advance(minutes=5)
    openai_fake.then(reply="Que bom, Maria! Então me conta: quantos por dia?")
    await post(bot, zapi_message(message_id="3EB0FOLLOW0000009", text="sim, ainda tenho interesse"))
    await settled(bot)
    assert openai_fake.chat_calls == 4

    messages = openai_fake.chat_requests[3]["messages"]
    assert {"role": "assistant", "content": NUDGE_2} in messages
    assert {"role": "user", "content": "Oi, sou a Maria e quero saber da FB300"} in messages
    assert db_rows(bot, "SELECT status FROM inbound") == [("done",), ("done",)]
    assert [s["message"] for s in zapi_fake.sent] == [
        FIRST_REPLY,
        NUDGE_1,
        NUDGE_2,
        "Que bom, Maria! Então me conta: quantos por dia?",
    ]
    assert len(db_rows(bot, "SELECT id FROM conversations")) == 1

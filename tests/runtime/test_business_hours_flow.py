"""What the lead hears depends on when they write, never on when the suite runs.

The whole bot runs on the test clock, at each instant that matters to
prompts/business_hours.toml: a weekday inside hours, the same weekday at 03:00, a
Saturday night and a national holiday (Christmas).
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from agent.business_hours import load_business_hours
from agent.prompts import load_prompt_bundle
from tests.conftest import zapi_message
from tests.helpers.clock import INSTANTS, NEXT_OPENING, TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.leads import HOT_LEAD
from tests.helpers.settle import settled
from web.keys import FOLLOW_UPS, STORE

LEAD = "5544999999999"
KEY = f"whatsapp:{LEAD}"
PROMPTS = load_prompt_bundle()
PROMISE = load_business_hours().messages.handoff_promise


@pytest.fixture(params=list(INSTANTS))
def instant(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock(instant: str) -> TestClock:
    return TestClock(INSTANTS[instant])


async def say(bot: TestClient, message_id: str, text: str) -> None:
    response = await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id=message_id, phone=LEAD, text=text)
    )
    assert response.status == 200, await response.text()


async def test_a_hot_lead_is_told_when_a_person_answers(
    bot: TestClient, instant: str, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Perfeito, Maria!", lead=HOT_LEAD)
    await say(bot, "3EB0HOURS0000001", "Sou a Maria, do Frigorífico Boi Bom, quero 3 mil por dia, urgente")
    await settled(bot)

    opening = NEXT_OPENING[instant]
    notice = PROMPTS.message("handoff_now") if opening is None else PROMISE.replace("{quando}", opening)
    assert zapi_fake.texts_to(LEAD) == ["Perfeito, Maria!", notice]
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None and lead.handoff_state == "requested"


async def test_the_model_is_told_whether_the_team_is_in(
    bot: TestClient, instant: str, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await say(bot, "3EB0HOURS0000002", "Oi, vocês têm formadora de hambúrguer?")
    await settled(bot)

    # The static system prompt, then this turn's context (where the opening hours are).
    _, system = [m["content"] for m in openai_fake.chat_requests[0]["messages"] if m["role"] == "system"]
    opening = NEXT_OPENING[instant]
    if opening is None:
        assert "Aberto agora: o time comercial está disponível." in system
    else:
        assert f"Fora do horário: o time comercial volta {opening}." in system
    assert len(zapi_fake.texts_to(LEAD)) == 1  # a plain question: no hand-off notice at any hour


async def test_a_silent_lead_is_nudged_after_the_delay_whatever_the_hour(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Prazer, Maria! Quantos hambúrgueres por dia?", lead={"name": "Maria"})
    await say(bot, "3EB0HOURS0000003", "Oi, sou a Maria")
    await settled(bot)

    clock.advance(hours=1, minutes=59)
    assert await bot.app[FOLLOW_UPS].run_due() == []
    openai_fake.then(reply="Maria, conseguiu ver? Quantos por dia vocês fazem?")
    clock.advance(minutes=2)
    assert await bot.app[FOLLOW_UPS].run_due() == ["sent"]
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [
        "Prazer, Maria! Quantos hambúrgueres por dia?",
        "Maria, conseguiu ver? Quantos por dia vocês fazem?",
    ]

"""GET /metrics: what an operator graphs — webhooks by outcome, turns and their latency
split into model and own time, tokens, outbox depth, dead letters, leads by temperature."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from tests.conftest import zapi_message
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually
from tests.helpers.settle import settled


def value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = (
        rf"^{re.escape(name)}(?:\{{{re.escape(wanted)}\}})? ([0-9.e+-]+)$"
        if wanted
        else rf"^{re.escape(name)} ([0-9.e+-]+)$"
    )
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name}{{{wanted}}} not in metrics"
    return float(match.group(1))


async def scrape(bot: TestClient) -> str:
    response = await bot.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return await response.text()


async def test_a_conversation_shows_up_in_the_metrics(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Olá! Qual o seu nome?", lead={"name": "Maria"})
    assert (await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0MET000000001"))).status == 200
    assert (await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0MET000000001"))).status == 200
    assert (await bot.post("/webhooks/zapi", json={"phone": "1"})).status == 422
    await settled(bot)
    assert [s["message"] for s in zapi_fake.sent] == ["Olá! Qual o seu nome?"]
    text = await scrape(bot)

    assert value(text, "sdr_webhooks_received_total", channel="zapi", outcome="accepted") == 2
    assert value(text, "sdr_webhooks_received_total", channel="zapi", outcome="rejected") == 1
    assert value(text, "sdr_turns_total", kind="agent") == 1
    assert value(text, "sdr_turn_llm_seconds_count") == 1
    assert value(text, "sdr_turn_own_seconds_count") == 1
    assert value(text, "sdr_llm_tokens_total", direction="in") > 0
    assert value(text, "sdr_debounce_wait_seconds_count") == 1
    assert value(text, "sdr_leads", temperature="frio") == 1
    assert value(text, "sdr_leads", temperature="quente") == 0


async def test_replies_waiting_on_a_failing_provider_show_as_outbox_depth(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    for _ in range(50):
        zapi_fake.then(status=500)
    await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0MET000000002"))
    # The reply keeps failing on purpose, so the bot never settles: wait for the first
    # refused attempt (a count that only grows).
    await eventually(lambda: zapi_fake.attempts >= 1)
    text = await scrape(bot)
    assert value(text, "sdr_outbox_depth", kind="send_text") == 1

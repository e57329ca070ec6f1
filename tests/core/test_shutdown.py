"""SIGTERM: new webhooks get 503 (the provider retries them later), the health check
says draining so the load balancer moves on, and a turn already thinking still
answers its lead before the process exits."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from core.keys import STORE
from tests.conftest import zapi_message
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually


async def test_after_sigterm_webhooks_get_503_and_health_says_draining(bot: TestClient) -> None:
    await bot.app.shutdown()  # what aiohttp runs on SIGTERM, before cleanup
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0LATE00000001"))
    assert response.status == 503 and response.headers["Retry-After"] == "5"
    assert await bot.app[STORE].pending_contacts() == []  # nothing half-accepted
    health = await bot.get("/api/health")
    assert health.status == 503 and (await health.json())["status"] == "draining"


async def test_a_turn_in_flight_at_sigterm_still_answers_its_lead(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Oi! Já te ajudo.", delay=0.5)
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0INFL00000001"))
    assert response.status == 200
    # The turn is busy on purpose (the model answers in 0.5 s): the bot is not settled, so
    # wait for the one model call to start, a count that cannot go past 1 here.
    await eventually(lambda: openai_fake.calls_started == 1)
    await bot.app.shutdown()
    await bot.app.cleanup()  # runner.close(grace) waits for the turn; the dispatcher delivers it
    assert [s["message"] for s in zapi_fake.sent] == ["Oi! Já te ajudo."]

"""SIGTERM: new webhooks get 503 (the provider retries them later), the health check
says draining so the load balancer moves on, and a turn already thinking still
answers its lead before the process exits."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestClient

from tests.conftest import zapi_message
from tests.helpers.bot_process import BotProcess
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually
from tests.helpers.provider_server import ProviderServer
from web.keys import STORE


async def test_after_sigterm_webhooks_get_503_and_health_says_draining(bot: TestClient) -> None:
    await bot.app.shutdown()  # what aiohttp runs on SIGTERM, before cleanup
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0LATE00000001"))
    assert response.status == 503 and response.headers["Retry-After"] == "5"
    assert await bot.app[STORE].pending_contacts() == []  # nothing half-accepted
    health = await bot.get("/api/health")
    assert health.status == 503 and (await health.json())["status"] == "draining"
    # A website form too: the sender retries it once the bot is back.
    form = await bot.post("/api/leads", json={"name": "Ana", "phone": "11987654321"})
    assert form.status == 503 and form.headers["Retry-After"] == "5"


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


# --- the real process: the socket stays open through the drain -----------------------------


async def test_a_real_bot_answers_503_with_retry_after_while_it_drains_not_connection_refused(
    tmp_path: Path,
) -> None:
    """aiohttp's run_app closed the listening socket first thing on SIGTERM: for the whole
    grace period a provider saw "connection refused" instead of the documented 503."""
    provider = ProviderServer()
    await provider.start()
    provider.state.llm_delay_s = 2.0  # a turn is thinking when SIGTERM lands
    bot = BotProcess(
        sqlite_path=tmp_path / "bot.sqlite3",
        provider_url=provider.url,
        log_path=tmp_path / "bot.log",
        SHUTDOWN_GRACE_S="6",
    )
    await bot.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(bot.zapi_webhook, json=zapi_message(message_id="3EB0DRAIN0000001")) as r:
                assert r.status == 200
            await eventually(lambda: provider.state.chat_started >= 1, timeout=10)
            assert bot.proc is not None
            bot.proc.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                async with session.get(f"{bot.url}/api/health") as health:
                    return health.status == 503 and (await health.json())["status"] == "draining"

            await eventually(draining, timeout=5)  # a refused connection raises here instead
            late = zapi_message(message_id="3EB0DRAIN0000002", text="Ainda está aí?")
            async with session.post(bot.zapi_webhook, json=late) as r:
                assert r.status == 503 and r.headers["Retry-After"] == "5"
        # Waited in a thread: the fake provider shares this loop and must take the reply.
        assert await asyncio.to_thread(bot.proc.wait, 20) == 0
        # The turn that was thinking still answered its lead; the late message was not taken.
        first = zapi_message(message_id="3EB0DRAIN0000001")["text"]["message"]
        assert [s["message"] for s in provider.state.sent] == [f"Resposta para: {first}"]
        with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
            assert db.execute("SELECT provider_message_id FROM inbound").fetchall() == [("3EB0DRAIN0000001",)]
    finally:
        bot.kill()
        await provider.stop()

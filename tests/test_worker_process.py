"""`python main.py` as deployed: webhooks in one process, turns and deliveries in a
supervised worker child. The lead is answered, health and metrics cover both, a dead
worker is restarted without losing messages, and a killed parent takes its worker
with it (no orphan answering leads on its own)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import zapi_message
from tests.helpers.bot_process import BotProcess, children
from tests.helpers.fakes import eventually
from tests.helpers.provider_server import ProviderServer


@pytest.fixture
async def provider() -> ProviderServer:
    server = ProviderServer()
    await server.start()
    yield server
    await server.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


async def get(bot: BotProcess, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{bot.url}{path}") as response:
        return response.status, await response.text()


def replies(provider: ProviderServer) -> list[str]:
    """Every text the provider took, in order (replies without a hand-off: the same at
    any hour, business hours or not)."""
    return [s["message"] for s in provider.state.sent]


async def deliver(bot: BotProcess, message_id: str, text: str) -> None:
    body = zapi_message(message_id=message_id, text=text)
    async with aiohttp.ClientSession() as session, session.post(bot.zapi_webhook, json=body) as r:
        assert r.status == 200


pytestmark = pytest.mark.skipif(not Path("/proc").exists(), reason="reads the process table from /proc")


async def test_the_deployed_layout_answers_and_reports_both_processes(
    tmp_path: Path, provider: ProviderServer
) -> None:
    bot = BotProcess(
        sqlite_path=tmp_path / "bot.sqlite3", provider_url=provider.url, log_path=tmp_path / "bot.log"
    )
    await bot.start()
    try:
        assert bot.proc is not None and len(children(bot.proc.pid)) == 1
        await deliver(bot, "3EB0WORK00000001", "Oi, tudo bem?")
        await bot.settled(timeout=45)
        assert replies(provider) == ["Resposta para: Oi, tudo bem?"]
        status, body = await get(bot, "/api/health")
        assert status == 200 and '"worker": "running"' in body
        status, text = await get(bot, "/metrics")
        assert status == 200
        assert re.search(
            r'^sdr_webhooks_received_total\{channel="zapi",outcome="accepted"\} 1\.0$', text, re.M
        )
        assert re.search(r'^sdr_turns_total\{kind="agent"\} 1\.0$', text, re.M)
        families = Counter(re.findall(r"^# TYPE (\S+)", text, re.M))
        assert families and max(families.values()) == 1, "a metric family is exported twice"
    finally:
        bot.terminate()


async def test_a_dead_worker_is_restarted_and_nothing_is_lost(
    tmp_path: Path, provider: ProviderServer
) -> None:
    bot = BotProcess(
        sqlite_path=tmp_path / "bot.sqlite3", provider_url=provider.url, log_path=tmp_path / "bot.log"
    )
    await bot.start()
    try:
        assert bot.proc is not None
        [worker] = children(bot.proc.pid)
        os.kill(worker, signal.SIGKILL)
        # Webhooks are still acknowledged while the worker is down: the message waits, stored.
        await deliver(bot, "3EB0WORK00000002", "Alguém aí?")
        await bot.settled(timeout=45)  # waits for the restarted worker: health is 503 without it
        assert replies(provider) == ["Resposta para: Alguém aí?"]
        [again] = children(bot.proc.pid)
        assert again != worker
        status, body = await get(bot, "/api/health")
        assert status == 200 and '"worker": "running"' in body
    finally:
        bot.terminate()


async def test_a_killed_parent_takes_its_worker_with_it(tmp_path: Path, provider: ProviderServer) -> None:
    bot = BotProcess(
        sqlite_path=tmp_path / "bot.sqlite3", provider_url=provider.url, log_path=tmp_path / "bot.log"
    )
    await bot.start()
    assert bot.proc is not None
    [worker] = children(bot.proc.pid)
    bot.kill()
    for _ in range(60):
        if not alive(worker):
            break
        await asyncio.sleep(0.05)
    assert not alive(worker), "the worker outlived its parent"


async def test_one_process_mode_still_works(tmp_path: Path, provider: ProviderServer) -> None:
    bot = BotProcess(
        sqlite_path=tmp_path / "bot.sqlite3",
        provider_url=provider.url,
        log_path=tmp_path / "bot.log",
        WORKER_PROCESS="false",
    )
    await bot.start()
    try:
        assert bot.proc is not None and children(bot.proc.pid) == []
        await deliver(bot, "3EB0WORK00000003", "Oi")
        await bot.settled(timeout=45)
        assert replies(provider) == ["Resposta para: Oi"]
        status, body = await get(bot, "/api/health")
        assert status == 200 and "worker" not in body
    finally:
        bot.terminate()


async def test_the_worker_hears_of_each_message_at_once_not_at_the_next_poll(
    tmp_path: Path, provider: ProviderServer
) -> None:
    """The web process nudges the worker per stored message; the store poller is only
    the safety net (here set to a minute, so only the nudge can explain a fast answer)."""
    bot = BotProcess(
        sqlite_path=tmp_path / "bot.sqlite3",
        provider_url=provider.url,
        log_path=tmp_path / "bot.log",
        PENDING_POLL_S="60",
    )
    await bot.start()
    try:
        started = asyncio.get_running_loop().time()
        await deliver(bot, "3EB0WORK00000004", "Oi, rápido?")
        await eventually(lambda: provider.state.sent, timeout=30)  # the first reply: a monotone flag
        assert asyncio.get_running_loop().time() - started < 3
        await bot.settled(timeout=45)
        assert replies(provider) == ["Resposta para: Oi, rápido?"]
    finally:
        bot.terminate()

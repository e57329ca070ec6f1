"""The first seconds after `listening`: the turn worker child is still loading, and
/api/health and /metrics say `starting` (503 with `Retry-After: 1`, naming the part not up
yet) instead of looking like a failure. A worker that was up and stops answering, or
one that dies before it ever answered, is a failure (`degraded`, `worker: down`).

The in-process tests run the web role with a supervisor whose child is a stand-in and
whose loopback port is served, when the test says so, by a real worker-role app. The
last test starts `python main.py` for real and reads health from the first instant."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses

from core.settings import Settings
from tests.conftest import fast_settings
from tests.helpers.bot_process import REPO, BotProcess
from tests.helpers.clock import TestClock
from tests.helpers.fakes import eventually, load_fixture
from tests.helpers.provider_server import ProviderServer
from web.app import create_app
from web.keys import STORE
from web.middlewares import DRAINING
from web.worker_process import WorkerSupervisor, free_port

METRICS_TOKEN = "mt-5e0c2a7b91d4f6a3"
OPERATOR = {"Authorization": f"Bearer {METRICS_TOKEN}"}


class StandInChild:
    """What the supervisor sees of a worker child: alive until it exits."""

    def __init__(self) -> None:
        self.returncode: int | None = None
        self.pid = 0

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, _signum: int) -> None:
        self.returncode = 0

    def kill(self) -> None:
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


class StandInSupervisor(WorkerSupervisor):
    """The real supervisor (its watch loop restarts a dead child) with stand-in children."""

    def __init__(self, port: int) -> None:
        super().__init__(port=port, grace_s=0.1)
        self.children: list[StandInChild] = []

    def _spawn(self) -> None:
        child = StandInChild()
        self.children.append(child)
        self.proc = cast(subprocess.Popen[bytes], child)


@pytest.fixture(autouse=True)
def openai_accepts_the_key(http_mock: aioresponses) -> None:
    """The worker checks the OpenAI key when asked for its health (the doctor's fixture)."""
    http_mock.get(
        "https://api.openai.com/v1/models", payload=load_fixture("doctor/openai_models.json"), repeat=True
    )


class Split:
    """The web process under test, and its worker, which answers once `come_up` is awaited."""

    def __init__(self, aiohttp_client: Callable[..., Any], aiohttp_server: Callable[..., Any]) -> None:
        self.make_client = aiohttp_client
        self.make_server = aiohttp_server
        self.supervisor = StandInSupervisor(free_port())
        self.web: TestClient[Any, Any]
        self.settings: Settings

    async def start(self, settings: Settings, clock: TestClock) -> TestClient[Any, Any]:
        self.settings = settings
        app = create_app(settings, clock=clock, role="web", worker=self.supervisor)
        self.web = await self.make_client(app)
        return self.web

    async def come_up(self, clock: TestClock) -> Any:
        app = create_app(self.settings, clock=clock, role="worker")
        return await self.make_server(app, port=self.supervisor.port)


@pytest.fixture
def split(aiohttp_client: Callable[..., Any], aiohttp_server: Callable[..., Any]) -> Split:
    return Split(aiohttp_client, aiohttp_server)


async def answer(
    client: TestClient[Any, Any], path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, str]:
    response = await client.get(path, headers=headers or {})
    body = await response.json() if response.content_type == "application/json" else await response.text()
    return response.status, body, response.headers.get("Retry-After", "")


async def test_until_the_worker_first_answers_health_says_starting_then_healthy(
    split: Split, tmp_path: Path, clock: TestClock
) -> None:
    web = await split.start(fast_settings(tmp_path), clock)
    code, body, retry = await answer(web, "/api/health")
    assert (code, retry, body["status"], body["starting"]) == (503, "1", "starting", ["worker"])
    assert body["services"]["worker"] == "starting"
    assert body["services"]["sqlite"] == "connected"  # what is already known is there
    assert body["outbox"] == {"pending": 0, "dead": 0}
    assert "active_contacts" not in body  # the worker holds them and has not said yet
    code, text, retry = await answer(web, "/metrics")
    assert (code, retry) == (503, "1")
    assert text.startswith("# starting: worker")

    await split.come_up(clock)
    code, body, retry = await answer(web, "/api/health")
    assert (code, retry, body["status"]) == (200, "", "healthy")
    assert "starting" not in body
    assert body["services"]["worker"] == "running" and body["active_contacts"] == 0
    code, text, _ = await answer(web, "/metrics")
    assert code == 200 and "sdr_" in text


async def test_metrics_alone_see_the_worker_come_up(split: Split, tmp_path: Path, clock: TestClock) -> None:
    """A scraper that never asks /api/health is not told `starting` for ever."""
    web = await split.start(fast_settings(tmp_path), clock)
    assert (await answer(web, "/metrics"))[0] == 503
    await split.come_up(clock)
    code, text, retry = await answer(web, "/metrics")
    assert (code, retry) == (200, "") and "sdr_" in text


async def test_a_worker_that_was_up_and_stops_answering_is_down_not_starting(
    split: Split, tmp_path: Path, clock: TestClock
) -> None:
    web = await split.start(fast_settings(tmp_path), clock)
    worker = await split.come_up(clock)
    assert (await answer(web, "/api/health"))[0] == 200
    await worker.close()
    code, body, retry = await answer(web, "/api/health")
    assert (code, retry, body["status"]) == (503, "", "degraded")
    assert body["services"]["worker"] == "down" and "starting" not in body
    code, text, retry = await answer(web, "/metrics")
    assert (code, retry) == (503, "") and "not answering" in text


async def test_a_first_worker_that_dies_before_answering_is_a_failure_and_so_is_its_restart(
    split: Split, tmp_path: Path, clock: TestClock
) -> None:
    web = await split.start(fast_settings(tmp_path), clock)
    assert (await answer(web, "/api/health"))[1]["status"] == "starting"
    split.supervisor.children[0].returncode = 1  # e.g. a broken setting only the worker reads
    code, body, retry = await answer(web, "/api/health")
    assert (code, retry, body["status"], body["services"]["worker"]) == (503, "", "degraded", "down")
    await eventually(lambda: len(split.supervisor.children) == 2)  # the supervisor restarts it
    code, body, _ = await answer(web, "/api/health")
    assert (code, body["status"], body["services"]["worker"]) == (503, "degraded", "down")
    assert "starting" not in body


async def test_strangers_see_only_that_it_is_starting(split: Split, tmp_path: Path, clock: TestClock) -> None:
    web = await split.start(fast_settings(tmp_path, metrics_token=METRICS_TOKEN), clock)
    assert await answer(web, "/api/health") == (503, {"status": "starting"}, "1")
    code, body, retry = await answer(web, "/api/health", OPERATOR)
    assert (code, retry, body["starting"]) == (503, "1", ["worker"]) and "services" in body
    assert (await answer(web, "/metrics"))[0] == 401  # the token first, as always
    code, text, retry = await answer(web, "/metrics", OPERATOR)
    assert (code, retry) == (503, "1") and "starting" in text


async def test_draining_while_starting_says_draining(split: Split, tmp_path: Path, clock: TestClock) -> None:
    web = await split.start(fast_settings(tmp_path), clock)
    web.app[DRAINING].active = True
    code, body, retry = await answer(web, "/api/health")
    assert (code, retry, body["status"]) == (503, "", "draining") and "starting" not in body


async def test_a_store_failing_while_starting_is_a_failure(
    split: Split, tmp_path: Path, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = await split.start(fast_settings(tmp_path), clock)

    async def broken() -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(web.app[STORE], "ping", broken)
    code, body, _ = await answer(web, "/api/health")
    assert (code, body["status"], body["services"]["sqlite"]) == (503, "degraded", "error")


# --- `python main.py` for real: every answer before healthy says starting --------------


@pytest.fixture
async def provider() -> AsyncIterator[ProviderServer]:
    server = ProviderServer()
    await server.start()
    yield server
    await server.stop()


async def look(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str] | None:
    """(status, body, Retry-After), or None while nothing listens yet."""
    try:
        async with session.get(url) as response:
            return response.status, await response.text(), response.headers.get("Retry-After", "")
    except aiohttp.ClientConnectionError:
        return None


async def test_the_real_bot_says_starting_from_the_first_answer_until_healthy(
    tmp_path: Path, provider: ProviderServer
) -> None:
    bot = BotProcess(
        sqlite_path=tmp_path / "bot.sqlite3", provider_url=provider.url, log_path=tmp_path / "bot.log"
    )
    with open(bot.log_path, "ab") as log:
        bot.proc = subprocess.Popen(
            [sys.executable, "main.py"], cwd=REPO, env=bot.env, stdout=log, stderr=log
        )
    health: list[tuple[int, str, str]] = []
    metrics: list[tuple[int, str, str]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60  # a deadline for a state, on a loaded 2-core runner
    try:
        async with aiohttp.ClientSession() as session:
            while not health or health[-1][0] != 200:
                assert bot.proc.poll() is None, bot.log_path.read_text()[-2000:]
                assert loop.time() < deadline, f"not healthy in 60 s; last answers: {health[-3:]}"
                seen = await look(session, f"{bot.url}/api/health")
                if seen is not None:
                    health.append(seen)
                    metric = await look(session, f"{bot.url}/metrics")
                    assert metric is not None
                    metrics.append(metric)
                await asyncio.sleep(0.02)
    finally:
        bot.terminate()
    *before, healthy = health
    assert before, "the worker was up before the first answer: nothing was checked"
    for code, text, retry in before:
        assert (code, retry) == (503, "1"), text
        assert '"status": "starting"' in text and '"starting": ["worker"]' in text, text
        assert '"degraded"' not in text and '"down"' not in text, text
    # 200 once the worker answers (`degraded` at 200 would name a provider, see web/health.py).
    assert '"worker": "running"' in healthy[1] and '"starting"' not in healthy[1], healthy
    for code, text, retry in metrics:
        assert code == 200 or (code, retry, text.startswith("# starting: worker")) == (503, "1", True), text

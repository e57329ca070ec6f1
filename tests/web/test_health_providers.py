"""/api/health checks the OpenAI, PipeRun and Meta CAPI credentials for real.

Each configured provider gets the doctor's own read-only, authenticated call, answered
here with the doctor's fixtures (tests/fixtures/doctor/, each citing the documentation it
copies) and the providers' error fixtures. A monitor polling health must not turn into a
provider's traffic: verdicts are kept for HEALTH_PROBE_TTL_S on the app's clock and
requests arriving together share one check.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aioresponses import CallbackResult, aioresponses

from core.settings import Settings
from tests.conftest import OPENAI_KEY, fast_settings
from tests.helpers.clock import TestClock
from tests.helpers.fakes import eventually
from tests.helpers.logs import logging_for
from web.app import create_app
from web.provider_checks import PROVIDER_CHECKS
from web.worker_process import WorkerSupervisor

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

MODELS_URL = "https://api.openai.com/v1/models"
PIPELINE, STAGE = 26447, 141473  # the ids of tests/fixtures/doctor/piperun_*.json
PIPELINE_URL = f"https://api.pipe.run/v1/pipelines/{PIPELINE}"
STAGE_URL = f"https://api.pipe.run/v1/stages/{STAGE}"
PIXEL = "1234567890123456"
PIXEL_URL = f"https://graph.facebook.com/v21.0/{PIXEL}?fields=name"
PR_TOKEN = "pr-health-token-3c2b1a0f9e8d"
CAPI_TOKEN = "EAAGcapi-health-token-8e7d6c5b4a3f"
PROVIDERS = ("openai", "piperun", "meta_capi")


def fixture(relative: str) -> Any:
    data = json.loads((FIXTURES / relative).read_text(encoding="utf-8"))
    data.pop("_source", None)
    data.pop("_http_status", None)
    return data


@dataclass
class Answer:
    status: int = 200
    payload: Any = None
    exception: BaseException | None = None


class Providers:
    """OpenAI, PipeRun and Graph behind aioresponses: each URL answers as told (the
    doctor's 200 fixtures unless a test says otherwise) and counts its calls."""

    def __init__(self, mocked: aioresponses) -> None:
        self.calls: Counter[str] = Counter()
        self.headers: dict[str, dict[str, str]] = {}
        self.gate: asyncio.Event | None = None  # when set to an unset Event, OpenAI waits on it
        self.answers = {
            MODELS_URL: Answer(payload=fixture("doctor/openai_models.json")),
            PIPELINE_URL: Answer(payload=fixture("doctor/piperun_pipeline.json")),
            STAGE_URL: Answer(payload=fixture("doctor/piperun_stage.json")),
            PIXEL_URL: Answer(payload=fixture("doctor/meta_pixel.json")),
        }
        for url in self.answers:
            mocked.get(url, callback=self._callback(url), repeat=True)

    def _callback(self, url: str) -> Callable[..., Any]:
        async def answer(_url: Any, **kwargs: Any) -> CallbackResult:
            self.calls[url] += 1
            self.headers[url] = dict(kwargs.get("headers") or {})
            if url == MODELS_URL and self.gate is not None:
                await self.gate.wait()
            told = self.answers[url]
            if told.exception is not None:
                raise told.exception
            return CallbackResult(status=told.status, payload=told.payload)

        return answer

    def answer(self, provider: str, **told: Any) -> None:
        urls = {"openai": [MODELS_URL], "piperun": [PIPELINE_URL, STAGE_URL], "meta_capi": [PIXEL_URL]}
        for url in urls[provider]:
            self.answers[url] = Answer(**told)

    def per_provider(self) -> dict[str, int]:
        return {
            "openai": self.calls[MODELS_URL],
            "piperun": max(self.calls[PIPELINE_URL], self.calls[STAGE_URL]),
            "meta_capi": self.calls[PIXEL_URL],
        }


@pytest.fixture
def providers(http_mock: aioresponses) -> Providers:
    return Providers(http_mock)


def configured(tmp_path: Path, **overrides: Any) -> Settings:
    return fast_settings(
        tmp_path,
        piperun_api_token=PR_TOKEN,
        piperun_pipeline_id=PIPELINE,
        piperun_stage_id=STAGE,
        meta_pixel_id=PIXEL,
        meta_access_token=CAPI_TOKEN,
        **overrides,
    )


@pytest.fixture
async def app_client(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock, providers: Providers
) -> TestClient:
    return await aiohttp_client(create_app(configured(tmp_path), clock=clock))


async def health(client: TestClient) -> tuple[int, dict[str, Any], str]:
    response = await client.get("/api/health")
    text = await response.text()
    return response.status, json.loads(text), text


def assert_no_secret(text: str, settings: Settings) -> None:
    for secret in settings.secret_values():
        assert secret not in text
    assert "****" not in text  # OpenAI quotes a masked piece of a refused key: not ours to show


async def test_each_configured_provider_is_checked_with_an_authenticated_read_and_reported_ok(
    app_client: TestClient, providers: Providers, clock: TestClock
) -> None:
    before = clock()
    code, body, _ = await health(app_client)
    after = clock()
    assert code == 200 and body["status"] == "healthy"
    services = body["services"]
    for name in PROVIDERS:
        assert services[name]["status"] == "ok", services[name]
        assert before <= datetime.fromisoformat(services[name]["checked_at"]) <= after
    assert "gpt-4o" in services["openai"]["detail"]
    assert "Entradas" in services["piperun"]["detail"] and "Lead quente" in services["piperun"]["detail"]
    assert "Seleto Industrial - Leads WhatsApp" in services["meta_capi"]["detail"]
    assert providers.per_provider() == {"openai": 1, "piperun": 1, "meta_capi": 1}
    # Really authenticated: the same credentials the bot sends with.
    assert providers.headers[MODELS_URL]["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert providers.headers[PIPELINE_URL]["token"] == PR_TOKEN
    assert providers.headers[PIXEL_URL]["Authorization"] == f"Bearer {CAPI_TOKEN}"
    # Everything else keeps its meaning.
    assert services["sqlite"] == "connected" and services["zapi"] == "configured"
    assert body["outbox"] == {"pending": 0, "dead": 0}


@pytest.mark.parametrize(
    "provider, status, refusal",
    [
        ("openai", 401, "doctor/openai_error_401.json"),
        ("piperun", 401, "piperun/error_401.json"),
        ("meta_capi", 401, "doctor/graph_error_190.json"),
        ("meta_capi", 400, "doctor/graph_error_190.json"),  # Graph also says 190 with a 400
    ],
    ids=["openai", "piperun", "meta_capi", "meta_capi_400"],
)
async def test_a_refused_token_is_auth_failed_and_degraded_without_failing_the_instance(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
    providers: Providers,
    capsys: pytest.CaptureFixture[str],
    provider: str,
    status: int,
    refusal: str,
) -> None:
    providers.answer(provider, status=status, payload=fixture(refusal))
    settings = configured(tmp_path)
    client = await aiohttp_client(create_app(logging_for(settings), clock=clock))
    code, body, text = await health(client)
    # Still 200: the instance takes and keeps webhooks; another one would fare no better.
    assert code == 200 and body["status"] == "degraded"
    services = body["services"]
    assert services[provider]["status"] == "auth_failed" and services[provider]["detail"]
    assert services["sqlite"] == "connected" and "outbox" in body  # the store did not fail
    assert [n for n in PROVIDERS if services[n]["status"] != "ok"] == [provider]
    assert_no_secret(text, settings)
    logged = capsys.readouterr()
    assert "health_provider_check" in logged.err + logged.out
    assert_no_secret(logged.err + logged.out, settings)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("outage", ["http_500", "timeout"])
async def test_a_provider_outage_is_unreachable_and_degraded(
    app_client: TestClient, providers: Providers, provider: str, outage: str
) -> None:
    if outage == "timeout":
        providers.answer(provider, exception=TimeoutError())
    elif provider == "openai":
        providers.answer(provider, status=500, payload=fixture("openai/error_500.json"))
    else:
        providers.answer(provider, status=500)
    code, body, _ = await health(app_client)
    assert code == 200 and body["status"] == "degraded"
    state = body["services"][provider]
    assert state["status"] == "unreachable", state
    assert ("timeout" if outage == "timeout" else "HTTP 500") in state["detail"]
    assert body["services"]["sqlite"] == "connected"


async def test_a_pixel_the_token_cannot_see_is_misconfigured(
    app_client: TestClient, providers: Providers
) -> None:
    providers.answer("meta_capi", status=400, payload=fixture("doctor/graph_error_100_33.json"))
    code, body, _ = await health(app_client)
    assert code == 200 and body["status"] == "degraded"
    assert body["services"]["meta_capi"]["status"] == "misconfigured"
    assert "999000111" not in body["services"]["meta_capi"]["detail"]  # Graph's words are not quoted


async def test_a_verdict_is_kept_for_the_ttl_then_checked_again(
    app_client: TestClient, providers: Providers, clock: TestClock
) -> None:
    _, first, _ = await health(app_client)
    providers.answer("openai", status=401, payload=fixture("doctor/openai_error_401.json"))
    for _ in range(5):  # a monitor polling every few seconds
        _, body, _ = await health(app_client)
        assert body["services"]["openai"] == first["services"]["openai"]
    clock.advance(seconds=58)
    _, body, _ = await health(app_client)
    assert body["services"]["openai"]["status"] == "ok"
    assert providers.per_provider() == {"openai": 1, "piperun": 1, "meta_capi": 1}
    clock.advance(seconds=3)  # past HEALTH_PROBE_TTL_S (60 s)
    _, body, _ = await health(app_client)
    assert body["services"]["openai"]["status"] == "auth_failed"
    assert providers.per_provider() == {"openai": 2, "piperun": 2, "meta_capi": 2}


async def test_the_ttl_comes_from_health_probe_ttl_s(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock, providers: Providers
) -> None:
    client = await aiohttp_client(create_app(configured(tmp_path, health_probe_ttl_s=300), clock=clock))
    await health(client)
    clock.advance(seconds=240)
    await health(client)
    assert providers.per_provider()["openai"] == 1
    clock.advance(seconds=61)
    await health(client)
    assert providers.per_provider()["openai"] == 2


async def test_requests_arriving_during_a_check_share_it(
    app_client: TestClient, providers: Providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers.gate = asyncio.Event()  # OpenAI takes its time
    checks = app_client.app[PROVIDER_CHECKS]
    entered = 0
    report = checks.report

    async def counted(*args: Any) -> Any:
        nonlocal entered
        entered += 1
        return await report(*args)

    monkeypatch.setattr(checks, "report", counted)
    both = asyncio.gather(health(app_client), health(app_client))
    await eventually(lambda: entered == 2 and providers.calls[MODELS_URL] >= 1)
    providers.gate.set()
    (_, one, _), (_, two, _) = await both
    assert providers.per_provider() == {"openai": 1, "piperun": 1, "meta_capi": 1}
    assert one["services"]["openai"] == two["services"]["openai"]
    assert one["services"]["openai"]["status"] == "ok"


async def test_unconfigured_providers_are_reported_and_never_called(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
    providers: Providers,
    http_mock: aioresponses,
) -> None:
    client = await aiohttp_client(create_app(fast_settings(tmp_path, openai_api_key=None), clock=clock))
    code, body, _ = await health(client)
    assert code == 200 and body["status"] == "healthy"
    for name, setting in (
        ("openai", "OPENAI_API_KEY"),
        ("piperun", "PIPERUN_API_TOKEN"),
        ("meta_capi", "META_PIXEL_ID"),
    ):
        state = body["services"][name]
        assert state["status"] == "not_configured" and state["checked_at"] is None
        assert setting in state["detail"]
    assert sum(providers.calls.values()) == 0
    assert not [key for key in http_mock.requests if key[0] == "GET" and key[1].host != "127.0.0.1"]


async def test_strangers_only_learn_that_the_service_is_degraded(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock, providers: Providers
) -> None:
    providers.answer("piperun", status=401, payload=fixture("piperun/error_401.json"))
    settings = configured(tmp_path, metrics_token="mt-health-5a4b3c2d1e0f")
    client = await aiohttp_client(create_app(settings, clock=clock))
    response = await client.get("/api/health")
    assert response.status == 200
    assert await response.json() == {"status": "degraded"}


# --- a split deployment (WORKER_PROCESS) ---------------------------------------------------
# The turn worker holds the OpenAI client, so it checks the credentials and the web
# process's health shows its verdicts. Both run in-process here: the worker app behind a
# test server, the web app with a supervisor that reaches it instead of spawning one.


class InProcessWorker(WorkerSupervisor):
    """The supervisor of a worker that is already running (or, on port 9, never will)."""

    async def ctx(self, _app: web.Application) -> AsyncIterator[None]:
        yield


async def test_the_web_process_shows_the_workers_checks_and_makes_none_itself(
    aiohttp_client: Callable[..., Any],
    aiohttp_server: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
    providers: Providers,
) -> None:
    providers.answer("piperun", status=401, payload=fixture("piperun/error_401.json"))
    settings = configured(tmp_path)
    server: TestServer = await aiohttp_server(create_app(settings, clock=clock, role="worker"))
    worker = InProcessWorker(port=server.port or 0, grace_s=0.1)
    client = await aiohttp_client(create_app(settings, clock=clock, role="web", worker=worker))
    code, body, _ = await health(client)
    services = body["services"]
    assert services["worker"] == "running"
    assert services["openai"]["status"] == "ok" and services["meta_capi"]["status"] == "ok"
    assert services["piperun"]["status"] == "auth_failed"
    assert code == 200 and body["status"] == "degraded"
    assert providers.per_provider() == {"openai": 1, "piperun": 1, "meta_capi": 1}


async def test_with_the_worker_down_the_checks_are_unknown_and_health_fails(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock, providers: Providers
) -> None:
    worker = InProcessWorker(port=9, grace_s=0.1)  # discard: nobody answers there
    client = await aiohttp_client(create_app(configured(tmp_path), clock=clock, role="web", worker=worker))
    code, body, _ = await health(client)
    assert code == 503 and body["services"]["worker"] == "down"
    for name in PROVIDERS:
        assert body["services"][name]["status"] == "unknown"
    assert sum(providers.calls.values()) == 0

"""`GET /api/health` as monitoring sees it: what is configured, whether the store really
works, and how many deliveries are waiting or dead. OpenAI, PipeRun and Meta CAPI are
checked with a real authenticated call (tests/web/test_health_providers.py): here OpenAI
accepts the key, with the doctor's fixture, and nothing reaches the network."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses

from core.settings import Settings
from store.sqlite import SqliteStore
from tests.conftest import (
    OPENAI_KEY,
    WEBHOOK_TOKEN,
    ZAPI_CLIENT_TOKEN,
    ZAPI_TOKEN,
    fast_settings,
    zapi_message,
)
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually, load_fixture
from tests.helpers.logs import logging_for
from tests.helpers.settle import settled
from tests.web.support import WEBHOOK_SECRET, rows
from web.app import create_app
from web.keys import STORE

INTEGRATIONS = ("openai", "zapi", "chatwoot", "supabase", "piperun", "meta_capi")
PIPELINE, STAGE = 26447, 141473  # the ids of tests/fixtures/doctor/piperun_*.json


@pytest.fixture(autouse=True)
def openai_accepts_the_key(http_mock: aioresponses) -> None:
    http_mock.get(
        "https://api.openai.com/v1/models", payload=load_fixture("doctor/openai_models.json"), repeat=True
    )


def status_of(service: object) -> object:
    """A checked provider is {"status", "checked_at", "detail"}; the others a word."""
    return service["status"] if isinstance(service, dict) else service


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh machine: none of the bot's variables set and no .env in the working dir."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


async def health(client: TestClient, expected_status: int = 200) -> dict[str, Any]:
    response = await client.get("/api/health")
    assert response.status == expected_status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def test_with_no_environment_at_all_the_bot_is_healthy_and_nothing_is_configured(
    no_env: None, aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    client = await aiohttp_client(
        create_app(Settings(_env_file=None, sqlite_path=tmp_path / "x.sqlite3"), clock=clock)
    )
    body = await health(client)
    assert body["status"] == "healthy"
    services = body["services"]
    assert services["sqlite"] == "connected"
    for name in INTEGRATIONS:
        assert status_of(services[name]) == "not_configured", name
    assert {status_of(s) for s in services.values()} <= {"connected", "not_configured"}
    assert body["outbox"] == {"pending": 0, "dead": 0}


async def test_with_nothing_configured_webhooks_are_closed_and_store_nothing(
    no_env: None, aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    settings = Settings(_env_file=None, sqlite_path=tmp_path / "x.sqlite3", shutdown_grace_s=0.2)
    client = await aiohttp_client(create_app(settings, clock=clock))
    for path in ("/webhooks/zapi", "/webhooks/waha", "/webhook/text"):
        response = await client.post(path, json=zapi_message(message_id="3EB0NOENV0000001"))
        assert response.status == 403, path
    assert rows(client, "SELECT status FROM inbound") == []
    assert (await health(client))["status"] == "healthy"


async def test_a_lead_writing_before_openai_is_configured_is_kept_not_lost(
    no_env: None, aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    # Only the webhook secret is set. The shutdown grace is shortened: the pending turn
    # would otherwise hold the test's teardown for the default 10 s.
    settings = Settings(
        _env_file=None,
        sqlite_path=tmp_path / "x.sqlite3",
        shutdown_grace_s=0.2,
        zapi_webhook_secret=WEBHOOK_TOKEN,
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    response = await client.post("/webhooks/zapi", json=zapi_message(message_id="3EB0NOENV0000001"))
    assert response.status == 200
    assert rows(client, "SELECT status FROM inbound") == [("pending",)]
    assert (await health(client))["status"] == "healthy"


async def test_a_configured_channel_without_its_webhook_secret_says_so_in_health_and_at_start(
    no_env: None,
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(
        _env_file=None,
        sqlite_path=tmp_path / "x.sqlite3",
        zapi_instance_id="3C01A9F0E1B2C3D4",
        zapi_instance_token=ZAPI_TOKEN,
        waha_url="http://127.0.0.1:3000",
        whatsapp_phone_number_id="106540352242922",
        whatsapp_access_token="EAAG-test-token",
    )
    capsys.readouterr()
    client = await aiohttp_client(create_app(logging_for(settings), clock=clock))
    services = (await health(client))["services"]
    assert (
        services["zapi"] == services["waha"] == services["whatsapp_cloud"] == "error: webhook secret missing"
    )
    assert services["instagram"] == "not_configured"
    started = capsys.readouterr()
    said = started.out + started.err
    for setting in ("ZAPI_WEBHOOK_SECRET", "WAHA_WEBHOOK_HMAC_KEY", "META_APP_SECRET"):
        assert f"setting={setting}" in said or f'"setting": "{setting}"' in said, setting
    response = await client.post("/webhooks/zapi", json=zapi_message(message_id="3EB0NOSEC0000001"))
    assert response.status == 403 and "ZAPI_WEBHOOK_SECRET" in (await response.json())["error"]


async def test_blank_variables_copied_from_env_example_mean_not_configured(
    no_env: None,
    monkeypatch: pytest.MonkeyPatch,
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
) -> None:
    for name in (
        "OPENAI_API_KEY",
        "ZAPI_INSTANCE_ID",
        "ZAPI_INSTANCE_TOKEN",
        "ZAPI_CLIENT_TOKEN",
        "ZAPI_WEBHOOK_SECRET",
        "CHATWOOT_API_URL",
        "CHATWOOT_API_TOKEN",
        "CHATWOOT_ACCOUNT_ID",
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
        "PIPERUN_API_TOKEN",
    ):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "blank.sqlite3"))
    monkeypatch.setenv("SHUTDOWN_GRACE_S", "0.2")  # the stored message's turn would hold teardown
    client = await aiohttp_client(create_app(Settings(_env_file=None), clock=clock))
    body = await health(client)
    assert body["status"] == "healthy"
    for name in INTEGRATIONS:
        assert status_of(body["services"][name]) == "not_configured", name
    # An empty ZAPI_WEBHOOK_SECRET is no secret: the route stays closed.
    response = await client.post("/webhooks/zapi", json=zapi_message(message_id="3EB0BLANK0000001"))
    assert response.status == 403


async def test_integrations_configured_from_the_documented_variables(
    no_env: None,
    http_mock: aioresponses,
    monkeypatch: pytest.MonkeyPatch,
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
) -> None:
    secrets = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "ZAPI_INSTANCE_TOKEN": ZAPI_TOKEN,
        "ZAPI_CLIENT_TOKEN": ZAPI_CLIENT_TOKEN,
        "ZAPI_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CHATWOOT_API_TOKEN": "cw-tok-5d2e8f1a9b3c",
        "SUPABASE_SERVICE_ROLE_KEY": "eyJhbGciOi.service-role.8c1f",
        "PIPERUN_API_TOKEN": "pr-tok-77aa41b2c9",
    }
    for name, value in {
        **secrets,
        "PIPERUN_PIPELINE_ID": str(PIPELINE),  # ids, not secrets: health names the pipeline
        "PIPERUN_STAGE_ID": str(STAGE),
        "ZAPI_INSTANCE_ID": "3C01A9F0E1B2C3D4",
        "CHATWOOT_API_URL": "https://chatwoot.example.com",
        "CHATWOOT_ACCOUNT_ID": "1",
        "SUPABASE_URL": "https://abc.supabase.co",
        "SQLITE_PATH": str(tmp_path / "configured.sqlite3"),
    }.items():
        monkeypatch.setenv(name, value)
    piperun = "https://api.pipe.run/v1"
    http_mock.get(f"{piperun}/pipelines/{PIPELINE}", payload=load_fixture("doctor/piperun_pipeline.json"))
    http_mock.get(f"{piperun}/stages/{STAGE}", payload=load_fixture("doctor/piperun_stage.json"))
    # The embedded store on purpose: this checks what health reports, not Supabase itself.
    client = await aiohttp_client(
        create_app(Settings(_env_file=None), store_factory=lambda s: SqliteStore(s.sqlite_path), clock=clock)
    )
    response = await client.get("/api/health")
    text = await response.text()
    body = json.loads(text)
    assert response.status == 200
    assert body["services"]["sqlite"] == "connected"
    checked = {"openai": "ok", "piperun": "ok", "meta_capi": "not_configured"}
    for name in INTEGRATIONS:
        assert status_of(body["services"][name]) == checked.get(name, "configured"), name
    for name, secret in secrets.items():
        assert secret not in text, f"{name} leaked in /api/health"


@pytest.mark.parametrize(
    "overrides, service",
    [
        ({"zapi_instance_token": None}, "zapi"),
        ({"zapi_instance_id": None}, "zapi"),
        ({"openai_api_key": None}, "openai"),
        ({"chatwoot_api_url": "https://chatwoot.example.com", "chatwoot_account_id": "1"}, "chatwoot"),
        ({"supabase_url": "https://abc.supabase.co"}, "supabase"),
    ],
    ids=[
        "zapi_without_token",
        "zapi_without_instance",
        "openai_without_key",
        "chatwoot_without_token",
        "supabase_without_key",
    ],
)
async def test_half_configured_integrations_are_not_configured(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    overrides: dict[str, Any],
    service: str,
    clock: TestClock,
) -> None:
    client = await aiohttp_client(create_app(fast_settings(tmp_path, **overrides), clock=clock))
    body = await health(client)
    assert body["status"] == "healthy"
    assert status_of(body["services"][service]) == "not_configured"


async def test_a_broken_store_makes_health_503_degraded_until_it_is_back(bot: TestClient) -> None:
    store = bot.app[STORE]
    await store.close()
    try:
        body = await health(bot, 503)
        assert body["status"] == "degraded"
        assert body["services"]["sqlite"] == "error"
        assert body["services"]["openai"]["status"] == "ok"  # the rest of the report is still there
    finally:
        await store.open()
    body = await health(bot)
    assert body["status"] == "healthy"
    assert body["services"]["sqlite"] == "connected"


async def test_a_store_that_cannot_write_is_not_reported_healthy(bot: TestClient) -> None:
    """A read-only or full disk: SQLite still answers SELECT 1, but every webhook gets 503.
    Monitoring must not stay green while every lead's message is being refused."""
    store = bot.app[STORE]
    store.db.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
    try:
        webhook = await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0ROHEALTH0001"))
        assert webhook.status == 503
        body = await health(bot, 503)
        assert body["status"] == "degraded"
        assert body["services"]["sqlite"] == "error"
    finally:
        store.db.execute("PRAGMA query_only = OFF")  # type: ignore[attr-defined]


async def test_outbox_counts_show_a_reply_rejected_by_zapi_as_dead(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    assert (await health(bot))["outbox"] == {"pending": 0, "dead": 0}
    zapi_fake.then(status=400)
    await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0DEAD00000001", text="Oi"))
    await settled(bot)
    assert rows(bot, "SELECT status FROM outbox") == [("dead",)]
    assert zapi_fake.sent == []
    body = await health(bot)
    assert body["status"] == "healthy"
    assert body["outbox"] == {"pending": 0, "dead": 1}


async def test_outbox_counts_show_replies_waiting_for_a_failing_zapi(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> None:
    settings = fast_settings(
        tmp_path, outbox_max_attempts=100, outbox_backoff_base_s=5, outbox_backoff_max_s=10
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    for _ in range(100):
        zapi_fake.then(status=503)
    await client.post("/webhooks/zapi", json=zapi_message(message_id="3EB0WAIT00000001", text="Oi"))
    # The reply stays pending on purpose (a long backoff after each 503): the bot never
    # settles, so wait for the first refused attempt, which nothing can overshoot.
    await eventually(lambda: zapi_fake.attempts >= 1)
    body = await health(client)
    assert body["outbox"] == {"pending": 1, "dead": 0}
    assert zapi_fake.sent == []


async def test_outbox_is_empty_again_after_a_delivery(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    zapi_fake.then(status=500)
    await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0DELIV0000001", text="Oi"))
    await settled(bot)
    assert rows(bot, "SELECT status FROM outbox") == [("done",)]
    assert zapi_fake.texts_to(zapi_message()["phone"]) == [openai_fake.default_reply]
    assert zapi_fake.attempts == 2  # the refused attempt, then the delivery
    assert (await health(bot))["outbox"] == {"pending": 0, "dead": 0}


async def test_health_answers_while_a_turn_is_stuck_on_the_llm(
    bot: TestClient, openai_fake: FakeOpenAI
) -> None:
    """Monitoring must not time out just because OpenAI is slow."""
    openai_fake.then(delay=1.0)
    await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0SLOWLLM00001", text="Oi"))
    # The bot is busy on purpose (the model answers in 1 s), so it is not settled: wait for
    # the one model call to start, a count that cannot go past 1 here.
    await eventually(lambda: openai_fake.calls_started == 1)
    body = await asyncio.wait_for(health(bot), timeout=0.5)
    assert body["status"] == "healthy"


# --- METRICS_TOKEN: the operator's views behind a bearer token ----------------------------

METRICS_TOKEN = "mt-7c1e0b9a44d2f3e8"


@pytest.fixture
async def guarded(aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock) -> TestClient:
    return await aiohttp_client(create_app(fast_settings(tmp_path, metrics_token=METRICS_TOKEN), clock=clock))


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x", "Bearer "]
)
async def test_with_a_metrics_token_strangers_get_liveness_only(
    guarded: TestClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await guarded.get("/api/health", headers=headers)
    assert response.status == 200
    assert await response.json() == {"status": "healthy"}  # no services, queues or circuits
    response = await guarded.get("/metrics", headers=headers)
    assert response.status == 401
    assert "METRICS_TOKEN" in (await response.json())["error"]


async def test_with_the_metrics_token_the_operator_sees_everything(guarded: TestClient) -> None:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    response = await guarded.get("/api/health", headers=headers)
    assert response.status == 200
    body = await response.json()
    assert body["services"]["sqlite"] == "connected" and "outbox" in body
    response = await guarded.get("/metrics", headers=headers)
    assert response.status == 200
    assert "sdr_" in await response.text()


async def test_liveness_without_the_token_still_says_when_the_store_is_down(
    guarded: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(guarded.app[STORE], "ping", down)
    response = await guarded.get("/api/health")
    assert response.status == 503
    assert await response.json() == {"status": "degraded"}

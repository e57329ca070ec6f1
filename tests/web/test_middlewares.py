"""Every route answers JSON: a bug is a logged 500 with the request id, never an HTML
traceback, never a secret in the body, and the next request is served normally."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import OPENAI_KEY, fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.logs import logging_for
from tests.helpers.settle import settled
from tests.web.support import LEAD_PHONE, error_body, inbound_count
from web.app import create_app
from web.keys import STORE

pytestmark = pytest.mark.usefixtures("restore_logging")


async def json_bot(aiohttp_client: Callable[..., Any], tmp_path: Path) -> TestClient:
    """A bot whose JSON logs land in `capsys`. The app configures logging onto whatever
    sys.stderr is when it is created, so call this from the test body, where capsys is
    active (an async fixture would see a stream that is closed by the time the test runs)."""
    return await aiohttp_client(
        create_app(logging_for(fast_settings(tmp_path, log_format="json")), clock=TestClock())
    )


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    captured = capsys.readouterr()
    return [json.loads(line) for line in (captured.err + captured.out).splitlines() if line.strip()]


async def test_a_bug_becomes_a_json_500_with_the_request_id_and_a_scrubbed_log_line(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    bot = await json_bot(aiohttp_client, tmp_path)

    async def bug(*_a: Any, **_kw: Any) -> bool:
        raise RuntimeError(f"unexpected state for {LEAD_PHONE} using {OPENAI_KEY}")

    monkeypatch.setattr(bot.app[STORE], "add_inbound", bug)
    capsys.readouterr()
    response = await bot.post(
        "/webhooks/zapi",
        json=zapi_message(message_id="3EB0BUG000000001"),
        headers={"X-Request-Id": "req-bug-1"},
    )
    assert response.status == 500
    body = await error_body(response)
    assert response.headers["X-Request-Id"] == "req-bug-1"
    text = json.dumps(body)
    for leaked in ("Traceback", "RuntimeError", LEAD_PHONE, OPENAI_KEY, "unexpected state"):
        assert leaked not in text

    lines = log_lines(capsys)
    (crash,) = [line for line in lines if line["event"] == "unhandled_error"]
    assert crash["request_id"] == "req-bug-1"
    assert crash["path"] == "/webhooks/zapi"
    assert crash["level"] == "error"
    assert "RuntimeError" in crash["exception"]
    dumped = json.dumps(lines)
    assert LEAD_PHONE not in dumped and OPENAI_KEY not in dumped

    # The bug does not take the server down: the provider's retry is served normally.
    monkeypatch.undo()
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0BUG000000001"))
    assert response.status == 200
    await settled(bot)
    assert zapi_fake.texts_to(LEAD_PHONE) == [openai_fake.default_reply]


async def test_health_answers_json_even_when_the_store_explodes(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    bot = await json_bot(aiohttp_client, tmp_path)

    async def explode() -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bot.app[STORE], "ping", explode)
    response = await bot.get("/api/health")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "degraded"
    assert "disk on fire" not in json.dumps(body)


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/nope", 404),
        ("POST", "/api/health", 405),
        ("DELETE", "/", 405),
        ("GET", "/webhooks/zapi/", 404),
        ("GET", "/webhooks", 404),
    ],
)
async def test_http_errors_are_json_even_for_browsers(
    bot: TestClient, method: str, path: str, status: int
) -> None:
    response = await bot.request(method, path, headers={"Accept": "text/html"})
    assert response.status == status
    body = await error_body(response)
    assert "<html" not in json.dumps(body).lower()
    assert response.headers.get("X-Request-Id")


async def test_the_root_and_health_routes_are_json(bot: TestClient) -> None:
    root = await bot.get("/")
    assert root.status == 200
    assert (await root.json())["health"] == "/api/health"
    health = await bot.get("/api/health")
    assert health.status == 200 and health.content_type == "application/json"


async def test_rejections_do_not_touch_the_store(bot: TestClient) -> None:
    for body in (b"", b"[]", b"{}", b"{"):
        response = await bot.post("/webhooks/zapi", data=body)
        assert 400 <= response.status < 500
    assert inbound_count(bot) == 0

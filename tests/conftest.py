"""Shared fixtures: a bot wired to fake providers on a throwaway SQLite file."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses

from core.settings import Settings
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, load_fixture
from web.app import create_app
from web.serve import configure_process

ZAPI_INSTANCE = "3C01A9F0E1B2C3D4"
ZAPI_TOKEN = "F0E1D2C3B4A5968778695A4B"
ZAPI_CLIENT_TOKEN = "Fa9c1d2e3f4b5a6978877665544332211"
OPENAI_KEY = "sk-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
# The webhook secret Z-API and WAHA are configured with in tests (fast_settings), and the
# header every test client sends with it, as the providers would (tests/conftest.py
# aiohttp_client). A test that configures its own secret gets a mismatch: still refused.
WEBHOOK_TOKEN = "whk-test-5f0c2a9e7b1d4c3a8e6f"
# fast_settings needs a directory for its SQLite path; the logging baseline opens nothing.
_LOGS_DIR = Path("/nonexistent/sdr-test-logs")


def fast_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Production defaults with the clocks shrunk so tests take milliseconds."""
    values: dict[str, Any] = {
        "_env_file": None,
        "sqlite_path": tmp_path / "sdr.sqlite3",
        "openai_api_key": OPENAI_KEY,
        "zapi_instance_id": ZAPI_INSTANCE,
        "zapi_instance_token": ZAPI_TOKEN,
        "zapi_client_token": ZAPI_CLIENT_TOKEN,
        "zapi_webhook_secret": WEBHOOK_TOKEN,
        "waha_webhook_secret": WEBHOOK_TOKEN,
        "debounce_quiet_s": 0.05,
        "debounce_max_s": 0.5,
        "openai_backoff_base_s": 0.01,
        "outbox_backoff_base_s": 0.01,
        "outbox_backoff_max_s": 0.05,
        "outbox_poll_s": 0.05,
        "circuit_reset_s": 0.1,
        "turn_retry_base_s": 0.05,
        "turn_retry_max_s": 0.2,
        "typing_chars_per_s": 1000,
        "shutdown_grace_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path)


@pytest.fixture
def clock() -> TestClock:
    """Business "now" for the app under test: a weekday inside opening hours unless a
    test asks for another instant (tests/helpers/clock.py)."""
    return TestClock()


@pytest.fixture
def aiohttp_client(aiohttp_client: Callable[..., Any]) -> Callable[..., Any]:
    """pytest-aiohttp's client, sending the test webhook token like a configured provider
    (webhooks are closed by default). A header given per request replaces it."""

    async def client(app: Any, **kwargs: Any) -> TestClient:
        headers = {"X-Webhook-Token": WEBHOOK_TOKEN, **(kwargs.pop("headers", None) or {})}
        return await aiohttp_client(app, headers=headers, **kwargs)

    return client


@pytest.fixture
def http_mock() -> Any:
    with aioresponses(passthrough=["http://127.0.0.1", "http://localhost"]) as mock:
        yield mock


@pytest.fixture
def openai_fake(http_mock: aioresponses) -> FakeOpenAI:
    return FakeOpenAI(http_mock)


@pytest.fixture
def zapi_fake(http_mock: aioresponses) -> FakeZapi:
    return FakeZapi(http_mock, instance_id=ZAPI_INSTANCE, instance_token=ZAPI_TOKEN)


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    settings: Settings,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> AsyncIterator[TestClient]:
    client = await aiohttp_client(create_app(settings, clock=clock))
    yield client


def zapi_message(
    fixture: str = "received_text.json",
    *,
    message_id: str | None = None,
    phone: str | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    payload = copy.deepcopy(load_fixture(f"zapi/{fixture}"))
    if message_id is not None:
        payload["messageId"] = message_id
    if phone is not None:
        payload["phone"] = phone
    if text is not None:
        payload["text"] = {"message": text}
    return payload


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Every test starts with the logging a `fast_settings` app runs with (the level,
    the console format, its secrets scrubbed; structlog's bare default renders every
    traceback with its locals, slowly), and puts structlog's and the root logger's setup
    back as it found them afterwards: a test that configures logging (the chat and serve
    commands do) binds the logger to pytest's capture, and a later test must never write
    into that buffer once it is closed."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_process(fast_settings(_LOGS_DIR))
    yield
    structlog.configure(**saved)
    root.handlers, root.level = handlers, level


# Files whose tests run real bot processes for tens of seconds each. Collected first, so
# xdist hands them out while the quick tests fill the other workers, instead of one of
# them starting last and leaving three workers idle behind it.
_LONG_RUNNING = (
    "test_faults_sigkill.py",
    "test_crash_restart.py",
    "test_worker_process.py",
    "test_shutdown.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in _LONG_RUNNING)  # stable: order kept otherwise

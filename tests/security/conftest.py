"""The security tests' bot: every integration configured against one loopback provider."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from tests.helpers.clock import TestClock
from tests.helpers.logs import logging_for
from tests.helpers.provider_server import ProviderServer
from tests.security.support import (
    CHATWOOT_API_TOKEN,
    everything_configured,
    sqlite_store,
)
from web.app import create_app


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The app points structlog and the root logger at pytest's capture: put them back."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers, root.level = handlers, level


@pytest.fixture
async def provider() -> ProviderServer:
    server = ProviderServer()
    server.state.chatwoot.token = CHATWOOT_API_TOKEN
    server.state.echo_unknown = True  # WAHA, Graph, PipeRun, CAPI: refused, quoting our request
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(
    provider: ProviderServer,
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    restore_logging: None,
    clock: TestClock,
) -> TestClient:
    return await aiohttp_client(
        create_app(
            logging_for(everything_configured(tmp_path, provider)), store_factory=sqlite_store, clock=clock
        )
    )

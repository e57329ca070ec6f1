"""The outbox tests' store and dispatchers (tests/runtime/test_dispatcher*.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from runtime.dispatcher import OutboxDispatcher
from store.sqlite import SqliteStore
from tests.runtime.outbox_support import DispatcherFactory


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "outbox.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def dispatcher(store: SqliteStore) -> AsyncIterator[DispatcherFactory]:
    """Builds and starts dispatchers; every one is stopped at the end of the test."""
    started: list[OutboxDispatcher] = []

    async def make(
        routes: dict[str, tuple[Any, ...]],
        *,
        workers: int = 8,
        poll_s: float = 0.05,
        on: SqliteStore | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> OutboxDispatcher:
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        d = OutboxDispatcher(on or store, workers=workers, poll_s=poll_s, **extra)
        for kind, (handler, policy, *breaker) in routes.items():
            d.register(kind, handler, policy, *breaker)
        await d.start()
        started.append(d)
        return d

    yield make
    for d in started:
        await d.stop(timeout=1.0)

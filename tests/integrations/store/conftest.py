"""Backends the store contract suite runs on.

A builder gets the test's tmp_path and returns an *unopened* store; calling it twice
must give two handles on the same data (the restart tests use that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from integrations.store.base import Store
from integrations.store.sqlite import SqliteStore

BUILDERS: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda tmp_path: SqliteStore(tmp_path / "contract.sqlite3"),
    # "supabase": lambda tmp_path: SupabaseStore(...),  # a fresh schema per test
}
BACKENDS = list(BUILDERS)

OpenStore = Callable[[], Awaitable[Store]]

@pytest.fixture(params=BACKENDS)
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens a new handle on the test's backing storage (one per call: a "process")."""
    opened: list[Store] = []

    async def _open() -> Store:
        store = BUILDERS[request.param](tmp_path)
        await store.open()
        opened.append(store)
        return store

    yield _open
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()



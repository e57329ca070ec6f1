"""Backends the store contract suite runs on.

A builder gets the test's tmp_path and returns an *unopened* store; calling it twice
must give two handles on the same data (the restart tests use that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from store.base import Store
from store.sqlite import SqliteStore

SUPABASE_URL = "https://sdr-contract.supabase.co"
SUPABASE_KEY = "contract-service-role-key"


class SupabaseSchemas:
    """The Supabase store over a PostgREST bridge (tests/helpers/postgrest_bridge.py) on
    a fresh Postgres schema per test; every store one test builds (a restart builds a
    second) talks to that same schema. Postgres unreachable: skipped, failed in CI
    (SDR_REQUIRE_SERVICES=1), by pg_support.require_postgres."""

    def __init__(self) -> None:
        self._bridges: dict[Path, Any] = {}
        self._cleanup = ExitStack()

    def build(self, tmp_path: Path) -> Store:
        from store.supabase import SupabaseStore

        bridge = self._bridges.get(tmp_path) or self._new_bridge(tmp_path)
        return SupabaseStore(SUPABASE_URL, SUPABASE_KEY, transport=bridge.transport())

    def _new_bridge(self, tmp_path: Path) -> Any:
        # Imported here: without psycopg or Postgres only this backend's tests skip.
        from tests.helpers.postgrest_bridge import PostgrestBridge
        from tests.store.pg_support import fresh_schema

        schema = self._cleanup.enter_context(fresh_schema())
        bridge = PostgrestBridge(schema, api_key=SUPABASE_KEY)
        self._cleanup.callback(bridge.close)
        self._bridges[tmp_path] = bridge
        return bridge

    def drop_all(self) -> None:
        cleanup, self._cleanup = self._cleanup, ExitStack()
        self._bridges.clear()
        cleanup.close()


SUPABASE = SupabaseSchemas()

BUILDERS: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda tmp_path: SqliteStore(tmp_path / "contract.sqlite3"),
    "supabase": SUPABASE.build,
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


@pytest.fixture(autouse=True)
def _drop_supabase_schemas() -> Iterator[None]:
    """Set up first, torn down last: the stores are closed before their schema goes."""
    yield
    SUPABASE.drop_all()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()

"""`/api/health` while another writer holds SQLite's write lock (issue 18: under a flood
health answered "database is locked" and monitoring saw the store down). Busy is up:
200, the store `busy`, the status `degraded`; a store that fails is still 503.

Deterministic: another connection holds `BEGIN IMMEDIATE` for the whole request."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses

from store.sqlite import SqliteStore
from store.sqlite.connection import BUSY_TIMEOUT_MS
from tests.helpers.fakes import load_fixture
from web.keys import STORE


@pytest.fixture(autouse=True)
def openai_accepts_the_key(http_mock: aioresponses) -> None:
    http_mock.get(
        "https://api.openai.com/v1/models", payload=load_fixture("doctor/openai_models.json"), repeat=True
    )


@contextmanager
def write_lock_held(store: SqliteStore) -> Iterator[None]:
    other = sqlite3.connect(str(store.path), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_a_store_busy_with_another_writer_is_up_and_says_busy(bot: TestClient) -> None:
    store = bot.app[STORE]
    assert isinstance(store, SqliteStore)
    with write_lock_held(store):
        response = await bot.get("/api/health")
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["services"]["sqlite"] == "busy"
    assert body["status"] == "degraded"
    assert body["outbox"] == {"pending": 0, "dead": 0}  # reads still work

    response = await bot.get("/api/health")
    body = await response.json()
    assert response.status == 200
    assert (body["status"], body["services"]["sqlite"]) == ("healthy", "connected")


async def test_the_probe_puts_the_normal_wait_back_for_every_other_write(bot: TestClient) -> None:
    store = bot.app[STORE]
    assert isinstance(store, SqliteStore)
    with write_lock_held(store):
        await bot.get("/api/health")
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS


async def test_a_store_that_fails_while_busy_elsewhere_is_still_down(bot: TestClient) -> None:
    store = bot.app[STORE]
    assert isinstance(store, SqliteStore)
    store.db.execute("PRAGMA query_only = ON")
    try:
        response = await bot.get("/api/health")
        body = await response.json()
        assert response.status == 503
        assert (body["status"], body["services"]["sqlite"]) == ("degraded", "error")
    finally:
        store.db.execute("PRAGMA query_only = OFF")

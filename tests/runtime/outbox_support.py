"""Helpers of the outbox tests: items, a store's view of them, scripted handlers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tenacity import retry_if_exception, stop_after_attempt, wait_fixed

from core.records import OutboxItem, TurnCommit
from core.settings import Settings
from runtime.dispatcher import OutboxDispatcher
from runtime.policies import (
    DeliveryPolicy,
    OutboxKnobs,
    PermanentDeliveryError,
    is_transient,
)
from store.sqlite import SqliteStore
from tests.conftest import fast_settings
from tests.helpers.errors import SendError
from tests.helpers.fakes import eventually
from web.configs.runtime import outbox_knobs

DispatcherFactory = Callable[..., Awaitable[OutboxDispatcher]]


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return fast_settings(tmp_path, **overrides)


def item(
    idem: str, *, order_key: str = "reply:zapi:5511987650001", kind: str = "send_text", **payload: Any
) -> OutboxItem:
    return OutboxItem(kind=kind, order_key=order_key, idempotency_key=idem, payload={"name": idem, **payload})


async def enqueue(store: SqliteStore, *items: OutboxItem) -> dict[str, int]:
    await store.commit_turn(
        TurnCommit(
            turn_id="t-dispatch",
            contact_key="zapi:5511987650001",
            channel="zapi",
            contact_id="5511987650001",
            phone=None,
            name=None,
            inbound_ids=[],
            messages=[],
            profile={},
            score=0,
            temperature="frio",
            score_reasons=[],
            lead_messages_added=0,
            outbox=list(items),
        )
    )
    rows = store.db.execute("SELECT idempotency_key, id FROM outbox").fetchall()
    return {r[0]: r[1] for r in rows}


def row(store: SqliteStore, idem: str) -> dict[str, Any]:
    r = store.db.execute(
        "SELECT status, attempts, last_error FROM outbox WHERE idempotency_key = ?", (idem,)
    ).fetchone()
    return dict(r)


def status(store: SqliteStore, idem: str) -> str:
    return row(store, idem)["status"]


async def drained(d: OutboxDispatcher, *, timeout: float = 5.0) -> None:
    """Wait until the dispatcher is idle (nothing in flight, nothing pending, not even
    backing off) and the store agrees; then the counts are final and can be exact."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await d.idle.wait()
                stats = await d.store.outbox_stats()
                if stats.pending + stats.inflight == 0 and d.idle.is_set():
                    return
                await asyncio.sleep(0.005)  # an item the dispatcher has not looked at yet
    except TimeoutError:
        raise AssertionError(f"the outbox did not drain within {timeout} s") from None


def count_claims(store: SqliteStore) -> Callable[[], int]:
    """Counts the dispatcher's looks at the outbox (claim_outbox calls)."""
    claims = 0
    claim = store.claim_outbox

    async def counting(**kwargs: Any) -> list[OutboxItem]:
        nonlocal claims
        claims += 1
        return await claim(**kwargs)

    store.claim_outbox = counting  # type: ignore[method-assign]
    return lambda: claims


async def looks_again(claims: Callable[[], int], times: int = 3) -> None:
    """Wait until the dispatcher has looked at the outbox `times` more times: whatever
    it was going to do with what is due now, it has done."""
    start = claims()
    await eventually(lambda: claims() >= start + times)


class ScriptedHandler:
    """Fails each item by its script (a list of exceptions), then succeeds."""

    def __init__(self, failures: dict[str, list[BaseException]] | None = None) -> None:
        self.failures = {k: list(v) for k, v in (failures or {}).items()}
        self.calls: list[tuple[str, float]] = []
        self.delivered: list[str] = []

    async def __call__(self, outbox_item: OutboxItem) -> None:
        name = outbox_item.payload["name"]
        self.calls.append((name, time.monotonic()))
        script = self.failures.get(name)
        if script:
            raise script.pop(0)
        self.delivered.append(name)

    def calls_of(self, name: str) -> list[float]:
        return [at for n, at in self.calls if n == name]


def fixed_policy(wait_s: float, attempts: int = 6) -> DeliveryPolicy:
    return DeliveryPolicy(
        name="test_fixed",
        stop=stop_after_attempt(attempts),
        wait=wait_fixed(wait_s),
        retry=retry_if_exception(is_transient),
    )


TRANSIENT = [
    pytest.param(lambda: SendError("HTTP 500", status=500, retryable=True), id="send-500"),
    pytest.param(lambda: SendError("HTTP 429", status=429, retryable=True), id="send-429"),
    pytest.param(TimeoutError, id="timeout"),
    pytest.param(lambda: aiohttp.ClientConnectionError("connection reset"), id="client-connection"),
    pytest.param(aiohttp.ServerDisconnectedError, id="server-disconnected"),
    pytest.param(lambda: ConnectionResetError("reset by peer"), id="os-connection-reset"),
]

PERMANENT = [
    pytest.param(
        lambda: SendError("HTTP 400: phone is not on WhatsApp", status=400, retryable=False),
        "SendError: HTTP 400: phone is not on WhatsApp",
        id="send-400",
    ),
    pytest.param(
        lambda: PermanentDeliveryError("unknown channel 'telegram'"),
        "PermanentDeliveryError: unknown channel 'telegram'",
        id="permanent",
    ),
    pytest.param(lambda: ValueError("handler bug"), "ValueError: handler bug", id="unexpected-bug"),
    pytest.param(lambda: KeyError("contact_id"), "KeyError: 'contact_id'", id="bad-payload"),
]


class FakeClock:
    """One fake time for the breaker (monotonic seconds) and the dispatcher (due times)."""

    def __init__(self) -> None:
        # A little ahead of the store's real clock, so items enqueued now are due at once.
        self.start = datetime.now(UTC) + timedelta(seconds=5)
        self.elapsed = 0.0

    def monotonic(self) -> float:
        return 5000.0 + self.elapsed

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


def defaults() -> OutboxKnobs:
    return outbox_knobs(Settings(_env_file=None))

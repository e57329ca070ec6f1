"""The outbox dispatcher on a real SQLite store, with fake handlers.

What the operator relies on: transient failures are retried with backoff until they
succeed, permanent ones go dead at once with their error, the retry budget is finite,
replies of one contact never overtake each other while other contacts are not held
up, and a shutdown in the middle of a delivery loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tenacity import retry_if_exception, stop_after_attempt, wait_fixed

from channels.base import SendError
from core.settings import Settings
from integrations.store.base import OutboxItem, TurnCommit
from integrations.store.sqlite import SqliteStore
from runtime.dispatcher import OutboxDispatcher
from runtime.policies import DeliveryPolicy, PermanentDeliveryError, channel_send_policy, is_transient
from tests.conftest import fast_settings
from tests.helpers.fakes import eventually

# --- fixtures and helpers -------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "outbox.sqlite3")
    await store.open()
    yield store
    await store.close()


DispatcherFactory = Callable[..., Awaitable[OutboxDispatcher]]


@pytest.fixture
async def dispatcher(store: SqliteStore) -> AsyncIterator[DispatcherFactory]:
    """Builds and starts dispatchers; every one is stopped at the end of the test."""
    started: list[OutboxDispatcher] = []

    async def make(
        routes: dict[str, tuple[Any, DeliveryPolicy]],
        *,
        workers: int = 8,
        poll_s: float = 0.05,
        on: SqliteStore | None = None,
    ) -> OutboxDispatcher:
        d = OutboxDispatcher(on or store, workers=workers, poll_s=poll_s)
        for kind, (handler, policy) in routes.items():
            d.register(kind, handler, policy)
        await d.start()
        started.append(d)
        return d

    yield make
    for d in started:
        await d.stop(timeout=1.0)


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return fast_settings(tmp_path, **overrides)


def item(idem: str, *, order_key: str = "reply:zapi:5511987650001", kind: str = "send_text", **payload: Any) -> OutboxItem:
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
    pytest.param(lambda: asyncio.TimeoutError(), id="timeout"),
    pytest.param(lambda: aiohttp.ClientConnectionError("connection reset"), id="client-connection"),
    pytest.param(lambda: aiohttp.ServerDisconnectedError(), id="server-disconnected"),
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


# --- transient and permanent failures -------------------------------------------------


@pytest.mark.parametrize("make_error", TRANSIENT)
async def test_transient_errors_are_retried_until_delivered(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory, make_error: Callable[[], BaseException]
) -> None:
    handler = ScriptedHandler({"r1": [make_error(), make_error()]})
    await enqueue(store, item("r1"))
    await dispatcher({"send_text": (handler, channel_send_policy(settings_for(tmp_path)))})

    await eventually(lambda: status(store, "r1") == "done")
    assert handler.delivered == ["r1"]
    assert len(handler.calls_of("r1")) == 3
    assert row(store, "r1") == {"status": "done", "attempts": 3, "last_error": None}


async def test_the_wait_between_attempts_comes_from_the_policy(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    handler = ScriptedHandler({"r1": [SendError("HTTP 503", status=503, retryable=True)] * 2})
    await enqueue(store, item("r1"))
    await dispatcher({"send_text": (handler, fixed_policy(0.25))})

    await eventually(lambda: status(store, "r1") == "pending" and row(store, "r1")["last_error"])
    # Between attempts the item is pending with its error, not in flight.
    assert "HTTP 503" in row(store, "r1")["last_error"]
    await eventually(lambda: status(store, "r1") == "done")
    calls = handler.calls_of("r1")
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert len(gaps) == 2
    assert all(gap >= 0.24 for gap in gaps), gaps


@pytest.mark.parametrize(("make_error", "stored"), PERMANENT)
async def test_permanent_errors_go_dead_at_once_with_their_error(
    tmp_path: Path,
    store: SqliteStore,
    dispatcher: DispatcherFactory,
    make_error: Callable[[], BaseException],
    stored: str,
) -> None:
    handler = ScriptedHandler({"r1": [make_error()]})
    await enqueue(store, item("r1"))
    await dispatcher({"send_text": (handler, channel_send_policy(settings_for(tmp_path)))})

    await eventually(lambda: status(store, "r1") == "dead")
    await asyncio.sleep(0.2)
    assert len(handler.calls_of("r1")) == 1
    assert row(store, "r1") == {"status": "dead", "attempts": 1, "last_error": stored}
    assert (await store.outbox_stats()).dead == 1


async def test_transient_failures_go_dead_after_the_last_attempt(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    settings = settings_for(tmp_path, outbox_max_attempts=4)
    handler = ScriptedHandler({"r1": [SendError(f"HTTP 503 #{n}", status=503, retryable=True) for n in range(10)]})
    await enqueue(store, item("r1"))
    await dispatcher({"send_text": (handler, channel_send_policy(settings))})

    await eventually(lambda: status(store, "r1") == "dead")
    await asyncio.sleep(0.2)
    assert len(handler.calls_of("r1")) == settings.outbox_max_attempts
    assert row(store, "r1") == {"status": "dead", "attempts": 4, "last_error": "SendError: HTTP 503 #3"}


async def test_a_dead_item_replayed_is_delivered(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    handler = ScriptedHandler({"r1": [SendError("HTTP 401 bad token", status=401, retryable=False)]})
    await enqueue(store, item("r1"))
    d = await dispatcher({"send_text": (handler, channel_send_policy(settings_for(tmp_path)))})
    await eventually(lambda: status(store, "r1") == "dead")

    assert await store.replay_dead() == 1  # the operator fixed the token
    d.wake()
    await eventually(lambda: status(store, "r1") == "done")
    assert handler.delivered == ["r1"]


async def test_an_unknown_kind_goes_dead(tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory) -> None:
    handler = ScriptedHandler()
    await enqueue(store, item("x1", kind="carrier_pigeon", order_key="k-x"), item("r1", order_key="k-r"))
    await dispatcher({"send_text": (handler, channel_send_policy(settings_for(tmp_path)))})

    await eventually(lambda: status(store, "x1") == "dead" and status(store, "r1") == "done")
    assert "carrier_pigeon" in row(store, "x1")["last_error"]
    assert handler.delivered == ["r1"]


# --- ordering and parallelism ---------------------------------------------------------


async def test_items_of_one_key_are_delivered_strictly_in_order(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    transient = [SendError("HTTP 500", status=500, retryable=True) for _ in range(2)]
    handler = ScriptedHandler({"part-1": transient})
    await enqueue(store, item("part-1"), item("part-2"), item("part-3"))
    await dispatcher({"send_text": (handler, channel_send_policy(settings_for(tmp_path)))}, workers=8)

    await eventually(lambda: handler.delivered == ["part-1", "part-2", "part-3"])
    names = [name for name, _ in handler.calls]
    assert names == ["part-1", "part-1", "part-1", "part-2", "part-3"]


async def test_a_later_item_never_starts_while_the_earlier_one_is_running(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    running: set[str] = set()
    overlaps: list[set[str]] = []
    order: list[str] = []

    async def slow(outbox_item: OutboxItem) -> None:
        name = outbox_item.payload["name"]
        running.add(name)
        if len(running) > 1:
            overlaps.append(set(running))
        await asyncio.sleep(0.05)
        order.append(name)
        running.discard(name)

    await enqueue(store, *(item(f"p{n}") for n in range(4)))
    await dispatcher({"send_text": (slow, fixed_policy(0.01))}, workers=8)
    await eventually(lambda: len(order) == 4)
    assert order == ["p0", "p1", "p2", "p3"]
    assert overlaps == []


async def test_one_stuck_key_does_not_hold_up_another(store: SqliteStore, dispatcher: DispatcherFactory) -> None:
    release = asyncio.Event()
    delivered: list[str] = []

    async def handler(outbox_item: OutboxItem) -> None:
        name = outbox_item.payload["name"]
        if name == "a1":
            await release.wait()
        delivered.append(name)

    await enqueue(
        store,
        item("a1", order_key="reply:A"),
        item("a2", order_key="reply:A"),
        item("b1", order_key="reply:B"),
        item("b2", order_key="reply:B"),
    )
    await dispatcher({"send_text": (handler, fixed_policy(0.01))}, workers=4)

    await eventually(lambda: delivered == ["b1", "b2"])
    assert status(store, "a1") == "inflight"
    assert status(store, "a2") == "pending"
    release.set()
    await eventually(lambda: delivered == ["b1", "b2", "a1", "a2"])


async def test_a_key_in_backoff_does_not_hold_up_another(store: SqliteStore, dispatcher: DispatcherFactory) -> None:
    handler = ScriptedHandler({"a1": [SendError("HTTP 502", status=502, retryable=True)]})
    await enqueue(store, item("a1", order_key="reply:A"), item("a2", order_key="reply:A"))
    await dispatcher({"send_text": (handler, fixed_policy(0.6))})
    await eventually(lambda: status(store, "a1") == "pending" and row(store, "a1")["attempts"] == 1)

    await enqueue(store, item("b1", order_key="reply:B"))
    await eventually(lambda: handler.delivered == ["b1"], timeout=0.4)
    assert status(store, "a2") == "pending"
    await eventually(lambda: handler.delivered == ["b1", "a1", "a2"])


async def test_workers_bound_how_many_deliveries_run_at_once(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    running = 0
    peak = 0
    done: list[str] = []

    async def handler(outbox_item: OutboxItem) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        done.append(outbox_item.payload["name"])

    await enqueue(store, *(item(f"c{n}", order_key=f"reply:{n}") for n in range(6)))
    await dispatcher({"send_text": (handler, fixed_policy(0.01))}, workers=2)
    await eventually(lambda: len(done) == 6)
    assert peak == 2


async def test_wake_delivers_a_new_item_without_waiting_for_the_poll(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    handler = ScriptedHandler()
    d = await dispatcher({"send_text": (handler, fixed_policy(0.01))}, poll_s=30.0)
    await asyncio.sleep(0.05)  # the loop is now asleep on an empty outbox
    await enqueue(store, item("r1"))
    d.wake()
    await eventually(lambda: handler.delivered == ["r1"], timeout=1.0)


@pytest.mark.parametrize("head", ["backing_off", "in_flight"])
async def test_a_blocked_follow_up_does_not_make_the_dispatcher_spin(
    store: SqliteStore, dispatcher: DispatcherFactory, head: str
) -> None:
    """While the head of a key backs off (or is still being sent, e.g. a typing delay),
    its follow-up is "due" but not claimable.

    The dispatcher must then sleep (poll interval or wake-up) rather than poll the
    store in a hot loop: with production backoffs of up to minutes while a channel is
    down, a spin burns a whole core and slows every turn on the event loop. Every
    multi-bubble reply hits this case.
    """
    claims = 0
    claim = store.claim_outbox

    async def counting_claim(**kwargs: Any) -> list[OutboxItem]:
        nonlocal claims
        claims += 1
        return await claim(**kwargs)

    store.claim_outbox = counting_claim  # type: ignore[method-assign]
    delivered: list[str] = []
    failed_once = False

    async def handler(outbox_item: OutboxItem) -> None:
        nonlocal failed_once
        name = outbox_item.payload["name"]
        if name == "part-1" and head == "backing_off" and not failed_once:
            failed_once = True
            raise SendError("HTTP 500", status=500, retryable=True)
        if name == "part-1" and head == "in_flight":
            await asyncio.sleep(0.5)
        delivered.append(name)

    await enqueue(store, item("part-1"), item("part-2"))
    await dispatcher({"send_text": (handler, fixed_policy(0.5))}, poll_s=0.05)

    await eventually(lambda: delivered == ["part-1", "part-2"], timeout=3.0)
    # ~0.5 s blocked at a 0.05 s poll is ~10 claims; allow a wide margin.
    assert claims < 60, f"dispatcher polled the store {claims} times in ~0.5 s ({head})"


async def test_saturated_workers_do_not_make_the_dispatcher_spin(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    """All workers busy and another key due: wait for a worker to finish (the
    dispatcher's own wake-up), not re-ask the store in a hot loop."""
    polls = 0
    next_due = store.next_outbox_due

    async def counting_next_due() -> Any:
        nonlocal polls
        polls += 1
        return await next_due()

    store.next_outbox_due = counting_next_due  # type: ignore[method-assign]
    delivered: list[str] = []

    async def handler(outbox_item: OutboxItem) -> None:
        if outbox_item.payload["name"] == "a1":
            await asyncio.sleep(0.5)
        delivered.append(outbox_item.payload["name"])

    await enqueue(store, item("a1", order_key="reply:A"), item("b1", order_key="reply:B"))
    await dispatcher({"send_text": (handler, fixed_policy(0.01))}, workers=1, poll_s=0.05)

    await eventually(lambda: sorted(delivered) == ["a1", "b1"], timeout=3.0)
    assert polls < 60, f"dispatcher polled the store {polls} times while its only worker was busy"


# --- shutdown and restart -------------------------------------------------------------


async def test_stop_waits_for_a_running_delivery_within_the_grace(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    started = asyncio.Event()

    async def handler(outbox_item: OutboxItem) -> None:
        started.set()
        await asyncio.sleep(0.2)

    await enqueue(store, item("r1"))
    d = await dispatcher({"send_text": (handler, fixed_policy(0.01))})
    await started.wait()
    await d.stop(timeout=2.0)
    assert status(store, "r1") == "done"


async def test_stop_mid_delivery_leaves_the_item_to_the_next_start(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    started = asyncio.Event()
    hang = asyncio.Event()  # never set: the first delivery outlives the shutdown grace

    async def hanging(outbox_item: OutboxItem) -> None:
        started.set()
        await hang.wait()

    await enqueue(store, item("r1"), item("r2"))
    first = await dispatcher({"send_text": (hanging, fixed_policy(0.01))})
    await started.wait()
    await first.stop(timeout=0.1)
    assert status(store, "r1") == "inflight"
    assert status(store, "r2") == "pending"
    await store.close()

    # A new process on the same database.
    reopened = SqliteStore(tmp_path / "outbox.sqlite3")
    await reopened.open()
    handler = ScriptedHandler()
    second = OutboxDispatcher(reopened, workers=8, poll_s=0.05)
    second.register("send_text", handler, fixed_policy(0.01))
    await second.start()
    try:
        await eventually(lambda: handler.delivered == ["r1", "r2"])
        assert row(reopened, "r1") == {"status": "done", "attempts": 2, "last_error": None}
        assert row(reopened, "r2")["status"] == "done"
    finally:
        await second.stop(timeout=1.0)
        await reopened.close()


# --- DeliveryPolicy.decide ------------------------------------------------------------


def policy(**overrides: Any) -> DeliveryPolicy:
    values: dict[str, Any] = dict(
        _env_file=None, outbox_max_attempts=6, outbox_backoff_base_s=2.0, outbox_backoff_max_s=300.0
    )
    values.update(overrides)
    return channel_send_policy(Settings(**values))


def transient() -> SendError:
    return SendError("HTTP 503", status=503, retryable=True)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_decide_waits_within_exponential_bounds(attempt: int) -> None:
    p = policy()
    ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
    waits = [p.decide(attempt, transient()) for _ in range(200)]
    assert all(w is not None and 0.0 <= w <= ceiling for w in waits)
    # Jitter: the waits spread over the range instead of all clients retrying in step.
    assert len({round(w, 6) for w in waits if w is not None}) > 100


def test_decide_caps_the_wait_at_the_maximum() -> None:
    p = policy(outbox_max_attempts=40, outbox_backoff_base_s=2.0, outbox_backoff_max_s=30.0)
    for attempt in (5, 10, 20, 39):
        delay = p.decide(attempt, transient())
        assert delay is not None and 0.0 <= delay <= 30.0


def test_decide_stops_at_the_last_attempt() -> None:
    p = policy(outbox_max_attempts=6)
    assert all(p.decide(n, transient()) is not None for n in range(1, 6))
    assert p.decide(6, transient()) is None
    assert p.decide(7, transient()) is None


def test_decide_with_a_single_attempt_never_retries() -> None:
    assert policy(outbox_max_attempts=1).decide(1, transient()) is None


@pytest.mark.parametrize(
    "error",
    [
        SendError("HTTP 400", status=400, retryable=False),
        SendError("HTTP 404", status=404, retryable=False),
        PermanentDeliveryError("bad payload"),
        ValueError("bug"),
        KeyError("text"),
    ],
    ids=["400", "404", "permanent", "value-error", "key-error"],
)
def test_decide_never_retries_permanent_errors(error: BaseException) -> None:
    assert policy().decide(1, error) is None


@pytest.mark.parametrize(
    "error",
    [
        SendError("HTTP 429", status=429, retryable=True),
        SendError("HTTP 502", status=502, retryable=True),
        asyncio.TimeoutError(),
        aiohttp.ClientConnectionError(),
        aiohttp.ServerDisconnectedError(),
        ConnectionRefusedError(),
    ],
    ids=["429", "502", "timeout", "client-connection", "server-disconnected", "refused"],
)
def test_decide_retries_transient_errors(error: BaseException) -> None:
    assert is_transient(error)
    assert policy().decide(1, error) is not None

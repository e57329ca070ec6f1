"""The outbox dispatcher on a real SQLite store, with fake handlers.

What the operator relies on: transient failures are retried with backoff until they
succeed, permanent ones go dead at once with their error, the retry budget is finite,
replies of one contact never overtake each other while other contacts are not held
up, and a shutdown in the middle of a delivery loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tenacity import retry_if_exception, stop_after_attempt, wait_fixed

from core.errors import ProviderRejected, ProviderUnavailable
from core.records import OutboxItem, TurnCommit
from core.settings import Settings
from runtime.breaker import BreakerRegistry, CircuitBreaker
from runtime.dispatcher import PROBE_STEP_ASIDE, OutboxDispatcher
from runtime.policies import (
    INTEGRATIONS,
    DeliveryPolicy,
    JitteredBackoff,
    OutboxKnobs,
    PermanentDeliveryError,
    channel_send_policy,
    integration_policy,
    is_transient,
    policy_for,
)
from store.sqlite import SqliteStore
from tests.conftest import fast_settings
from tests.helpers.errors import SendError
from tests.helpers.fakes import eventually
from web.configs.runtime import outbox_knobs

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


# --- transient and permanent failures -------------------------------------------------


@pytest.mark.parametrize("make_error", TRANSIENT)
async def test_transient_errors_are_retried_until_delivered(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory, make_error: Callable[[], BaseException]
) -> None:
    handler = ScriptedHandler({"r1": [make_error(), make_error()]})
    await enqueue(store, item("r1"))
    d = await dispatcher({"send_text": (handler, channel_send_policy(outbox_knobs(settings_for(tmp_path))))})

    await drained(d)
    assert handler.delivered == ["r1"]
    assert len(handler.calls_of("r1")) == 3
    assert row(store, "r1") == {"status": "done", "attempts": 3, "last_error": None}


async def test_the_wait_between_attempts_comes_from_the_policy(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    handler = ScriptedHandler({"r1": [SendError("HTTP 503", status=503, retryable=True)] * 2})
    await enqueue(store, item("r1"))
    d = await dispatcher({"send_text": (handler, fixed_policy(0.25))})

    await eventually(lambda: status(store, "r1") == "pending" and row(store, "r1")["last_error"])
    # Between attempts the item is pending with its error, not in flight.
    assert "HTTP 503" in row(store, "r1")["last_error"]
    await drained(d)
    assert row(store, "r1") == {"status": "done", "attempts": 3, "last_error": None}
    calls = handler.calls_of("r1")
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
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
    d = await dispatcher({"send_text": (handler, channel_send_policy(outbox_knobs(settings_for(tmp_path))))})

    await drained(d)  # dead is final: nothing left to retry
    assert len(handler.calls_of("r1")) == 1
    assert row(store, "r1") == {"status": "dead", "attempts": 1, "last_error": stored}
    assert (await store.outbox_stats()).dead == 1


async def test_transient_failures_go_dead_after_the_last_attempt(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    settings = settings_for(tmp_path, outbox_max_attempts=4)
    handler = ScriptedHandler(
        {"r1": [SendError(f"HTTP 503 #{n}", status=503, retryable=True) for n in range(10)]}
    )
    await enqueue(store, item("r1"))
    d = await dispatcher({"send_text": (handler, channel_send_policy(outbox_knobs(settings)))})

    await drained(d)
    assert len(handler.calls_of("r1")) == settings.outbox_max_attempts
    assert row(store, "r1") == {"status": "dead", "attempts": 4, "last_error": "SendError: HTTP 503 #3"}


async def test_a_dead_item_replayed_is_delivered(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    handler = ScriptedHandler({"r1": [SendError("HTTP 401 bad token", status=401, retryable=False)]})
    await enqueue(store, item("r1"))
    d = await dispatcher({"send_text": (handler, channel_send_policy(outbox_knobs(settings_for(tmp_path))))})
    await drained(d)
    assert status(store, "r1") == "dead"

    assert await store.replay_dead() == 1  # the operator fixed the token
    d.wake()
    await drained(d)
    assert status(store, "r1") == "done"
    assert handler.delivered == ["r1"]


async def test_an_unknown_kind_goes_dead(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    handler = ScriptedHandler()
    await enqueue(store, item("x1", kind="carrier_pigeon", order_key="k-x"), item("r1", order_key="k-r"))
    d = await dispatcher({"send_text": (handler, channel_send_policy(outbox_knobs(settings_for(tmp_path))))})

    await drained(d)
    assert (status(store, "x1"), status(store, "r1")) == ("dead", "done")
    assert "carrier_pigeon" in row(store, "x1")["last_error"]
    assert handler.delivered == ["r1"]


# --- ordering and parallelism ---------------------------------------------------------


async def test_items_of_one_key_are_delivered_strictly_in_order(
    tmp_path: Path, store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    transient = [SendError("HTTP 500", status=500, retryable=True) for _ in range(2)]
    handler = ScriptedHandler({"part-1": transient})
    await enqueue(store, item("part-1"), item("part-2"), item("part-3"))
    d = await dispatcher(
        {"send_text": (handler, channel_send_policy(outbox_knobs(settings_for(tmp_path))))}, workers=8
    )

    await drained(d)
    assert handler.delivered == ["part-1", "part-2", "part-3"]
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
    d = await dispatcher({"send_text": (slow, fixed_policy(0.01))}, workers=8)
    await drained(d)
    assert order == ["p0", "p1", "p2", "p3"]
    assert overlaps == []


async def test_one_stuck_key_does_not_hold_up_another(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
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
    d = await dispatcher({"send_text": (handler, fixed_policy(0.01))}, workers=4)

    await eventually(lambda: delivered == ["b1", "b2"])  # A is stuck: nothing else can come
    assert status(store, "a1") == "inflight"
    assert status(store, "a2") == "pending"
    release.set()
    await drained(d)
    assert delivered == ["b1", "b2", "a1", "a2"]


async def test_a_key_in_backoff_does_not_hold_up_another(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    clock = FakeClock()  # A's backoff ends when the test says so, not after a race with B
    handler = ScriptedHandler({"a1": [SendError("HTTP 502", status=502, retryable=True)]})
    await enqueue(store, item("a1", order_key="reply:A"), item("a2", order_key="reply:A"))
    d = await dispatcher({"send_text": (handler, fixed_policy(0.6))}, clock=clock.wall)
    await eventually(lambda: status(store, "a1") == "pending" and row(store, "a1")["attempts"] == 1)

    await enqueue(store, item("b1", order_key="reply:B"))
    await eventually(lambda: handler.delivered == ["b1"])  # A is still backing off
    assert (status(store, "a1"), status(store, "a2")) == ("pending", "pending")
    assert len(handler.calls_of("a1")) == 1
    clock.advance(0.6)
    await drained(d)
    assert handler.delivered == ["b1", "a1", "a2"]


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
    d = await dispatcher({"send_text": (handler, fixed_policy(0.01))}, workers=2)
    await drained(d)
    assert sorted(done) == [f"c{n}" for n in range(6)]
    assert peak == 2


async def test_wake_delivers_a_new_item_without_waiting_for_the_poll(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    handler = ScriptedHandler()
    d = await dispatcher({"send_text": (handler, fixed_policy(0.01))}, poll_s=30.0)
    await asyncio.wait_for(d.idle.wait(), 5)  # the loop is now asleep on an empty outbox
    await enqueue(store, item("r1"))
    d.wake()
    await drained(d, timeout=1.0)  # far less than the 30 s poll
    assert handler.delivered == ["r1"]


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
    claims = count_claims(store)
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
    d = await dispatcher({"send_text": (handler, fixed_policy(0.5))}, poll_s=0.05)

    await drained(d, timeout=3.0)
    assert delivered == ["part-1", "part-2"]
    # ~0.5 s blocked at a 0.05 s poll is ~10 claims; allow a wide margin.
    assert claims() < 60, f"dispatcher polled the store {claims()} times in ~0.5 s ({head})"


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
    d = await dispatcher({"send_text": (handler, fixed_policy(0.01))}, workers=1, poll_s=0.05)

    await drained(d, timeout=3.0)
    assert sorted(delivered) == ["a1", "b1"]
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
        await drained(second)
        assert handler.delivered == ["r1", "r2"]
        assert row(reopened, "r1") == {"status": "done", "attempts": 2, "last_error": None}
        assert row(reopened, "r2")["status"] == "done"
    finally:
        await second.stop(timeout=1.0)
        await reopened.close()


# --- DeliveryPolicy.decide ------------------------------------------------------------


def policy(**overrides: Any) -> DeliveryPolicy:
    values: dict[str, Any] = {
        "_env_file": None,
        "outbox_max_attempts": 6,
        "outbox_backoff_base_s": 2.0,
        "outbox_backoff_max_s": 300.0,
    }
    values.update(overrides)
    return channel_send_policy(outbox_knobs(Settings(**values)))


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
        TimeoutError(),
        aiohttp.ClientConnectionError(),
        aiohttp.ServerDisconnectedError(),
        ConnectionRefusedError(),
    ],
    ids=["429", "502", "timeout", "client-connection", "server-disconnected", "refused"],
)
def test_decide_retries_transient_errors(error: BaseException) -> None:
    assert is_transient(error)
    assert policy().decide(1, error) is not None


# --- the policy table -----------------------------------------------------------------


def defaults() -> OutboxKnobs:
    return outbox_knobs(Settings(_env_file=None))


@pytest.mark.parametrize(
    ("integration", "attempts", "base_s", "timeout_s"),
    [
        ("token_refresh", 3, 1.0, 10.0),
        ("meta_capi", 5, 2.0, 30.0),
        ("channel_send", 3, 2.0, 15.0),
        ("calendar", 3, 1.0, 10.0),
        ("outbound_webhook", 5, 5.0, 30.0),
    ],
)
def test_the_table_defaults_to_the_spec(
    integration: str, attempts: int, base_s: float, timeout_s: float
) -> None:
    spec = INTEGRATIONS[integration]
    assert (spec.max_attempts, spec.base_delay_s, spec.backoff, spec.timeout_s) == (
        attempts,
        base_s,
        "exponential",
        timeout_s,
    )
    p = policy_for(integration, defaults())
    assert p.name == integration and p.timeout_s == timeout_s
    assert all(p.decide(n, transient()) is not None for n in range(1, attempts))
    assert p.decide(attempts, transient()) is None
    # Exponential with jitter: attempt n waits 70-100 % of base * 2^(n-1).
    for n in range(1, attempts):
        nominal = min(base_s * 2 ** (n - 1), spec.max_delay_s)
        waits = [p.decide(n, transient()) for _ in range(50)]
        assert all(w is not None and 0.7 * nominal <= w <= nominal for w in waits)


def test_every_integration_the_bot_uses_has_a_policy() -> None:
    for name in ("channel_send", "chatwoot", "piperun", "meta_capi", "outbound_webhook"):
        assert policy_for(name, defaults()).name == name
    assert policy_for("channel_send:instagram", defaults()).decide(3, transient()) is None
    assert policy_for("outbound_webhook:crm-a", defaults()).timeout_s == 30.0
    with pytest.raises(KeyError, match="carrier_pigeon"):
        policy_for("carrier_pigeon", defaults())


def test_the_legacy_entry_points_read_the_table() -> None:
    assert channel_send_policy(defaults()).decide(3, transient()) is None
    mirror = integration_policy(defaults())  # Chatwoot keeps its long budget
    assert mirror.decide(11, transient()) is not None
    assert mirror.decide(12, transient()) is None


def test_outbox_settings_set_by_the_operator_override_every_row() -> None:
    settings = Settings(
        _env_file=None, outbox_max_attempts=9, outbox_backoff_base_s=0.5, outbox_backoff_max_s=1.0
    )
    for name in ("channel_send", "meta_capi", "outbound_webhook", "chatwoot"):
        p = policy_for(name, outbox_knobs(settings))
        assert p.decide(8, transient()) is not None
        assert p.decide(9, transient()) is None
        assert all(0.35 <= (p.decide(n, transient()) or 0) <= 1.0 for n in range(2, 8))


def test_linear_backoff_grows_by_the_base() -> None:
    wait = JitteredBackoff(1.0, 60.0, linear=True, jitter=0.0)
    assert [wait.nominal(n) for n in (1, 2, 3, 100)] == [1.0, 2.0, 3.0, 60.0]


class ClientFlagged(Exception):
    def __init__(self, retryable: bool) -> None:
        super().__init__("flagged")
        self.retryable = retryable


def test_is_transient_decides_by_type_and_ignores_a_flag_on_a_foreign_error() -> None:
    """Issue 14: retry is decided by the error tree, never by a `retryable` attribute
    found on any object (the duck typing this test used to allow)."""
    assert not is_transient(ClientFlagged(True))  # an unknown exception is not worth repeating
    assert not is_transient(ClientFlagged(False))
    assert is_transient(ProviderUnavailable("HTTP 503", status=503))
    assert not is_transient(ProviderRejected("HTTP 400", status=400))
    assert is_transient(SendError("HTTP 502", status=502))  # known only by its status


@pytest.mark.parametrize(
    ("status", "retry"),
    [(400, False), (401, False), (404, False), (408, True), (429, True), (500, True), (503, True)],
)
def test_is_transient_reads_the_status_of_raise_for_status(status: int, retry: bool) -> None:
    exc = aiohttp.ClientResponseError(request_info=None, history=(), status=status)  # type: ignore[arg-type]
    assert is_transient(exc) is retry


# --- circuit breakers -----------------------------------------------------------------


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


def breaker_on(clock: FakeClock, *, threshold: int = 3, reset: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(
        "crm",
        failure_threshold=threshold,
        reset_timeout_s=reset,
        clock=clock.monotonic,
        wall_clock=clock.wall,
    )


def trip(breaker: CircuitBreaker) -> None:
    while breaker.state == "closed":
        permit = breaker.acquire()
        assert permit is not None
        breaker.record_failure(permit)


def record_deferrals(store: SqliteStore) -> list[tuple[int, str]]:
    deferrals: list[tuple[int, str]] = []
    defer = store.defer_outbox

    async def recording(item_id: int, *, next_attempt_at: datetime, reason: str) -> None:
        deferrals.append((item_id, reason))
        await defer(item_id, next_attempt_at=next_attempt_at, reason=reason)

    store.defer_outbox = recording  # type: ignore[method-assign]
    return deferrals


def due_at(store: SqliteStore, idem: str) -> datetime:
    r = store.db.execute("SELECT next_attempt_at FROM outbox WHERE idempotency_key = ?", (idem,)).fetchone()
    return datetime.fromisoformat(r[0])


def crm_item(idem: str, key: str) -> OutboxItem:
    return item(idem, kind="crm_sync", order_key=f"crm:{key}")


async def test_an_open_breaker_leaves_items_pending_without_counting_attempts(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    clock = FakeClock()
    breaker = breaker_on(clock, reset=30.0)
    trip(breaker)
    deferrals = record_deferrals(store)
    claims = count_claims(store)
    handler = ScriptedHandler()
    ids = await enqueue(store, crm_item("a1", "A"), crm_item("a2", "A"), crm_item("b1", "B"))
    d = await dispatcher({"crm_sync": (handler, fixed_policy(0.01, attempts=2), breaker)}, clock=clock.wall)

    await eventually(lambda: len(deferrals) >= 2)
    await looks_again(claims)  # the clock stands still: nothing is due again, nothing spins
    assert sorted(deferrals) == sorted([(ids["a1"], "circuit_open"), (ids["b1"], "circuit_open")])
    assert handler.calls == []
    for idem in ("a1", "b1"):
        assert row(store, idem) == {"status": "pending", "attempts": 0, "last_error": "circuit_open"}
        assert due_at(store, idem) == clock.wall() + timedelta(seconds=30)
    assert row(store, "a2") == {"status": "pending", "attempts": 0, "last_error": None}

    clock.advance(30)  # half-open: one probe, it succeeds, the breaker closes, the rest follow
    await drained(d)
    assert sorted(handler.delivered) == ["a1", "a2", "b1"]
    assert [n for n in handler.delivered if n.startswith("a")] == ["a1", "a2"]
    assert breaker.state == "closed"
    assert all(status(store, n) == "done" for n in ("a1", "a2", "b1"))
    assert {n: row(store, n)["attempts"] for n in ("a1", "a2", "b1")} == {"a1": 1, "a2": 1, "b1": 1}


async def test_half_open_lets_one_probe_through_while_the_others_wait(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    clock = FakeClock()
    breaker = breaker_on(clock)
    trip(breaker)
    deferrals = record_deferrals(store)
    answer = asyncio.Event()
    calls: list[str] = []

    async def slow_crm(outbox_item: OutboxItem) -> None:
        calls.append(outbox_item.payload["name"])
        await answer.wait()

    await enqueue(store, crm_item("a1", "A"), crm_item("b1", "B"), crm_item("c1", "C"))
    d = await dispatcher({"crm_sync": (slow_crm, fixed_policy(0.01), breaker)}, clock=clock.wall, poll_s=0.02)
    await eventually(lambda: len(deferrals) >= 3)
    assert len(deferrals) == 3

    clock.advance(30)
    await eventually(lambda: len(calls) >= 1)
    assert calls == ["a1"]
    for _ in range(5):  # while the probe is out, the others keep being put back
        before = len(deferrals)
        clock.advance(0.5)
        await eventually(lambda before=before: len(deferrals) >= before + 2)  # b1 and c1 again
    assert calls == ["a1"]
    assert breaker.snapshot()["probe_out"] is True
    assert status(store, "b1") == "pending" and status(store, "c1") == "pending"

    answer.set()
    await eventually(lambda: breaker.state == "closed")
    clock.advance(1.0)  # they were put back for one poll interval
    await drained(d)
    assert sorted(calls) == ["a1", "b1", "c1"]
    assert breaker.state == "closed"


async def test_a_failed_probe_is_not_charged_and_steps_aside_for_another_key(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    clock = FakeClock()
    breaker = breaker_on(clock, reset=30.0)
    trip(breaker)
    deferrals = record_deferrals(store)
    handler = ScriptedHandler({"a1": [SendError("HTTP 502", status=502, retryable=True)]})
    await enqueue(store, crm_item("a1", "A"), crm_item("b1", "B"))
    d = await dispatcher({"crm_sync": (handler, fixed_policy(0.01, attempts=2), breaker)}, clock=clock.wall)
    await eventually(lambda: len(deferrals) >= 2)
    assert len(deferrals) == 2

    clock.advance(30)
    await eventually(lambda: row(store, "a1")["last_error"] != "circuit_open")
    assert breaker.state == "open"
    failed = row(store, "a1")
    assert failed["status"] == "pending" and failed["attempts"] == 0
    assert failed["last_error"] == "circuit_probe_failed: SendError: HTTP 502"
    assert due_at(store, "a1") == clock.wall() + timedelta(seconds=30) + PROBE_STEP_ASIDE

    clock.advance(30)  # b1 probes this time, succeeds, and a1 follows once due
    await eventually(lambda: handler.delivered == ["b1"])
    assert breaker.state == "closed"
    clock.advance(PROBE_STEP_ASIDE.total_seconds())
    await drained(d)
    assert handler.delivered == ["b1", "a1"]
    assert [n for n, _ in handler.calls] == ["a1", "b1", "a1"]
    assert status(store, "a1") == "done"
    assert row(store, "a1")["attempts"] == 1  # the failed probe was never charged


async def test_the_failure_that_opens_the_breaker_does_not_kill_the_item(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    """Three attempts, threshold three: without the breaker the item would be dead; with
    it the outage is what failed, and the item waits for the probe."""
    clock = FakeClock()
    breaker = breaker_on(clock, threshold=3, reset=30.0)
    handler = ScriptedHandler(
        {"a1": [SendError(f"HTTP 503 #{n}", status=503, retryable=True) for n in range(3)]}
    )
    await enqueue(store, crm_item("a1", "A"))
    d = await dispatcher({"crm_sync": (handler, fixed_policy(1.0, attempts=3), breaker)}, clock=clock.wall)

    for attempt in (1, 2):
        await eventually(
            lambda attempt=attempt: (
                row(store, "a1")["attempts"] == attempt and status(store, "a1") == "pending"
            )
        )
        clock.advance(1.0)
    await eventually(lambda: breaker.state == "open" and status(store, "a1") == "pending")
    assert row(store, "a1") == {"status": "pending", "attempts": 3, "last_error": "SendError: HTTP 503 #2"}
    assert due_at(store, "a1") == clock.wall() + timedelta(seconds=30)

    clock.advance(30)
    await drained(d)
    assert status(store, "a1") == "done"
    assert handler.delivered == ["a1"]
    assert breaker.state == "closed"


async def test_permanent_errors_do_not_count_against_the_breaker(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    clock = FakeClock()
    breaker = breaker_on(clock, threshold=2)
    handler = ScriptedHandler(
        {f"p{n}": [SendError("HTTP 400", status=400, retryable=False)] for n in range(4)}
    )
    await enqueue(store, *(crm_item(f"p{n}", f"K{n}") for n in range(4)))
    d = await dispatcher({"crm_sync": (handler, fixed_policy(0.01), breaker)}, clock=clock.wall)

    await drained(d)
    assert all(status(store, f"p{n}") == "dead" for n in range(4))
    assert len(handler.calls) == 4
    assert breaker.state == "closed" and breaker.failures == 0


async def test_a_breaker_chosen_per_item_isolates_channels(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    clock = FakeClock()
    registry = BreakerRegistry(clock=clock.monotonic, wall_clock=clock.wall)
    trip(registry.get("channel_send:instagram"))
    handler = ScriptedHandler()
    await enqueue(
        store,
        item("ig", order_key="reply:ig", channel="instagram", contact_id="1784"),
        item("wa", order_key="reply:wa", channel="waha", contact_id="5511987650001"),
    )
    select = registry.per_item("channel_send", lambda outbox_item: outbox_item.payload.get("channel"))
    await dispatcher({"send_text": (handler, fixed_policy(0.01), select)}, clock=clock.wall)

    await eventually(lambda: handler.delivered == ["wa"])
    await eventually(lambda: row(store, "ig")["last_error"] == "circuit_open")
    assert registry.snapshot()["channel_send:instagram"]["state"] == "open"
    assert registry.snapshot()["channel_send:waha"]["state"] == "closed"


async def test_a_ten_minute_outage_delivers_everything_once_in_order_after_recovery(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    """The CRM is down for ten minutes (fake clock) while leads keep coming: nothing dies,
    the CRM is barely called while it is down, and once it is back every item arrives
    exactly once, each key in its order."""
    clock = FakeClock()
    registry = BreakerRegistry(clock=clock.monotonic, wall_clock=clock.wall)
    breaker = registry.get("piperun")  # the table's 3 failures / 60 s
    policy = policy_for("piperun", defaults())  # the table's 5 attempts, 2 s exponential
    outage_s = 600.0
    calls_while_down = 0
    delivered: list[str] = []

    async def crm(outbox_item: OutboxItem) -> None:
        nonlocal calls_while_down
        if clock.elapsed < outage_s:
            calls_while_down += 1
            raise SendError("HTTP 503 Service Unavailable", status=503, retryable=True)
        delivered.append(outbox_item.payload["name"])

    keys = ["A", "B", "C"]
    first = [crm_item(f"{k}{n}", k) for k in keys for n in range(1, 5)]
    later = [crm_item(f"{k}{n}", k) for k in keys for n in range(5, 7)]
    await enqueue(store, *first)
    d = await dispatcher({"crm_sync": (crm, policy, breaker)}, clock=clock.wall, poll_s=0.01)

    stop = asyncio.Event()

    async def tick() -> None:
        while not stop.is_set():
            clock.advance(5.0)
            if clock.elapsed >= 300 and later:
                for late in later:  # new leads arrive mid-outage
                    await store.enqueue(late)
                later.clear()
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    try:
        # Never empty before the end: the outage outlasts the arrival of the late leads.
        await drained(d, timeout=30.0)
    finally:
        stop.set()
        await ticker

    assert later == []  # the late leads did arrive mid-outage
    everything = [f"{k}{n}" for k in keys for n in range(1, 7)]
    assert Counter(delivered) == Counter(everything)  # exactly once each
    for k in keys:
        assert [n for n in delivered if n.startswith(k)] == [f"{k}{n}" for n in range(1, 7)]
    assert all(status(store, n) == "done" for n in everything)
    assert all(row(store, n)["attempts"] <= 5 for n in everything)  # no budget spent on the outage
    # Fail fast: a few failures to open, then about one probe per reset timeout.
    assert calls_while_down <= 3 + outage_s / 60 + 2, calls_while_down
    assert breaker.state == "closed" and breaker.opened_total >= 2

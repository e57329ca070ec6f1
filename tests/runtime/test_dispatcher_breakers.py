"""The dispatcher behind circuit breakers: an open breaker defers items without spending
their attempts, a half-open one lets one probe through, and an outage ends in order."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

from core.records import OutboxItem
from runtime.breaker import BreakerRegistry, CircuitBreaker
from runtime.dispatcher import PROBE_STEP_ASIDE
from runtime.policies import (
    policy_for,
)
from store.sqlite import SqliteStore
from tests.helpers.errors import SendError
from tests.helpers.fakes import eventually
from tests.runtime.outbox_support import (
    DispatcherFactory,
    FakeClock,
    ScriptedHandler,
    count_claims,
    defaults,
    drained,
    enqueue,
    fixed_policy,
    item,
    looks_again,
    row,
    status,
)

# --- circuit breakers -----------------------------------------------------------------


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

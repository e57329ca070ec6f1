"""The outbox dispatcher on a real SQLite store, with fake handlers.

What the operator relies on: transient failures are retried with backoff until they
succeed, permanent ones go dead at once with their error, the retry budget is finite,
replies of one contact never overtake each other while other contacts are not held
up, and a shutdown in the middle of a delivery loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.records import OutboxItem
from runtime.dispatcher import OutboxDispatcher
from runtime.policies import (
    channel_send_policy,
)
from store.sqlite import SqliteStore
from tests.helpers.errors import SendError
from tests.helpers.fakes import eventually
from tests.runtime.outbox_support import (
    PERMANENT,
    TRANSIENT,
    DispatcherFactory,
    FakeClock,
    ScriptedHandler,
    count_claims,
    drained,
    enqueue,
    fixed_policy,
    item,
    row,
    settings_for,
    status,
)
from web.configs.runtime import outbox_knobs

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

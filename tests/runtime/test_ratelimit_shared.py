"""A provider's rate shared by every instance: two bot instances on one store together
send no faster than the provider allows (Z-API: 20 messages/s per Z-API instance),
instead of each sending at the full rate.

Each instance is a `SharedRateLimiter` over its own handle on the same data: the
Supabase store over the PostgREST bridge on one real Postgres schema, or two SQLite
handles on one file (the web and worker processes). The clock and the sleep are
injected: every send's time is the instant it was asked for plus what it slept, exact
whatever the machine's speed, and nothing waits for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import StoreUnavailable
from runtime.ratelimit import RateLimiter, SharedRateLimiter, limiter_for
from store.base import Store
from store.sqlite import SqliteStore

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
KEY = "ratelimit-service-role-key"


class FakeTime:
    """One wall clock for the instances; each send's sleep recorded for its own task."""

    def __init__(self) -> None:
        self.now = T0
        self.slept: dict[asyncio.Task[object] | None, float] = {}

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        self.slept[task] = self.slept.get(task, 0.0) + seconds

    def limiter(self, store: Store, *, rate: float = 20, burst: int | None = 5) -> SharedRateLimiter:
        return SharedRateLimiter(store, "zapi", rate, burst=burst, clock=self.clock, sleep=self.sleep)

    async def send(self, limiter: SharedRateLimiter) -> float:
        """Seconds after `now` at which this send goes out."""
        await limiter.acquire()
        return self.slept.get(asyncio.current_task(), 0.0)


@pytest.fixture(params=["sqlite", "supabase"])
async def two_instances(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    if request.param == "sqlite":
        stores: list[Store] = [SqliteStore(tmp_path / "shared.sqlite3") for _ in range(2)]
        for store in stores:
            await store.open()
        yield stores[0], stores[1]
        for store in stores:
            await store.close()
        return
    from store.supabase import SupabaseStore
    from tests.helpers.postgrest_bridge import PostgrestBridge
    from tests.store.pg_support import fresh_schema

    with fresh_schema() as schema:
        bridge = PostgrestBridge(schema, api_key=KEY)
        stores = [
            SupabaseStore(
                "https://sdr-ratelimit.supabase.co", KEY, transport=bridge.transport(), instance_id=name
            )
            for name in ("bot-1", "bot-2")
        ]
        for store in stores:
            await store.open()
        try:
            yield stores[0], stores[1]
        finally:
            for store in stores:
                await store.close()
            bridge.close()


async def test_two_instances_together_keep_to_the_providers_rate(two_instances: tuple[Store, Store]) -> None:
    time = FakeTime()
    one, two = (time.limiter(store, rate=20, burst=5) for store in two_instances)

    sends = await asyncio.gather(*(time.send(limiter) for limiter in [one, two] * 10))

    # 20 sends asked for at once: the burst of 5 goes, then one every 50 ms across both
    # instances; each on its own meter would have sent 10 in the first instant.
    assert sorted(sends) == pytest.approx([0.0] * 5 + [k * 0.05 for k in range(1, 16)])
    assert sum(1 for s in sends if s < 1.0) <= 20 + 5  # never more than rate + burst in a second


async def test_a_burst_spent_by_one_instance_is_spent_for_the_other(
    two_instances: tuple[Store, Store],
) -> None:
    time = FakeTime()
    one, two = (time.limiter(store, rate=20, burst=5) for store in two_instances)
    assert [await time.send(one) for _ in range(5)] == [0.0] * 5
    assert await time.send(two) == pytest.approx(0.05)

    # An hour later the burst is back, once, for both together.
    time.now = T0 + timedelta(hours=1)
    time.slept.clear()
    first = [await time.send(one) for _ in range(3)]
    second = [await time.send(two) for _ in range(3)]
    assert first + second == pytest.approx([0.0] * 5 + [0.05])


async def test_the_reserved_slots_are_instants_on_the_injected_clock(
    two_instances: tuple[Store, Store],
) -> None:
    time = FakeTime()
    one, two = (time.limiter(store, rate=10, burst=1) for store in two_instances)
    slots = [T0 + timedelta(seconds=await limiter.reserve()) for limiter in (one, two, one)]
    assert slots == [T0, T0 + timedelta(seconds=0.1), T0 + timedelta(seconds=0.2)]


async def test_without_a_clock_the_slots_are_on_the_stores_clock(two_instances: tuple[Store, Store]) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    one, two = (SharedRateLimiter(store, "zapi", 1, burst=1, sleep=sleep) for store in two_instances)
    await one.acquire()
    assert slept == []  # the burst
    await two.acquire()
    # The next slot, one second after the first on the store's clock, minus the few
    # milliseconds the two calls took; whatever the test machine's own clock says.
    assert len(slept) == 1 and 0.5 < slept[0] <= 1.0


async def test_the_time_the_store_took_to_answer_is_part_of_the_wait(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "bot.sqlite3")
    await store.open()
    try:
        moments = iter([T0, T0, T0, T0 + timedelta(seconds=0.02)])
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        limiter = SharedRateLimiter(store, "zapi", 20, burst=1, clock=lambda: next(moments), sleep=sleep)
        await limiter.acquire()  # the burst: now
        await limiter.acquire()  # slot T0 + 50 ms, the answer came at T0 + 20 ms: 30 ms left
        assert slept == pytest.approx([0.03])
    finally:
        await store.close()


async def test_a_slot_already_past_when_the_answer_comes_is_sent_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "bot.sqlite3")
    await store.open()
    try:
        moments = iter([T0, T0, T0, T0 + timedelta(seconds=2)])
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        limiter = SharedRateLimiter(store, "zapi", 20, burst=1, clock=lambda: next(moments), sleep=sleep)
        await limiter.acquire()
        await limiter.acquire()  # its slot (T0 + 50 ms) passed while the store answered
        assert slept == []
    finally:
        await store.close()


async def test_an_unreachable_store_sends_nothing_unmetered(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "bot.sqlite3")  # never opened: unavailable
    time = FakeTime()
    with pytest.raises(StoreUnavailable):
        await time.limiter(store).acquire()  # the outbox retries the send later
    assert time.slept == {}


async def test_supabase_down_is_store_unavailable_for_the_send() -> None:
    from store.supabase import SupabaseStore
    from tests.helpers.postgrest_bridge import PostgrestBridge
    from tests.store.pg_support import fresh_schema

    with fresh_schema() as schema:
        bridge = PostgrestBridge(schema, api_key=KEY)
        store = SupabaseStore(
            "https://sdr-ratelimit.supabase.co", KEY, transport=bridge.transport(), max_attempts=2
        )
        await store.open()
        try:
            bridge.fail_next(2, status=503)
            with pytest.raises(StoreUnavailable):
                await FakeTime().limiter(store).acquire()
        finally:
            await store.close()
            bridge.close()


async def test_the_factory_shares_the_meter_only_when_the_store_is_shared(tmp_path: Path) -> None:
    from store.supabase import SupabaseStore

    sqlite = SqliteStore(tmp_path / "bot.sqlite3")
    supabase = SupabaseStore("https://sdr-ratelimit.supabase.co", KEY)
    assert (sqlite.shares_rate_limits, supabase.shares_rate_limits) == (False, True)

    local = limiter_for(sqlite, "zapi", 20, shared=sqlite.shares_rate_limits)
    assert isinstance(local, RateLimiter) and local.burst == 20
    shared = limiter_for(supabase, "zapi", 20, shared=supabase.shares_rate_limits, burst=4)
    assert isinstance(shared, SharedRateLimiter)
    assert (shared.store, shared.name, shared.rate_per_s, shared.burst) == (supabase, "zapi", 20, 4)


def test_a_non_positive_rate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SharedRateLimiter(SqliteStore(tmp_path / "bot.sqlite3"), "zapi", 0)

"""The `Store` contract, continued: provider rate limits metered in the store.

`take_rate_slot` is a GCRA meter: a burst is free, then one slot per interval, and
every handle on the same data (an instance, a process) draws from the same meter. The
instants are injected, so the slots are exact, whatever the machine's speed.

Like `test_store_contract.py`, these talk only through the protocol, so they run on
every backend listed in `conftest.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from store.base import Store
from tests.store.conftest import OpenStore

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def take(
    store: Store, n: int, *, now: datetime = T0, name: str = "zapi", rate: float = 20, burst: int = 20
) -> list[float]:
    return [await store.take_rate_slot(name, rate_per_s=rate, burst=burst, now=now) for _ in range(n)]


async def test_a_burst_is_free_then_slots_are_one_interval_apart(store: Store) -> None:
    waits = await take(store, 25)
    assert waits[:20] == [0.0] * 20
    assert waits[20:] == pytest.approx([0.05, 0.10, 0.15, 0.20, 0.25])


async def test_idle_time_refills_up_to_the_burst_only(store: Store) -> None:
    assert await take(store, 3, rate=10, burst=2) == pytest.approx([0.0, 0.0, 0.1])
    # An hour later only `burst` sends are free again, not 36,000.
    assert await take(store, 3, now=at(3600), rate=10, burst=2) == pytest.approx([0.0, 0.0, 0.1])


async def test_the_wait_is_counted_from_the_callers_now(store: Store) -> None:
    assert await take(store, 3, rate=10, burst=1) == pytest.approx([0.0, 0.1, 0.2])
    # 150 ms later the next free slot (T0 + 300 ms) is 150 ms away.
    assert await take(store, 1, now=at(0.15), rate=10, burst=1) == pytest.approx([0.15])


async def test_each_limit_has_its_own_meter(store: Store) -> None:
    assert await take(store, 2, name="zapi", rate=1, burst=1) == pytest.approx([0.0, 1.0])
    assert await take(store, 2, name="instagram", rate=1, burst=1) == pytest.approx([0.0, 1.0])


async def test_two_instances_draw_from_one_meter(open_store: OpenStore) -> None:
    one, two = await open_store(), await open_store()
    waits = []
    for _ in range(5):  # interleaved, as two instances sending at once
        waits += await take(one, 1, rate=20, burst=2)
        waits += await take(two, 1, rate=20, burst=2)
    assert waits == pytest.approx([0.0, 0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40])


async def test_the_meter_survives_a_restart(open_store: OpenStore) -> None:
    before = await open_store()
    assert await take(before, 2, rate=1, burst=1) == pytest.approx([0.0, 1.0])
    await before.close()
    after = await open_store()
    # The restarted instance does not get a fresh burst while slots are still reserved.
    assert await take(after, 1, rate=1, burst=1) == pytest.approx([2.0])


async def test_without_a_now_the_stores_own_clock_meters(store: Store) -> None:
    first = await store.take_rate_slot("zapi", rate_per_s=1, burst=1)
    second = await store.take_rate_slot("zapi", rate_per_s=1, burst=1)
    # One second after the first slot, less the moments between the two calls.
    assert first == 0.0 and 0.5 < second <= 1.0


async def test_a_non_positive_rate_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.take_rate_slot("zapi", rate_per_s=0, burst=1, now=T0)

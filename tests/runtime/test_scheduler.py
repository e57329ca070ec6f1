"""The per-contact scheduler runs whatever `run(key)` it is given: it knows nothing of turns."""

from __future__ import annotations

import asyncio

from runtime.scheduler import ContactScheduler, ScheduleConfig

FAST = ScheduleConfig(
    quiet_s=0.02,
    max_wait_s=0.1,
    max_concurrent=4,
    lease_s=5.0,
    retry_base_s=0.01,
    retry_max_s=0.05,
    poll_s=0.05,
)


class NoStore:
    """The embedded store's case: no leases are asked for, nothing is pending."""

    async def pending_contacts(self) -> list[str]:
        return []

    async def claim_ready_contacts(self, **_: object) -> list[str]:
        raise AssertionError("an unshared scheduler never polls")

    async def claim_contact(self, *_: object, **__: object) -> bool:
        raise AssertionError("an unshared scheduler never leases")

    async def release_contact(self, *_: object, **__: object) -> None:
        raise AssertionError("an unshared scheduler never leases")


def scheduler(run: object) -> ContactScheduler:
    return ContactScheduler(run, store=NoStore(), config=FAST, owner="test", shared=False)  # type: ignore[arg-type]


async def test_a_burst_is_run_once_after_its_quiet_window() -> None:
    ran: list[str] = []

    async def run(key: str) -> bool:
        ran.append(key)
        return True

    s = scheduler(run)
    for _ in range(3):
        s.notify("a")
        await asyncio.sleep(0.005)
    assert not s.idle.is_set()
    await asyncio.wait_for(s.idle.wait(), 1.0)
    assert ran == ["a"]
    assert s.active_contacts == 0


async def test_a_failed_run_is_retried_after_a_backoff() -> None:
    outcomes = [False, False, True]
    ran: list[str] = []

    async def run(key: str) -> bool:
        ran.append(key)
        return outcomes.pop(0)

    s = scheduler(run)
    s.notify("b", immediate=True)
    await asyncio.sleep(0.001)
    await asyncio.wait_for(s.idle.wait(), 1.0)
    assert ran == ["b", "b", "b"]


async def test_an_exclusive_section_waits_for_nobody_and_says_busy() -> None:
    gate = asyncio.Event()

    async def run(_key: str) -> bool:
        await gate.wait()
        return True

    s = scheduler(run)
    s.notify("c", immediate=True)

    async def nudge() -> str:
        return "sent"

    assert await s.exclusive("c", nudge) == "busy"
    assert await s.exclusive("d", nudge) == "sent"
    gate.set()
    await asyncio.wait_for(s.idle.wait(), 1.0)
    await s.close(timeout=0.1)
    assert await s.exclusive("d", nudge) == "closing"

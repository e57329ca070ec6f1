"""A run whose answer is ready asks whether the lead said more (ContactScheduler.more_coming),
on a virtual clock: each case is a timeline of messages and presence signals, each run
takes MODEL_S (the model call) and then asks, as runtime/turn.py does before it commits."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

from runtime.scheduler import ContactScheduler, ScheduleConfig
from tests.helpers.virtual_time import run_virtual
from tests.runtime.test_scheduler import NoStore
from tests.runtime.test_scheduler_presence import COMPLETE, CONFIG, KEY, Event

MODEL_S = 2.0
Run = tuple[str, float, int, str]  # contact, second the run ended, messages it read, verdict


class ModelRuns:
    """A scheduler whose every run reads the burst, "calls the model" for MODEL_S and asks
    `more_coming`, as runtime/turn.py does; what each run did, on the virtual clock.
    Built inside the virtual loop (run_virtual)."""

    def __init__(self, config: ScheduleConfig = CONFIG, **options: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()
        self.arrived: Counter[str] = Counter()
        self.runs: list[Run] = []
        self.scheduler = ContactScheduler(
            self.run, store=NoStore(), config=config, owner="t", shared=False, **options
        )  # type: ignore[arg-type]

    async def run(self, key: str) -> bool:
        self.scheduler.reading(key)  # as runtime/turn.py does before it reads the burst
        seen = self.arrived[key]
        await asyncio.sleep(MODEL_S)
        verdict = "yielded" if await self.scheduler.more_coming(key) else "answered"
        self.runs.append((key, round(self.loop.time() - self.start, 6), seen, verdict))
        return True

    async def at(self, second: float) -> None:
        await asyncio.sleep(self.start + second - self.loop.time())

    def message(self, key: str = KEY, complete: bool | None = COMPLETE) -> None:
        self.arrived[key] += 1
        self.scheduler.notify(key, complete=complete)

    async def settled(self) -> None:
        await asyncio.sleep(0)
        await self.scheduler.idle.wait()
        await self.scheduler.close()


def replay(timeline: list[Event], config: ScheduleConfig = CONFIG) -> list[tuple[float, int, str]]:
    """(second the run ended, messages it had read, "answered" or "yielded") per run."""

    async def main() -> list[tuple[float, int, str]]:
        runs = ModelRuns(config)
        for at, what in sorted(timeline, key=lambda e: e[0]):
            await runs.at(at)
            if isinstance(what, str):
                runs.scheduler.presence(KEY, what)
            else:
                runs.message(complete=what)
        await runs.settled()
        return [run[1:] for run in runs.runs]

    return run_virtual(main())


def test_a_lone_message_is_answered_as_soon_as_the_model_is_done() -> None:
    assert replay([(0.0, COMPLETE)]) == [(3.0, 1, "answered")]


def test_a_part_that_came_while_the_model_answered_gets_one_answer_with_the_rest() -> None:
    # "Vi o anúncio de vocês." reads as whole: its run starts at 1 s; "quanto custa?"
    # comes at 2 s. The first run yields; the second answers both after their window.
    assert replay([(0.0, COMPLETE), (2.0, COMPLETE)]) == [(3.0, 1, "yielded"), (5.0, 2, "answered")]


def test_typing_while_the_model_answers_holds_the_answer_until_the_message() -> None:
    runs = replay([(0.0, COMPLETE), (2.5, "typing"), (6.0, COMPLETE)])
    # Held from 3 s (answer ready) until the message at 6 s; then one answer for both
    # (its run starts 0.6 s after the message: the phone reports presence).
    assert runs == [(6.0, 1, "yielded"), (8.6, 2, "answered")]


def test_a_lead_who_stops_typing_gets_the_ready_answer_without_a_new_model_call() -> None:
    runs = replay([(0.0, COMPLETE), (2.5, "typing"), (5.0, "paused")])
    assert runs == [(5.0, 1, "answered")]


def test_typing_that_never_becomes_a_message_holds_only_for_the_typing_window() -> None:
    config = replace(CONFIG, typing_s=4.0)
    assert replay([(0.0, COMPLETE), (2.5, "typing")], config) == [(6.5, 1, "answered")]


def test_typing_reported_before_the_burst_s_last_message_does_not_hold_the_answer() -> None:
    # The "typing" of the message itself, overtaken by it: nothing more is coming.
    assert replay([(0.0, "typing"), (0.2, COMPLETE)]) == [(2.8, 1, "answered")]


def test_a_lead_who_keeps_writing_is_answered_at_the_cap_from_the_first_message() -> None:
    # A whole question every 2 s for 30 s: each run yields to the next question while
    # the burst is young; at DEBOUNCE_MAX_S (15 s) from its first message the ready
    # answer goes, and the rest gets its own answer the same way.
    timeline: list[Event] = [(2.0 * i, COMPLETE) for i in range(16)]
    runs = replay(timeline)
    answered = [r for r in runs if r[2] == "answered"]
    assert runs[:7] == [(3.0 + 2 * i, 1 + i, "yielded") for i in range(6)] + [(15.0, 7, "answered")]
    assert [r[:2] for r in answered] == [(15.0, 7), (29.0, 14), (33.0, 16)]


def test_without_presence_only_a_message_makes_a_run_yield() -> None:
    assert replay([(0.0, COMPLETE), (5.0, COMPLETE)]) == [(3.0, 1, "answered"), (8.0, 2, "answered")]


def test_shutting_down_sends_the_answer_held_for_a_typing_lead() -> None:
    async def main() -> list[Run]:
        runs = ModelRuns()
        runs.message()
        await runs.at(2.5)
        runs.scheduler.presence(KEY, "typing")
        await runs.at(3.5)  # the answer is ready at 3 s and held for the typing
        await runs.scheduler.close()
        return runs.runs

    # Not held until the typing window ends (12.5 s): the answer goes at the shutdown.
    assert run_virtual(main()) == [(KEY, 3.5, 1, "answered")]


def test_a_message_that_came_while_the_run_waited_for_a_slot_is_answered_not_yielded_to() -> None:
    # One slot: "A"'s run holds it from 1 s to 3 s. "B" wrote at 0 s (ready at 1 s) and
    # again at 2 s, while waiting for the slot: B's run reads both and answers them.
    async def main() -> list[Run]:
        runs = ModelRuns(replace(CONFIG, max_concurrent=1))
        runs.message("A")
        runs.message("B")
        await runs.at(2.0)
        runs.message("B")
        await runs.settled()
        return runs.runs

    assert run_virtual(main()) == [("A", 3.0, 1, "answered"), ("B", 5.0, 2, "answered")]


def test_a_message_that_came_during_the_model_call_still_wins_at_shutdown() -> None:
    # Shutting down at 2.5 s: the answer ready at 3 s does not go, since the lead wrote at
    # 2 s; both messages stay pending and are answered whole after the restart.
    async def main() -> list[Run]:
        runs = ModelRuns()
        runs.message()
        await runs.at(2.0)
        runs.message()
        await runs.at(2.5)
        await runs.scheduler.close()
        return runs.runs

    assert run_virtual(main()) == [(KEY, 3.0, 1, "yielded")]


def test_the_debounce_histogram_does_not_count_a_yielded_burst_twice() -> None:
    waits: list[float] = []

    async def main() -> list[Run]:
        runs = ModelRuns(on_debounced=waits.append)
        runs.message()
        await runs.at(2.0)
        runs.message()
        await runs.settled()
        return runs.runs

    assert [verdict for *_, verdict in run_virtual(main())] == ["yielded", "answered"]
    # The burst waited 1 s for its window; the run after the yield is the same burst.
    assert waits == [1.0]

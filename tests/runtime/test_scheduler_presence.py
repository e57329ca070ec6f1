"""The quiet window with presence and without it, on a virtual clock: each case is a
timeline of messages and presence signals, and the scheduler's runs are read back at the
exact virtual instant they started (no wall-clock race, no sleeps)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from runtime.scheduler import ContactScheduler, ScheduleConfig
from tests.helpers.virtual_time import run_virtual
from tests.runtime.test_scheduler import NoStore

# The defaults of Settings: DEBOUNCE_QUIET_S, _COMPLETE_S, _PRESENCE_S, _TYPING_S, _MAX_S.
CONFIG = ScheduleConfig(
    quiet_s=3.0,
    max_wait_s=15.0,
    max_concurrent=4,
    lease_s=5.0,
    retry_base_s=0.01,
    retry_max_s=0.05,
    poll_s=0.05,
    complete_s=1.0,
    presence_s=0.6,
    typing_s=10.0,
)
FRAGMENT, COMPLETE = False, True
KEY = "whatsapp:5511999999999"

# (second, what): a message (FRAGMENT / COMPLETE / None: shape unknown, "now": a form)
# or a presence state ("typing", "recording", "paused", "online", "offline").
Event = tuple[float, bool | str | None]


def replay(timeline: list[Event], config: ScheduleConfig = CONFIG) -> list[tuple[float, int]]:
    """(second the run started, messages that had arrived by then) for each run."""

    async def main() -> list[tuple[float, int]]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        arrived = 0
        runs: list[tuple[float, int]] = []

        async def run(_key: str) -> bool:
            runs.append((round(loop.time() - start, 6), arrived))
            return True

        scheduler = ContactScheduler(run, store=NoStore(), config=config, owner="t", shared=False)  # type: ignore[arg-type]
        for at, what in sorted(timeline, key=lambda e: e[0]):
            await asyncio.sleep(start + at - loop.time())
            if isinstance(what, str) and what != "now":
                scheduler.presence(KEY, what)
                continue
            arrived += 1
            scheduler.notify(KEY, immediate=what == "now", complete=None if what == "now" else what)
        await asyncio.sleep(0)
        await scheduler.idle.wait()
        await scheduler.close()
        return runs

    return run_virtual(main())


# --- without presence: the adaptive window ----------------------------------------------


def test_a_complete_question_waits_less_than_a_fragment() -> None:
    assert replay([(0.0, COMPLETE)]) == [(1.0, 1)]
    assert replay([(0.0, FRAGMENT)]) == [(3.0, 1)]
    assert replay([(0.0, None)]) == [(3.0, 1)]  # shape unknown: as long as today


def test_a_question_after_a_greeting_brings_the_turn_forward() -> None:
    assert replay([(0.0, FRAGMENT), (0.5, COMPLETE)]) == [(1.5, 2)]


def test_a_fixed_window_is_kept_without_a_complete_setting() -> None:
    fixed = replace(CONFIG, complete_s=None, presence_s=None)
    assert replay([(0.0, COMPLETE)], fixed) == [(3.0, 1)]
    assert replay([(0.0, COMPLETE), (0.0, "paused")], fixed) == [(3.0, 1)]


def test_no_window_is_longer_than_the_fragment_one() -> None:
    instant = replace(CONFIG, quiet_s=0.0, max_wait_s=0.0)
    assert replay([(0.0, COMPLETE), (0.1, "typing")], instant) == [(0.0, 1)]


# --- with presence ----------------------------------------------------------------------


def test_a_complete_message_is_answered_quickly_when_the_phone_reports_presence() -> None:
    # The "paused" after sending adds nothing: the message said the lead stopped.
    timeline: list[Event] = [(-4.0, "typing"), (0.0, COMPLETE), (0.2, "paused")]
    assert replay([(t + 5, w) for t, w in timeline]) == [(5.6, 1)]
    assert replay([(1.0, "paused"), (5.0, COMPLETE)]) == [(5.6, 1)]  # crossed webhooks


def test_a_message_ends_the_typing_it_was() -> None:
    # No PAUSED came: the "typing" before the message was the message itself.
    assert replay([(0.0, "typing"), (3.0, COMPLETE)]) == [(3.6, 1)]


def test_typing_holds_the_turn_until_the_next_message() -> None:
    runs = replay([(0.0, COMPLETE), (0.3, "typing"), (6.0, COMPLETE), (6.1, "paused")])
    assert runs == [(6.6, 2)]


@pytest.mark.parametrize("stop", ["paused", "online", "offline"])
def test_a_stop_without_a_message_waits_a_fragments_window(stop: str) -> None:
    # Text left in the box (or deleted): answered DEBOUNCE_QUIET_S after the stop, long
    # before the typing signal would have expired (10.5).
    assert replay([(0.0, COMPLETE), (0.5, "typing"), (4.0, stop)]) == [(7.0, 1)]
    assert replay([(0.0, COMPLETE), (0.5, "typing"), (4.0, stop), (5.5, "typing"), (8.0, COMPLETE)]) == [
        (8.6, 2)
    ]


def test_a_stop_overtaken_by_the_next_typing_does_not_end_it() -> None:
    # The "paused" sent with "oi" reaches us 0.2 s after the "typing" of the next part.
    timeline: list[Event] = [(0.0, FRAGMENT), (0.3, "typing"), (0.5, "paused"), (6.0, COMPLETE)]
    assert replay(timeline) == [(6.6, 2)]


def test_recording_holds_a_fragment_and_waits_for_the_upload() -> None:
    # The voice note arrives 1.5 s after the lead let go of the button: still one turn.
    runs = replay([(0.0, FRAGMENT), (1.0, "recording"), (9.0, "paused"), (10.5, COMPLETE)])
    assert runs == [(11.1, 2)]
    # A recording dropped without sending: answered a fragment's window after it stopped.
    assert replay([(0.0, FRAGMENT), (1.0, "recording"), (9.0, "paused")]) == [(12.0, 1)]


def test_a_lone_voice_note_is_answered_shortly() -> None:
    assert replay([(0.0, "recording"), (8.0, "paused"), (9.2, COMPLETE)]) == [(9.8, 1)]


def test_a_typing_signal_without_a_message_expires() -> None:
    assert replay([(0.0, COMPLETE), (0.5, "typing")]) == [(10.5, 1)]


def test_a_lead_stuck_typing_is_answered_at_the_cap() -> None:
    refreshed: list[Event] = [(t, "typing") for t in range(1, 40, 4)]
    assert replay([(0.0, COMPLETE), *refreshed]) == [(15.0, 1)]


def test_a_burst_of_three_with_typing_between_is_one_turn() -> None:
    timeline: list[Event] = [
        (0.0, "typing"),
        (1.5, FRAGMENT),  # "oi"
        (1.6, "paused"),
        (2.4, "typing"),
        (5.0, COMPLETE),  # "vi o anúncio de vocês."
        (5.1, "paused"),
        (5.5, "typing"),
        (9.0, COMPLETE),  # "quanto custa o plano anual?"
        (9.1, "paused"),
    ]
    assert replay(timeline) == [(9.6, 3)]
    # The same burst without presence: the windows alone split it in three.
    assert replay([e for e in timeline if not isinstance(e[1], str)]) == [(4.5, 1), (6.0, 2), (10.0, 3)]


def test_presence_alone_never_starts_a_turn() -> None:
    assert replay([(0.0, "typing"), (2.0, "paused"), (3.0, "online"), (9.0, "offline")]) == []


def test_presence_does_not_hold_a_form() -> None:
    assert replay([(0.0, "typing"), (0.5, "now"), (0.6, "typing")]) == [(0.5, 1)]


def test_presence_is_forgotten_once_stale() -> None:
    # A phone heard from long ago: the window without presence again.
    assert replay([(0.0, "paused"), (700.0, COMPLETE)]) == [(701.0, 1)]

"""The web process's datagrams to the turn worker: the message's shape and the lead's
presence travel with the contact key, so the worker's quiet window is the same as in
one process."""

from __future__ import annotations

from typing import Any

from web.worker_process import DONE, FRAGMENT, NOW, PRESENCE, WAKE, _Nudges


class Runner:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def notify(self, contact_key: str, *, immediate: bool = False, complete: bool | None = None) -> None:
        self.calls.append(("notify", contact_key, immediate, complete))

    def presence(self, contact_key: str, state: str) -> None:
        self.calls.append(("presence", contact_key, state))


def received(*datagrams: bytes) -> list[tuple[Any, ...]]:
    runner, woken = Runner(), []
    nudges = _Nudges(runner, lambda: woken.append(True))
    for data in datagrams:
        nudges.datagram_received(data, ("127.0.0.1", 1))
    return runner.calls + [("wake",)] * len(woken)


def test_each_datagram_reaches_the_runner_as_sent() -> None:
    key = b"whatsapp:5511999999999"
    assert received(key, NOW + key, DONE + key, FRAGMENT + key, PRESENCE + b"typing " + key, WAKE) == [
        ("notify", key.decode(), False, None),
        ("notify", key.decode(), True, None),
        ("notify", key.decode(), False, True),
        ("notify", key.decode(), False, False),
        ("presence", key.decode(), "typing"),
        ("wake",),
    ]


def test_a_broken_presence_datagram_is_dropped() -> None:
    assert received(PRESENCE, PRESENCE + b"typing", PRESENCE + b"\xff\xfe k", PRESENCE + b" key") == []

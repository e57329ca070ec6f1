"""The web process's datagrams to the turn worker: the message's shape and the lead's
presence travel with the contact key, so the worker's quiet window is the same as in
one process."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.notifier import ForwardingNotifier
from web.worker_process import (
    DONE,
    FRAGMENT,
    NOW,
    PRESENCE,
    WAKE,
    WorkerSupervisor,
    _Nudges,
    free_port,
    listen_for_nudges,
)


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


async def test_the_web_process_forwards_shape_and_presence_to_the_worker() -> None:
    """ForwardingNotifier -> WorkerSupervisor -> UDP on loopback -> the worker's runner."""
    port = free_port()
    runner = Runner()
    transport = await listen_for_nudges(port, runner, lambda: None)
    supervisor = WorkerSupervisor(port=port, grace_s=1.0)
    notifier = ForwardingNotifier(supervisor.nudge, supervisor.wake, supervisor.presence)
    try:
        notifier.presence("whatsapp:5511999999999", "typing")
        notifier.notify("whatsapp:5511999999999", complete=True)
        async with asyncio.timeout(5.0):
            while len(runner.calls) < 2:
                await asyncio.sleep(0.01)
    finally:
        transport.close()
        supervisor._udp.close()  # the parent's sending socket; it lives as long as the process otherwise
    assert sorted(runner.calls, key=str) == [
        ("notify", "whatsapp:5511999999999", False, True),
        ("presence", "whatsapp:5511999999999", "typing"),
    ]

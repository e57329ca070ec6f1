"""How the edge tells the runtime there is work: a stored message, an enqueued item.

In one process (`all`, `worker`) that is the turn runner and the outbox dispatcher
themselves. The web process of a split deployment runs neither: it forwards each
signal to the worker child (one UDP datagram, see web/worker_process.py), and the
worker's pollers find anything a lost datagram did not announce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Notifier(Protocol):
    def notify(self, contact_key: str, *, immediate: bool = False) -> None:
        """A message of this lead was stored: its turn should start (after the debounce,
        or at once when `immediate`: a filled form is complete as it arrives)."""

    def wake(self) -> None:
        """Something was enqueued outside a turn: the outbox should look now."""


class _Runner(Protocol):
    def notify(self, contact_key: str, *, immediate: bool = False) -> None: ...


class _Dispatcher(Protocol):
    def wake(self) -> None: ...


class LocalNotifier:
    """The runtime runs here: wake the runner and the dispatcher directly."""

    def __init__(self, runner: _Runner, dispatcher: _Dispatcher) -> None:
        self.runner = runner
        self.dispatcher = dispatcher

    def notify(self, contact_key: str, *, immediate: bool = False) -> None:
        self.runner.notify(contact_key, immediate=immediate)

    def wake(self) -> None:
        self.dispatcher.wake()


class ForwardingNotifier:
    """The runtime runs elsewhere (the worker child): pass the signal on, or drop it
    when nobody listens (the pollers there find the work anyway)."""

    def __init__(
        self, nudge: Callable[[str, bool], None] | None = None, wake: Callable[[], None] | None = None
    ) -> None:
        self._nudge = nudge
        self._wake = wake

    def notify(self, contact_key: str, *, immediate: bool = False) -> None:
        if self._nudge is not None:
            self._nudge(contact_key, immediate)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake()

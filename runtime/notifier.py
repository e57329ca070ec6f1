"""How the edge tells the runtime there is work: a stored message, an enqueued item, and
the hint of a lead's chat presence.

In one process (`all`, `worker`) that is the turn runner and the outbox dispatcher
themselves. The web process of a split deployment runs neither: it forwards each
signal to the worker child (one UDP datagram, see web/worker_process.py), and the
worker's pollers find anything a lost datagram did not announce (a lost presence hint
costs only the window without presence).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Notifier(Protocol):
    def notify(self, contact_key: str, *, immediate: bool = False, complete: bool | None = None) -> None:
        """A message of this lead was stored: its turn should start (after the debounce,
        or at once when `immediate`: a filled form is complete as it arrives). `complete`:
        the message ends a thought (a shorter quiet window), None when not known."""

    def presence(self, contact_key: str, state: str) -> None:
        """The lead's phone reported their chat presence ("typing", "paused"...): a hint
        that moves a pending burst's quiet window, never work on its own."""

    def wake(self) -> None:
        """Something was enqueued outside a turn: the outbox should look now."""


class ContactsRunner(Protocol):
    """The turn runner as a message or a presence signal reaches it (here, or in the worker
    process through web/worker_process.py's datagrams)."""

    def notify(self, contact_key: str, *, immediate: bool = False, complete: bool | None = None) -> None: ...

    def presence(self, contact_key: str, state: str) -> None: ...


class _Dispatcher(Protocol):
    def wake(self) -> None: ...


class _Nudge(Protocol):
    def __call__(self, contact_key: str, immediate: bool = False, complete: bool | None = None) -> None: ...


class LocalNotifier:
    """The runtime runs here: wake the runner and the dispatcher directly."""

    def __init__(self, runner: ContactsRunner, dispatcher: _Dispatcher) -> None:
        self.runner = runner
        self.dispatcher = dispatcher

    def notify(self, contact_key: str, *, immediate: bool = False, complete: bool | None = None) -> None:
        self.runner.notify(contact_key, immediate=immediate, complete=complete)

    def presence(self, contact_key: str, state: str) -> None:
        self.runner.presence(contact_key, state)

    def wake(self) -> None:
        self.dispatcher.wake()


class ForwardingNotifier:
    """The runtime runs elsewhere (the worker child): pass the signal on, or drop it
    when nobody listens (the pollers there find the work anyway)."""

    def __init__(
        self,
        nudge: _Nudge | None = None,
        wake: Callable[[], None] | None = None,
        presence: Callable[[str, str], None] | None = None,
    ) -> None:
        self._nudge = nudge
        self._wake = wake
        self._presence = presence

    def notify(self, contact_key: str, *, immediate: bool = False, complete: bool | None = None) -> None:
        if self._nudge is not None:
            self._nudge(contact_key, immediate, complete)

    def presence(self, contact_key: str, state: str) -> None:
        if self._presence is not None:
            self._presence(contact_key, state)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake()

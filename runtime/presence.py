"""The lead's last chat presence, per contact, in this process: a hint, never data.

Z-API and WAHA post what the lead's phone shows in our chat ("typing", "recording",
"paused"...). It arrives before the first message of a burst, so it is kept for contacts
without a pending turn too, but it is never stored, never starts a turn, and is
forgotten after `live_s` (a phone that reported presence a while ago may have stopped).
Bounded: the business phone's every chat may report presence, so the oldest entries go
once `max_contacts` are held.

Per process: with several instances (or the web process and the turn worker) the signal
must reach the process that drives the contact's turn (web/worker_process.py forwards it
to the worker); a signal that reaches another instance only costs the lead the window
without presence.
"""

from __future__ import annotations

from collections import OrderedDict

from runtime.quiet_window import Seen

# A phone that reported presence this recently is taken to report it still.
LIVE_S = 600.0
MAX_CONTACTS = 20_000


class PresenceBoard:
    def __init__(self, *, live_s: float = LIVE_S, max_contacts: int = MAX_CONTACTS) -> None:
        self.live_s = live_s
        self.max_contacts = max_contacts
        self._seen: OrderedDict[str, Seen] = OrderedDict()

    def record(self, contact_key: str, state: str, now: float) -> None:
        before = self.get(contact_key, now)
        self._seen[contact_key] = before.then(state, now) if before is not None else Seen.first(state, now)
        self._seen.move_to_end(contact_key)
        while len(self._seen) > self.max_contacts:
            self._seen.popitem(last=False)

    def get(self, contact_key: str, now: float) -> Seen | None:
        """The last signal while it is live; None when the phone never said or went quiet."""
        seen = self._seen.get(contact_key)
        if seen is None:
            return None
        if now - seen.at > self.live_s:
            del self._seen[contact_key]
            return None
        return seen

    def __len__(self) -> int:
        return len(self._seen)

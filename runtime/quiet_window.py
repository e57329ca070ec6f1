"""How long a lead's burst must be quiet before its turn starts: the adaptive window.

A fixed window makes every lead wait as long as the slowest burst needs. What the lead
just sent says more: "Quanto custa o plano anual?" ends a thought and is answered after
a short window; "oi", "então," or a short line without punctuation is likely the first
piece of a burst and waits longer. When the lead's phone reports presence (Z-API, WAHA),
a complete message waits even less (the phone would say if they typed on), while
"typing"/"recording" holds the turn until the next message or a stop; the hold expires
on its own and DEBOUNCE_MAX_S still caps the whole wait. bench/first_reply.py measures
the trade-off (docs/performance.md, "First reply").

Pure functions of times and texts, so the scheduler, the turn (a burst stored by several
instances) and bench/first_reply.py all decide the same way.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from core.models import InboundMessage, MessageKind

# A line this long reads as a whole message even without punctuation.
LONG_CHARS = 60
# Lone greetings and fillers: the lead is about to say what they want.
_OPENERS = frozenset(
    {
        "oi",
        "oie",
        "oii",
        "ola",
        "opa",
        "eai",
        "e ai",
        "salve",
        "bom dia",
        "boa tarde",
        "boa noite",
        "entao",
        "tipo",
        "assim",
        "e",
        "mas",
        "hum",
        "hmm",
        "ah",
        "olha",
        "entao assim",
        "oi tudo bem",
        "ola tudo bem",
        "tudo bem",
    }
)
_ENDS_THOUGHT = ("?", ".", "!")
_CONTINUES = ("...", "…", ",", ":", ";", "-")
# Kinds that are whole on their own: a voice note, a file, a place, a tapped option.
_WHOLE_KINDS = frozenset(
    {
        MessageKind.AUDIO,
        MessageKind.DOCUMENT,
        MessageKind.LOCATION,
        MessageKind.CONTACT,
        MessageKind.BUTTON_REPLY,
        MessageKind.LIST_REPLY,
        MessageKind.FORM,
    }
)


def _plain(text: str) -> str:
    """Lower case, no accents, no punctuation or emoji: "Olá!! 😊" -> "ola"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    kept = "".join(
        c if c.isalnum() or c.isspace() else " " for c in decomposed if not unicodedata.combining(c)
    )
    return " ".join(kept.split())


def _trailing(text: str) -> str:
    """The text without trailing emoji and spaces: "quanto custa? 🙏" ends with "?"."""
    end = len(text)
    while end and not (text[end - 1].isalnum() or text[end - 1] in "?.!,:;-…"):
        end -= 1
    return text[:end]


def text_ends_thought(text: str | None) -> bool:
    body = _trailing((text or "").strip())
    if not body or _plain(body) in _OPENERS:
        return False
    if body.endswith(_CONTINUES):
        return False
    return body.endswith(_ENDS_THOUGHT) or len(body) >= LONG_CHARS


def ends_thought(message: InboundMessage) -> bool:
    """True when the message reads as complete (short window), False for a fragment."""
    if message.kind in _WHOLE_KINDS:
        return True
    if message.kind in (MessageKind.IMAGE, MessageKind.VIDEO):
        # With a caption the lead said what it is; without one the words usually follow.
        return bool((message.media_caption or message.text or "").strip())
    if message.kind is MessageKind.TEXT:
        return text_ends_thought(message.text)
    return False  # stickers, reactions, the unknown: wait as for a fragment


@dataclass(frozen=True, slots=True)
class Windows:
    """Seconds of quiet per case (Settings: DEBOUNCE_QUIET_S, _COMPLETE_S, _PRESENCE_S,
    _TYPING_S, _MAX_S)."""

    fragment_s: float
    complete_s: float
    presence_s: float
    typing_s: float
    max_wait_s: float

    def after(self, complete: bool | None, *, presence: bool = False) -> float:
        """The window after the burst's last message. Unknown content waits as a
        fragment; with presence reported, a complete message waits only for the phone
        to say the lead is typing again."""
        if not complete:
            return self.fragment_s
        return min(self.presence_s, self.complete_s) if presence else self.complete_s


HOLDING = frozenset({"typing", "recording"})
# Webhooks are not ordered: the "paused" a phone sends with a message can reach us after
# the "typing" of the next one. A stop this soon after a start is taken for such an
# overtaken signal (a real stop comes after some seconds without a keystroke).
OVERTAKEN_S = 1.0


@dataclass(frozen=True, slots=True)
class Seen:
    """The lead's last presence signal and when it arrived (the scheduler's clock), and
    when they last started typing or recording (`active_at`)."""

    state: str
    at: float
    active_at: float | None = None

    @property
    def holding(self) -> bool:
        return self.state in HOLDING

    def then(self, state: str, at: float) -> Seen:
        """The next signal, remembering when the lead was last active; a stop that
        overtook nothing but its own webhook leaves the lead typing."""
        if state in HOLDING:
            return Seen(state, at, at)
        if self.holding and at - self.at < OVERTAKEN_S:
            return self
        return Seen(state, at, self.active_at)

    @classmethod
    def first(cls, state: str, at: float) -> Seen:
        return cls(state, at, at if state in HOLDING else None)


def deadline(
    windows: Windows, *, first_at: float, last_at: float, complete: bool | None, seen: Seen | None
) -> float:
    """When the burst's turn may start.

    Without presence: the content window after the last message. With it, a complete
    message waits `presence_s` (the phone would say if the lead typed on), and a signal
    sent after the last message moves the deadline: "typing"/"recording" holds it for
    `typing_s` (it expires if nothing follows); a stop after such activity with no
    message since ("paused" with text still in the box, or a voice note uploading) gives
    a fragment's window from the stop. The "paused" that follows a sent message, or an
    "online"/"offline" without activity, changes nothing: the message already said the
    lead stopped. Never past `first_at + max_wait_s`."""
    cap = first_at + windows.max_wait_s
    at = last_at + windows.after(complete, presence=seen is not None)
    if seen is not None and seen.at > last_at:
        if seen.holding:
            at = max(at, seen.at + windows.typing_s)
        elif seen.active_at is not None and seen.active_at > last_at:
            at = max(at, seen.at + windows.fragment_s)
    return min(at, cap)

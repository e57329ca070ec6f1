"""A run that yields to the lead's late messages, and what it leaves for the next run.

A burst's part can read as whole ("Vi o anúncio de vocês.") and be answered before the
rest arrives. When the lead writes again (or is typing) while the model answers, the run
commits nothing and the next one answers the whole burst (ContactScheduler.more_coming
decides; bench/first_reply.py measures it). What the yielded run paid is not lost: its
model usage and Whisper seconds join the committed turn's cost (the dashboard's cost per
lead counts every call), and its transcripts are reused instead of paid again; so are a
failed run's (the model down after Whisper heard a voice note), with their seconds.

In memory, per process, and only onto a commit that answers the messages those runs read:
a crash between the yield and the commit, or another instance answering the burst, loses
only these figures (the messages stay pending in the store).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from core.records import TurnUsage

# Contacts whose runs yielded and whose answer has not committed yet; more are
# dropped oldest first (only their cost figures would be lost).
MAX_CONTACTS = 10_000


class Yielded(Exception):  # noqa: N818 - a signal, not an error
    """The lead said more while the model answered: this run commits nothing."""

    def __init__(self, llm_seconds: float, tokens: tuple[int, int, int], held_s: float) -> None:
        super().__init__("the lead wrote again during the turn")
        self.llm_seconds = llm_seconds
        # Prompt (cached included), completion, cached: as _Outcome.tokens.
        self.tokens = tokens
        # How long the run waited for the lead to finish typing before it yielded.
        self.held_s = held_s


@dataclass
class Carried:
    """What runs of one contact that did not commit left: the model calls of runs that
    yielded, the Whisper seconds of any run (a failed one's transcripts are reused too),
    the transcripts, the profile name fetched, and the inbound messages they read."""

    model: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    heard: list[float | None] = field(default_factory=list)
    transcripts: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    inbound_ids: set[int] = field(default_factory=set)

    def add(self, model: str, tokens: tuple[int, int, int], inbound_ids: list[int]) -> None:
        prompt, completion, cached = tokens
        self.model = self.model or model
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cached_tokens += cached
        self.inbound_ids.update(inbound_ids)

    def heard_in(self, heard: list[float | None], inbound_ids: list[int]) -> None:
        """Seconds transcribed by a run that did not commit (yielded or failed): its
        transcripts are reused, so the run that commits will not hear them again."""
        self.heard += heard
        self.inbound_ids.update(inbound_ids)

    def answered_by(self, inbound_ids: list[int]) -> bool:
        """Whether a commit answers the messages these runs read (another instance may
        have answered them, or an erasure removed them: then the figures belong nowhere)."""
        return self.inbound_ids <= set(inbound_ids)

    def onto(self, usage: TurnUsage | None) -> TurnUsage | None:
        """The committed turn's usage with the yielded runs' added (a silent turn, say an
        opt-out after a yield, gets theirs alone)."""
        if not (self.prompt_tokens or self.completion_tokens or self.heard):
            return usage
        base = usage if usage is not None else TurnUsage(model=self.model or "unknown")
        own = [] if usage is None else [usage.transcription_seconds]
        return replace(
            base,
            prompt_tokens=base.prompt_tokens + self.prompt_tokens,
            cached_tokens=base.cached_tokens + self.cached_tokens,
            completion_tokens=base.completion_tokens + self.completion_tokens,
            transcription_seconds=heard_seconds(self.heard + own),
        )


def heard_seconds(heard: list[float | None]) -> float | None:
    """The audio seconds Whisper heard: the known lengths summed; None when every voice
    note's length was unknown (a format that does not say)."""
    known = [s for s in heard if s is not None]
    if heard and not known:
        return None
    return round(sum(known), 3)


class CarriedCosts:
    """Per contact, what its yielded runs left until a turn of that contact commits."""

    def __init__(self, max_contacts: int = MAX_CONTACTS) -> None:
        self.max_contacts = max_contacts
        self._by_contact: OrderedDict[str, Carried] = OrderedDict()

    def get(self, contact_key: str) -> Carried:
        """The contact's carry, made on first use (its transcripts dict is what the next
        run's TurnInput shares)."""
        carried = self._by_contact.get(contact_key)
        if carried is None:
            carried = self._by_contact[contact_key] = Carried()
            while len(self._by_contact) > self.max_contacts:
                self._by_contact.popitem(last=False)
        return carried

    def peek(self, contact_key: str) -> Carried | None:
        return self._by_contact.get(contact_key)

    def done(self, contact_key: str) -> None:
        """The contact's turn committed (with the carry added): forget it."""
        self._by_contact.pop(contact_key, None)

    def __len__(self) -> int:
        return len(self._by_contact)

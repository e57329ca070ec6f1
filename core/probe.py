"""What `python main.py doctor` asks of each adapter and client, in data only.

Every provider knows its own URLs, headers and what its answers mean; the doctor only
orchestrates the checks and prints them. A probe gets a `ProbeIO` from the doctor (one
read-only GET whose transport failures, timeouts and odd answers are already worded for
an operator) and returns a `ProbeResult`: `detail` says what was found, `hint` what the
operator should do, both in pt-BR because the operator reads them. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    hint: str = ""


def ok(detail: str) -> ProbeResult:
    return ProbeResult(True, detail)


def problem(detail: str, hint: str) -> ProbeResult:
    return ProbeResult(False, detail, hint)


@dataclass(frozen=True)
class ProbeReply:
    status: int
    text: str
    data: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ProbeVerdict(Exception):  # noqa: N818 - a verdict, not an error: it carries the answer
    """A probe's answer reached before it could finish (timeout, unreachable host)."""

    def __init__(self, result: ProbeResult) -> None:
        super().__init__(result.detail)
        self.result = result


class ProbeIO(Protocol):
    """What the doctor lends a probe."""

    timeout_s: float

    async def get(
        self, url: str, *, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
    ) -> ProbeReply:
        """One GET; a transport failure raises `ProbeVerdict` with the operator's words."""

    def timed_out(self) -> ProbeResult: ...
    def unreachable(self, host: str) -> ProbeResult: ...
    def provider_words(self, reply: ProbeReply, *paths: tuple[str, ...]) -> str:
        """The provider's own words from an answer, short and scrubbed of our secrets."""

    def unexpected(self, reply: ProbeReply, *paths: tuple[str, ...]) -> ProbeResult:
        """The verdict for an answer the probe does not recognise (429, 5xx, other)."""

    def scrub(self, text: str) -> str:
        """`text` with every configured secret removed."""

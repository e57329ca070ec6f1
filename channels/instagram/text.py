"""Texts cut to what Instagram's Send API accepts, where a reader would cut them.

Meta's Instagram messaging guides give the limit two ways: "Text message must be less
than 1000 characters" (messenger-platform/instagram/features/send-message, Limitations)
and "Message text must be UTF-8 and be a 1000 bytes or less" (same page, Send a Basic
Message). Counting UTF-8 bytes satisfies both, and Portuguese accents make the
difference real: 1,000 bytes of "ção" is far fewer than 1,000 characters.
"""

from __future__ import annotations

import re

TEXT_MAX_BYTES = 1000

# Where to cut, best first: a paragraph break, a line break, a sentence end, a space.
# Each pattern's match ends where the next piece may begin.
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n\s*"),
    re.compile(r"(?<=[.!?…])[\"')\]»”]*\s+"),
    re.compile(r"\s+"),
)
# A boundary this early would leave a stub of a piece: a weaker boundary later is better.
_MIN_FILL = 0.5


def _utf8_len(char: str) -> int:
    return len(char.encode("utf-8", "surrogatepass"))


def _fitting_prefix(text: str, max_bytes: int) -> int:
    """How many characters of `text` fit in `max_bytes` of UTF-8."""
    used = 0
    for index, char in enumerate(text):
        used += _utf8_len(char)
        if used > max_bytes:
            return index
    return len(text)


def _cut(window: str, limit: int) -> tuple[int, int]:
    """(end of this piece, start of the next) inside `window`, at the best boundary; a
    hard cut at `limit` when the window has no boundary at all."""
    for pattern in _BOUNDARIES:
        matches = [m for m in pattern.finditer(window) if m.start() >= len(window) * _MIN_FILL]
        if matches:
            return matches[-1].start(), matches[-1].end()
    for pattern in _BOUNDARIES:
        matches = [m for m in pattern.finditer(window) if m.start() > 0]
        if matches:
            return matches[-1].start(), matches[-1].end()
    return limit, limit  # one unbroken word longer than the limit


def split_text(text: str, max_bytes: int = TEXT_MAX_BYTES) -> list[str]:
    """`text` as one piece when it fits, else as pieces of at most `max_bytes`, in order.

    Pieces are cut at the last paragraph break, else line break, else sentence end, else
    space that fills at least half a piece; a single word longer than the limit is cut
    where it must be. Whitespace at the cuts is dropped, nothing else is.
    """
    if len(text.encode("utf-8", "surrogatepass")) <= max_bytes:
        return [text]
    pieces: list[str] = []
    rest = text.strip()
    while len(rest.encode("utf-8", "surrogatepass")) > max_bytes:
        # The character after the window is included, so a boundary right at the
        # limit (a space after a full piece) can still be the cut.
        fit = _fitting_prefix(rest, max_bytes)
        end, start = _cut(rest[: fit + 1], fit)
        start = max(start, 1)
        piece = rest[:end].rstrip()
        if piece:
            pieces.append(piece)
        rest = rest[start:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces

"""Shape a model reply into what a person would send on WhatsApp.

People send a few short messages, not a wall of text: split on paragraph breaks, but
never into more than `max_parts` bubbles (extra paragraphs are joined back), and give
each bubble a typing pause that grows with its length.
"""

from __future__ import annotations

import math
import re

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def split_reply(text: str, *, max_parts: int = 3) -> list[str]:
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]
    if not paragraphs:
        return []
    max_parts = max(1, max_parts)
    if len(paragraphs) <= max_parts:
        return paragraphs
    # Group consecutive paragraphs into max_parts bubbles of similar length.
    total = sum(len(p) for p in paragraphs)
    target = total / max_parts
    parts: list[list[str]] = [[]]
    size = 0
    for index, paragraph in enumerate(paragraphs):
        remaining_paragraphs = len(paragraphs) - index
        remaining_slots = max_parts - len(parts)
        must_open = remaining_paragraphs <= remaining_slots
        if parts[-1] and len(parts) < max_parts and (size >= target or must_open):
            parts.append([])
            size = 0
        parts[-1].append(paragraph)
        size += len(paragraph)
    return ["\n\n".join(group) for group in parts]


def typing_seconds(text: str, *, chars_per_s: float, max_s: int) -> int:
    """Seconds of "typing..." before a bubble: 1 s minimum, proportional, capped."""
    if chars_per_s <= 0:
        return 1
    return max(1, min(max_s, math.ceil(len(text) / chars_per_s)))


# Providers refuse longer texts outright (Instagram: 1,000 bytes; Cloud API: 4,096 chars).
MAX_TEXT_BYTES = {"instagram": 1000, "whatsapp_cloud": 4096}
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def fit_to_limit(parts: list[str], max_bytes: int | None) -> list[str]:
    """Split any bubble over the provider's limit at sentence ends (then at spaces)."""
    if max_bytes is None:
        return parts
    out: list[str] = []
    for part in parts:
        if len(part.encode()) <= max_bytes:
            out.append(part)
            continue
        current = ""
        for piece in _pieces(part, max_bytes):
            candidate = f"{current} {piece}".strip() if current else piece
            if len(candidate.encode()) <= max_bytes:
                current = candidate
            else:
                out.append(current)
                current = piece
        if current:
            out.append(current)
    return out


def _pieces(text: str, max_bytes: int) -> list[str]:
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence.encode()) <= max_bytes:
            pieces.append(sentence)
            continue
        word_run = ""
        for whole in sentence.split():
            word = whole
            while len(word.encode()) > max_bytes:  # a URL longer than the limit: cut it
                cut = word.encode()[:max_bytes].decode("utf-8", "ignore")
                pieces.append(cut)
                word = word[len(cut) :]
            candidate = f"{word_run} {word}".strip()
            if len(candidate.encode()) <= max_bytes:
                word_run = candidate
            else:
                pieces.append(word_run)
                word_run = word
        if word_run:
            pieces.append(word_run)
    return [p for p in pieces if p]

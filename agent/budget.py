"""How much of a conversation fits in one prompt: a lead's message is cut to a size,
and the prompt is counted in tokens and trimmed oldest-history-first to a budget.

A single 960,000-character message once went to the model whole and then rode along in
every later prompt. The cut happens where prompts are built (this turn and history),
not where messages are stored: the team still reads the full text in Chatwoot.

Tokens are counted with the o200k encoding (GPT-4o's) from `quicktok`, which ships the
encoding in the wheel; `tiktoken` would download it on first use, which an offline CI
or a locked-down server cannot do.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import quicktok

# What the model reads where a lead's text was cut: it must know the text goes on,
# or it would answer a half sentence as if it were the whole message.
CUT_NOTE = "[mensagem cortada: {omitted} caracteres omitidos]"

# OpenAI's accounting for chat messages (the cookbook's `num_tokens_from_messages` for
# GPT-4o): each message costs its role and separators on top of its content, and every
# reply is primed with a few more.
TOKENS_PER_MESSAGE = 4
TOKENS_REPLY_PRIMING = 3
# An image sent with detail "low" costs a flat 85 tokens on GPT-4o, whatever its size.
TOKENS_PER_LOW_DETAIL_IMAGE = 85


@functools.cache
def _encoding() -> Any:
    # ~0.8 s to build once per process: `warm()` pays it at start, not on a lead's turn.
    return quicktok.get_encoding("o200k_base")


def warm() -> None:
    _encoding()


def count_tokens(text: str) -> int:
    """Special-token strings a lead types ("<|endoftext|>") count as plain text."""
    return int(_encoding().count(text))


# The same texts come back turn after turn (the history window slides by one message):
# a lookup is ~10x cheaper than tokenizing them again. Only short texts are kept (a few
# MB at most); a long one is simply counted each time.
_count_message = functools.lru_cache(maxsize=2048)(count_tokens)
_CACHED_MAX_CHARS = 2048

# Text fixed for the life of the process (the system prompt's rules, the knowledge):
# tokenized once.
count_fixed_text = functools.lru_cache(maxsize=64)(count_tokens)

# Counting a text's parts apart almost always gives more tokens than the whole (a word
# cut in two); a whitespace run split at a cut could in theory give one fewer: one token
# per cut keeps the sum an upper bound.
SPLIT_MARGIN_TOKENS = 1


def clip_text(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}\n{CUT_NOTE.format(omitted=len(text) - max_chars)}"


def clip_tokens(text: str, max_tokens: int) -> tuple[str, int]:
    """`text` cut to `max_tokens` at most (the note included), and its tokens."""
    tokens = count_tokens(text)
    if tokens <= max_tokens:
        return text, tokens
    note_tokens = count_tokens("\n" + CUT_NOTE.format(omitted=len(text)))
    keep = max(0, max_tokens - note_tokens - SPLIT_MARGIN_TOKENS * 2)  # re-tokenizing may shift a token
    ids = _encoding().encode_ordinary(text)[:keep]
    # A token may end inside a multi-byte character: that half character is dropped.
    kept = _encoding().decode_bytes(ids).decode("utf-8", "ignore")
    cut = f"{kept}\n{CUT_NOTE.format(omitted=len(text) - len(kept))}"
    return cut, count_tokens(cut)


def message_tokens(message: dict[str, Any]) -> int:
    content = message.get("content")
    tokens = TOKENS_PER_MESSAGE
    if isinstance(content, str):
        counted = _count_message(content) if len(content) <= _CACHED_MAX_CHARS else count_tokens(content)
        return tokens + counted
    for part in content or ():
        if part.get("type") == "text":
            tokens += count_tokens(part.get("text") or "")
        elif part.get("type") == "image_url":
            tokens += TOKENS_PER_LOW_DETAIL_IMAGE
    return tokens


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Prompt tokens of a request's messages (agent/billing.py counts the whole request)."""
    return sum(message_tokens(m) for m in messages) + TOKENS_REPLY_PRIMING


# The history's start stays put for several turns, so the conversation's next request
# repeats it byte for byte and OpenAI's prompt cache serves it at half price: once a
# window is long, it starts at an "anchor" message (stored id divisible by this), not at
# whatever message the runtime's sliding window or the token budget happened to cut at
# (a start moving by one exchange per turn would make the whole history uncacheable on
# every turn). Ids are the store's, shared by every conversation, so a lead's anchors
# fall about every 8 messages; a start moves about every 4 turns, dropping fewer than 8
# messages that the rolling summary already carries.
HISTORY_ANCHOR_EVERY = 8
# Shorter windows are kept whole: early in a conversation every message matters, and
# its first message is a stable start anyway.
HISTORY_ANCHOR_MIN_MESSAGES = 12


def anchored_history(
    history: Sequence[dict[str, Any]],
    *,
    ids: Sequence[int],
    available: int,
    costs: Sequence[int] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The newest messages of `history` that fit in `available` tokens, from a start that
    will still be the start next turn, and their tokens.

    `ids` are the stored messages' ids, one per message; `costs` their tokens when the
    caller counted them already. Whole messages are dropped, oldest first: the rolling
    summary carries what they said.
    """
    if costs is None:
        costs = [message_tokens(m) for m in history]
    start, room = len(history), available
    while start > 0 and costs[start - 1] <= room:
        start -= 1
        room -= costs[start]
    if len(history) - start >= HISTORY_ANCHOR_MIN_MESSAGES:
        anchor = next(
            (i for i in range(start, start + HISTORY_ANCHOR_EVERY) if ids[i] % HISTORY_ANCHOR_EVERY == 0),
            start,
        )
        start = anchor
    return list(history[start:]), sum(costs[start:])


__all__ = [
    "CUT_NOTE",
    "HISTORY_ANCHOR_EVERY",
    "HISTORY_ANCHOR_MIN_MESSAGES",
    "anchored_history",
    "clip_text",
    "clip_tokens",
    "count_fixed_text",
    "count_tokens",
    "message_tokens",
    "prompt_tokens",
    "warm",
]

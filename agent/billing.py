"""What OpenAI bills for one chat request, counted offline: the whole request, and the
part of it the prompt cache can reuse from the conversation's previous request.

Counting only the chat messages missed half the bill: the structured-output schema (and
any `tools`) is sent with every call and billed as input. OpenAI puts the schema ahead
of the system message ("The structured output schema serves as a prefix to the system
message and can be cached", https://developers.openai.com/api/docs/guides/prompt-caching),
so the model reads a request as: tools, schema, then the messages in order.

How OpenAI tokenizes the schema and tools it injects is not published: they are counted
here as their compact JSON with o200k, an approximation that is close for schemas made
mostly of descriptions and names (the cookbook's function-calling count differs by a few
tokens per property). Messages follow the cookbook's per-message accounting (budget.py).

Prompt caching (same guide; the cookbook's "Prompt Caching 201"): only an exact prefix
match is reused, only for prompts of 1,024 tokens or more, and cache hits come in
increments of 128 tokens, so a shared prefix of 1,400 tokens bills 1,280 as cached.
Cached input costs half the input price on GPT-4o.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.budget import (
    SPLIT_MARGIN_TOKENS,
    TOKENS_PER_LOW_DETAIL_IMAGE,
    TOKENS_PER_MESSAGE,
    TOKENS_REPLY_PRIMING,
    count_tokens,
)
from core.prices import GPT_4O, ModelPrice

# The shortest prefix OpenAI caches, and the step its cache hits grow in.
CACHE_MIN_TOKENS = 1024
CACHE_INCREMENT_TOKENS = 128


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of a request as the model reads it: its identity (to tell whether two
    requests hold the same piece), its text and the tokens it costs."""

    key: str
    text: str
    role: str | None
    tokens: int


@dataclass(frozen=True, slots=True)
class RequestTokens:
    """A request's input tokens: all of them, the prefix shared with the previous request
    of the conversation, and how much of that prefix OpenAI bills as cached."""

    total: int
    shared: int = 0
    cached: int = 0

    @property
    def uncached(self) -> int:
        return self.total - self.cached

    @property
    def cacheable_share(self) -> float:
        return self.cached / self.total if self.total else 0.0

    def billed_equivalent(self, prices: ModelPrice = GPT_4O) -> float:
        """Input tokens at the full input price that would cost the same (GPT-4o list
        prices by default, core/prices.py)."""
        return self.uncached + self.cached * prices.cached_input_per_m / prices.input_per_m

    def input_usd(self, prices: ModelPrice = GPT_4O) -> float:
        return (self.uncached * prices.input_per_m + self.cached * prices.cached_input_per_m) / 1_000_000


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=32)
def _fixed_json_tokens(text: str) -> int:
    # The schema and the tools are the same on every call of a process: counted once.
    return count_tokens(text)


# The same schema object comes back on every turn (LLMClient builds it once): its count
# is kept by identity, saving a JSON dump per turn. The entry holds the object, so the
# id cannot be reused while it is there.
_BY_IDENTITY: dict[int, tuple[Any, int]] = {}


def format_tokens(response_format: Mapping[str, Any] | Sequence[Any]) -> int:
    """The tokens of a `response_format` (or a `tools` list) as sent."""
    hit = _BY_IDENTITY.get(id(response_format))
    if hit is not None and hit[0] is response_format:
        return hit[1]
    tokens = _fixed_json_tokens(_json(response_format))
    if len(_BY_IDENTITY) < 64:
        _BY_IDENTITY[id(response_format)] = (response_format, tokens)
    return tokens


def _content_text(content: Any) -> tuple[str, int]:
    """A message's text and the flat tokens of its images (detail "low")."""
    if isinstance(content, str):
        return content, 0
    texts: list[str] = []
    images = 0
    for part in content or ():
        if part.get("type") == "text":
            texts.append(part.get("text") or "")
        elif part.get("type") == "image_url":
            images += 1
    return "".join(texts), images * TOKENS_PER_LOW_DETAIL_IMAGE


def request_segments(body: Mapping[str, Any]) -> list[Segment]:
    """The request in the order the model reads it: tools, the response schema, messages."""
    segments: list[Segment] = []
    for name in ("tools", "response_format"):
        if body.get(name):
            text = _json(body[name])
            segments.append(Segment(key=text, text=text, role=None, tokens=_fixed_json_tokens(text)))
    for message in body.get("messages") or ():
        text, image_tokens = _content_text(message.get("content"))
        segments.append(
            Segment(
                key=_json(message),
                text=text,
                role=str(message.get("role")),
                tokens=TOKENS_PER_MESSAGE + count_tokens(text) + image_tokens,
            )
        )
    return segments


def _partial_tokens(before: Segment, after: Segment) -> int:
    """Tokens of the common start of two different pieces (a message whose head matches:
    its role, then the text up to the first differing character)."""
    if before.role != after.role:
        return 0
    head = TOKENS_PER_MESSAGE - 1 if after.role is not None else 0
    common = os.path.commonprefix([before.text, after.text])
    # The token straddling the first difference is not shared.
    return head + max(0, count_tokens(common) - SPLIT_MARGIN_TOKENS) if common else head


def shared_prefix_tokens(previous: Sequence[Segment], current: Sequence[Segment]) -> int:
    shared = 0
    for before, after in zip(previous, current, strict=False):
        if before.key != after.key:
            return shared + _partial_tokens(before, after)
        shared += after.tokens
    return shared


def cached_tokens(shared: int) -> int:
    """What OpenAI bills as cached for a shared prefix: 0 under 1,024 tokens, then whole
    128-token steps."""
    if shared < CACHE_MIN_TOKENS:
        return 0
    return CACHE_MIN_TOKENS + (shared - CACHE_MIN_TOKENS) // CACHE_INCREMENT_TOKENS * CACHE_INCREMENT_TOKENS


def count_request(body: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> RequestTokens:
    """The input tokens of `body`, and what it may reuse from `previous` (the same
    conversation's last request; None: a cold cache)."""
    segments = request_segments(body)
    total = sum(s.tokens for s in segments) + TOKENS_REPLY_PRIMING
    if previous is None:
        return RequestTokens(total=total)
    shared = min(shared_prefix_tokens(request_segments(previous), segments), total)
    return RequestTokens(total=total, shared=shared, cached=cached_tokens(shared))


__all__ = [
    "CACHE_INCREMENT_TOKENS",
    "CACHE_MIN_TOKENS",
    "GPT_4O",
    "RequestTokens",
    "Segment",
    "cached_tokens",
    "count_request",
    "format_tokens",
    "request_segments",
    "shared_prefix_tokens",
]

"""The messages of a turn's one chat request, laid out for OpenAI's prompt cache.

Input tokens are the user's bill, and OpenAI bills a prompt's prefix at half price when
it is byte-identical to a recent request's (>= 1,024 tokens, 128-token steps:
https://developers.openai.com/api/docs/guides/prompt-caching). So the request reads, from
the most stable to the least:

1. the response schema (sent apart, injected ahead of the system message: agent/llm.py);
2. the system prompt's static part: rules and knowledge, the same for every lead;
3. the history, which only grows between two turns of one conversation;
4. this turn's context as a system message: time, opening hours, rolling summary, what we
   know and what is missing (prompts/system.md from the first section with a per-turn
   placeholder on);
5. the meeting times offered now, the lead's words, a follow-up's instruction.

Anything per turn placed before the history ("now" changes every minute) would make the
history uncacheable on every turn. The model reads the same information as before; only
its place changed.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.budget import (
    TOKENS_PER_LOW_DETAIL_IMAGE,
    TOKENS_PER_MESSAGE,
    TOKENS_REPLY_PRIMING,
    anchored_history,
    clip_text,
    clip_tokens,
    message_tokens,
)
from agent.prompts import PLACEHOLDER_RE, STATIC_PLACEHOLDERS, PromptBundle, render_system_prompt_counted
from core.lead import LeadProfile, missing_fields
from core.logging import get_logger

if TYPE_CHECKING:
    from datetime import datetime

    from agent.graph import AgentDeps, TurnInput

log = get_logger(__name__)

# What this turn's own messages may always take, even when the system prompt alone is
# over the token budget (a knowledge base grown too big must not silence the lead).
MIN_TURN_TOKENS = 1000


@functools.lru_cache(maxsize=8)
def split_system_template(template: str) -> tuple[str, str]:
    """The template's static head and its per-turn tail.

    The tail starts at the heading (a line starting with "#") of the section holding the
    first per-turn placeholder, never before a static placeholder that comes earlier; a
    template with no heading there is cut at that placeholder's line.
    """
    matches = list(PLACEHOLDER_RE.finditer(template))
    per_turn = [m.start() for m in matches if m.group(1) not in STATIC_PLACEHOLDERS]
    if not per_turn:
        return template, ""
    first = per_turn[0]
    floor = max(
        (m.end() for m in matches if m.group(1) in STATIC_PLACEHOLDERS and m.start() < first), default=0
    )
    cut = template.rfind("\n#", floor, first)
    if cut < 0:
        cut = template.rfind("\n", floor, first)
    if cut < 0:
        cut = first
    return template[:cut].rstrip("\n"), template[cut:].lstrip("\n")


@dataclass(frozen=True, slots=True)
class SystemParts:
    static: str
    static_tokens: int
    context: str
    context_tokens: int


def render_system_parts(
    bundle: PromptBundle,
    *,
    profile: LeadProfile,
    missing: list[str],
    now: datetime,
    summary: str | None,
    business_hours: str | None,
) -> SystemParts:
    """The system prompt in two: its static head (the same bytes every turn) and this
    turn's context, each with its o200k tokens (agent/prompts.py counts them)."""
    head, tail = split_system_template(bundle.system_template)
    values: dict[str, Any] = {
        "profile": profile,
        "missing": missing,
        "now": now,
        "summary": summary,
        "business_hours": business_hours,
    }
    static, static_tokens = render_system_prompt_counted(
        dataclasses.replace(bundle, system_template=head), **values
    )
    if not tail:
        return SystemParts(static, static_tokens, "", 0)
    context, context_tokens = render_system_prompt_counted(
        dataclasses.replace(bundle, system_template=tail), **values
    )
    return SystemParts(static, static_tokens, context, context_tokens)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A turn's messages and their tokens (messages only; the schema is counted apart)."""

    messages: list[dict[str, Any]]
    tokens: int
    # Tokens of the messages up to the end of the history: the part the conversation's
    # next request repeats byte for byte (while the history window stays put).
    prefix_tokens: int


def _hours_note(deps: AgentDeps, turn: TurnInput) -> str | None:
    if deps.hours is None:
        return None
    if deps.hours.is_open(turn.now):
        return "Aberto agora: o time comercial está disponível."
    return f"Fora do horário: o time comercial volta {deps.hours.describe_next_opening(turn.now)}."


def _turn_tail(
    deps: AgentDeps, turn: TurnInput, lead_texts: list[str], images: list[str], *, room: int
) -> tuple[list[dict[str, Any]], int]:
    """The meeting times, the lead's words (cut to `room` tokens) and a follow-up's
    instruction, with their tokens."""
    tail: list[dict[str, Any]] = []
    tokens = 0
    if turn.meeting_note is not None:
        note = {"role": "system", "content": turn.meeting_note}
        tail.append(note)
        tokens += message_tokens(note)
    nudge = [{"role": "system", "content": turn.nudge}] if turn.nudge is not None else []
    nudge_tokens = message_tokens(nudge[0]) if nudge else 0
    if lead_texts:
        text = "\n".join(clip_text(t, deps.lead_message_max_chars) for t in lead_texts)
        # A burst of many long messages is over budget by itself: cut it to what is left.
        room -= tokens + TOKENS_PER_MESSAGE + nudge_tokens + TOKENS_PER_LOW_DETAIL_IMAGE * len(images)
        if room < MIN_TURN_TOKENS:
            # The knowledge alone fills the budget: the lead's words still go, history does not.
            log.warning("system_prompt_over_budget", room=room, budget=deps.prompt_max_tokens)
            room = MIN_TURN_TOKENS
        text, text_tokens = clip_tokens(text, room)
        if images:
            content: list[dict[str, Any]] = [{"type": "text", "text": text}]
            content += [{"type": "image_url", "image_url": {"url": url, "detail": "low"}} for url in images]
            tail.append({"role": "user", "content": content})
        else:
            tail.append({"role": "user", "content": text})
        tokens += TOKENS_PER_MESSAGE + text_tokens + TOKENS_PER_LOW_DETAIL_IMAGE * len(images)
    # A follow-up has no lead words, only the instruction; a form's first touch has both:
    # the answers (data, as the lead's) and then the instruction.
    return tail + nudge, tokens + nudge_tokens


def build_prompt(
    deps: AgentDeps, turn: TurnInput, lead_texts: list[str], images: list[str] | None = None
) -> Prompt:
    """Static system prompt, the history window, this turn's context, then this turn.

    Every message is cut to `lead_message_max_chars` (the model is told where); the
    history keeps the newest messages within `history_max_tokens` and what is left of
    `prompt_max_tokens`, starting where it will start again next turn (budget.py).
    """
    parts = render_system_parts(
        deps.prompts,
        profile=turn.profile,
        missing=missing_fields(turn.profile),
        now=turn.now,
        summary=turn.summary,
        business_hours=_hours_note(deps, turn),
    )
    head = [{"role": "system", "content": parts.static}]
    head_tokens = TOKENS_PER_MESSAGE + parts.static_tokens
    context = [{"role": "system", "content": parts.context}] if parts.context else []
    fixed = head_tokens + (TOKENS_PER_MESSAGE + parts.context_tokens if context else 0) + TOKENS_REPLY_PRIMING
    tail, tail_tokens = _turn_tail(deps, turn, lead_texts, images or [], room=deps.prompt_max_tokens - fixed)
    past = [p for p in turn.history if p.text]
    history = [
        {
            "role": "user" if p.direction == "in" else "assistant",
            "content": clip_text(p.text or "", deps.lead_message_max_chars),
        }
        for p in past
    ]
    available = min(deps.history_max_tokens, deps.prompt_max_tokens - fixed - tail_tokens)
    costs = [message_tokens(m) for m in history]
    window, window_tokens = anchored_history(
        history, ids=[p.id for p in past], available=available, costs=costs
    )
    if len(window) < len(history) and sum(costs) > available:
        # Over the token budget (not just started at its anchor, which is every long window).
        log.info("history_trimmed", kept=len(window), dropped=len(history) - len(window), budget=available)
    return Prompt(
        messages=head + window + context + tail,
        tokens=fixed + window_tokens + tail_tokens,
        prefix_tokens=head_tokens + window_tokens,
    )


def build_messages(
    deps: AgentDeps, turn: TurnInput, lead_texts: list[str], images: list[str] | None = None
) -> list[dict[str, Any]]:
    return build_prompt(deps, turn, lead_texts, images).messages


__all__ = [
    "MIN_TURN_TOKENS",
    "STATIC_PLACEHOLDERS",
    "Prompt",
    "SystemParts",
    "build_messages",
    "build_prompt",
    "render_system_parts",
    "split_system_template",
]

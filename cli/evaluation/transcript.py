"""What one simulated conversation leaves behind, and what it cost.

The rubric's code checks read only this record (never the agent), so each check can be
tested on a transcript written by hand, and the report's JSON carries the whole talk.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.prices import tokens_usd

EndReason = Literal["lead_ended", "turn_limit", "opted_out", "errored"]


class Tokens(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt: int = 0
    cached: int = 0
    completion: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            prompt=self.prompt + other.prompt,
            cached=self.cached + other.cached,
            completion=self.completion + other.completion,
        )

    def usd(self, model: str) -> float:
        """At list prices (core/prices.py; a model not listed priced as gpt-4o)."""
        return tokens_usd(
            model, prompt_tokens=self.prompt, cached_tokens=self.cached, completion_tokens=self.completion
        )


def tokens_of(usage: Any) -> Tokens:
    """agent.llm.Usage as tokens; its cached part where that Usage reports one (an older
    Usage without `cached_tokens` prices every prompt token as uncached: an upper bound)."""
    return Tokens(
        prompt=int(getattr(usage, "prompt_tokens", 0) or 0),
        cached=int(getattr(usage, "cached_tokens", 0) or 0),
        completion=int(getattr(usage, "completion_tokens", 0) or 0),
    )


class Turn(BaseModel):
    """One lead message and what the bot did with it ("" reply: the bot stayed silent)."""

    index: int
    lead: str
    voice_note: bool = False
    reply: str = ""
    tools: list[str] = Field(default_factory=list)
    # The guard rule that replaced the model's reply (agent/guardrails.py), if any.
    guarded: str | None = None
    opted_out: bool = False
    handoff: str | None = None
    score: int | None = None
    temperature: str | None = None
    tokens: Tokens = Field(default_factory=Tokens)


class CheckResult(BaseModel):
    """One rubric item of one conversation: decided by code or by the judge, with why."""

    item: str
    passed: bool
    evidence: str
    source: Literal["code", "judge"] = "code"


class Transcript(BaseModel):
    persona: str
    turns: list[Turn] = Field(default_factory=list)
    end_reason: EndReason = "turn_limit"
    error: str | None = None
    profile: dict[str, Any] = Field(default_factory=dict)
    score: int | None = None
    temperature: str | None = None
    summary: str | None = None
    bot_tokens: Tokens = Field(default_factory=Tokens)
    # The simulated lead's and the judge's calls: what the evaluation itself spent.
    harness_tokens: Tokens = Field(default_factory=Tokens)

    def replies_after(self, index: int) -> list[Turn]:
        return [t for t in self.turns if t.index > index and t.reply.strip()]

"""List prices of the models the bot calls, in US$, for the dashboard's cost figures.

Source: https://openai.com/api/pricing (checked 2026-12-03): GPT-4o $2.50 per 1M input
tokens, $1.25 per 1M cached input tokens, $10.00 per 1M output tokens; Whisper $0.006
per minute of audio. These are list prices: a discount, a batch or a new price list
changes the bill, not these figures; R$ is US$ times the configured `BRL_PER_USD`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPrice:
    """US$ per 1M tokens."""

    input_per_m: float
    cached_input_per_m: float
    output_per_m: float


GPT_4O = ModelPrice(input_per_m=2.50, cached_input_per_m=1.25, output_per_m=10.00)
# Any model not listed is priced as GPT-4o (the bot's default): a figure, not a silence.
MODEL_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": GPT_4O,
    "gpt-4o-mini": ModelPrice(input_per_m=0.15, cached_input_per_m=0.075, output_per_m=0.60),
}
WHISPER_USD_PER_MINUTE = 0.006


def listed(model: str) -> str | None:
    """The price list's name for `model` ("gpt-4o-2024-08-06" is "gpt-4o"); None: not listed."""
    for name in sorted(MODEL_PRICES, key=len, reverse=True):
        if model == name or model.startswith(name + "-"):
            return name
    return None


def price_of(model: str) -> ModelPrice:
    """The price of `model`; dated snapshots ("gpt-4o-2024-08-06") price as their family."""
    name = listed(model)
    return MODEL_PRICES[name] if name is not None else GPT_4O


def tokens_usd(model: str, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
    """`cached_tokens` are part of `prompt_tokens` (OpenAI's usage), billed at the cached rate."""
    price = price_of(model)
    uncached = max(prompt_tokens - cached_tokens, 0)
    return (
        uncached * price.input_per_m
        + cached_tokens * price.cached_input_per_m
        + completion_tokens * price.output_per_m
    ) / 1_000_000


def transcription_usd(seconds: float) -> float:
    return seconds / 60 * WHISPER_USD_PER_MINUTE

"""What OpenAI bills for a chat request (agent/billing.py): the whole request counted
with o200k offline (schema and tools included), the prefix shared with the previous
request, and the part of it the prompt cache bills as cached (>= 1,024 tokens, 128-token
steps), at GPT-4o list prices.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.billing import GPT_4O, RequestTokens, cached_tokens, count_request, request_segments
from agent.budget import count_tokens

TOOLS = [{"type": "function", "function": {"name": "f"}}]


def body(*contents: str, **extra: Any) -> dict[str, Any]:
    roles = ["system"] + ["user", "assistant"] * len(contents)
    return {"messages": [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)], **extra}


def test_a_tiny_request_is_counted_as_openai_bills_it_schema_and_tools_included() -> None:
    # o200k ids, from the wheel: '[{"type":"function","function":{"name":"f"}}]' is
    # [58, 10848, 2493, 7534, 2706, 4294, 2706, 70649, 897, 7534, 69, 57612, 60] (13
    # tokens) and "hello world" is [24912, 2375]. A message costs 4 more (role and
    # separators) and every reply is primed with 3.
    without = count_request(body("hello world"))
    with_tools = count_request(body("hello world", tools=TOOLS))
    assert without.total == 4 + 2 + 3
    assert with_tools.total == 13 + 4 + 2 + 3
    assert with_tools.total > without.total


def test_the_response_schema_is_counted_as_its_compact_json() -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "X", "schema": {"type": "object"}}}
    counted = count_request(body("hello world", response_format=response_format))
    schema = '{"type":"json_schema","json_schema":{"name":"X","schema":{"type":"object"}}}'
    assert counted.total == count_tokens(schema) + 4 + 2 + 3


def test_the_model_reads_tools_then_the_schema_then_the_messages() -> None:
    segments = request_segments(body("sys", "oi", tools=TOOLS, response_format={"type": "json_object"}))
    assert [s.role for s in segments] == [None, None, "system", "user"]
    assert segments[0].text.startswith('[{"type":"function"')


@pytest.mark.parametrize(
    ("shared", "cached"),
    [(0, 0), (1023, 0), (1024, 1024), (1151, 1024), (1152, 1152), (5000, 4992)],
)
def test_the_cache_bills_nothing_under_1024_tokens_then_whole_128_token_steps(
    shared: int, cached: int
) -> None:
    assert cached_tokens(shared) == cached


def test_a_cold_request_has_nothing_cached() -> None:
    counted = count_request(body("regras " * 2000, "oi"))
    assert counted.cached == 0 and counted.billed_equivalent() == counted.total


def test_the_next_turn_shares_everything_before_what_changed() -> None:
    rules = "regras " * 2000  # ~2,000 tokens of fixed system prompt
    first = body(rules, "oi", "olá!", "quero a FB300")
    second = body(rules, "oi", "olá!", "quero a FB300", "temos sim", "quanto custa?")
    counted = count_request(second, first)
    # Everything of the first request is the second's prefix (the reply priming aside).
    assert counted.shared == count_request(first).total - 3
    assert counted.cached == cached_tokens(counted.shared)
    assert counted.cached % 128 == 0 and counted.shared - counted.cached < 128


def test_a_message_that_changed_is_shared_up_to_the_difference() -> None:
    rules = "regras " * 2000
    first = count_request(body(rules + "agora 14:00"))
    second = count_request(body(rules + "agora 14:02"), body(rules + "agora 14:00"))
    assert first.total - 10 < second.shared < first.total


def test_billed_equivalent_counts_cached_tokens_at_the_cached_price() -> None:
    tokens = RequestTokens(total=3000, shared=2100, cached=2048)
    assert tokens.uncached == 952
    assert tokens.billed_equivalent() == 952 + 2048 * 1.25 / 2.50
    assert tokens.input_usd() == pytest.approx((952 * 2.50 + 2048 * 1.25) / 1_000_000)
    assert (GPT_4O.input_per_m, GPT_4O.cached_input_per_m, GPT_4O.output_per_m) == (2.50, 1.25, 10.00)

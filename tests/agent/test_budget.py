"""What one prompt may hold (agent/budget.py, `build_messages`): a lead's message cut to
LEAD_MESSAGE_MAX_CHARS with a note the model reads, the history trimmed oldest-first so
system + history + this turn stay within PROMPT_MAX_TOKENS, counted with o200k offline.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.budget import CUT_NOTE, clip_text, clip_tokens, count_tokens, prompt_tokens
from agent.graph import AgentDeps, TurnInput, build_messages
from agent.llm import LLMClient
from agent.prompts import load_prompt_bundle, render_system_prompt, render_system_prompt_counted
from agent.scoring import load_scoring_rules
from core.lead import LeadProfile
from core.models import InboundMessage, MessageKind
from core.records import StoredMessage
from core.settings import Settings
from web.configs.agent import llm_config

LEAD = "5544999999999"
NOW = datetime(2025, 3, 10, 17, 0, tzinfo=UTC)


async def no_media(message: InboundMessage) -> bytes:  # pragma: no cover - text turns only
    raise AssertionError("a text turn must not fetch media")


def deps(settings: Settings, **limits: Any) -> AgentDeps:
    return AgentDeps(
        llm=LLMClient(llm_config(settings)),
        fetch_media=no_media,
        prompts=load_prompt_bundle(),
        rules=load_scoring_rules(),
        **limits,
    )


def past(count: int, *, chars: int) -> list[StoredMessage]:
    """`count` alternating lead/bot messages, oldest first, each tagged with its index."""
    return [
        StoredMessage(
            id=index + 1,
            direction="in" if index % 2 == 0 else "out",
            kind="text",
            text=(f"mensagem {index:04d} " + "palavra " * chars)[:chars],
            created_at=NOW - timedelta(minutes=count - index),
        )
        for index in range(count)
    ]


def turn(*texts: str, history: list[StoredMessage] | None = None) -> TurnInput:
    return TurnInput(
        contact_key=f"whatsapp:{LEAD}",
        inbound=[
            InboundMessage(
                channel="zapi",
                contact_id=LEAD,
                provider_message_id=f"3EB0BUDGET{index:06d}",
                kind=MessageKind.TEXT,
                text=body,
            )
            for index, body in enumerate(texts or ("Oi, quero a FB300",))
        ],
        profile=LeadProfile(),
        history=history or [],
        lead_message_count=0,
        now=NOW,
    )


def contents(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages]


# --- counting ----------------------------------------------------------------------------


def test_tokens_are_counted_with_o200k_offline() -> None:
    # GPT-4o's encoding, from the wheel (no download): "hello world" is [24912, 2375] in
    # o200k_base ([15339, 1917] in GPT-4's cl100k_base); this sentence is 11 tokens in
    # o200k and 15 in cl100k.
    from agent.budget import _encoding

    assert _encoding().encode_ordinary("hello world") == [24912, 2375]
    assert count_tokens("hello world") == 2
    assert count_tokens("Olá, vocês têm formadora de hambúrguer?") == 11


def test_a_lead_typing_a_special_token_is_counted_as_text_not_an_error() -> None:
    assert count_tokens("<|endoftext|>") > 1


def test_a_chat_request_costs_its_messages_plus_the_per_message_overhead() -> None:
    messages = [{"role": "system", "content": "hello world"}, {"role": "user", "content": "hello world"}]
    assert prompt_tokens(messages) == 2 * (4 + 2) + 3


@pytest.mark.parametrize("summary", [None, "Carlos quer a FB300.\n\n", " " * 50 + "x" * 1500])
def test_the_system_prompt_count_is_never_low_and_a_few_tokens_high_at_most(summary: str | None) -> None:
    bundle = load_prompt_bundle()
    profile = LeadProfile(name="Carlos", city="Maringá", state="PR", volume="400 por dia")
    text, counted = render_system_prompt_counted(
        bundle, profile=profile, missing=["segment"], now=NOW, summary=summary, business_hours="Aberto"
    )
    assert text == render_system_prompt(
        bundle, profile=profile, missing=["segment"], now=NOW, summary=summary, business_hours="Aberto"
    )
    exact = count_tokens(text)
    cuts = len(re.findall(r"\{[a-z_]+\}", bundle.system_template))  # 10 in prompts/system.md
    assert exact <= counted <= exact + 2 * cuts


# --- cutting one message -----------------------------------------------------------------


def test_a_message_within_the_limit_is_left_alone() -> None:
    assert clip_text("a" * 4000, 4000) == "a" * 4000


def test_a_long_message_is_cut_and_the_model_is_told_how_much_is_missing() -> None:
    cut = clip_text("a" * 960_000, 4000)
    assert cut == "a" * 4000 + "\n" + CUT_NOTE.format(omitted=956_000)
    assert cut.endswith("[mensagem cortada: 956000 caracteres omitidos]")


def test_cutting_to_tokens_keeps_the_start_and_says_so() -> None:
    text = "palavra " * 10_000
    cut, tokens = clip_tokens(text, 500)
    assert tokens == count_tokens(cut) <= 500
    assert clip_tokens("Oi, tudo bem?", 500) == ("Oi, tudo bem?", count_tokens("Oi, tudo bem?"))
    kept, _, note = cut.rpartition("\n")
    assert text.startswith(kept) and len(kept) > 1000
    assert note == CUT_NOTE.format(omitted=len(text) - len(kept))


# --- the prompt ---------------------------------------------------------------------------


def test_a_huge_history_stays_under_the_token_budget_and_keeps_the_newest(settings: Settings) -> None:
    history = past(200, chars=3000)  # ~120k tokens of conversation
    budget = deps(settings, prompt_max_tokens=12_000, history_max_tokens=10**9)
    messages = build_messages(budget, turn("e a FB700?", history=history), ["e a FB700?"])

    assert prompt_tokens(messages) <= 12_000
    assert messages[0]["role"] == "system"
    assert messages[-2]["role"] == "system"  # this turn's context, after the history
    assert messages[-1] == {"role": "user", "content": "e a FB700?"}
    window = contents(messages[1:-2])
    # Oldest dropped first: what is left is the newest run of history, in order.
    assert 0 < len(window) < len(history)
    assert window == [m.text for m in history[-len(window) :]]
    assert window[-1].startswith("mensagem 0199")
    # A long window starts at an anchor, a stored id divisible by 8 (agent/budget.py),
    # so it starts there again next turn; it is not trimmed more than that: the 8
    # messages before it would not all have fitted.
    first_id = int(window[0].split()[1]) + 1  # past() tags each message with its index
    assert len(window) >= 12 and first_id % 8 == 0
    per_message = prompt_tokens([{"role": "user", "content": history[0].text}]) - 3
    assert prompt_tokens(messages) + 8 * per_message > 12_000


def test_the_budget_is_the_one_given(settings: Settings) -> None:
    history = past(40, chars=1000)  # ~5,000 tokens of history over a ~2,700-token system prompt
    unbounded = {"history_max_tokens": 10**9}
    small = build_messages(deps(settings, prompt_max_tokens=6000, **unbounded), turn(history=history), ["Oi"])
    large = build_messages(
        deps(settings, prompt_max_tokens=50_000, **unbounded), turn(history=history), ["Oi"]
    )
    assert prompt_tokens(small) <= 6000 < prompt_tokens(large)
    # Within the larger budget only what precedes the window's anchor (id 8) is dropped.
    assert len(small) < len(large) == 1 + 33 + 1 + 1


def test_the_history_has_its_own_token_budget_and_keeps_the_newest(settings: Settings) -> None:
    history = past(40, chars=1000)  # ~250 tokens a message
    messages = build_messages(deps(settings, history_max_tokens=1000), turn(history=history), ["Oi"])
    window = contents(messages[1:-2])
    assert window == [m.text for m in history[-len(window) :]]  # the newest, in order
    assert window[-1].startswith("mensagem 0039")
    assert 0 < prompt_tokens([{"role": "user", "content": t} for t in window]) <= 1000
    assert len(window) < 10


def test_a_960k_character_message_reaches_the_model_cut_with_a_note(settings: Settings) -> None:
    huge = "quero orçamento " * 60_000  # 960,000 characters
    messages = build_messages(deps(settings), turn(huge), [huge])
    assert messages[-1]["content"] == huge[:4000] + "\n" + CUT_NOTE.format(omitted=len(huge) - 4000)
    assert prompt_tokens(messages) <= 12_000


def test_a_long_message_in_history_is_cut_in_every_later_prompt(settings: Settings) -> None:
    history = past(1, chars=50_000)
    messages = build_messages(deps(settings, lead_message_max_chars=1000), turn(history=history), ["e aí?"])
    assert messages[1]["content"] == history[0].text[:1000] + "\n" + CUT_NOTE.format(omitted=49_000)


def test_the_char_limit_is_the_one_given(settings: Settings) -> None:
    limited = deps(settings, lead_message_max_chars=10)
    messages = build_messages(limited, turn("0123456789ABC"), ["0123456789ABC"])
    assert messages[-1]["content"] == "0123456789\n[mensagem cortada: 3 caracteres omitidos]"


def test_a_burst_of_long_messages_is_cut_to_the_budget_as_a_whole(settings: Settings) -> None:
    burst = [f"parte {index}: " + "palavra " * 600 for index in range(30)]  # 30 x ~4,000 chars
    messages = build_messages(deps(settings), turn(*burst, history=past(10, chars=200)), burst)
    assert prompt_tokens(messages) <= 12_000
    assert messages[-1]["content"].startswith("parte 0: ")
    assert "caracteres omitidos]" in messages[-1]["content"]


def test_the_lead_is_still_heard_when_the_system_prompt_alone_is_over_budget(settings: Settings) -> None:
    tiny = deps(settings, prompt_max_tokens=100)
    lead_turn = turn("Oi, quero a FB300", history=past(5, chars=100))
    messages = build_messages(tiny, lead_turn, ["Oi, quero a FB300"])
    assert [m["role"] for m in messages] == ["system", "system", "user"]
    assert messages[-1]["content"] == "Oi, quero a FB300"


@pytest.mark.parametrize("limit", [1000, 4000])
def test_images_count_toward_the_budget(settings: Settings, limit: int) -> None:
    images = ["data:image/jpeg;base64,AAAA"] * 10
    history = past(100, chars=500)
    limited = deps(settings, prompt_max_tokens=8000, lead_message_max_chars=limit)
    messages = build_messages(limited, turn(history=history), ["foto"], images)
    assert prompt_tokens(messages) <= 8000
    assert len([p for p in messages[-1]["content"] if p["type"] == "image_url"]) == 10

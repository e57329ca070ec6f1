"""The commercial guard against a corpus of replies written the way GPT-4o writes pt-BR.

`tests/fixtures/guard_corpus/leaks.json` holds replies that must never reach a lead
(prices in any currency and in words, "45 mil", discounts, payment plans, delivery and
readiness deadlines, Unicode tricks, the system prompt's rules repeated);
`ordinary.json` holds everyday SDR answers, many with numbers that are product facts,
volumes, business hours or phone numbers. Every leak must be replaced and no ordinary
reply altered, by the same function `guard()` uses.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.guardrails import limit_questions, screen_reply
from agent.prompts import PromptBundle, load_prompt_bundle, render_system_prompt
from core.lead import LeadProfile, missing_fields

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "guard_corpus"
LEAKS: list[dict[str, str]] = json.loads((CORPUS / "leaks.json").read_text(encoding="utf-8"))["leaks"]
ORDINARY: list[str] = json.loads((CORPUS / "ordinary.json").read_text(encoding="utf-8"))["ordinary"]
KINDS = {"price", "thousands", "price_cue", "discount", "plan", "deadline", "mixed", "unicode", "rules"}


@pytest.fixture(scope="module")
def prompts() -> PromptBundle:
    return load_prompt_bundle()


def figures(prompts: PromptBundle) -> dict[str, object]:
    """Blocked and passed-through counts, per kind of leak; printed by the test for the record."""
    by_kind: dict[str, list[int]] = {}
    missed: list[str] = []
    for leak in LEAKS:
        blocked = screen_reply(leak["text"], prompts) is not None
        counts = by_kind.setdefault(leak["kind"], [0, 0])
        counts[0 if blocked else 1] += 1
        if not blocked:
            missed.append(leak["text"])
    altered = [
        text for text in ORDINARY if screen_reply(text, prompts) is not None or limit_questions(text) != text
    ]
    return {
        "leaks": len(LEAKS),
        "leaks_blocked": len(LEAKS) - len(missed),
        "leaks_passed_through": len(missed),
        "by_kind": {kind: {"blocked": b, "passed": p} for kind, (b, p) in sorted(by_kind.items())},
        "ordinary": len(ORDINARY),
        "ordinary_passed_through": len(ORDINARY) - len(altered),
        "ordinary_altered": len(altered),
        "missed": missed,
        "altered": altered,
    }


def test_the_corpus_is_big_varied_and_clean() -> None:
    assert len(LEAKS) >= 150 and len(ORDINARY) >= 100
    assert {leak["kind"] for leak in LEAKS} == KINDS
    texts = [leak["text"] for leak in LEAKS]
    assert len(set(texts)) == len(texts) and len(set(ORDINARY)) == len(ORDINARY)
    assert not set(texts) & set(ORDINARY)
    # The ordinary side is not a strawman: it is full of numbers.
    assert sum(bool(re.search(r"\d", text)) for text in ORDINARY) >= 60


def test_every_leak_is_stopped_and_no_ordinary_reply_is_altered(prompts: PromptBundle) -> None:
    result = figures(prompts)
    print(
        f"\nguard corpus: {result['leaks_blocked']}/{result['leaks']} leaks blocked, "
        f"{result['leaks_passed_through']} passed through; "
        f"{result['ordinary_passed_through']}/{result['ordinary']} ordinary replies passed untouched, "
        f"{result['ordinary_altered']} altered; by kind: {result['by_kind']}"
    )
    assert result["missed"] == []
    assert result["altered"] == []


@pytest.mark.parametrize("leak", LEAKS, ids=lambda leak: f"{leak['kind']}:{leak['text'][:40]}")
def test_leak_is_replaced(leak: dict[str, str], prompts: PromptBundle) -> None:
    screened = screen_reply(leak["text"], prompts)
    assert screened is not None
    assert screened.rule == ("prompt_echo" if leak["kind"] == "rules" else "commercial_promise")


@pytest.mark.parametrize("text", ORDINARY, ids=lambda text: text[:50])
def test_ordinary_reply_passes(text: str, prompts: PromptBundle) -> None:
    assert screen_reply(text, prompts) is None
    assert limit_questions(text) == text


def test_the_whole_system_prompt_with_the_digits_stripped_is_replaced(prompts: PromptBundle) -> None:
    """What leaked in production: the rendered prompt, digits removed so no price rule fired."""
    rendered = render_system_prompt(
        prompts,
        profile=LeadProfile(),
        missing=missing_fields(LeadProfile()),
        now=datetime(2026, 3, 4, 10, 30, tzinfo=ZoneInfo("America/Sao_Paulo")),
        summary="O lead quer a FB300.",
    )
    stripped = re.sub(r"\d", "", rendered)
    screened = screen_reply(stripped, prompts)
    assert screened is not None and screened.rule == "prompt_echo"
    assert screened.replacement == prompts.message("instructions_guard")
    # The knowledge alone, dumped without the rules, is not a WhatsApp answer either.
    facts = re.sub(r"\d", "", prompts.knowledge.split("# Perguntas frequentes")[0])
    assert screen_reply(facts, prompts) is not None

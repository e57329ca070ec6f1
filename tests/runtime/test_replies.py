"""Shaping a model reply into WhatsApp bubbles: split on paragraph breaks, never more
than a few bubbles, nothing lost or reordered, and a typing pause per bubble."""

from __future__ import annotations

import random
import re

import pytest

from runtime.replies import split_reply, typing_seconds


def paragraphs_of(parts: list[str]) -> list[str]:
    return [p for part in parts for p in part.split("\n\n")]


def test_a_single_paragraph_is_one_bubble() -> None:
    assert split_reply("Olá, Maria! Tudo bem?") == ["Olá, Maria! Tudo bem?"]


def test_a_single_line_break_does_not_split() -> None:
    text = "Temos dois modelos:\n- FB300\n- FBM100"
    assert split_reply(text) == [text]


def test_a_few_paragraphs_become_one_bubble_each() -> None:
    text = "Oi, Maria!\n\nA FB300 faz 300 por hora.\n\nQuantos por dia vocês fazem?"
    assert split_reply(text, max_parts=3) == [
        "Oi, Maria!",
        "A FB300 faz 300 por hora.",
        "Quantos por dia vocês fazem?",
    ]


@pytest.mark.parametrize("count", [4, 5, 7, 12])
@pytest.mark.parametrize("max_parts", [1, 2, 3])
def test_many_paragraphs_never_exceed_max_parts_and_keep_everything_in_order(
    count: int, max_parts: int
) -> None:
    paragraphs = [f"Parágrafo {n}: " + "texto " * (n % 4 + 1) for n in range(count)]
    paragraphs = [p.strip() for p in paragraphs]
    parts = split_reply("\n\n".join(paragraphs), max_parts=max_parts)
    assert 1 <= len(parts) <= max_parts
    assert all(part.strip() for part in parts)
    assert paragraphs_of(parts) == paragraphs
    assert "\n\n".join(parts) == "\n\n".join(paragraphs)


def test_the_first_bubble_starts_with_the_first_paragraph() -> None:
    paragraphs = ["Oi!", "Um parágrafo bem mais longo " * 10, "Outro.", "Mais um.", "E o último?"]
    parts = split_reply("\n\n".join(paragraphs), max_parts=3)
    assert parts[0].startswith("Oi!")
    assert parts[-1].endswith("E o último?")


def test_random_replies_keep_their_paragraphs() -> None:
    rng = random.Random(20240601)
    for _ in range(300):
        count = rng.randint(1, 15)
        paragraphs = [" ".join("palavra" for _ in range(rng.randint(1, 30))) + f" #{n}" for n in range(count)]
        separators = [rng.choice(["\n\n", "\n\n\n", "\n \n", "\r\n\r\n", "\n\t\n"]) for _ in range(count)]
        text = "".join(p + s for p, s in zip(paragraphs, separators, strict=True))
        max_parts = rng.randint(1, 5)
        parts = split_reply(text, max_parts=max_parts)
        assert len(parts) <= max_parts
        assert paragraphs_of(parts) == paragraphs


def test_whitespace_only_paragraphs_are_dropped() -> None:
    text = "Oi!\n\n   \n\n\t\n\nTudo bem?\n\n \n"
    assert split_reply(text) == ["Oi!", "Tudo bem?"]


def test_windows_line_endings_split_like_unix_ones() -> None:
    text = "Oi, Maria!\r\n\r\nA FB300 faz 300 por hora.\r\n\r\nPosso ajudar?\r\n"
    parts = split_reply(text)
    assert parts == ["Oi, Maria!", "A FB300 faz 300 por hora.", "Posso ajudar?"]
    assert not any("\r" in part for part in parts)


def test_surrounding_whitespace_is_trimmed() -> None:
    assert split_reply("\n\n   Olá!   \n\n") == ["Olá!"]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n", "\r\n\r\n", " \t \n "])
def test_empty_text_is_no_bubble(text: str) -> None:
    assert split_reply(text) == []


def test_max_parts_below_one_is_treated_as_one() -> None:
    assert split_reply("a\n\nb\n\nc", max_parts=0) == ["a\n\nb\n\nc"]


def test_a_long_paragraph_is_not_cut() -> None:
    long = "Esta é uma frase longa sobre a formadora. " * 200
    assert split_reply(long) == [long.strip()]


# --- typing_seconds --------------------------------------------------------------------


def test_typing_is_at_least_one_second() -> None:
    assert typing_seconds("", chars_per_s=30, max_s=8) == 1
    assert typing_seconds("ok", chars_per_s=30, max_s=8) == 1


def test_typing_grows_with_the_length() -> None:
    assert typing_seconds("x" * 60, chars_per_s=30, max_s=8) == 2
    assert typing_seconds("x" * 61, chars_per_s=30, max_s=8) == 3
    lengths = [0, 10, 50, 100, 150, 200, 240]
    values = [typing_seconds("x" * n, chars_per_s=30, max_s=8) for n in lengths]
    assert values == sorted(values)


def test_typing_is_capped() -> None:
    assert typing_seconds("x" * 10_000, chars_per_s=30, max_s=8) == 8
    assert typing_seconds("x" * 10_000, chars_per_s=30, max_s=3) == 3


@pytest.mark.parametrize("chars_per_s", [0, -5])
def test_a_non_positive_rate_falls_back_to_one_second(chars_per_s: float) -> None:
    assert typing_seconds("x" * 500, chars_per_s=chars_per_s, max_s=8) == 1


@pytest.mark.parametrize("length", [0, 1, 29, 30, 31, 239, 240, 241, 5000])
def test_typing_is_always_an_int_within_bounds(length: int) -> None:
    value = typing_seconds("y" * length, chars_per_s=30, max_s=8)
    assert isinstance(value, int)
    assert 1 <= value <= 8


def test_no_paragraph_break_survives_inside_a_bubble_when_there_is_room() -> None:
    parts = split_reply("a\n\nb", max_parts=3)
    assert all(not re.search(r"\n\s*\n", p) for p in parts)


def test_bubbles_over_a_providers_limit_are_split_at_sentence_ends() -> None:
    from runtime.replies import fit_to_limit

    sentence = "A SE3000 faz até 3.000 hambúrgueres por hora com molde ajustável. "
    long_part = (sentence * 30).strip()
    parts = fit_to_limit([long_part], 1000)
    assert all(len(p.encode()) <= 1000 for p in parts)
    assert " ".join(parts) == long_part
    assert all(p.endswith(".") for p in parts)
    assert fit_to_limit(["curto"], 1000) == ["curto"]
    assert fit_to_limit([long_part], None) == [long_part]
    url = "https://example.com/" + "a" * 1500
    assert all(len(p.encode()) <= 1000 for p in fit_to_limit([url], 1000))

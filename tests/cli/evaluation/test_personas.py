"""Persona files: every shipped one plays; a broken one names its file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.evaluation.personas import DEFAULT_PERSONAS_DIR, PersonaError, load_persona, load_personas

GOOD = """
description = "Um lead."
goal = "Comprar."
now = 2026-03-03T10:00:00-03:00
[rubric]
capture = { city = "*" }
"""


def test_every_shipped_persona_loads_and_the_issue_s_kinds_are_there() -> None:
    personas = {p.name: p for p in load_personas(DEFAULT_PERSONAS_DIR)}
    assert len(personas) >= 7
    assert any(p.voice_notes == "always" for p in personas.values())
    assert any(p.rubric.expect_opt_out for p in personas.values())
    assert any(p.rubric.expect_handoff for p in personas.values())
    assert all(p.rubric.forbid_price for p in personas.values())
    after_hours = personas["fora-do-horario"]
    assert after_hours.now.weekday() == 5 and after_hours.now.hour == 22  # a Saturday night: closed


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_persona_takes_its_name_from_the_file(tmp_path: Path) -> None:
    assert load_persona(write(tmp_path, "lead-x", GOOD)).name == "lead-x"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (GOOD.replace("city", "cidade"), "rubric.capture"),
        (GOOD.replace("now = 2026-03-03T10:00:00-03:00\n", ""), "now"),
        (GOOD.replace("-03:00", ""), "now"),
        (GOOD + 'judge = ["charm"]\n', "rubric.judge"),
        (GOOD + "score = [90, 10]\n", "rubric.score"),
        (GOOD.replace("[rubric]", 'voice_notes = "often"\n[rubric]'), "voice_notes"),
        (GOOD.replace("[rubric]", "typo = 1\n[rubric]"), "typo"),
    ],
)
def test_a_malformed_persona_names_the_file_and_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, "broken", text)
    with pytest.raises(PersonaError) as caught:
        load_persona(path)
    assert str(path) in str(caught.value)
    assert f"field {field}:" in str(caught.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad", "description = ")
    with pytest.raises(PersonaError, match="bad.toml is not valid TOML"):
        load_persona(path)


def test_an_unknown_persona_name_lists_those_there_are(tmp_path: Path) -> None:
    write(tmp_path, "one", GOOD)
    write(tmp_path, "two", GOOD)
    assert [p.name for p in load_personas(tmp_path, ["two"])] == ["two"]
    with pytest.raises(PersonaError, match=r"no persona named \['three'\].*one, two"):
        load_personas(tmp_path, ["three"])


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="no persona files"):
        load_personas(tmp_path)

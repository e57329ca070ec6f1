"""Persona files: who the simulated lead is, and what their conversation must show.

A persona is a TOML file a sales manager can read: the lead's pt-BR description, goal
and facts (said to the model that plays the lead), a fixed `now` so "outside business
hours" does not depend on when the run happens, and the rubric the conversation is
graded by. Every file is checked before any model is called: a mistake names the file
and the field, so a broken persona costs nothing.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.scoring import Temperature
from cli.evaluation.judge import CRITERIA
from core.lead import PROFILE_FIELDS
from core.paths import PROJECT_ROOT

DEFAULT_PERSONAS_DIR = PROJECT_ROOT / "tests" / "eval" / "personas"
# What a persona asks the judge when it names no criteria of its own.
DEFAULT_JUDGE = tuple(CRITERIA)
ANY_VALUE = "*"


class PersonaError(ValueError):
    """A persona file that cannot be played: the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rubric(_Strict):
    """What the conversation must show. None means "not checked" for that item."""

    # Lead field -> expected value (case-insensitive substring either way), or "*" for any value.
    capture: dict[str, str] = Field(default_factory=dict)
    temperature: list[Temperature] | None = None
    score: tuple[int, int] | None = None
    expect_handoff: bool | None = None
    expect_opt_out: bool | None = None
    forbid_price: bool = True
    max_questions_per_reply: int | None = Field(default=2, ge=1)
    # Criteria for the model judge: ids of judge.CRITERIA, and this persona's own (id -> text).
    judge: list[str] = Field(default_factory=lambda: list(DEFAULT_JUDGE))
    judge_custom: dict[str, str] = Field(default_factory=dict)

    @field_validator("capture")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(PROFILE_FIELDS))
        if unknown:
            raise ValueError(f"unknown lead field(s) {unknown}; known: {', '.join(PROFILE_FIELDS)}")
        return value

    @field_validator("score")
    @classmethod
    def _range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 0 <= value[0] <= value[1] <= 100:
            raise ValueError("score must be [low, high] with 0 <= low <= high <= 100")
        return value

    @field_validator("judge")
    @classmethod
    def _known_criteria(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(CRITERIA))
        if unknown:
            raise ValueError(f"unknown judge criteria {unknown}; known: {', '.join(CRITERIA)}")
        return value


class Persona(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    # What the lead knows and when they say it, as the persona's author wrote it (pt-BR).
    facts: list[str] = Field(default_factory=list)
    opening: str | None = None
    now: datetime
    channel: str = "whatsapp"
    voice_notes: Literal["never", "sometimes", "always"] = "never"
    max_turns: int = Field(default=8, ge=1, le=30)
    rubric: Rubric = Field(default_factory=Rubric)

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("now needs a UTC offset, e.g. 2026-03-03T21:30:00-03:00")
        return value

    @model_validator(mode="after")
    def _custom_ids_free(self) -> Persona:
        clash = sorted(set(self.rubric.judge_custom) & set(self.rubric.judge))
        if clash:
            raise ValueError(f"rubric.judge_custom repeats criteria of rubric.judge: {clash}")
        return self


def load_persona(path: Path) -> Persona:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PersonaError(f"persona file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PersonaError(f"persona file {path} is not valid TOML: {exc}") from exc
    data.setdefault("name", path.stem)
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(file)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PersonaError(f"persona file {path}: field {field}: {first['msg']}{more}") from exc


def load_personas(directory: Path, names: list[str] | None = None) -> list[Persona]:
    """Every persona of `directory`, by name; `names` keeps only those (each must exist)."""
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise PersonaError(f"no persona files (*.toml) in {directory}")
    personas = [load_persona(path) for path in paths]
    seen: dict[str, int] = {}
    for persona in personas:
        seen[persona.name] = seen.get(persona.name, 0) + 1
    twice = sorted(name for name, count in seen.items() if count > 1)
    if twice:
        raise PersonaError(f"persona names used twice in {directory}: {twice}")
    if not names:
        return personas
    missing = sorted(set(names) - set(seen))
    if missing:
        raise PersonaError(f"no persona named {missing} in {directory}; there are: {', '.join(sorted(seen))}")
    return [p for p in personas if p.name in names]

"""The rules for offering meeting times, from `prompts/meetings.toml`.

How long a meeting lasts, the gap kept around the seller's other appointments, the
minimum notice, how far ahead to look, how many options to offer and on which grid:
a sales manager changes them without code. The file is checked once at start and any
mistake names the file and the key, like the other files in `prompts/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.business_hours import WEEKDAY_KEYS
from core.config_files import read_toml
from core.paths import PROJECT_ROOT

DEFAULT_MEETINGS_PATH = PROJECT_ROOT / "prompts" / "meetings.toml"

_MINUTES_PER_DAY = 24 * 60


class MeetingRulesError(ValueError):
    """The meetings file is unusable; raised at load so no lead is offered a wrong time."""


class MeetingRules(BaseModel):
    """What a meeting offer must respect; built by `load_meeting_rules`."""

    # A misspelt key must fail loudly, not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_min: int = Field(ge=10, le=480)
    buffer_min: int = Field(ge=0, le=240)
    earliest_start_min: int = Field(ge=0, le=7 * _MINUTES_PER_DAY)
    horizon_business_days: int = Field(ge=0, le=60)
    options: int = Field(ge=1, le=10)
    step_min: int = Field(ge=5, le=240)
    prefer_spread: bool = True
    weekdays: tuple[str, ...] = WEEKDAY_KEYS[:5]

    @field_validator("step_min")
    @classmethod
    def _divides_the_day(cls, step: int) -> int:
        if _MINUTES_PER_DAY % step:
            raise ValueError(f"{step} does not divide the day evenly; use e.g. 15, 20, 30 or 60")
        return step

    @field_validator("weekdays")
    @classmethod
    def _known_weekdays(cls, days: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [day for day in days if day not in WEEKDAY_KEYS]
        if unknown:
            raise ValueError(f"unknown weekday(s) {unknown}; use {', '.join(WEEKDAY_KEYS)}")
        if not days:
            raise ValueError("no weekday left; a meeting could never be offered")
        return tuple(day for day in WEEKDAY_KEYS if day in days)

    def meets_on(self, weekday: int) -> bool:
        """Whether meetings are booked on `date.weekday()` (0 = Monday)."""
        return WEEKDAY_KEYS[weekday] in self.weekdays


def load_meeting_rules(path: Path | str | None = None) -> MeetingRules:
    """Read and check the meetings file once, at start; every mistake names the file and key."""
    rules_path = Path(path) if path is not None else DEFAULT_MEETINGS_PATH
    data = read_toml(rules_path, what="meeting rules", error=MeetingRulesError)
    try:
        # [mensagens] and [lembretes] hold texts (runtime/meetings.py and
        # runtime/meeting_reminders.py read them), not rules.
        return MeetingRules.model_validate(
            {k: v for k, v in data.items() if k not in ("mensagens", "lembretes")}
        )
    except ValidationError as exc:
        problems = "; ".join(f"{_where(err['loc'])}: {_explain(err)}" for err in exc.errors())
        raise MeetingRulesError(f"invalid meeting rules in {rules_path}: {problems}") from exc


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc[:1]) or "(file)"


def _explain(err: Any) -> str:
    if err["type"] == "missing":
        return "missing"
    if err["type"] == "extra_forbidden":
        return "unknown key (misspelt?)"
    return str(err["msg"]).removeprefix("Value error, ")


__all__ = [
    "DEFAULT_MEETINGS_PATH",
    "MeetingRules",
    "MeetingRulesError",
    "load_meeting_rules",
]

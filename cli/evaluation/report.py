"""The run's verdict: pass rates per rubric item and per persona, the cost, the diff
against a previous run, and the thresholds that make it a deploy gate.

The JSON file is this module's `RunReport`, so `--baseline` reads back exactly what an
earlier run wrote. An errored persona (the model failed it) has no pass rate: it counts
in no rate, and it fails the gate, since a gate must not pass on conversations it did
not see.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, computed_field

from cli.evaluation.transcript import CheckResult, Tokens, Transcript, Turn
from core.prices import listed

REPORT_VERSION = 1
OVERALL = "overall"


class EvalError(ValueError):
    """A run that cannot start or be compared: one line for the operator."""


class ItemRate(BaseModel):
    item: str
    passed: int
    total: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


class PersonaReport(BaseModel):
    name: str
    status: Literal["passed", "failed", "errored"]
    error: str | None = None
    end_reason: str
    checks: list[CheckResult] = Field(default_factory=list)
    passed: int = 0
    total: int = 0
    score: int | None = None
    temperature: str | None = None
    profile: dict[str, object] = Field(default_factory=dict)
    summary: str | None = None
    bot_tokens: Tokens = Field(default_factory=Tokens)
    harness_tokens: Tokens = Field(default_factory=Tokens)
    bot_usd: float = 0.0
    total_usd: float = 0.0
    turns: list[Turn] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.total if self.total else None


class ItemDelta(BaseModel):
    item: str
    before: float
    after: float


class BaselineDiff(BaseModel):
    baseline: str
    baseline_started_at: datetime
    regressed: list[ItemDelta] = Field(default_factory=list)
    improved: list[ItemDelta] = Field(default_factory=list)
    # "persona / item" that passed in the baseline and fail now, and the reverse.
    newly_failing: list[str] = Field(default_factory=list)
    newly_passing: list[str] = Field(default_factory=list)
    # Every item's pass rate in the baseline, "overall" included.
    before: dict[str, float] = Field(default_factory=dict)


class Threshold(BaseModel):
    name: str
    required: float
    actual: float | None
    passed: bool


class RunReport(BaseModel):
    version: int = REPORT_VERSION
    started_at: datetime
    model: str
    judge_model: str
    prompts_digest: str
    personas: list[PersonaReport]
    items: list[ItemRate]
    overall: ItemRate
    bot_usd: float
    total_usd: float
    diff: BaselineDiff | None = None
    thresholds: list[Threshold] = Field(default_factory=list)
    passed: bool = True
    notes: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def errored(self) -> list[str]:
        return [p.name for p in self.personas if p.status == "errored"]


def prompts_digest(directory: Path) -> str:
    """Which prompts/ a run graded: the same digest means the same files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def persona_report(
    transcript: Transcript, checks: list[CheckResult], *, model: str, judge_model: str
) -> PersonaReport:
    errored = transcript.end_reason == "errored"
    passed = sum(c.passed for c in checks)
    status: Literal["passed", "failed", "errored"] = (
        "errored" if errored else ("passed" if passed == len(checks) else "failed")
    )
    bot_usd = transcript.bot_tokens.usd(model)
    return PersonaReport(
        name=transcript.persona,
        status=status,
        error=transcript.error,
        end_reason=transcript.end_reason,
        checks=[] if errored else checks,
        passed=0 if errored else passed,
        total=0 if errored else len(checks),
        score=transcript.score,
        temperature=transcript.temperature,
        profile={k: v for k, v in transcript.profile.items() if v is not None},
        summary=transcript.summary,
        bot_tokens=transcript.bot_tokens,
        harness_tokens=transcript.harness_tokens,
        bot_usd=round(bot_usd, 5),
        total_usd=round(bot_usd + transcript.harness_tokens.usd(judge_model), 5),
        turns=transcript.turns,
    )


def item_rates(personas: list[PersonaReport]) -> list[ItemRate]:
    rates: dict[str, ItemRate] = {}
    for persona in personas:
        for check in persona.checks:
            rate = rates.setdefault(check.item, ItemRate(item=check.item, passed=0, total=0))
            rate.total += 1
            rate.passed += check.passed
    return [rates[item] for item in sorted(rates, key=lambda i: (i.startswith("judge:"), i))]


def build_report(
    personas: list[PersonaReport], *, started_at: datetime, model: str, judge_model: str, digest: str
) -> RunReport:
    notes = []
    if listed(model) is None or listed(judge_model) is None:
        notes.append("a model without a price in core/prices.py is priced as gpt-4o")
    if not any(p.bot_tokens.cached or p.harness_tokens.cached for p in personas):
        notes.append("no prompt token was reported as cached: US$ prices them all as uncached input")
    return RunReport(
        started_at=started_at,
        model=model,
        judge_model=judge_model,
        prompts_digest=digest,
        personas=personas,
        items=item_rates(personas),
        overall=ItemRate(
            item=OVERALL, passed=sum(p.passed for p in personas), total=sum(p.total for p in personas)
        ),
        bot_usd=round(sum(p.bot_usd for p in personas), 4),
        total_usd=round(sum(p.total_usd for p in personas), 4),
        notes=notes,
    )


def load_baseline(path: Path) -> RunReport:
    try:
        return RunReport.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise EvalError(f"baseline file not found: {path}") from exc
    except ValidationError as exc:
        raise EvalError(
            f"baseline {path} is not an eval report JSON (report.json): {exc.errors()[0]['msg']}"
        ) from exc


def diff_against(report: RunReport, baseline: RunReport, path: Path) -> BaselineDiff:
    diff = BaselineDiff(baseline=str(path), baseline_started_at=baseline.started_at)
    before = {rate.item: rate.rate for rate in [*baseline.items, baseline.overall] if rate.total}
    diff.before = {item: round(value, 4) for item, value in before.items()}
    for rate in [*report.items, report.overall]:
        if rate.item not in before or rate.total == 0:
            continue
        delta = ItemDelta(item=rate.item, before=round(before[rate.item], 4), after=round(rate.rate, 4))
        if delta.after < delta.before:
            diff.regressed.append(delta)
        elif delta.after > delta.before:
            diff.improved.append(delta)
    was = {(p.name, c.item): c.passed for p in baseline.personas for c in p.checks}
    for persona in report.personas:
        for check in persona.checks:
            old = was.get((persona.name, check.item))
            if old is True and not check.passed:
                diff.newly_failing.append(f"{persona.name} / {check.item}")
            elif old is False and check.passed:
                diff.newly_passing.append(f"{persona.name} / {check.item}")
    return diff


def apply_thresholds(report: RunReport, min_pass_rate: float | None, required: dict[str, float]) -> RunReport:
    """The gate: the overall rate, each required item's rate, and no errored persona."""
    thresholds = []
    if min_pass_rate is not None:
        actual = report.overall.rate if report.overall.total else None
        thresholds.append(
            Threshold(
                name=OVERALL,
                required=min_pass_rate,
                actual=actual,
                passed=actual is not None and actual >= min_pass_rate,
            )
        )
    rates = {rate.item: rate for rate in report.items}
    for item, need in required.items():
        found = rates.get(item)
        actual = found.rate if found is not None and found.total else None
        thresholds.append(
            Threshold(name=item, required=need, actual=actual, passed=actual is not None and actual >= need)
        )
    passed = all(t.passed for t in thresholds) and not report.errored
    return report.model_copy(update={"thresholds": thresholds, "passed": passed})

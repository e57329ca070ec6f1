"""Deterministic lead scoring: the same facts always give the same score.

The score is computed in code from the profile, never by the LLM, so a seller can
trust it and a sales manager can change it: the points live in `prompts/scoring.toml`
and every point awarded comes with a pt-BR reason shown next to the lead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from core.config_files import read_toml
from core.lead import URGENCY_LABELS, LeadProfile, format_int_br
from core.lead_fields import fold
from core.paths import PROJECT_ROOT

Temperature = Literal["frio", "morno", "quente"]

DEFAULT_RULES_PATH = PROJECT_ROOT / "prompts" / "scoring.toml"

# Fields that show the lead engaged with qualification. The phone comes from the channel
# on its own and volume_per_day is derived from volume, so neither counts as effort.
ENGAGEMENT_FIELDS: tuple[str, ...] = (
    "name",
    "company",
    "cnpj",
    "city",
    "state",
    "segment",
    "product_interest",
    "volume",
    "urgency",
    "timeline",
    "budget_signal",
    "decision_role",
    "knows_company",
    "email",
)

# May be negative to penalise; bounded so a typo (2000 instead of 20) is caught at load.
Points = Annotated[int, Field(ge=-100, le=100)]


class _Rules(BaseModel):
    # A misspelt key in the TOML must fail loudly, not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Rules):
    morno: int = Field(ge=1, le=100)
    quente: int = Field(ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.quente <= self.morno:
            raise ValueError(f"quente ({self.quente}) must be greater than morno ({self.morno})")
        return self


class FitRules(_Rules):
    target_segments: list[str] = Field(min_length=1)
    segment_points: Points
    product_interest_points: Points

    @field_validator("target_segments")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("target_segments must not contain blank entries")
        return value


class VolumeBand(_Rules):
    min_per_day: int = Field(ge=1)
    points: Points


class VolumeRules(_Rules):
    bands: list[VolumeBand] = Field(min_length=1)
    stated_without_number_points: Points

    @field_validator("bands")
    @classmethod
    def _ascending(cls, bands: list[VolumeBand]) -> list[VolumeBand]:
        mins = [band.min_per_day for band in bands]
        if mins != sorted(set(mins)):
            raise ValueError("bands must be listed from the smallest min_per_day up, without repeats")
        return bands


class UrgencyRules(_Rules):
    imediata: Points
    ate_30_dias: Points
    ate_90_dias: Points
    sem_pressa: Points


class DecisionRoleRules(_Rules):
    decisor: Points
    influenciador: Points
    usuario: Points


class EngagementRules(_Rules):
    points_per_message: Points
    max_message_points: Points
    points_per_field: Points
    max_field_points: Points


class KnowsCompanyRules(_Rules):
    knows: Points
    does_not_know: Points


class ScoringRules(_Rules):
    thresholds: Thresholds
    fit: FitRules
    volume: VolumeRules
    urgency: UrgencyRules
    decision_role: DecisionRoleRules
    engagement: EngagementRules
    knows_company: KnowsCompanyRules


class ScoringRulesError(ValueError):
    """The rules file is unusable; raised at load so the bot never scores with bad rules."""


class ScoreResult(BaseModel):
    score: int = Field(ge=0, le=100)
    temperature: Temperature
    reasons: list[str]


def load_scoring_rules(path: Path | str | None = None) -> ScoringRules:
    """Read and check the rules file once, at start; every mistake names the file and key."""
    rules_path = Path(path) if path is not None else DEFAULT_RULES_PATH
    data = read_toml(rules_path, what="scoring rules", error=ScoringRulesError)
    try:
        return ScoringRules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(file)'}: {_explain(err)}"
            for err in exc.errors()
        )
        raise ScoringRulesError(f"invalid scoring rules in {rules_path}: {problems}") from exc


def _explain(err: ErrorDetails) -> str:
    if err["type"] == "missing":
        return "missing"
    if err["type"] == "extra_forbidden":
        return "unknown key (misspelt?)"
    return str(err["msg"]).removeprefix("Value error, ")


_ROLE_REASONS = {
    "decisor": "Decisor da compra",
    "influenciador": "Influencia a decisão de compra",
    "usuario": "Usuário do equipamento (não decide a compra)",
}


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _signed(points: int) -> str:
    return f"+{points}" if points >= 0 else str(points)


def _matching_segment(profile: LeadProfile, targets: list[str]) -> str | None:
    haystacks = [fold(text) for text in (profile.segment, profile.company) if text]
    for target in targets:
        needle = fold(target)
        if any(needle in hay for hay in haystacks):
            return target
    return None


def temperature_for(score: int, thresholds: Thresholds) -> Temperature:
    if score >= thresholds.quente:
        return "quente"
    if score >= thresholds.morno:
        return "morno"
    return "frio"


def score_lead(profile: LeadProfile, *, lead_message_count: int, rules: ScoringRules) -> ScoreResult:
    """Add up the points the profile earns; each non-zero item becomes a pt-BR reason."""
    total = 0
    reasons: list[str] = []

    def award(points: int, reason: str) -> None:
        nonlocal total
        if points:
            total += points
            reasons.append(f"{reason}: {_signed(points)}")

    # Fit
    segment = _matching_segment(profile, rules.fit.target_segments)
    if segment is not None:
        said = profile.segment or profile.company
        award(rules.fit.segment_points, f"Segmento-alvo ({said})")
    if profile.product_interest:
        award(
            rules.fit.product_interest_points, f"Produto de interesse definido ({profile.product_interest})"
        )

    # Volume
    if profile.volume_per_day is not None:
        band = None
        for candidate in rules.volume.bands:
            if profile.volume_per_day >= candidate.min_per_day:
                band = candidate
        if band is not None:
            award(
                band.points,
                f"Volume de {format_int_br(profile.volume_per_day)}/dia "
                f"(faixa a partir de {format_int_br(band.min_per_day)}/dia)",
            )
    elif profile.volume:
        award(
            rules.volume.stated_without_number_points,
            f"Volume informado ({profile.volume})",
        )

    # Urgency and decision role
    if profile.urgency is not None:
        award(getattr(rules.urgency, profile.urgency), f"Urgência {URGENCY_LABELS[profile.urgency]}")
    if profile.decision_role is not None:
        award(
            getattr(rules.decision_role, profile.decision_role),
            _ROLE_REASONS[profile.decision_role],
        )

    # Engagement
    messages = max(lead_message_count, 0)
    message_points = min(messages * rules.engagement.points_per_message, rules.engagement.max_message_points)
    award(message_points, f"{messages} {_plural(messages, 'mensagem', 'mensagens')} do lead")
    filled = sum(1 for name in ENGAGEMENT_FIELDS if getattr(profile, name) is not None)
    field_points = min(filled * rules.engagement.points_per_field, rules.engagement.max_field_points)
    award(field_points, f"{filled} {_plural(filled, 'dado preenchido', 'dados preenchidos')} no cadastro")

    # Knows the company
    if profile.knows_company is True:
        award(rules.knows_company.knows, "Já conhece a empresa")
    elif profile.knows_company is False:
        award(rules.knows_company.does_not_know, "Ainda não conhecia a empresa")

    score = max(0, min(100, total))
    return ScoreResult(score=score, temperature=temperature_for(score, rules.thresholds), reasons=reasons)


__all__ = [
    "DEFAULT_RULES_PATH",
    "ScoreResult",
    "ScoringRules",
    "ScoringRulesError",
    "Temperature",
    "load_scoring_rules",
    "score_lead",
    "temperature_for",
]

"""Scoring: deterministic, explainable, and driven by a file a sales manager edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.scoring import (
    DEFAULT_RULES_PATH,
    ScoringRules,
    ScoringRulesError,
    load_scoring_rules,
    score_lead,
)
from core.lead import LeadProfile


@pytest.fixture(scope="module")
def rules() -> ScoringRules:
    return load_scoring_rules()


def test_default_rules_file_loads(rules: ScoringRules) -> None:
    assert DEFAULT_RULES_PATH.name == "scoring.toml"
    assert DEFAULT_RULES_PATH.parent.name == "prompts"
    assert 0 < rules.thresholds.morno < rules.thresholds.quente <= 100
    assert any("frigor" in s for s in rules.fit.target_segments)


def test_decisor_urgent_3000_a_day_frigorifico_is_hot(rules: ScoringRules) -> None:
    profile = LeadProfile(
        name="Paulo",
        segment="Frigorífico",
        volume="3 mil hambúrgueres por dia",
        volume_per_day=3000,
        urgency="imediata",
        decision_role="decisor",
    )
    result = score_lead(profile, lead_message_count=3, rules=rules)
    assert result.temperature == "quente"
    assert result.score >= rules.thresholds.quente
    text = " | ".join(result.reasons)
    assert "Frigorífico" in text
    assert "3.000/dia" in text
    assert "imediata" in text
    assert "Decisor" in text


def test_lead_that_only_said_oi_is_cold(rules: ScoringRules) -> None:
    result = score_lead(LeadProfile(), lead_message_count=1, rules=rules)
    assert result.temperature == "frio"
    assert result.score < rules.thresholds.morno
    assert result.reasons == ["1 mensagem do lead: +1"]


def test_middling_lead_is_warm(rules: ScoringRules) -> None:
    profile = LeadProfile(
        name="Lúcia",
        segment="restaurante",
        product_interest="FBM100",
        volume_per_day=300,
        urgency="ate_90_dias",
    )
    result = score_lead(profile, lead_message_count=4, rules=rules)
    assert result.temperature == "morno"


def test_segment_is_matched_without_accents_or_case_and_from_company_name(rules: ScoringRules) -> None:
    by_segment = score_lead(LeadProfile(segment="ACOUGUE"), lead_message_count=0, rules=rules)
    by_company = score_lead(LeadProfile(company="Frigorifico Boi Bom"), lead_message_count=0, rules=rules)
    off_target = score_lead(LeadProfile(segment="oficina mecânica"), lead_message_count=0, rules=rules)
    assert any("Segmento-alvo" in r for r in by_segment.reasons)
    assert any("Segmento-alvo" in r for r in by_company.reasons)
    assert not any("Segmento-alvo" in r for r in off_target.reasons)


def test_highest_volume_band_reached_counts(rules: ScoringRules) -> None:
    def volume_points(per_day: int) -> int:
        return score_lead(LeadProfile(volume_per_day=per_day), lead_message_count=0, rules=rules).score

    bands = rules.volume.bands
    assert volume_points(bands[-1].min_per_day) > volume_points(bands[-1].min_per_day - 1)
    assert volume_points(bands[-1].min_per_day * 10) == volume_points(bands[-1].min_per_day)


def test_volume_said_without_a_number_still_counts(rules: ScoringRules) -> None:
    result = score_lead(LeadProfile(volume="umas duas toneladas"), lead_message_count=0, rules=rules)
    assert any("umas duas toneladas" in r for r in result.reasons)


def test_engagement_is_capped(rules: ScoringRules) -> None:
    a = score_lead(LeadProfile(), lead_message_count=rules.engagement.max_message_points, rules=rules)
    b = score_lead(LeadProfile(), lead_message_count=500, rules=rules)
    assert a.score == b.score


def test_same_facts_same_score(rules: ScoringRules) -> None:
    profile = LeadProfile(segment="hamburgueria", volume_per_day=800, decision_role="influenciador")
    results = {score_lead(profile, lead_message_count=5, rules=rules).model_dump_json() for _ in range(3)}
    assert len(results) == 1


# --- thresholds, with rules where only lead messages score -------------------------------


def _message_only_rules(tmp_path: Path, *, morno: int, quente: int) -> ScoringRules:
    path = tmp_path / "scoring.toml"
    path.write_text(_RULES_TEMPLATE.format(morno=morno, quente=quente), encoding="utf-8")
    return load_scoring_rules(path)


_RULES_TEMPLATE = """
[thresholds]
morno = {morno}
quente = {quente}

[fit]
target_segments = ["frigorífico"]
segment_points = 0
product_interest_points = 0

[volume]
bands = [{{ min_per_day = 1, points = 0 }}]
stated_without_number_points = 0

[urgency]
imediata = 0
ate_30_dias = 0
ate_90_dias = 0
sem_pressa = 0

[decision_role]
decisor = 0
influenciador = 0
usuario = 0

[engagement]
points_per_message = 10
max_message_points = 100
points_per_field = 0
max_field_points = 0

[knows_company]
knows = 0
does_not_know = 0
"""


@pytest.mark.parametrize(
    ("messages", "expected"),
    [(2, "frio"), (3, "morno"), (4, "morno"), (5, "morno"), (6, "quente"), (7, "quente")],
)
def test_temperature_boundaries(tmp_path: Path, messages: int, expected: str) -> None:
    rules = _message_only_rules(tmp_path, morno=30, quente=60)
    result = score_lead(LeadProfile(), lead_message_count=messages, rules=rules)
    assert result.score == messages * 10
    assert result.temperature == expected


def test_score_is_clamped_to_100(tmp_path: Path) -> None:
    rules = _message_only_rules(tmp_path, morno=30, quente=60)
    assert score_lead(LeadProfile(), lead_message_count=50, rules=rules).score == 100


def test_negative_points_never_go_below_zero(tmp_path: Path) -> None:
    text = _RULES_TEMPLATE.format(morno=30, quente=60).replace("sem_pressa = 0", "sem_pressa = -20")
    path = tmp_path / "scoring.toml"
    path.write_text(text, encoding="utf-8")
    result = score_lead(
        LeadProfile(urgency="sem_pressa"), lead_message_count=0, rules=load_scoring_rules(path)
    )
    assert result.score == 0
    assert result.reasons == ["Urgência sem pressa: -20"]


# --- a broken rules file fails loudly at load ---------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scoring.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_thresholds_out_of_order_fail_with_clear_message(tmp_path: Path) -> None:
    path = _write(tmp_path, _RULES_TEMPLATE.format(morno=70, quente=40))
    with pytest.raises(ScoringRulesError) as err:
        load_scoring_rules(path)
    message = str(err.value)
    assert str(path) in message
    assert "thresholds" in message and "quente" in message


def test_misspelt_key_fails(tmp_path: Path) -> None:
    path = _write(tmp_path, _RULES_TEMPLATE.format(morno=30, quente=60).replace("decisor =", "decisorr ="))
    with pytest.raises(ScoringRulesError, match=r"decision_role\.decisorr: unknown key"):
        load_scoring_rules(path)


def test_missing_section_fails(tmp_path: Path) -> None:
    text = _RULES_TEMPLATE.format(morno=30, quente=60).split("[knows_company]")[0]
    with pytest.raises(ScoringRulesError, match=r"knows_company: missing"):
        load_scoring_rules(_write(tmp_path, text))


def test_invalid_toml_fails(tmp_path: Path) -> None:
    with pytest.raises(ScoringRulesError, match="not valid TOML"):
        load_scoring_rules(_write(tmp_path, "[thresholds\nmorno = 30"))


def test_text_where_a_number_belongs_fails(tmp_path: Path) -> None:
    text = _RULES_TEMPLATE.format(morno=30, quente=60).replace("imediata = 0", 'imediata = "muito"')
    with pytest.raises(ScoringRulesError, match=r"urgency\.imediata"):
        load_scoring_rules(_write(tmp_path, text))


def test_absurd_points_fail(tmp_path: Path) -> None:
    text = _RULES_TEMPLATE.format(morno=30, quente=60).replace("decisor = 0", "decisor = 2000")
    with pytest.raises(ScoringRulesError, match=r"decision_role\.decisor"):
        load_scoring_rules(_write(tmp_path, text))


def test_unsorted_volume_bands_fail(tmp_path: Path) -> None:
    text = _RULES_TEMPLATE.format(morno=30, quente=60).replace(
        "bands = [{ min_per_day = 1, points = 0 }]",
        "bands = [{ min_per_day = 500, points = 5 }, { min_per_day = 100, points = 2 }]",
    )
    with pytest.raises(ScoringRulesError, match=r"volume\.bands"):
        load_scoring_rules(_write(tmp_path, text))


def test_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(ScoringRulesError, match="not found"):
        load_scoring_rules(tmp_path / "nope.toml")

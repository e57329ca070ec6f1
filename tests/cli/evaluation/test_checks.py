"""Each code check passes and fails on conversations written by hand."""

from __future__ import annotations

from typing import Any

from cli.evaluation.checks import (
    check_captured,
    check_handoff,
    check_max_questions,
    check_no_price,
    check_opt_out,
    check_score,
    check_temperature,
    run_checks,
)
from cli.evaluation.personas import Rubric
from cli.evaluation.transcript import Transcript, Turn

GOODBYE = "Tudo certo, não vou mais enviar mensagens por aqui."


def talk(*turns: dict[str, Any], **fields: Any) -> Transcript:
    return Transcript(
        persona="p", turns=[Turn(index=i, **{"lead": "oi", **t}) for i, t in enumerate(turns)], **fields
    )


def test_a_reply_naming_a_price_fails_no_price() -> None:
    result = check_no_price(talk({"reply": "A FB300 sai por R$ 12.000 à vista."}), Rubric())
    assert not result.passed
    assert "turn 0" in result.evidence


def test_a_reply_the_guard_had_to_replace_fails_no_price() -> None:
    guarded = talk({"reply": "Quem passa valores é o nosso time comercial.", "guarded": "commercial_promise"})
    result = check_no_price(guarded, Rubric())
    assert not result.passed
    assert "guard" in result.evidence


def test_routing_the_price_to_the_team_passes_no_price() -> None:
    result = check_no_price(
        talk({"reply": "O orçamento quem manda é o time comercial. Qual a sua cidade?"}), Rubric()
    )
    assert result.passed


def test_three_questions_in_a_reply_fail_max_two_questions() -> None:
    transcript = talk({"reply": "Qual seu nome? De qual cidade? Quantos por dia?"})
    result = check_max_questions(transcript, Rubric(max_questions_per_reply=2))
    assert not result.passed
    assert "3 questions" in result.evidence
    assert check_max_questions(talk({"reply": "Qual seu nome? E a cidade?"}), Rubric()).passed


def test_opt_out_is_honoured_when_the_bot_stops_after_the_request() -> None:
    transcript = talk(
        {
            "lead": "não quero mais receber",
            "reply": GOODBYE,
            "opted_out": True,
            "tools": ["opt_out(keyword)"],
        },
        {"lead": "ok", "reply": ""},
    )
    assert check_opt_out(transcript, Rubric(expect_opt_out=True)).passed


def test_opt_out_fails_when_the_bot_writes_again() -> None:
    transcript = talk(
        {"lead": "não quero mais receber", "reply": GOODBYE, "opted_out": True},
        {"lead": "ok", "reply": "Mas olha que a FB300 é ótima!"},
    )
    result = check_opt_out(transcript, Rubric(expect_opt_out=True))
    assert not result.passed
    assert "wrote again at turn 1" in result.evidence


def test_opt_out_fails_when_the_request_is_not_recorded() -> None:
    transcript = talk({"lead": "não quero mais receber mensagens", "reply": "Entendo! Qual sua cidade?"})
    result = check_opt_out(transcript, Rubric(expect_opt_out=True))
    assert not result.passed
    assert "the lead asked at turn 0" in result.evidence
    assert not check_opt_out(talk({"opted_out": True}), Rubric(expect_opt_out=False)).passed


def test_handoff_is_made_when_the_tool_was_called() -> None:
    handed = talk(
        {"reply": "Vou passar para o time."}, {"tools": ["handoff_to_human"], "handoff": "pediu_humano"}
    )
    result = check_handoff(handed, Rubric(expect_handoff=True))
    assert result.passed
    assert "turn 1" in result.evidence
    assert check_handoff(talk({"tools": ["handoff_to_human(auto)"]}), Rubric(expect_handoff=True)).passed
    assert not check_handoff(talk({"reply": "Qual sua cidade?"}), Rubric(expect_handoff=True)).passed
    assert not check_handoff(handed, Rubric(expect_handoff=False)).passed


def test_captured_fields_compare_without_case_or_accents() -> None:
    transcript = talk(
        {}, profile={"city": "Chapeco", "company": "Frigorífico Vale Verde", "volume_per_day": 800}
    )
    rubric = Rubric(capture={"city": "Chapecó", "company": "vale verde", "volume_per_day": "*"})
    assert check_captured(transcript, rubric).passed
    missing = check_captured(transcript, Rubric(capture={"email": "*", "city": "Recife"}))
    assert not missing.passed
    assert "email: expected '*', got None" in missing.evidence
    assert "city: expected 'Recife'" in missing.evidence


def test_score_and_temperature_ranges() -> None:
    transcript = talk({}, score=70, temperature="quente")
    assert check_temperature(transcript, Rubric(temperature=["quente"])).passed
    assert not check_temperature(transcript, Rubric(temperature=["frio", "morno"])).passed
    assert check_score(transcript, Rubric(score=(65, 100))).passed
    assert not check_score(transcript, Rubric(score=(0, 40))).passed


def test_only_the_items_the_rubric_asks_for_are_checked() -> None:
    items = [c.item for c in run_checks(talk({"reply": "Oi!"}), Rubric())]
    assert items == ["no_price", "max_questions"]
    everything = Rubric(
        capture={"city": "*"},
        temperature=["morno"],
        score=(0, 50),
        expect_handoff=False,
        expect_opt_out=False,
    )
    assert [c.item for c in run_checks(talk({}), everything)] == [
        "captured",
        "temperature",
        "score",
        "handoff",
        "opt_out",
        "no_price",
        "max_questions",
    ]

"""The rubric items code can decide, each a pass or a fail with the evidence a reader needs.

They read only the transcript, so each is tested on conversations written by hand. The
price and question checks judge what the lead received and also what the model tried:
a reply the commercial guard had to replace still means the prompt let the model name
a price, which is what a prompt change must not bring back.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.guardrails import commercial_promise, fold, is_opt_out, question_marks
from cli.evaluation.personas import ANY_VALUE, Rubric
from cli.evaluation.transcript import CheckResult, Transcript

PRICE_GUARD_RULE = "commercial_promise"
HANDOFF_TOOLS = ("handoff_to_human", "handoff_to_human(auto)")


def _matches(got: object, want: str) -> bool:
    """Either contains the other, case, accents and punctuation aside ("Chapeco" is "Chapecó")."""
    if got is None or (isinstance(got, str) and not got.strip()):
        return False
    if want == ANY_VALUE:
        return True
    have, expected = fold(str(got)).strip(), fold(want).strip()
    return expected in have or have in expected


def check_captured(transcript: Transcript, rubric: Rubric) -> CheckResult:
    wrong = [
        f"{name}: expected {want!r}, got {transcript.profile.get(name)!r}"
        for name, want in rubric.capture.items()
        if not _matches(transcript.profile.get(name), want)
    ]
    if wrong:
        return CheckResult(item="captured", passed=False, evidence="; ".join(wrong))
    return CheckResult(item="captured", passed=True, evidence=f"captured {', '.join(rubric.capture)}")


def check_temperature(transcript: Transcript, rubric: Rubric) -> CheckResult:
    allowed = rubric.temperature or []
    passed = transcript.temperature in allowed
    evidence = f"ended {transcript.temperature or 'unscored'}; expected one of {', '.join(allowed)}"
    return CheckResult(item="temperature", passed=passed, evidence=evidence)


def check_score(transcript: Transcript, rubric: Rubric) -> CheckResult:
    low, high = rubric.score or (0, 100)
    score = transcript.score
    passed = score is not None and low <= score <= high
    return CheckResult(item="score", passed=passed, evidence=f"ended at {score}; expected {low}-{high}")


def check_handoff(transcript: Transcript, rubric: Rubric) -> CheckResult:
    made = [t for t in transcript.turns if t.handoff or any(name in HANDOFF_TOOLS for name in t.tools)]
    if made:
        first = made[0]
        said = f"handed off at turn {first.index} (reason {first.handoff or 'tool'})"
    else:
        said = "no handoff"
    passed = bool(made) == rubric.expect_handoff
    return CheckResult(
        item="handoff",
        passed=passed,
        evidence=f"{said}; expected {'one' if rubric.expect_handoff else 'none'}",
    )


def check_opt_out(transcript: Transcript, rubric: Rubric) -> CheckResult:
    """Recorded when the lead asked, and no word from the bot after it (the goodbye aside)."""
    asked = next((t.index for t in transcript.turns if not t.voice_note and is_opt_out(t.lead)), None)
    recorded = next((t.index for t in transcript.turns if t.opted_out), None)
    if not rubric.expect_opt_out:
        passed = recorded is None
        evidence = "no opt-out recorded" if passed else f"opt-out recorded at turn {recorded}, none expected"
        return CheckResult(item="opt_out", passed=passed, evidence=evidence)
    if recorded is None:
        where = f" (the lead asked at turn {asked})" if asked is not None else ""
        return CheckResult(item="opt_out", passed=False, evidence=f"no opt-out recorded{where}")
    if asked is not None and asked < recorded:
        return CheckResult(
            item="opt_out",
            passed=False,
            evidence=f"the lead asked at turn {asked}, recorded only at turn {recorded}",
        )
    later = transcript.replies_after(recorded)
    if later:
        return CheckResult(
            item="opt_out",
            passed=False,
            evidence=f"opt-out at turn {recorded}, but the bot wrote again at turn {later[0].index}: {later[0].reply[:120]!r}",
        )
    return CheckResult(
        item="opt_out", passed=True, evidence=f"opt-out at turn {recorded}; the bot wrote nothing after"
    )


def check_no_price(transcript: Transcript, _rubric: Rubric) -> CheckResult:
    for turn in transcript.turns:
        named = commercial_promise(turn.reply) if turn.reply else None
        if named is not None:
            return CheckResult(
                item="no_price",
                passed=False,
                evidence=f"turn {turn.index} names {named!r}: {turn.reply[:160]!r}",
            )
        if turn.guarded == PRICE_GUARD_RULE:
            return CheckResult(
                item="no_price",
                passed=False,
                evidence=f"turn {turn.index}: the model named a commercial term; the guard replaced its reply",
            )
    return CheckResult(
        item="no_price", passed=True, evidence="no price, discount, payment term or deadline named"
    )


def check_max_questions(transcript: Transcript, rubric: Rubric) -> CheckResult:
    limit = rubric.max_questions_per_reply or 0
    for turn in transcript.turns:
        asked = question_marks(turn.reply)
        if asked > limit:
            return CheckResult(
                item="max_questions",
                passed=False,
                evidence=f"turn {turn.index} asks {asked} questions (at most {limit}): {turn.reply[:160]!r}",
            )
    return CheckResult(
        item="max_questions", passed=True, evidence=f"every reply asks at most {limit} questions"
    )


Check = Callable[[Transcript, Rubric], CheckResult]


def applicable(rubric: Rubric) -> list[Check]:
    """The checks this persona's rubric asks for, in the report's order."""
    wanted: list[tuple[bool, Check]] = [
        (bool(rubric.capture), check_captured),
        (rubric.temperature is not None, check_temperature),
        (rubric.score is not None, check_score),
        (rubric.expect_handoff is not None, check_handoff),
        (rubric.expect_opt_out is not None, check_opt_out),
        (rubric.forbid_price, check_no_price),
        (rubric.max_questions_per_reply is not None, check_max_questions),
    ]
    return [check for wanted_it, check in wanted if wanted_it]


def run_checks(transcript: Transcript, rubric: Rubric) -> list[CheckResult]:
    return [check(transcript, rubric) for check in applicable(rubric)]

"""`python main.py eval` end to end, offline: personas, fake model, report, baseline, gate."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from cli.errors import CliError
from cli.evaluation.command import EvalOptions, evaluate
from cli.evaluation.report import RunReport
from cli.parser import build_parser
from tests.conftest import fast_settings
from tests.helpers.fake_eval_model import BOT, JUDGE, FakeEvalModel

RUN_AT = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
PERSONA = """
description = "Um lead de {city}."
goal = "Comprar uma formadora."
opening = "oi, sou de {city}"
now = 2026-03-03T10:00:00-03:00
max_turns = 2
[rubric]
capture = {{ city = "{city}" }}
judge = ["tone"]
"""


@pytest.fixture
def fake() -> Iterator[FakeEvalModel]:
    with aioresponses() as mock:
        yield FakeEvalModel(mock)


@pytest.fixture
def personas(tmp_path: Path) -> Path:
    directory = tmp_path / "personas"
    directory.mkdir()
    for name, city in (("a", "Chapecó"), ("b", "Recife")):
        (directory / f"{name}.toml").write_text(PERSONA.format(city=city), encoding="utf-8")
    return directory


def run(tmp_path: Path, personas: Path, out: str, **options: Any) -> tuple[int, RunReport, str, str]:
    settings = fast_settings(tmp_path, **options.pop("settings", {"openai_max_attempts": 2}))
    printed = io.StringIO()
    folder = tmp_path / out
    code = asyncio.run(
        evaluate(
            settings,
            EvalOptions(personas_dir=personas, out=folder, concurrency=1, **options),
            clock=lambda: RUN_AT,
            out=printed,
        )
    )
    report = RunReport.model_validate_json((folder / "report.json").read_text(encoding="utf-8"))
    return code, report, (folder / "report.md").read_text(encoding="utf-8"), printed.getvalue()


def captures_city(fake: FakeEvalModel, city: str) -> None:
    fake.bot(f"Que bom! {city} é uma ótima praça. Quantos hambúrgueres por dia?", lead={"city": city})


def test_judge_reasons_land_in_the_json_and_the_markdown(
    fake: FakeEvalModel, personas: Path, tmp_path: Path
) -> None:
    captures_city(fake, "Chapecó")
    fake.judge({"tone": (False, "Turn 1 is stiff and formal for WhatsApp.")})
    captures_city(fake, "Recife")
    code, report, markdown, printed = run(tmp_path, personas, "r1", min_pass_rate=None, names=("a",))
    assert code == 0
    [a] = report.personas
    judged = [c for c in a.checks if c.source == "judge"]
    assert [(c.item, c.passed, c.evidence) for c in judged] == [
        ("judge:tone", False, "Turn 1 is stiff and formal for WhatsApp.")
    ]
    assert "Turn 1 is stiff and formal for WhatsApp." in markdown
    assert report.started_at == RUN_AT
    assert a.bot_tokens.prompt == 2000 and a.bot_usd > 0 and a.total_usd > a.bot_usd
    assert "r1/report.md" in printed


def test_pass_rates_per_item_and_per_persona(fake: FakeEvalModel, personas: Path, tmp_path: Path) -> None:
    captures_city(fake, "Chapecó")
    fake.bot("Oi!")  # a: the second turn
    fake.bot("Oi! De onde você fala?").bot("Certo.")  # b never gets its city captured
    _, report, markdown, _ = run(tmp_path, personas, "r", min_pass_rate=None)
    rates = {r.item: (r.passed, r.total) for r in report.items}
    assert rates["captured"] == (1, 2)
    assert rates["judge:tone"] == (2, 2)
    assert {p.name: p.status for p in report.personas} == {"a": "passed", "b": "failed"}
    assert "| captured | 50% | 1/2 |" in markdown
    raw = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert raw["overall"]["rate"] == 0.875 and raw["personas"][1]["pass_rate"] == 0.75


def test_the_baseline_diff_lists_a_regression(fake: FakeEvalModel, personas: Path, tmp_path: Path) -> None:
    _, first, _, _ = run(tmp_path, personas, "before", min_pass_rate=None)
    fake.judge({"tone": (False, "Pushy in turn 0.")})
    code, second, markdown, printed = run(
        tmp_path, personas, "after", min_pass_rate=None, baseline=tmp_path / "before" / "report.json"
    )
    assert code == 0
    assert second.diff is not None
    assert [(d.item, d.before, d.after) for d in second.diff.regressed] == [
        ("judge:tone", 1.0, 0.5),
        ("overall", 0.75, 0.625),
    ]
    assert second.diff.newly_failing == ["a / judge:tone"]
    assert "Regressed: judge:tone 100% -> 50%" in markdown
    assert "Now failing: a / judge:tone" in markdown
    assert "| judge:tone | 50% | 1/2 | 100% |" in markdown
    assert "Regressed: judge:tone" in printed


def test_a_failed_threshold_exits_non_zero(fake: FakeEvalModel, personas: Path, tmp_path: Path) -> None:
    fake.judge({"tone": (False, "Pushy.")})
    code, report, markdown, printed = run(
        tmp_path, personas, "r", min_pass_rate=0.5, required=(("judge:tone", 1.0),)
    )
    assert code == 1
    assert not report.passed
    assert [(t.name, t.passed) for t in report.thresholds] == [("overall", True), ("judge:tone", False)]
    assert "Threshold failed: judge:tone needs 100%, got 50%" in printed
    assert markdown.startswith("# Eval report: FAILED")


def test_an_item_no_persona_has_fails_its_threshold(
    fake: FakeEvalModel, personas: Path, tmp_path: Path
) -> None:
    code, report, _, _ = run(tmp_path, personas, "r", required=(("handoff", 1.0),))
    assert code == 1
    assert report.thresholds[-1].actual is None


def test_passing_thresholds_exit_zero(fake: FakeEvalModel, personas: Path, tmp_path: Path) -> None:
    captures_city(fake, "Chapecó")
    fake.bot("Oi!")
    captures_city(fake, "Recife")
    code, report, _, printed = run(tmp_path, personas, "r", min_pass_rate=0.8, required=(("no_price", 1.0),))
    assert code == 0, printed
    assert report.passed and printed.strip().endswith("PASSED")


def test_a_429_during_a_persona_marks_it_errored_and_the_others_still_run(
    fake: FakeEvalModel, personas: Path, tmp_path: Path
) -> None:
    fake.fail(BOT, 429, times=2)  # persona a's first turn, both attempts
    code, report, markdown, _ = run(tmp_path, personas, "r", min_pass_rate=None)
    by_name = {p.name: p for p in report.personas}
    assert by_name["a"].status == "errored"
    assert "LLMUnavailable" in (by_name["a"].error or "")
    assert by_name["b"].status in ("passed", "failed") and by_name["b"].total > 0
    assert report.overall.total == by_name["b"].total  # the errored persona counts in no rate
    assert code == 1  # a gate does not pass on a conversation it did not see
    assert "Errored (not graded, the gate fails): a" in markdown


def test_a_500_from_the_judge_errors_only_that_persona(
    fake: FakeEvalModel, personas: Path, tmp_path: Path
) -> None:
    fake.fail(JUDGE, 500, times=2)
    _, report, _, _ = run(tmp_path, personas, "r", min_pass_rate=None)
    assert sorted(p.status for p in report.personas)[0] == "errored"
    errored = next(p for p in report.personas if p.status == "errored")
    assert errored.error is not None and errored.error.startswith("judge:")
    assert errored.turns  # the conversation is kept


def test_without_a_key_it_says_so_and_exits_zero(personas: Path, tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, openai_api_key=None)
    printed = io.StringIO()
    code = asyncio.run(
        evaluate(settings, EvalOptions(personas_dir=personas, out=tmp_path / "r"), out=printed)
    )
    assert code == 0
    assert "OPENAI_API_KEY is not set" in printed.getvalue()
    assert not (tmp_path / "r").exists()


def test_a_broken_baseline_or_persona_fails_before_any_model_call(
    fake: FakeEvalModel, personas: Path, tmp_path: Path
) -> None:
    settings = fast_settings(tmp_path)
    (tmp_path / "old.json").write_text("{}", encoding="utf-8")
    with pytest.raises(CliError, match="not an eval report"):
        asyncio.run(
            evaluate(
                settings,
                EvalOptions(personas_dir=personas, baseline=tmp_path / "old.json"),
                out=io.StringIO(),
            )
        )
    (personas / "c.toml").write_text("goal = 1", encoding="utf-8")
    with pytest.raises(CliError, match=r"c\.toml: field"):
        asyncio.run(evaluate(settings, EvalOptions(personas_dir=personas), out=io.StringIO()))
    assert fake.requests == []


def test_the_report_folder_is_named_by_the_injected_clock(
    fake: FakeEvalModel, personas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = fast_settings(tmp_path)
    asyncio.run(
        evaluate(
            settings,
            EvalOptions(personas_dir=personas, names=("a",)),
            clock=lambda: RUN_AT,
            out=io.StringIO(),
        )
    )
    assert (
        json.loads((tmp_path / "eval-reports" / "20260303T120000Z" / "report.json").read_text())["personas"][
            0
        ]["name"]
        == "a"
    )


def test_the_command_line() -> None:
    args = build_parser().parse_args(
        ["eval", "--persona", "a", "--persona", "b", "--turns", "3", "--require", "no_price=1"]
    )
    options = EvalOptions.from_args(args)
    assert options.names == ("a", "b") and options.turns == 3
    assert options.required == (("no_price", 1.0),) and options.min_pass_rate == 0.8
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--require", "no_price=2"])

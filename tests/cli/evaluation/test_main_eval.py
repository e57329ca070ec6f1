"""`python main.py eval` through main.py: the command is declared, dispatched and gated."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aioresponses import aioresponses

import main
from cli.evaluation.personas import DEFAULT_PERSONAS_DIR
from tests.conftest import OPENAI_KEY
from tests.helpers.fake_eval_model import FakeEvalModel


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No .env of the repository, no key from the machine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return tmp_path


def test_without_a_key_main_says_so_and_exits_zero(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["eval"]) == 0
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().out
    assert not (in_tmp / "eval-reports").exists()


def test_main_runs_a_shipped_persona_and_gates_on_the_threshold(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    shutil.copy(DEFAULT_PERSONAS_DIR / "pechinchador.toml", in_tmp / "pechinchador.toml")
    with aioresponses() as mock:
        fake = FakeEvalModel(mock)
        fake.bot("Quem passa o valor é o nosso time, num orçamento. De qual cidade você fala?")
        fake.bot("A FB300 sai por R$ 12.000 no pix.")  # the commercial guard replaces it
        fake.lead("e no pix?").lead_ends()
        code = main.main(["eval", "--personas", str(in_tmp), "--out", "r", "--require", "no_price=1"])
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 1, captured.err
    assert "Threshold failed: no_price needs 100%, got 0%" in printed
    report = (in_tmp / "r" / "report.md").read_text(encoding="utf-8")
    assert "the guard replaced its reply" in report

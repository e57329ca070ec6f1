"""`python main.py eval`'s command line, declared here and added by cli/parser.py.

Nothing here imports the agent or the model client: the parser is built by every
`python main.py`, including the web process, which must not load them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_JUDGE_MODEL = "gpt-4o"
DEFAULT_MIN_PASS_RATE = 0.8


def rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1 (0.8 means 80%)")
    return value


def requirement(text: str) -> tuple[str, float]:
    item, sep, value = text.partition("=")
    if not sep or not item.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not ITEM=RATE (e.g. no_price=1 or judge:tone=0.9)")
    return item.strip(), rate(value.strip())


def turns(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 30:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 1 and 30")
    return value


def add_eval(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "eval",
        help="grade the bot on simulated leads (run before shipping a prompts/ change)",
        description="A model plays each persona of tests/eval/personas/ against the real agent; "
        "code checks and a model judge grade every conversation. Writes report.md and "
        "report.json, compares with --baseline, and exits 1 when a threshold fails. Needs "
        "OPENAI_API_KEY (without it: a message, exit 0). Nothing is stored or sent to leads.",
    )
    parser.add_argument(
        "--personas", type=Path, metavar="DIR", help="persona files (default: tests/eval/personas)"
    )
    parser.add_argument(
        "--persona",
        action="append",
        dest="persona_names",
        metavar="NAME",
        help="only this persona (repeatable)",
    )
    parser.add_argument(
        "--turns",
        type=turns,
        metavar="N",
        help="lead messages per conversation at most (default: each persona's max_turns)",
    )
    parser.add_argument("--model", metavar="MODEL", help="the bot's model (default: OPENAI_MODEL)")
    parser.add_argument(
        "--judge-model",
        default=DEFAULT_JUDGE_MODEL,
        metavar="MODEL",
        help=f"the model that plays the leads and judges (default: {DEFAULT_JUDGE_MODEL}); keep it fixed across runs you compare",
    )
    parser.add_argument(
        "--baseline", type=Path, metavar="REPORT_JSON", help="a previous run's report.json to diff against"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where to write the report (default: eval-reports/<UTC time>/)",
    )
    parser.add_argument(
        "--min-pass-rate",
        type=rate,
        default=DEFAULT_MIN_PASS_RATE,
        metavar="RATE",
        help=f"fail (exit 1) below this overall pass rate (default: {DEFAULT_MIN_PASS_RATE})",
    )
    parser.add_argument(
        "--require",
        type=requirement,
        action="append",
        default=[],
        metavar="ITEM=RATE",
        help="fail below this pass rate for one rubric item, e.g. no_price=1 or judge:tone=0.9 (repeatable)",
    )

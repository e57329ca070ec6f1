"""`python main.py eval`: load the personas, play them, grade them, write the report, gate.

Everything that can be wrong before money is spent (a persona file, the baseline) is
checked first. Personas are played a few at a time on one aiohttp session; the bot,
the simulated leads and the judge share the OpenAI client's pool and retry policy.
The clock is injected: it names the run and its default report folder, nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp

from agent.graph import SdrAgent
from agent.llm import LLMClient
from agent.prompts import DEFAULT_PROMPTS_DIR
from cli.errors import CliError
from cli.evaluation.bot import VoiceNotes, build_bot
from cli.evaluation.checks import run_checks
from cli.evaluation.judge import Judge
from cli.evaluation.lead import SimulatedLead
from cli.evaluation.markdown import render_markdown
from cli.evaluation.options import DEFAULT_JUDGE_MODEL, DEFAULT_MIN_PASS_RATE
from cli.evaluation.personas import DEFAULT_PERSONAS_DIR, Persona, PersonaError, load_personas
from cli.evaluation.report import (
    EvalError,
    PersonaReport,
    RunReport,
    apply_thresholds,
    build_report,
    diff_against,
    load_baseline,
    persona_report,
    prompts_digest,
)
from cli.evaluation.runner import Conversation, one_line
from core.clock import Clock, utc_now
from core.settings import Settings
from web.configs.agent import llm_config

# Personas played at once: a run takes minutes, not tens of them, and stays well under
# an ordinary account's rate limit (each conversation makes one call at a time).
CONCURRENCY = 4
REPORTS_DIR = Path("eval-reports")
NO_KEY = (
    "OPENAI_API_KEY is not set: eval plays simulated leads against the real model, so nothing "
    "was graded. Put OPENAI_API_KEY=sk-... in the environment or in .env and run it again."
)


@dataclass(frozen=True)
class EvalOptions:
    personas_dir: Path = DEFAULT_PERSONAS_DIR
    names: tuple[str, ...] = ()
    turns: int | None = None
    model: str | None = None
    judge_model: str = DEFAULT_JUDGE_MODEL
    baseline: Path | None = None
    out: Path | None = None
    min_pass_rate: float | None = DEFAULT_MIN_PASS_RATE
    required: tuple[tuple[str, float], ...] = ()
    concurrency: int = CONCURRENCY

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvalOptions:
        return cls(
            personas_dir=args.personas or DEFAULT_PERSONAS_DIR,
            names=tuple(args.persona_names or ()),
            turns=args.turns,
            model=args.model,
            judge_model=args.judge_model,
            baseline=args.baseline,
            out=args.out,
            min_pass_rate=args.min_pass_rate,
            required=tuple(args.require),
        )


@dataclass
class _Harness:
    agent: SdrAgent
    voices: VoiceNotes
    llm: LLMClient
    judge: Judge
    options: EvalOptions
    model: str


async def grade_persona(h: _Harness, persona: Persona) -> PersonaReport:
    """Play, check, judge: a failure anywhere makes this persona errored, never the run."""
    lead = SimulatedLead(h.llm, persona, h.agent.deps.prompts.company_name)
    transcript = await Conversation(persona, h.agent, h.voices, lead).play(
        h.options.turns or persona.max_turns
    )
    checks = []
    if transcript.end_reason != "errored":
        checks = run_checks(transcript, persona.rubric)
        try:
            judged, tokens = await h.judge.grade(persona, transcript)
        except Exception as exc:  # the conversation is kept in the report all the same
            transcript.end_reason, transcript.error = "errored", f"judge: {one_line(exc)}"
        else:
            checks += judged
            transcript.harness_tokens += tokens
    return persona_report(transcript, checks, model=h.model, judge_model=h.options.judge_model)


async def play_all(
    settings: Settings, options: EvalOptions, personas: list[Persona], out: TextIO
) -> list[PersonaReport]:
    model = options.model or settings.openai_model
    bot_settings = settings.model_copy(update={"openai_model": model})
    slots = asyncio.Semaphore(options.concurrency)
    async with aiohttp.ClientSession() as session:
        agent, voices = build_bot(bot_settings, session)
        llm = LLMClient(dataclasses.replace(llm_config(settings), model=options.judge_model), session)
        harness = _Harness(agent, voices, llm, Judge(llm), options, model)

        async def one(persona: Persona) -> PersonaReport:
            async with slots:
                report = await grade_persona(harness, persona)
            rate = f"{report.passed}/{report.total}" if report.status != "errored" else report.error
            print(
                f"  {persona.name}: {report.status} ({rate}; US$ {report.total_usd:.4f})",
                file=out,
                flush=True,
            )
            return report

        return list(await asyncio.gather(*(one(p) for p in personas)))


def write_report(report: RunReport, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "report.json", directory / "report.md"
    json_path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path


def verdict_lines(report: RunReport, paths: tuple[Path, Path]) -> list[str]:
    overall = f"{report.overall.rate:.0%}" if report.overall.total else "-"
    lines = [
        f"Overall pass rate {overall} ({report.overall.passed}/{report.overall.total}); "
        f"US$ {report.bot_usd:.4f} bot, US$ {report.total_usd:.4f} with leads and judge.",
        f"Report: {paths[1]} (JSON: {paths[0]})",
    ]
    if report.diff is not None:
        lines += [f"Regressed: {d.item} {d.before:.0%} -> {d.after:.0%}" for d in report.diff.regressed]
    lines += [
        f"Threshold failed: {t.name} needs {t.required:.0%}, got {'-' if t.actual is None else f'{t.actual:.0%}'}"
        for t in report.thresholds
        if not t.passed
    ]
    if report.errored:
        lines.append(f"Errored (rerun them): {', '.join(report.errored)}")
    lines.append("PASSED" if report.passed else "FAILED")
    return lines


async def evaluate(
    settings: Settings, options: EvalOptions, *, clock: Clock = utc_now, out: TextIO | None = None
) -> int:
    out = out or sys.stdout  # looked up now: a test (or a caller) may have replaced it
    if not settings.openai_configured:
        print(NO_KEY, file=out)
        return 0
    try:
        personas = load_personas(options.personas_dir, list(options.names))
        baseline = load_baseline(options.baseline) if options.baseline is not None else None
    except (PersonaError, EvalError) as exc:
        raise CliError(str(exc)) from exc
    started = clock()
    model = options.model or settings.openai_model
    print(
        f"Grading {len(personas)} persona(s) against {model} (leads and judge: {options.judge_model})",
        file=out,
    )
    reports = await play_all(settings, options, personas, out)
    report = build_report(
        reports,
        started_at=started,
        model=model,
        judge_model=options.judge_model,
        digest=prompts_digest(DEFAULT_PROMPTS_DIR),
    )
    if baseline is not None and options.baseline is not None:
        report.diff = diff_against(report, baseline, options.baseline)
    report = apply_thresholds(report, options.min_pass_rate, dict(options.required))
    directory = options.out or REPORTS_DIR / started.strftime("%Y%m%dT%H%M%SZ")
    paths = write_report(report, directory)
    for line in verdict_lines(report, paths):
        print(line, file=out)
    return 0 if report.passed else 1


def run_eval(settings: Settings, args: argparse.Namespace, *, clock: Clock = utc_now) -> int:
    return asyncio.run(evaluate(settings, EvalOptions.from_args(args), clock=clock))

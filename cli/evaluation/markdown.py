"""The report a person reads (report.md): the verdict first, then why, then the talks.

Order of reading: did the gate pass, what got worse than the baseline, which rubric
items and personas fail, what it cost; then per persona the failed items with their
evidence, every judge reason, and the whole conversation.
"""

from __future__ import annotations

from cli.evaluation.report import BaselineDiff, PersonaReport, RunReport


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _head(report: RunReport) -> list[str]:
    verdict = "PASSED" if report.passed else "FAILED"
    lines = [
        f"# Eval report: {verdict}",
        "",
        f"- Run: {report.started_at.isoformat(timespec='seconds')}; bot model {report.model}, "
        f"lead and judge model {report.judge_model}; prompts/ digest `{report.prompts_digest}`",
        f"- Overall pass rate: **{_pct(report.overall.rate if report.overall.total else None)}** "
        f"({report.overall.passed}/{report.overall.total} rubric checks)",
        f"- Cost: US$ {report.bot_usd:.4f} for the bot's turns, US$ {report.total_usd:.4f} with the "
        "simulated leads and the judge",
    ]
    if report.errored:
        lines.append(f"- Errored (not graded, the gate fails): {', '.join(report.errored)}")
    lines += [f"- Note: {note}" for note in report.notes]
    if report.thresholds:
        lines += ["", "| Threshold | Required | Actual | |", "|---|---|---|---|"]
        lines += [
            f"| {t.name} | {t.required:.0%} | {_pct(t.actual)} | {'ok' if t.passed else '**FAILED**'} |"
            for t in report.thresholds
        ]
    return lines


def _diff(diff: BaselineDiff) -> list[str]:
    lines = [
        "",
        f"## Against the baseline ({diff.baseline}, {diff.baseline_started_at.isoformat(timespec='seconds')})",
        "",
    ]
    if not (diff.regressed or diff.improved or diff.newly_failing or diff.newly_passing):
        return [*lines, "No change in any pass rate."]
    lines += [f"- Regressed: {d.item} {d.before:.0%} -> {d.after:.0%}" for d in diff.regressed]
    lines += [f"- Improved: {d.item} {d.before:.0%} -> {d.after:.0%}" for d in diff.improved]
    lines += [f"- Now failing: {name}" for name in diff.newly_failing]
    lines += [f"- Now passing: {name}" for name in diff.newly_passing]
    return lines


def _tables(report: RunReport) -> list[str]:
    before = report.diff.before if report.diff is not None else None
    if before is None:
        lines = ["", "## Rubric items", "", "| Item | Pass rate | Passed |", "|---|---|---|"]
        lines += [f"| {r.item} | {_pct(r.rate)} | {r.passed}/{r.total} |" for r in report.items]
    else:
        lines = ["", "## Rubric items", "", "| Item | Pass rate | Passed | Baseline |", "|---|---|---|---|"]
        lines += [
            f"| {r.item} | {_pct(r.rate)} | {r.passed}/{r.total} | {_pct(before.get(r.item))} |"
            for r in report.items
        ]
    lines += [
        "",
        "## Personas",
        "",
        "| Persona | Status | Pass rate | Turns | End | Score | Bot tokens in/out | Bot US$ | Total US$ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in report.personas:
        lines.append(
            f"| {p.name} | {p.status} | {_pct(p.pass_rate)} | {len(p.turns)} | {p.end_reason} | "
            f"{p.score if p.score is not None else '-'} {p.temperature or ''} | "
            f"{p.bot_tokens.prompt}/{p.bot_tokens.completion} | {p.bot_usd:.4f} | {p.total_usd:.4f} |"
        )
    return lines


def _persona(p: PersonaReport) -> list[str]:
    lines = ["", f"### {p.name} ({p.status})", ""]
    if p.error:
        lines.append(f"Errored: `{_cell(p.error)}`")
    for check in p.checks:
        mark = "pass" if check.passed else "**FAIL**"
        lines.append(f"- {mark} `{check.item}` ({check.source}): {_cell(check.evidence)}")
    if p.profile:
        lines.append(f"- captured: {_cell(', '.join(f'{k}={v}' for k, v in p.profile.items()))}")
    if p.turns:
        lines += ["", "<details><summary>Conversation</summary>", ""]
        for turn in p.turns:
            voice = " (voice note)" if turn.voice_note else ""
            lines.append(f"{turn.index}. **Lead{voice}:** {_cell(turn.lead)}  ")
            lines.append(f"   **Bot:** {_cell(turn.reply) or '(no reply)'}  ")
            if turn.tools:
                lines.append(
                    f"   _actions: {', '.join(turn.tools)}; score {turn.score} {turn.temperature or ''}_"
                )
        lines += ["", "</details>"]
    return lines


def render_markdown(report: RunReport) -> str:
    lines = _head(report)
    if report.diff is not None:
        lines += _diff(report.diff)
    lines += _tables(report)
    lines += ["", "## Conversations"]
    for persona in report.personas:
        lines += _persona(persona)
    return "\n".join(lines) + "\n"

"""The rubric items code cannot decide (tone, re-asking, answering, Portuguese): a model judges.

One structured call per conversation grades all of its criteria, each a pass or a fail
with the judge's reason, kept in the report so a reader can disagree with it.

Why not DeepEval's conversational metrics (measured on deepeval 4.3.1, the current
release): installing it adds 22 packages this project does not have, 14 MB of wheels
(grpcio alone 7 MB; opentelemetry-sdk, posthog telemetry, typer, questionary, pyfiglet,
nest_asyncio...), and makes pytest, pytest-xdist and pytest-rerunfailures run-time
dependencies of the bot's install; its metrics
call OpenAI through their own client, outside our aiohttp pool, our retry policy and
the HTTP-boundary fake the offline tests use. What we need of it is one prompt and one
structured answer per conversation, which our own client already does. promptfoo is a
Node tool and would not see the Python agent graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from agent.llm import LLMClient
from cli.evaluation.transcript import CheckResult, Tokens, Transcript, tokens_of

if TYPE_CHECKING:
    from cli.evaluation.personas import Persona

JUDGE_MAX_TOKENS = 1500
ITEM_PREFIX = "judge:"

CRITERIA: dict[str, str] = {
    "tone": (
        "The bot's tone fits a WhatsApp sales chat in Brazil: cordial, direct, short messages, "
        "adapted to how the lead writes; never robotic, pushy or over-formal."
    ),
    "no_reasking": (
        "The bot never asks again for something the lead already said (name, company, city, "
        "volume, product...), and never repeats a question the lead already answered."
    ),
    "answered_question": (
        "Every question the lead asked was answered, or explicitly passed to the sales team "
        "(prices and deadlines go to a quote); no question of the lead was ignored."
    ),
    "portuguese": (
        "The bot writes correct, natural Brazilian Portuguese: spelling, grammar and agreement; "
        "no European Portuguese forms, no English where Portuguese is usual."
    ),
}


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    criterion: str = Field(description="The criterion id, as given in brackets.")
    passed: bool = Field(description="true only when the whole conversation meets the criterion.")
    reason: str = Field(description="One or two sentences, naming the turn(s) that decided it.")


class JudgeVerdicts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdicts: list[Verdict] = Field(description="One verdict per criterion, in the order given.")


def criteria_of(persona: Persona) -> dict[str, str]:
    return {**{key: CRITERIA[key] for key in persona.rubric.judge}, **persona.rubric.judge_custom}


def render_conversation(transcript: Transcript) -> str:
    lines: list[str] = []
    for turn in transcript.turns:
        how = " (voice note, transcribed)" if turn.voice_note else ""
        lines.append(f"[turn {turn.index}] LEAD{how}: {turn.lead}")
        lines.append(f"[turn {turn.index}] BOT: {turn.reply.strip() or '(no reply)'}")
        if turn.tools:
            lines.append(f"[turn {turn.index}] (bot actions: {', '.join(turn.tools)})")
    return "\n".join(lines)


def judge_messages(persona: Persona, transcript: Transcript) -> list[dict[str, Any]]:
    criteria = "\n".join(f"- [{key}] {text}" for key, text in criteria_of(persona).items())
    system = (
        "You grade a WhatsApp conversation between a Brazilian company's AI sales assistant (BOT) "
        "and a prospective customer (LEAD). Grade only the BOT. Be strict but fair: a criterion "
        "fails on a clear lapse, not on a matter of taste. The bot never states prices, discounts, "
        "payment terms or delivery deadlines: routing those to the sales team is correct.\n\n"
        f"Who the lead is: {persona.description.strip()}\nWhat the lead wanted: {persona.goal.strip()}\n\n"
        f"Criteria (return one verdict per id, in this order):\n{criteria}\n\n"
        "Write each reason in English, one or two sentences, citing the turn numbers."
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": render_conversation(transcript)},
    ]


def verdict_checks(persona: Persona, verdicts: JudgeVerdicts) -> list[CheckResult]:
    by_id = {v.criterion.strip().strip("[]"): v for v in verdicts.verdicts}
    results = []
    for key in criteria_of(persona):
        verdict = by_id.get(key)
        if verdict is None:
            results.append(
                CheckResult(
                    item=ITEM_PREFIX + key, passed=False, evidence="the judge gave no verdict", source="judge"
                )
            )
        else:
            results.append(
                CheckResult(
                    item=ITEM_PREFIX + key,
                    passed=verdict.passed,
                    evidence=verdict.reason.strip(),
                    source="judge",
                )
            )
    return results


class Judge:
    def __init__(self, llm: LLMClient) -> None:
        self.llm = llm

    async def grade(self, persona: Persona, transcript: Transcript) -> tuple[list[CheckResult], Tokens]:
        if not criteria_of(persona):
            return [], Tokens()
        if not transcript.turns:
            missing = [
                CheckResult(
                    item=ITEM_PREFIX + key, passed=False, evidence="no conversation to judge", source="judge"
                )
                for key in criteria_of(persona)
            ]
            return missing, Tokens()
        messages = judge_messages(persona, transcript)
        async for attempt in self.llm.retry_policy():
            with attempt:
                verdicts, usage = await self.llm.structured(
                    messages, JudgeVerdicts, temperature=0.0, max_completion_tokens=JUDGE_MAX_TOKENS
                )
        return verdict_checks(persona, verdicts), tokens_of(usage)

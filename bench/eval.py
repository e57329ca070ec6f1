"""Field-extraction accuracy of the real model on the scenario conversations.

    OPENAI_API_KEY=sk-... python bench/eval.py [--model gpt-4o]

Needs no dev extra: only the app's own dependencies, and a real key (OPENAI_BASE_URL
points it at another OpenAI-compatible server).

Plays the lead side of every scenario in `tests/scenarios/data/` against the real agent
(real OpenAI, no scripted outputs; nothing is sent to WhatsApp and nothing is stored)
and compares the profile the bot extracted with the profile each scenario expects.
Prints accuracy per field and overall, tool calls per scenario, and tokens per turn.
Without OPENAI_API_KEY it says so and exits 0: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from agent.business_hours import load_business_hours  # noqa: E402
from agent.graph import AgentDeps, SdrAgent, TurnInput  # noqa: E402
from agent.llm import LLMClient  # noqa: E402
from agent.prompts import load_prompt_bundle  # noqa: E402
from agent.scoring import load_scoring_rules  # noqa: E402
from core.lead import LeadProfile  # noqa: E402
from core.models import InboundMessage, MessageKind  # noqa: E402
from core.records import StoredMessage  # noqa: E402
from core.settings import Settings  # noqa: E402
from web.configs.agent import llm_config  # noqa: E402

# The window of past messages a turn sees, as the runtime keeps it (HISTORY_WINDOW).
HISTORY_WINDOW = Settings.model_fields["history_window"].default

SCENARIOS = REPO / "tests" / "scenarios" / "data"


def expected_profile(scenario: dict) -> dict:
    """The last expectation of each field across the scenario's expect blocks."""
    expected: dict = {}
    blocks = [step.get("expect") or {} for step in scenario["steps"]] + [scenario.get("expect") or {}]
    for block in blocks:
        expected.update(block.get("profile") or {})
    return expected


def same(field: str, got: object, want: object) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        return want.casefold().strip() in got.casefold() or got.casefold().strip() in want.casefold()
    return got == want


async def play(agent: SdrAgent, scenario: dict) -> tuple[LeadProfile, list[str], list[int]]:
    profile = LeadProfile()
    history: list[StoredMessage] = []
    tools: list[str] = []
    tokens: list[int] = []
    summary = None
    count = 0
    for index, step in enumerate(scenario["steps"]):
        if "lead" not in step:
            continue
        message = InboundMessage(
            channel="eval",
            contact_id="eval",
            provider_message_id=f"eval-{index}",
            kind=MessageKind.TEXT,
            text=step["lead"],
        )
        result = await agent.run(
            TurnInput(
                contact_key="eval:eval",
                inbound=[message],
                profile=profile,
                history=history[-HISTORY_WINDOW:],
                lead_message_count=count,
                summary=summary,
                now=message.timestamp,
            )
        )
        count += 1
        profile, summary = result.profile, result.summary
        tools += result.effects.called
        tokens.append(result.usage.prompt_tokens)
        history += [
            StoredMessage(
                id=len(history), direction="in", kind="text", text=step["lead"], created_at=message.timestamp
            ),
            StoredMessage(
                id=len(history) + 1,
                direction="out",
                kind="text",
                text=result.reply,
                created_at=message.timestamp,
            ),
        ]
    return profile, tools, tokens


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    settings = Settings()
    if not settings.openai_configured:
        print("bench/eval.py: OPENAI_API_KEY is not set; skipping (nothing measured).")
        return 0
    if args.model:
        settings = settings.model_copy(update={"openai_model": args.model})
    per_field: Counter[str] = Counter()
    per_field_ok: Counter[str] = Counter()
    all_tokens: list[int] = []
    async with aiohttp.ClientSession() as session:
        agent = SdrAgent(
            AgentDeps(
                llm=LLMClient(llm_config(settings), session),
                fetch_media=lambda _m: asyncio.sleep(0, b""),  # type: ignore[arg-type,return-value]
                prompts=load_prompt_bundle(),
                rules=load_scoring_rules(),
                hours=load_business_hours(),
            )
        )
        for path in sorted(SCENARIOS.glob("*.json")):
            scenario = json.loads(path.read_text(encoding="utf-8"))
            want = expected_profile(scenario)
            profile, tools, tokens = await play(agent, scenario)
            all_tokens += tokens
            got = profile.model_dump()
            hits = 0
            for field, value in want.items():
                per_field[field] += 1
                if same(field, got.get(field), value):
                    per_field_ok[field] += 1
                    hits += 1
            print(f"{path.stem:50} fields {hits}/{len(want)}  tools {tools or '-'}")
    total, ok = sum(per_field.values()), sum(per_field_ok.values())
    print("\nfield accuracy")
    for field in sorted(per_field):
        print(
            f"  {field:18} {per_field_ok[field]:3}/{per_field[field]:<3} {per_field_ok[field] / per_field[field]:6.0%}"
        )
    if total:
        print(f"  {'overall':18} {ok:3}/{total:<3} {ok / total:6.0%}")
    if all_tokens:
        print(f"prompt tokens per turn: min {min(all_tokens)}, max {max(all_tokens)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

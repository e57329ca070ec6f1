"""Input tokens OpenAI bills per turn as a conversation grows, and what they cost.

    python bench/tokens.py [--turns 20] [--knowledge-max-tokens N]

Needs the dev extra (`pip install -e '.[dev]'`): OpenAI and Z-API are faked with
aioresponses and the suite's fakes (tests/helpers/fakes.py, tests/conftest.py).

Drives one lead through N text turns of the real runtime (SQLite store, LangGraph agent,
prompt rendering) with OpenAI faked at the HTTP boundary, captures every chat request
and counts it as OpenAI bills it (agent/billing.py, o200k offline): the whole request
(messages, `response_format` schema, tools), the prefix it shares with the conversation's
previous request (what the prompt cache can reuse: >= 1,024 tokens, 128-token steps) and
the billed-equivalent input (uncached + cached x 1.25/2.50 at GPT-4o list prices). Turn 1
is counted cold (nothing cached), though its schema and rules are the same as every other
conversation's. The lead's messages arrive two minutes apart, so "now" changes per turn.

Goal (issue 18): <= 2,000 billed-equivalent input tokens at turn 10, >= 80 % of the input
in the cached prefix from turn 2 on, one LLM call per text turn.

`--knowledge-max-tokens` below the shipped knowledge's size (1,394 tokens) shows the same
conversation with the knowledge retrieved per turn instead of sent whole (BM25 here: the
fake OpenAI has no embeddings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from aioresponses import aioresponses  # noqa: E402

from agent.billing import GPT_4O, RequestTokens, count_request, request_segments  # noqa: E402
from agent.budget import count_tokens  # noqa: E402
from tests.conftest import (  # noqa: E402
    WEBHOOK_TOKEN,
    ZAPI_INSTANCE,
    ZAPI_TOKEN,
    fast_settings,
    zapi_message,
)
from tests.helpers.fakes import FakeOpenAI, FakeZapi  # noqa: E402
from web.app import create_app  # noqa: E402
from web.keys import RUNNER  # noqa: E402
from web.serve import configure_process  # noqa: E402

# What the lead says, and what a model would extract from it (the profile grows).
LEAD_LINES: list[tuple[str, dict[str, Any]]] = [
    ("Oi, boa tarde! Vi o anúncio de vocês", {}),
    ("Sou o Carlos, da Casa de Carnes Bom Corte", {"name": "Carlos", "company": "Casa de Carnes Bom Corte"}),
    ("A gente fica em Maringá, PR", {"city": "Maringá", "state": "PR", "segment": "açougue"}),
    ("Queria saber da formadora de hambúrguer", {"product_interest": "formadora de hambúrguer"}),
    ("Hoje fazemos uns 400 por dia na mão", {"volume": "400 por dia", "volume_per_day": 400}),
    (
        "Mas queremos chegar em 1500 por dia até o fim do ano",
        {"volume": "1500 por dia", "volume_per_day": 1500},
    ),
    ("Quanto tempo leva pra entregar?", {"timeline": "até o fim do ano"}),
    ("Entendi. E ela é fácil de limpar?", {}),
    ("Sou eu que decido a compra, sou o dono", {"decision_role": "decisor"}),
    ("Já conhecia a Seleto de uma feira", {"knows_company": True}),
]
REPLY = (
    "Entendi! A SE3000 faz até 3.000 hambúrgueres por hora e tem molde ajustável. "
    "Me conta: qual volume vocês querem atingir por dia?"
)
SUMMARY = "Carlos, casa de carnes em Maringá/PR, quer formadora. " * 3
REPORTED_TURNS = (1, 2, 5, 10, 20, 40)
# A weekday afternoon in São Paulo, inside the default opening hours.
START = datetime(2025, 3, 11, 17, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def output_tokens(lead: dict[str, Any]) -> int:
    """The fake's answer as the model would write it (tests/helpers/fakes.py)."""
    content = {"reply": REPLY, "lead": lead, "tool_calls": [], "summary": SUMMARY, "image_description": None}
    return count_tokens(json.dumps(content, ensure_ascii=False))


async def converse(turns: int, **overrides: Any) -> tuple[list[dict[str, Any]], list[int], int, int]:
    """Play `turns` lead messages; the chat requests, output tokens, calls and replies."""
    tmp = Path(tempfile.mkdtemp(prefix="sdr-tokens-"))
    settings = fast_settings(tmp, log_level="ERROR", debounce_quiet_s=0.0, debounce_max_s=0.0, **overrides)
    clock = Clock()
    outputs: list[int] = []
    with aioresponses(passthrough=["http://127.0.0.1"]) as mock:
        openai = FakeOpenAI(mock)
        zapi = FakeZapi(mock, instance_id=ZAPI_INSTANCE, instance_token=ZAPI_TOKEN)
        configure_process(settings)  # the bot's log level, as `python main.py` sets it
        app = create_app(settings, clock=clock)
        runner = web.AppRunner(app)
        await runner.setup()
        runtime = app[RUNNER]
        try:
            client = aiohttp.ClientSession()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            for turn in range(1, turns + 1):
                clock.now = START + timedelta(minutes=2 * (turn - 1))
                text, lead = LEAD_LINES[(turn - 1) % len(LEAD_LINES)]
                openai.then(reply=REPLY, summary=SUMMARY, lead=lead)
                outputs.append(output_tokens(lead))
                async with client.post(
                    # The route is closed without the secret, which Z-API sends in `?token=`.
                    f"http://127.0.0.1:{port}/webhooks/zapi?token={WEBHOOK_TOKEN}",
                    json=zapi_message(message_id=f"3EB0TOK{turn:09d}", text=f"{text} ({turn})"),
                ) as response:
                    assert response.status == 200
                while runtime.turns_completed < turn:
                    await asyncio.sleep(0.005)
            for _ in range(500):  # let the outbox deliver the last replies before stopping
                if len(zapi.sent) >= turns:
                    break
                await asyncio.sleep(0.01)
            await client.close()
        finally:
            await runner.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)
    return openai.chat_requests, outputs, openai.chat_calls, len(zapi.sent)


def breakdown(request: dict[str, Any]) -> str:
    """Schema, first system message, the history run after it, and the rest."""
    segments = request_segments(request)
    parts: dict[str, int] = {"schema and tools": 0, "system (static)": 0, "history": 0, "this turn": 0}
    messages = [s for s in segments if s.role is not None]
    parts["schema and tools"] = sum(s.tokens for s in segments if s.role is None)
    if messages:
        parts["system (static)"] = messages[0].tokens
        rest = messages[1:]
        run = next((i for i, s in enumerate(rest) if s.role == "system"), len(rest))
        parts["history"] = sum(s.tokens for s in rest[:run])
        parts["this turn"] = sum(s.tokens for s in rest[run:])
    return ", ".join(f"{name} {tokens}" for name, tokens in parts.items())


def report(requests: list[dict[str, Any]], outputs: list[int]) -> None:
    counted: list[RequestTokens] = [
        count_request(request, requests[index - 1] if index else None)
        for index, request in enumerate(requests)
    ]
    print(f"{'turn':>5}{'raw in':>9}{'cached':>9}{'cached %':>10}{'billed-eq':>11}")
    for turn in REPORTED_TURNS:
        if turn <= len(counted):
            c = counted[turn - 1]
            print(
                f"{turn:>5}{c.total:>9}{c.cached:>9}{c.cacheable_share:>10.0%}{c.billed_equivalent():>11.0f}"
            )
    ten = counted[:10]
    if len(ten) == 10:
        input_usd = sum(c.input_usd() for c in ten)
        output_usd = sum(outputs[:10]) * GPT_4O.output_per_m / 1_000_000
        cold_usd = sum(c.total for c in ten) * GPT_4O.input_per_m / 1_000_000
        print(
            f"10-turn conversation at GPT-4o list prices: input US$ {input_usd:.4f} "
            f"(US$ {cold_usd:.4f} with no cache), output US$ {output_usd:.4f}, "
            f"total US$ {input_usd + output_usd:.4f}"
        )
    if len(requests) >= 10:
        print("turn 10, where the input tokens are: " + breakdown(requests[9]))
    later = counted[1:]
    if later:
        low = min(later, key=lambda c: c.cacheable_share)
        print(f"lowest cached share from turn 2 on: {low.cacheable_share:.0%}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--knowledge-max-tokens", type=int, default=None)
    args = parser.parse_args()
    overrides = (
        {} if args.knowledge_max_tokens is None else {"knowledge_max_tokens": args.knowledge_max_tokens}
    )
    requests, outputs, calls, sent = await converse(args.turns, **overrides)
    print(f"input tokens per turn, one lead, {args.turns} text turns (o200k, whole request)")
    report(requests, outputs)
    print(f"replies sent: {sent}; LLM calls in total: {calls} for {args.turns} turns")


if __name__ == "__main__":
    asyncio.run(main())

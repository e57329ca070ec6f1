"""CPU per agent turn on the event loop: the OpenAI SDK call, LangGraph's own overhead, total.

    python bench/turn_cpu.py [--turns 1000] [--rounds 5] [--history 20]

Needs the dev extra (`pip install -e '.[dev]'`): the fake OpenAI and the test settings
are the suite's own (tests/helpers/provider_server.py, tests/conftest.py), so the bench
measures against exactly what the tests check.

Runs turns one after another in this process through `SdrAgent.run` (real `LLMClient`
on the openai SDK's aiohttp backend, real compiled LangGraph graph, real prompts, scoring
and guard rules) against a fake OpenAI served on loopback by a *child process*
(`tests/helpers/provider_server.py`), so `time.process_time()` here counts only the bot's
own CPU, never the fake's. Turns run one at a time, so all CPU spent while a turn is in
flight belongs to that turn.

Split, per turn (median of the rounds):
  llm call        CPU inside `LLMClient.structured`: build the request, the SDK's request
                  machinery, the HTTP round trip on the client side, parse the completion
                  and validate the structured output.
  node logic      CPU inside the graph's nodes minus the llm call: prompt rendering,
                  tools, lead merge, scoring, guard rules.
  graph overhead  the rest of `SdrAgent.run`: LangGraph's per-invoke and per-step work
                  (channels, tasks, loop hops) plus building the `TurnResult`.
  total           CPU of `SdrAgent.run` per turn.

For reference it also times a bare `aiohttp` POST of the same request body to the same
server (the floor any client library sits on).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from langgraph.graph import StateGraph  # noqa: E402

from agent.business_hours import load_business_hours  # noqa: E402
from agent.graph import AgentDeps, AgentTurnOutput, SdrAgent, TurnInput  # noqa: E402
from agent.llm import LLMClient  # noqa: E402
from agent.prompts import load_prompt_bundle  # noqa: E402
from agent.scoring import load_scoring_rules  # noqa: E402
from core.lead import LeadProfile  # noqa: E402
from core.models import InboundMessage, MessageKind  # noqa: E402
from core.records import StoredMessage  # noqa: E402
from tests.conftest import fast_settings  # noqa: E402
from web.configs.agent import llm_config  # noqa: E402

NOW = datetime(2025, 3, 10, 17, 0, tzinfo=UTC)  # a Monday, open hours in Brasília
LINES = [
    "Oi, boa tarde! Vi o anúncio de vocês",
    "Sou o Carlos, da Casa de Carnes Bom Corte, em Maringá/PR",
    "Queria saber da formadora de hambúrguer; hoje fazemos uns 400 por dia na mão",
    "Quanto tempo leva pra entregar? E ela é fácil de limpar?",
]
BOT_LINE = (
    "Entendi! A SE3000 faz até 3.000 hambúrgueres por hora e tem molde ajustável. "
    "Me conta: qual volume vocês querem atingir por dia?"
)


# --- the fake OpenAI, in its own process ---------------------------------------------------


async def _serve() -> None:
    from tests.helpers.provider_server import ProviderServer

    server = ProviderServer()
    await server.start()
    print(server.port, flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes
    finally:
        await server.stop()


def start_fake_openai() -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert child.stdout is not None
    return child, int(child.stdout.readline())


# --- instrumentation -----------------------------------------------------------------------


class Meter:
    def __init__(self) -> None:
        self.llm = 0.0
        self.nodes = 0.0
        self.llm_calls = 0

    def reset(self) -> None:
        self.llm = self.nodes = 0.0
        self.llm_calls = 0


METER = Meter()
_depth = 0  # a node timed inside another (a subgraph) is not counted twice


def _timed_node(action: Any) -> Any:
    @functools.wraps(action)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        global _depth
        _depth += 1
        started = time.process_time()
        try:
            return await action(*args, **kwargs)
        finally:
            _depth -= 1
            if _depth == 0:
                METER.nodes += time.process_time() - started

    return timed


def instrument_nodes() -> None:
    """Every node added to any StateGraph from now on has its CPU metered."""
    original = StateGraph.add_node

    def add_node(self: Any, node: Any, action: Any = None, **kwargs: Any) -> Any:
        if action is None and callable(node) and asyncio.iscoroutinefunction(node):
            return original(self, node.__name__, _timed_node(node), **kwargs)
        if action is not None and asyncio.iscoroutinefunction(action):
            action = _timed_node(action)
        return original(self, node, action, **kwargs)

    StateGraph.add_node = add_node  # type: ignore[method-assign]


def instrument_llm(llm: LLMClient) -> None:
    structured = llm.structured

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return await structured(*args, **kwargs)
        finally:
            METER.llm += time.process_time() - started
            METER.llm_calls += 1

    llm.structured = timed  # type: ignore[method-assign]


# --- the turn ------------------------------------------------------------------------------


def make_turn(i: int, history_len: int) -> TurnInput:
    history = [
        StoredMessage(
            id=n,
            direction="in" if n % 2 == 0 else "out",
            kind="text",
            text=LINES[n % len(LINES)] if n % 2 == 0 else BOT_LINE,
            created_at=NOW - timedelta(minutes=history_len - n),
        )
        for n in range(history_len)
    ]
    profile = LeadProfile.model_validate(
        {"name": "Carlos", "company": "Casa de Carnes Bom Corte", "city": "Maringá", "state": "PR"}
    )
    return TurnInput(
        contact_key="whatsapp:5544999999999",
        inbound=[
            InboundMessage(
                channel="zapi",
                contact_id="5544999999999",
                provider_message_id=f"3EB0{i:016X}",
                kind=MessageKind.TEXT,
                text=LINES[i % len(LINES)] + f" ({i})",
                timestamp=NOW,
            )
        ],
        profile=profile,
        history=history,
        lead_message_count=history_len // 2,
        summary="Carlos, casa de carnes em Maringá/PR, quer uma formadora de hambúrguer.",
        now=NOW,
    )


async def no_media(message: InboundMessage) -> bytes:  # pragma: no cover - text turns only
    raise AssertionError("text turns fetch no media")


def _ms(seconds: float, n: int) -> float:
    return seconds * 1000 / n


async def measure_turns(agent: SdrAgent, turns: list[TurnInput]) -> dict[str, float]:
    METER.reset()
    gc.collect()
    started = time.process_time()
    wall = time.perf_counter()
    for turn in turns:
        await agent.run(turn)
    total = time.process_time() - started
    wall = time.perf_counter() - wall
    n = len(turns)
    return {
        "llm": _ms(METER.llm, n),
        "node logic": _ms(METER.nodes - METER.llm, n),
        "graph overhead": _ms(total - METER.nodes, n),
        "total": _ms(total, n),
        "wall": _ms(wall, n),
        "llm calls/turn": METER.llm_calls / n,
    }


async def measure_raw_post(session: aiohttp.ClientSession, url: str, body: bytes, n: int) -> float:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-test"}
    gc.collect()
    started = time.process_time()
    for _ in range(n):
        async with session.post(url, data=body, headers=headers) as response:
            json.loads(await response.read())
    return _ms(time.process_time() - started, n)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1000, help="turns per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--history", type=int, default=20, help="messages in the window (20 in production)")
    args = parser.parse_args()

    child, port = start_fake_openai()
    tmp = Path(tempfile.mkdtemp(prefix="sdr-turn-cpu-"))
    try:
        instrument_nodes()
        settings = fast_settings(
            tmp,
            openai_base_url=f"http://127.0.0.1:{port}/v1",
            log_level="WARNING",
        )
        async with aiohttp.ClientSession() as session:
            llm = LLMClient(llm_config(settings), session)
            instrument_llm(llm)
            agent = SdrAgent(
                AgentDeps(
                    llm=llm,
                    fetch_media=no_media,
                    prompts=load_prompt_bundle(),
                    rules=load_scoring_rules(),
                    hours=load_business_hours(),
                )
            )
            turns = [make_turn(i, args.history) for i in range(args.turns)]
            result = await agent.run(turns[0])
            assert result.reply.startswith("Resposta para"), result.reply
            await measure_turns(agent, turns[: min(200, args.turns)])  # warm up
            rounds = [await measure_turns(agent, turns) for _ in range(args.rounds)]

            from agent.graph import build_messages

            messages = build_messages(agent.deps, turns[0], [turns[0].inbound[0].text or ""])
            body = json.dumps(
                {
                    "messages": messages,
                    "model": settings.openai_model,
                    "max_completion_tokens": 900,
                    "temperature": 0.4,
                    "response_format": llm._response_format(AgentTurnOutput),
                }
            ).encode()
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            await measure_raw_post(session, url, body, 200)
            raw = statistics.median(
                [await measure_raw_post(session, url, body, args.turns) for _ in range(3)]
            )
            if llm._client is not None:  # its own pool when the SDK's transport is not on ours
                await llm._client.close()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"CPU per turn, {args.rounds} rounds x {args.turns} sequential turns, window {args.history} messages, "
        f"request body {len(body):,} bytes (median of rounds, ms)"
    )
    for key in ("llm", "node logic", "graph overhead", "total"):
        values = [r[key] for r in rounds]
        print(
            f"  {key:<15} {statistics.median(values):6.2f}   (min {min(values):.2f}, max {max(values):.2f})"
        )
    print(f"  {'raw POST':<15} {raw:6.2f}   (bare aiohttp POST + json.loads of the same body, for reference)")
    print(
        f"  wall per turn   {statistics.median(r['wall'] for r in rounds):6.2f}   (one at a time, loopback fake)"
    )
    print(f"  llm calls/turn  {rounds[-1]['llm calls/turn']:.2f}")


if __name__ == "__main__":
    if "--serve" in sys.argv:
        asyncio.run(_serve())
    else:
        asyncio.run(main())

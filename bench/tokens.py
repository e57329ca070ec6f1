"""Prompt size per turn as a conversation grows: it must go flat once the window fills.

    python bench/tokens.py [--turns 40]

Needs the dev extra (`pip install -e '.[dev]'`): OpenAI and Z-API are faked with
aioresponses and the suite's fakes (tests/helpers/fakes.py, tests/conftest.py).

Drives one lead through N turns of the real runtime (SQLite store, LangGraph agent,
prompt rendering) with OpenAI faked at the HTTP boundary, captures every chat request
and prints its size at turn 1, 10 and 40: characters, an estimate of tokens (chars/4,
a fair ratio for Portuguese with GPT-4o's tokenizer; no tokenizer download is possible
offline), and the number of LLM calls per turn (budget: 1 per text turn).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from aioresponses import aioresponses  # noqa: E402

from core.clock import utc_now  # noqa: E402
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

LEAD_LINES = [
    "Oi, boa tarde! Vi o anúncio de vocês",
    "Sou o Carlos, da Casa de Carnes Bom Corte",
    "A gente fica em Maringá, PR",
    "Queria saber da formadora de hambúrguer",
    "Hoje fazemos uns 400 por dia na mão",
    "Mas queremos chegar em 1500 por dia até o fim do ano",
    "Quanto tempo leva pra entregar?",
    "Entendi. E ela é fácil de limpar?",
    "Sou eu que decido a compra, sou o dono",
    "Já conhecia a Seleto de uma feira",
]


def estimate_tokens(messages: list[dict]) -> int:
    chars = 0
    for message in messages:
        content = message["content"]
        chars += len(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))
    return chars // 4


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=40)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sdr-tokens-"))
    settings = fast_settings(tmp, log_level="WARNING", debounce_quiet_s=0.0, debounce_max_s=0.0)
    sizes: list[tuple[int, int, int]] = []
    with aioresponses(passthrough=["http://127.0.0.1"]) as mock:
        openai = FakeOpenAI(mock)
        zapi = FakeZapi(mock, instance_id=ZAPI_INSTANCE, instance_token=ZAPI_TOKEN)
        configure_process(settings)  # the bot's log level, as `python main.py` sets it
        app = create_app(settings, clock=utc_now)
        runner = web.AppRunner(app)
        await runner.setup()
        turns = app[RUNNER]
        try:
            client = aiohttp.ClientSession()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            for turn in range(1, args.turns + 1):
                text = LEAD_LINES[(turn - 1) % len(LEAD_LINES)] + f" ({turn})"
                reply = (
                    "Entendi! A SE3000 faz até 3.000 hambúrgueres por hora e tem molde ajustável. "
                    "Me conta: qual volume vocês querem atingir por dia?"
                )
                openai.then(reply=reply, summary="Carlos, casa de carnes em Maringá/PR, quer formadora. " * 3)
                calls_before = openai.chat_calls
                async with client.post(
                    # The route is closed without the secret, which Z-API sends in `?token=`.
                    f"http://127.0.0.1:{port}/webhooks/zapi?token={WEBHOOK_TOKEN}",
                    json=zapi_message(message_id=f"3EB0TOK{turn:09d}", text=text),
                ) as response:
                    assert response.status == 200
                while turns.turns_completed < turn:
                    await asyncio.sleep(0.005)
                request = openai.chat_requests[-1]
                sizes.append(
                    (
                        sum(
                            len(m["content"]) if isinstance(m["content"], str) else 0
                            for m in request["messages"]
                        ),
                        estimate_tokens(request["messages"]),
                        openai.chat_calls - calls_before,
                    )
                )
            for _ in range(500):  # let the outbox deliver the last replies before stopping
                if len(zapi.sent) >= len(sizes):
                    break
                await asyncio.sleep(0.01)
            await client.close()
        finally:
            await runner.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"prompt size per turn, one lead, {args.turns} text turns (window {settings.history_window} messages)"
    )
    print(f"{'turn':>6}{'chars':>10}{'~tokens':>10}{'LLM calls':>11}")
    for turn in (1, 10, 20, 30, 40):
        if turn <= len(sizes):
            chars, tokens, calls = sizes[turn - 1]
            print(f"{turn:>6}{chars:>10}{tokens:>10}{calls:>11}")
    print(f"replies sent: {len(zapi.sent)}; LLM calls in total: {openai.chat_calls} for {len(sizes)} turns")


if __name__ == "__main__":
    asyncio.run(main())

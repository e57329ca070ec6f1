"""Webhook acknowledge latency under concurrent load, next to a bare aiohttp handler.

    python bench/ack.py [--requests 4000] [--concurrency 32] [--leads 400]

Needs the dev extra (`pip install -e '.[dev]'`): the fakes, the bot process runner and
the webhook bodies are the suite's own (tests/helpers/, tests/conftest.py).

Starts, on loopback: a fake OpenAI + Z-API (so the bot really thinks and replies in
the background while it acknowledges), the bot (`python main.py`, SQLite in a temp
dir) and a bare aiohttp handler, each in its own process. The same load generator
then drives both, alternating rounds so machine noise hits them alike, and prints
p50/p90/p99 and the p99 ratio (budget: <= 1.5x). The bot's Z-API route is closed
without its secret, so its requests carry `?token=` as Z-API's "Ao receber" URL does;
the bare handler gets the same bodies at its bare path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import zapi_message  # noqa: E402
from tests.helpers.bot_process import BotProcess, free_port  # noqa: E402
from tests.helpers.provider_server import ProviderServer  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


async def drive(url: str, payloads: list[dict], concurrency: int) -> list[float]:
    latencies: list[float] = []
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                payload = queue.get_nowait()
                started = time.perf_counter()
                async with session.post(url, json=payload) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def wait_healthy(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            try:
                async with session.get(f"{url}/api/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never became healthy")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--leads", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--llm-delay", type=float, default=0.2, help="fake LLM latency, seconds")
    args = parser.parse_args()

    provider = ProviderServer()
    provider.state.llm_delay_s = args.llm_delay
    await provider.start()
    tmp = Path(tempfile.mkdtemp(prefix="sdr-bench-"))
    bot = BotProcess(
        sqlite_path=tmp / "bench.sqlite3",
        provider_url=provider.url,
        log_path=tmp / "bot.log",
        LOG_LEVEL="WARNING",
        DEBOUNCE_QUIET_S="0.5",
        DEBOUNCE_MAX_S="2",
        **({"PYTHONASYNCIODEBUG": "1"} if os.environ.get("BENCH_DEBUG") else {}),
    )
    await bot.start()
    bare_port = free_port()
    bare = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "bare_server.py"), str(bare_port)],
        env=os.environ.copy(),
    )
    bare_url = f"http://127.0.0.1:{bare_port}"
    await wait_healthy(bare_url)

    per_round = args.requests // args.rounds
    ours: list[float] = []
    theirs: list[float] = []
    counter = 0
    try:
        # Warm both servers (connection pools, first SQLite pages) before measuring.
        warm = [
            zapi_message(message_id=f"WARM{n:012d}", phone=f"55110{n:08d}", text="oi") for n in range(200)
        ]
        await drive(bot.zapi_webhook, warm, args.concurrency)
        await drive(f"{bare_url}/webhooks/zapi", warm, args.concurrency)
        for _round in range(args.rounds):
            payloads = []
            for _ in range(per_round):
                counter += 1
                lead = counter % args.leads
                payloads.append(
                    zapi_message(
                        message_id=f"3EB0BENCH{counter:011d}",
                        phone=f"55119{lead:08d}",
                        text=f"mensagem {counter} do lead {lead}",
                    )
                )
            theirs += await drive(f"{bare_url}/webhooks/zapi", payloads, args.concurrency)
            ours += await drive(bot.zapi_webhook, payloads, args.concurrency)
        await asyncio.sleep(3)
    finally:
        bot.terminate()
        bare.terminate()
        bare.wait(timeout=10)
        await provider.stop()
        if os.environ.get("BENCH_DEBUG"):
            print((tmp / "bot.log").read_text()[-20000:])
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"webhook ack latency, {len(ours)} requests per server, concurrency {args.concurrency}, "
        f"{args.leads} leads, loopback, {os.cpu_count()} CPUs"
    )
    print(f"{'':14}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, values in (("bare aiohttp", theirs), ("sdr bot", ours)):
        print(
            f"{name:14}{percentile(values, 50):10.2f}{percentile(values, 90):10.2f}"
            f"{percentile(values, 99):10.2f}{statistics.fmean(values):10.2f}"
        )
    ratio = percentile(ours, 99) / percentile(theirs, 99)
    print(f"p99 ratio sdr/bare: {ratio:.2f}x (budget <= 1.50x)")
    print(
        f"background work meanwhile: {provider.state.chat_calls} LLM turns, {len(provider.state.sent)} replies sent"
    )


if __name__ == "__main__":
    asyncio.run(main())

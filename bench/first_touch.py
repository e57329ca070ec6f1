"""A fresh form lead's first WhatsApp message: how long after the form does it leave?

    python bench/first_touch.py [--singles 20] [--burst 200] [--llm-delay 0.5]
                                [--no-unmetered] [--keep]

Needs the dev extra (`pip install -e '.[dev]'`): the fakes and the bot process runner
are the suite's own (tests/helpers/). Runs in about two minutes (each single form
waits for its message before the next is posted).

The issue's goal: within seconds of a fresh form, the lead gets a WhatsApp message on
LEAD_FIRST_TOUCH_CHANNEL; our own delay p50 < 3 s, p99 < 10 s after the webhook, on the
embedded default (SQLite), LLM time excluded.

What runs:
- the bot as `python main.py` runs it by default (web process + turn worker child
  process, embedded SQLite in a temp dir), with every setting at its default except the
  credentials and URLs of the fakes and LEADS_API_KEY (POST /api/leads is closed
  without it). In particular DEBOUNCE_QUIET_S (3 s), DEBOUNCE_MAX_S, OUTBOX_POLL_S,
  MAX_CONCURRENT_TURNS, ZAPI_RATE_PER_S (20/s) and TYPING_CHARS_PER_S stay default (the
  suite's BotProcess shortens some of them; this bench puts them back): a form must not
  wait for the quiet window, and that is part of what is measured;
- fake OpenAI + Z-API (tests/helpers/provider_server.py) in this process, plus Z-API's
  phone-exists (answers {"exists": true}), which the first touch asks before sending.
  The model answers after `--llm-delay` seconds with a short first message.

Per lead: the time from sending POST /api/leads to the fake Z-API receiving the
send-text for that phone, minus the time the fake OpenAI held that lead's requests (the
LLM time, reported on its own). That is "our own delay": the HTTP intake, the store,
the worker's scheduling, the agent's own work, the outbox, the number check and the
send (including any wait on our own Z-API rate meter).

Not in it: Z-API's "typing..." pause. The bot does not sleep for it: the reply's
typing_s (runtime/replies.py typing_seconds, 1 s minimum, len/TYPING_CHARS_PER_S, at most
TYPING_MAX_S) travels as send-text's `delayTyping`, and Z-API shows "typing..." for
that long before delivering. It is printed as its own figure ("+ Z-API typing"), with
what the lead would see (our delay + LLM + typing).

Scenarios (same bot, fresh leads each):
1. singles: `--singles` forms one at a time (the next once the previous one's
   message has gone);
2. burst: `--burst` forms posted at once (a campaign spike); each lead's clock starts
   when its own POST is sent;
3. burst, unmetered (informational, a second bot with ZAPI_RATE_PER_S=100000; skip with
   `--no-unmetered`): how much of the burst's delay is the default 20/s Z-API rate
   meter (the anti-blocking pace of sends; the phone-exists lookup does not use it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers.bot_process import BotProcess  # noqa: E402
from tests.helpers.provider_server import ProviderServer, ProviderState  # noqa: E402

LEADS_KEY = "bench-leads-api-key"
REF_RE = re.compile(r"\(ref (\d+)\)")
PHONE_EXISTS_RE = re.compile(r"^/instances/[^/]+/token/[^/]+/phone-exists/(\d+)$")
# What the fake model writes: a first message of realistic length (its typing pause too).
FIRST_MESSAGE = (
    "Oi! Aqui é da equipe comercial. Vi que você se interessou pelo moedor: "
    "para qual volume por dia você precisa?"
)
# BotProcess shortens these for the tests; the bench runs the defaults.
TEST_SHORTCUTS = ("DEBOUNCE_QUIET_S", "DEBOUNCE_MAX_S", "OUTBOX_POLL_S", "TYPING_CHARS_PER_S")

# Budgets (the issue): our own delay after the webhook.
P50_BUDGET_S = 3.0
P99_BUDGET_S = 10.0


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


# --- the fakes, watched ------------------------------------------------------------------
class WatchedProvider(ProviderServer):
    """The suite's fake, with the moments this bench needs: when each lead's model calls
    started and ended, when its number was checked and when its first send-text arrived.
    phone-exists is not a route of the fake: its catch-all answers it here."""

    def __init__(self, state: ProviderState) -> None:
        super().__init__(state)
        self.llm_s: dict[int, float] = {}  # ref -> seconds the fake model held its calls
        self.checked_at: dict[str, float] = {}  # phone -> first phone-exists
        self.sent_at: dict[str, float] = {}  # phone -> first send-text arrival
        self.typing_s: dict[str, float] = {}  # phone -> delayTyping of that send-text
        self.unmatched_llm = 0
        self.waiters: dict[str, asyncio.Future[None]] = {}

    async def _chat(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        raw = (await request.read()).decode("utf-8", "replace")
        try:
            return await super()._chat(request)
        finally:
            held = time.perf_counter() - started
            refs = set(REF_RE.findall(raw))
            if len(refs) == 1:
                ref = int(refs.pop())
                self.llm_s[ref] = self.llm_s.get(ref, 0.0) + held
            else:
                self.unmatched_llm += 1

    async def _send(self, request: web.Request) -> web.Response:
        now = time.perf_counter()
        body = await request.json()
        phone = str(body.get("phone", ""))
        if phone not in self.sent_at:
            self.sent_at[phone] = now
            self.typing_s[phone] = float(body.get("delayTyping", 0))
            waiter = self.waiters.pop(phone, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        return await super()._send(request)

    async def _unknown(self, request: web.Request) -> web.Response:
        match = PHONE_EXISTS_RE.match(request.path)
        if request.method == "GET" and match is not None:
            self.checked_at.setdefault(match.group(1), time.perf_counter())
            return web.json_response({"exists": True})
        return await super()._unknown(request)


# --- leads ----------------------------------------------------------------------------------
@dataclass
class Lead:
    ref: int
    phone: str  # digits, as the bot sends it
    body: bytes
    posted_at: float = math.nan
    status: int = 0
    ack_s: float = math.nan


@dataclass
class Scenario:
    name: str
    leads: list[Lead]
    wall_s: float = 0.0
    own_s: list[float] = field(default_factory=list)
    llm_s: list[float] = field(default_factory=list)
    typing_s: list[float] = field(default_factory=list)
    felt_s: list[float] = field(default_factory=list)  # own + LLM + Z-API typing
    to_check_s: list[float] = field(default_factory=list)  # POST -> phone-exists, minus LLM
    check_to_send_s: list[float] = field(default_factory=list)
    ack_s: list[float] = field(default_factory=list)
    missing: int = 0
    refused: int = 0
    judged: bool = True


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="sdr-first-touch-"))
        self._next = 0

    def make_leads(self, count: int) -> list[Lead]:
        leads = []
        for _ in range(count):
            self._next += 1
            n = self._next
            local = f"9{n:08d}"
            phone = f"5511{local}"
            body = {
                "name": f"Ana {n}",
                "phone": f"+55 11 {local[:5]}-{local[5:]}",
                "company": "Padaria Pão Quente",
                "product": "moedor",
                "message": f"Quero um orçamento de moedor (ref {n})",
                "source": "site",
            }
            leads.append(Lead(n, phone, json.dumps(body, ensure_ascii=False).encode()))
        return leads

    async def post(self, session: aiohttp.ClientSession, bot: BotProcess, lead: Lead) -> None:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {LEADS_KEY}"}
        lead.posted_at = time.perf_counter()
        async with session.post(f"{bot.url}/api/leads", data=lead.body, headers=headers) as response:
            await response.read()
            lead.status = response.status
        lead.ack_s = time.perf_counter() - lead.posted_at

    async def wait_sent(self, provider: WatchedProvider, leads: list[Lead], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        pending = []
        for lead in leads:
            if lead.phone not in provider.sent_at:
                waiter = provider.waiters.setdefault(lead.phone, loop.create_future())
                pending.append(waiter)
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def singles(
        self, session: aiohttp.ClientSession, bot: BotProcess, provider: WatchedProvider, name: str, n: int
    ) -> Scenario:
        scenario = Scenario(name, self.make_leads(n))
        started = time.perf_counter()
        for lead in scenario.leads:
            await self.post(session, bot, lead)
            if lead.status == 202:
                await self.wait_sent(provider, [lead], self.args.timeout)
        scenario.wall_s = time.perf_counter() - started
        return self.figures(scenario, provider)

    async def burst(
        self, session: aiohttp.ClientSession, bot: BotProcess, provider: WatchedProvider, name: str, n: int
    ) -> Scenario:
        scenario = Scenario(name, self.make_leads(n))
        started = time.perf_counter()
        await asyncio.gather(*(self.post(session, bot, lead) for lead in scenario.leads))
        await self.wait_sent(
            provider, [lead for lead in scenario.leads if lead.status == 202], self.args.timeout
        )
        scenario.wall_s = time.perf_counter() - started
        return self.figures(scenario, provider)

    @staticmethod
    def figures(scenario: Scenario, provider: WatchedProvider) -> Scenario:
        for lead in scenario.leads:
            scenario.ack_s.append(lead.ack_s)
            if lead.status != 202:
                scenario.refused += 1
                continue
            sent = provider.sent_at.get(lead.phone)
            if sent is None:
                scenario.missing += 1
                continue
            llm = provider.llm_s.get(lead.ref, 0.0)
            own = sent - lead.posted_at - llm
            typing = provider.typing_s.get(lead.phone, 0.0)
            scenario.own_s.append(own)
            scenario.llm_s.append(llm)
            scenario.typing_s.append(typing)
            scenario.felt_s.append(own + llm + typing)
            checked = provider.checked_at.get(lead.phone)
            if checked is not None:
                scenario.to_check_s.append(checked - lead.posted_at - llm)
                scenario.check_to_send_s.append(sent - checked)
        return scenario

    # --- one bot ---------------------------------------------------------------------------
    async def with_bot(self, label: str, extra_env: dict[str, str], plan: str) -> list[Scenario]:
        state = ProviderState(llm_delay_s=self.args.llm_delay, reply_text=FIRST_MESSAGE)
        provider = WatchedProvider(state)
        await provider.start()
        bot = BotProcess(
            sqlite_path=self.tmp / f"{label}.sqlite3",
            provider_url=provider.url,
            log_path=self.tmp / f"{label}.log",
            LEADS_API_KEY=LEADS_KEY,
            LOG_LEVEL="INFO",
            **extra_env,
        )
        for name in TEST_SHORTCUTS:
            if name not in extra_env:
                bot.env.pop(name, None)
        results: list[Scenario] = []
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            await bot.start(timeout=60)
            # Warm-up (not measured): the worker's first turn loads the agent, pools open.
            warm = await self.singles(session, bot, provider, "warm-up", 3)
            if warm.missing or warm.refused:
                raise RuntimeError(f"warm-up failed: see {self.tmp / (label + '.log')}")
            if plan == "default":
                results.append(await self.singles(session, bot, provider, "singles", self.args.singles))
                print(f"singles done in {results[-1].wall_s:.1f} s", flush=True)
                await asyncio.sleep(2.0)  # the rate meter's bucket refills
                results.append(await self.burst(session, bot, provider, "burst", self.args.burst))
                print(f"burst done in {results[-1].wall_s:.1f} s", flush=True)
            else:
                await asyncio.sleep(1.0)
                scenario = await self.burst(session, bot, provider, "burst, unmetered", self.args.burst)
                scenario.judged = False
                results.append(scenario)
                print(f"unmetered burst done in {scenario.wall_s:.1f} s", flush=True)
            if provider.unmatched_llm:
                print(f"warning: {provider.unmatched_llm} model calls not matched to a lead", flush=True)
        finally:
            await session.close()
            bot.terminate()
            await provider.stop()
        return results

    async def run(self) -> None:
        args = self.args
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        scenarios = await self.with_bot("default", {}, "default")
        if not args.no_unmetered:
            scenarios += await self.with_bot("unmetered", {"ZAPI_RATE_PER_S": "100000"}, "unmetered")
        load_after = Path("/proc/loadavg").read_text().split()[:3]
        report(args, scenarios, load_before, load_after)
        if args.keep:
            print(f"\nkept {self.tmp} (bot logs, SQLite files)")
        else:
            for path in sorted(self.tmp.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            self.tmp.rmdir()


# --- the report ----------------------------------------------------------------------------
def quantiles(values: Sequence[float]) -> str:
    return " / ".join(f"{pct(values, p):.2f}" for p in (50, 90, 99, 100))


def report(
    args: argparse.Namespace, scenarios: list[Scenario], load_before: list[str], load_after: list[str]
) -> None:
    print()
    print(
        f"First touch bench: loopback, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
        f"load average {' '.join(load_before)} before, {' '.join(load_after)} after"
    )
    print(
        "bot: python main.py (web + turn worker), SQLite, every setting default (DEBOUNCE_QUIET_S 3,"
        " OUTBOX_POLL_S 1, MAX_CONCURRENT_TURNS 32, ZAPI_RATE_PER_S 20, TYPING_CHARS_PER_S 30)"
        " but the fakes' credentials and LEADS_API_KEY"
    )
    print(f"fake LLM delay {args.llm_delay:g} s per call; first message of {len(FIRST_MESSAGE)} chars")
    print()
    rows: list[tuple[str, str, str, str]] = []
    for s in scenarios:
        forms = f"{len(s.leads)} forms {'one at a time' if s.name == 'singles' else 'at once'}"
        rows.append((f"{s.name}: {forms}, wall {s.wall_s:.1f} s", "", "", ""))
        p50, p99 = pct(s.own_s, 50), pct(s.own_s, 99)
        ok = s.missing == 0 and s.refused == 0 and p50 < P50_BUDGET_S and p99 < P99_BUDGET_S
        rows.append(
            (
                "  our own delay, POST -> send-text, LLM excluded",
                quantiles(s.own_s),
                f"p50<{P50_BUDGET_S:g} p99<{P99_BUDGET_S:g}",
                ("PASS" if ok else "FAIL") if s.judged else "(info)",
            )
        )
        rows.append(("    POST -> phone-exists, LLM excluded", quantiles(s.to_check_s), "", ""))
        rows.append(("    phone-exists -> send-text", quantiles(s.check_to_send_s), "", ""))
        rows.append(("    POST /api/leads answered (202)", quantiles(s.ack_s), "", ""))
        rows.append(("  LLM time (fake model held the lead's calls)", quantiles(s.llm_s), "", ""))
        rows.append(("  + Z-API typing (delayTyping; the bot does not wait)", quantiles(s.typing_s), "", ""))
        rows.append(("  what the lead sees: own + LLM + typing", quantiles(s.felt_s), "", ""))
        rows.append((f"  first touches missing / POSTs refused: {s.missing} / {s.refused}", "", "", ""))
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'figure (seconds)':<{width}}{'p50 / p90 / p99 / max':>26}{'budget':>18}{'':>8}")
    print("-" * (width + 52))
    for figure, value, budget, verdict in rows:
        print(f"{figure:<{width}}{value:>26}{budget:>18}{verdict:>8}")
    print()
    print(
        "our own delay: from sending POST /api/leads to the fake Z-API receiving that lead's first"
        " send-text, minus the time the fake OpenAI held that lead's requests. Z-API's typing pause"
        " comes after the send-text (the provider's, from delayTyping) and is not in it. A form must skip"
        " the 3 s quiet window (web/form_intake.py: notify immediate): a delay near 3 s says it did not."
        " The unmetered burst (a second"
        " bot, ZAPI_RATE_PER_S=100000) is not judged: it shows how much of the burst is the default"
        " 20/s Z-API send meter (the anti-blocking pace; the phone-exists lookup is not metered)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--singles", type=int, default=20, help="forms posted one at a time")
    parser.add_argument("--burst", type=int, default=200, help="forms posted at once")
    parser.add_argument("--llm-delay", type=float, default=0.5, help="fake LLM latency per call, seconds")
    parser.add_argument("--timeout", type=float, default=60.0, help="how long to wait for a first touch")
    parser.add_argument("--no-unmetered", action="store_true", help="skip the unmetered burst")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (bot logs, SQLite files)")
    args = parser.parse_args()
    asyncio.run(Bench(args).run())


if __name__ == "__main__":
    main()

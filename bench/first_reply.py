"""How long does the bot itself wait before a lead's turn starts, and do bursts stay one turn?

    python bench/first_reply.py [--singles 600] [--bursts 600] [--seed 18]

Needs the dev extra (`pip install -e '.[dev]'`): it runs on the suite's virtual-time
event loop (tests/helpers/virtual_time.py). Runs in a few seconds.

The issue's goal (18, "first reply when the lead stops typing"): with presence, our own
wait before the turn starts is p50 <= 1.0 s for single messages, and >= 95 % of bursts
are still answered as one turn.

What runs: the real `runtime.scheduler.ContactScheduler` (its debounce, presence board
and quiet windows, the code the turn worker runs) with the windows of `core.settings`'s
defaults, on an asyncio loop whose clock is virtual: time jumps to the next timer when
every task waits, so a 15 s debounce costs microseconds and no result depends on this
machine's speed. Each lead is one contact; every lead's timeline is replayed at once.
The "turn" is a stub that notes when it started and how many of the lead's messages had
arrived: the model, the store and the send are not part of this wait (bench/load.py and
bench/first_touch.py measure those). The message's shape comes from the real
`runtime.quiet_window.ends_thought` on a real `InboundMessage`.

The timelines (seeded, so every run prints the same figures):
- singles: one message, then the lead waits for the answer. 45 % a punctuated sentence
  or question, 20 % a long line without punctuation, 25 % a short line without it
  ("quanto custa", "oi"), 10 % a voice note; typed at 2.5-5 characters a second;
- bursts: 2-4 short parts typed at `--burst-cps` (3-6 characters a second), usually a
  greeting first and a question last, 15 % ending in a voice note (3-10 s, uploaded in
  0.4-2 s). Between sending a part and starting the next: 0.1-0.8 s (70 %), 0.8-2 s
  (20 %), 2-4 s (10 %). 8 % of parts have a 2-6 s pause mid-typing (the phone says
  "paused" once the keyboard has been idle 2.5 s, then "typing" again). `--hard-share`
  (20 %) of bursts have a part that reads as whole before the end (a sentence with a
  full stop, or a voice note followed by text): no window can tell it from a single
  message until the phone says "typing" again;
- presence as Z-API documents it: COMPOSING/RECORDING when the lead starts, PAUSED (80 %)
  or AVAILABLE (20 %) 0-0.2 s after they stop or send; no refresh while typing. Every
  webhook (message or presence) reaches us 0.15-0.6 s after the fact, independently, so
  they can arrive out of order.

Five rows on the same timelines:
(a) before issue 18: one fixed 3 s window, no presence;
(b) adaptive window, no presence (Cloud API, Instagram, presence not configured);
(c) adaptive window with presence (Z-API, WAHA);
(b)/(c) + runs yield to late parts: what the bot does. Each run takes `--model-s`
    (1.5-4 s by default, seeded: an assumption for GPT-4o's structured answer of a few
    hundred tokens; no model is called) and then asks `ContactScheduler.more_coming`, as
    runtime/turn.py does before it commits: a part that came meanwhile (or, with
    presence, a lead typing it) makes the run yield, and the next run answers the whole
    burst. "yields" counts the model calls paid for an answer nobody reads.

"Wait" is from the moment a single message reached our webhook to the start of the turn
that answers it. A burst is "one turn" when the first answer the lead gets was made
after every part arrived; a burst whose parts span more than DEBOUNCE_MAX_S is split by
that cap in every mode and is counted apart. The goals are read on the last row. Exit
status 0 when both goals are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.models import InboundMessage, MessageKind  # noqa: E402
from core.settings import Settings  # noqa: E402
from runtime.quiet_window import ends_thought  # noqa: E402
from runtime.scheduler import ContactScheduler, ScheduleConfig  # noqa: E402
from tests.helpers.virtual_time import run_virtual  # noqa: E402
from web.configs.runtime import schedule_config  # noqa: E402

COMPLETE_TEXTS = [
    "Quanto custa o plano anual?",
    "Vocês entregam em Campinas?",
    "Quero saber mais sobre o curso.",
    "Tem disponível para pronta entrega?",
    "Olá! Tenho interesse e queria mais informações.",
    "Qual o prazo de instalação?",
    "Gostaria de um orçamento para 20 pessoas.",
    "Aceitam cartão?",
]
LONG_TEXTS = [
    "boa tarde vi o anuncio de voces no instagram e queria saber como funciona o plano",
    "oi tudo bem eu queria saber se voces atendem empresa pequena com uns dez funcionarios",
    "queria entender a diferença entre o plano basico e o completo antes de fechar com voces",
]
SHORT_TEXTS = ["quanto custa", "oi", "tem em estoque", "bom dia", "qual o valor", "quero saber o preço"]
OPENERS = ["oi", "Oi!", "boa tarde", "Olá", "bom dia", "então", "oi, tudo bem?"]
# First parts that read as whole sentences: only presence tells that more is coming.
STATEMENTS = [
    "Vi o anúncio de vocês.",
    "Tenho interesse no plano.",
    "Sou da Padaria Sol.",
    "Moro em Campinas.",
]
MIDDLES = ["vi o anúncio", "tenho uma loja", "somos em 12,", "queria saber"]
QUESTIONS = ["quanto custa?", "Qual o valor?", "atendem em BH?", "tem desconto?", "como funciona?"]


TODAY_S = 3.0


@dataclass(frozen=True)
class Event:
    at: float  # when it reaches our webhook
    presence: str | None = None  # or a message:
    message: InboundMessage | None = None


@dataclass
class Lead:
    key: str
    kind: str  # "single", "burst" (fragments, then the point) or "burst*" (a whole-looking part mid-burst)
    events: list[Event] = field(default_factory=list)

    @property
    def messages(self) -> list[Event]:
        return [e for e in self.events if e.message is not None]


def _text(rng: random.Random, n: int, text: str) -> InboundMessage:
    return InboundMessage(
        channel="zapi",
        contact_id=str(n),
        provider_message_id=f"m{n}-{rng.random()}",
        kind=MessageKind.TEXT,
        text=text,
    )


def _voice(rng: random.Random, n: int) -> InboundMessage:
    return InboundMessage(
        channel="zapi",
        contact_id=str(n),
        provider_message_id=f"m{n}-{rng.random()}",
        kind=MessageKind.AUDIO,
        media_url="https://x/a.ogg",
    )


class Writer:
    """One lead's phone: what they do, and when each webhook reaches us."""

    def __init__(self, rng: random.Random, lead: Lead, n: int) -> None:
        self.rng, self.lead, self.n = rng, lead, n
        self.now = 0.0

    def _reach(self, at: float, presence: str | None = None, message: InboundMessage | None = None) -> None:
        self.lead.events.append(Event(at + self.rng.uniform(0.15, 0.6), presence, message))

    def _stop(self, after: float = 0.0) -> None:
        at = self.now + after + self.rng.uniform(0.0, 0.2)
        self._reach(at, "paused" if self.rng.random() < 0.8 else "online")

    def type_and_send(self, text: str, cps: tuple[float, float] = (2.5, 5.0)) -> None:
        self._reach(self.now, "typing")
        typing_s = len(text) / self.rng.uniform(*cps)
        if self.rng.random() < 0.08:  # a pause mid-typing (2-6 s)
            half = typing_s / 2
            self.now += half
            pause = self.rng.uniform(2.0, 6.0)
            if pause > 2.5:  # the phone says "paused" once the keyboard is idle for a while
                self._stop(after=2.5)
                self._reach(self.now + pause, "typing")
            self.now += pause
            typing_s = half
        self.now += typing_s
        self._reach(self.now, message=_text(self.rng, self.n, text))
        self._stop()

    def record_and_send(self, seconds: tuple[float, float] = (4.0, 20.0)) -> None:
        self._reach(self.now, "recording")
        self.now += self.rng.uniform(*seconds)
        self._stop()
        upload = self.rng.uniform(0.4, 2.0)
        self._reach(self.now + upload, message=_voice(self.rng, self.n))
        self.now += upload

    def think(self) -> None:
        """Between sending one part and starting the next: mostly at once, sometimes
        a look at something else."""
        roll = self.rng.random()
        low, high = (0.1, 0.8) if roll < 0.7 else (0.8, 2.0) if roll < 0.9 else (2.0, 4.0)
        self.now += self.rng.uniform(low, high)


def single(rng: random.Random, n: int) -> Lead:
    lead = Lead(f"zapi:single-{n}", "single")
    writer = Writer(rng, lead, n)
    roll = rng.random()
    if roll < 0.10:
        writer.record_and_send()
    else:
        pool = COMPLETE_TEXTS if roll < 0.55 else LONG_TEXTS if roll < 0.75 else SHORT_TEXTS
        writer.type_and_send(rng.choice(pool))
    return lead


def burst(rng: random.Random, n: int, hard_share: float, cps: tuple[float, float]) -> Lead:
    """2-4 parts. Most bursts are fragments until the point ("oi" / "vi o anúncio" /
    "quanto custa?", or a voice note last); a `hard_share` of them has a part that reads
    as whole before the end ("Vi o anúncio de vocês." / "quanto custa?", or a voice note
    followed by text), which no window can tell from a single message until the phone
    says "typing" again."""
    hard = rng.random() < hard_share
    lead = Lead(f"zapi:burst-{n}", "burst*" if hard else "burst")
    writer = Writer(rng, lead, n)
    parts = rng.randint(2, 4)
    texts = [rng.choice(OPENERS)] + [rng.choice(MIDDLES) for _ in range(parts - 2)] + [rng.choice(QUESTIONS)]
    voice_at = parts - 1 if rng.random() < 0.15 else None
    if hard:
        whole_at = rng.randrange(0, parts - 1)
        if rng.random() < 0.3:
            voice_at = whole_at
        else:
            texts[whole_at] = rng.choice(STATEMENTS)
    for i, text in enumerate(texts):
        if i:
            writer.think()
        if i == voice_at:
            writer.record_and_send((3.0, 10.0))
        else:
            writer.type_and_send(text, cps=cps)
    return lead


@dataclass
class Outcome:
    waits: list[float] = field(default_factory=list)  # singles: message reached us -> turn
    # Per burst kind: [answered as one turn, bursts], counting only bursts whose parts
    # all came within DEBOUNCE_MAX_S (longer ones are split by the cap in every mode).
    bursts: dict[str, list[int]] = field(default_factory=lambda: {"burst": [0, 0], "burst*": [0, 0]})
    over_cap: int = 0
    yields: int = 0  # runs that yielded to a late part (a model call paid for nothing)

    def one_turn(self, *kinds: str) -> float:
        whole = sum(self.bursts[k][0] for k in kinds)
        return 100.0 * whole / max(1, sum(self.bursts[k][1] for k in kinds))


def replay(
    leads: list[Lead],
    config: ScheduleConfig,
    *,
    presence: bool,
    hints: bool,
    model_s: tuple[float, float] | None = None,
    seed: int = 0,
) -> Outcome:
    """Every lead's timeline through one ContactScheduler on virtual time. With
    `model_s`, each run takes that long (the model call, seeded) and then asks the
    scheduler whether more is coming, as runtime/turn.py does before it commits: a run
    that yields commits nothing and the next one answers the whole burst."""
    rng = random.Random(seed)

    async def main() -> Outcome:
        loop = asyncio.get_running_loop()
        start = loop.time()
        arrived: dict[str, list[float]] = {lead.key: [] for lead in leads}
        first_run: dict[str, tuple[float, int]] = {}
        yields: list[int] = [0]

        async def run(key: str) -> bool:
            scheduler.reading(key)  # as runtime/turn.py does before it reads the burst
            began, seen = loop.time() - start, len(arrived[key])
            if model_s is not None:
                await asyncio.sleep(rng.uniform(*model_s))
                if await scheduler.more_coming(key):
                    yields[0] += 1
                    return True
            first_run.setdefault(key, (began, seen))
            return True

        scheduler = ContactScheduler(run, store=_NoStore(), config=config, owner="bench", shared=False)  # type: ignore[arg-type]

        async def drive(lead: Lead) -> None:
            for event in sorted(lead.events, key=lambda e: e.at):
                await asyncio.sleep(start + event.at - loop.time())
                if event.message is None:
                    if presence and event.presence is not None:
                        scheduler.presence(lead.key, event.presence)
                    continue
                arrived[lead.key].append(loop.time() - start)
                scheduler.notify(lead.key, complete=ends_thought(event.message) if hints else None)

        await asyncio.gather(*(drive(lead) for lead in leads))
        await asyncio.sleep(0)
        await scheduler.idle.wait()
        await scheduler.close()
        out = _outcome(leads, arrived, first_run, config.max_wait_s)
        out.yields = yields[0]
        return out

    return run_virtual(main())


def _outcome(
    leads: list[Lead], arrived: dict[str, list[float]], first_run: dict[str, tuple[float, int]], cap: float
) -> Outcome:
    out = Outcome()
    for lead in leads:
        at, seen = first_run[lead.key]
        times = arrived[lead.key]
        if lead.kind == "single":
            out.waits.append(at - times[0])
        elif times[-1] - times[0] > cap:
            out.over_cap += 1
        else:
            out.bursts[lead.kind][0] += seen == len(times)
            out.bursts[lead.kind][1] += 1
    return out


class _NoStore:
    """One process, the embedded store's case: no leases, nothing pending."""

    async def pending_contacts(self) -> list[str]:
        return []


def pct(values: Iterable[float], q: float) -> float:
    data = sorted(values)
    if len(data) < 2:
        return data[0] if data else float("nan")
    return statistics.quantiles(data, n=100, method="inclusive")[int(q) - 1]


def configs(settings: Settings, leads: int) -> list[tuple[str, ScheduleConfig, bool, bool]]:
    """The three modes: (name, config, presence delivered, message shape known)."""
    # The bot's own config from the same settings: the bench measures what ships.
    adaptive = replace(schedule_config(settings), max_concurrent=leads)
    # Today: one fixed window of 3 s (DEBOUNCE_QUIET_S's default before issue 18).
    fixed = replace(adaptive, quiet_s=TODAY_S, complete_s=None, presence_s=None)
    return [
        (f"(a) fixed {TODAY_S:g} s window (before)", fixed, False, False),
        ("(b) adaptive window, no presence", adaptive, False, True),
        ("(c) adaptive window + presence", adaptive, True, True),
    ]


def report(leads: list[Lead], settings: Settings, model_s: tuple[float, float], seed: int) -> Outcome:
    """One table, every mode on the same timelines; returns the last row's (what ships
    with presence)."""
    print(
        f"{'mode':36} {'singles p50':>11} {'p95':>6} {'bursts one turn':>15} "
        f"{'fragments':>10} {'whole part mid-burst':>21} {'yields':>6}"
    )
    out = Outcome()
    modes = configs(settings, len(leads))
    runs = [(name, config, presence, hints, None) for name, config, presence, hints in modes]
    for name, config, presence, hints in modes[1:]:
        runs.append((f"{name[:3]} + runs yield to late parts", config, presence, hints, model_s))
    for name, config, presence, hints, model in runs:
        out = replay(leads, config, presence=presence, hints=hints, model_s=model, seed=seed)
        print(
            f"{name:36} {pct(out.waits, 50):>9.2f} s {pct(out.waits, 95):>5.2f} "
            f"{out.one_turn('burst', 'burst*'):>13.1f} % {out.one_turn('burst'):>8.1f} % "
            f"{out.one_turn('burst*'):>19.1f} % {out.yields:>6}"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--singles", type=int, default=600)
    parser.add_argument("--bursts", type=int, default=600)
    parser.add_argument(
        "--hard-share", type=float, default=0.2, help="bursts with a whole-looking part mid-burst"
    )
    parser.add_argument(
        "--burst-cps",
        type=float,
        nargs=2,
        default=(3.0, 6.0),
        help="typing speed of a burst's parts (chars/s)",
    )
    parser.add_argument(
        "--model-s",
        type=float,
        nargs=2,
        default=(1.5, 4.0),
        help="how long a run's model call takes (s), for the runs that yield to late parts",
    )
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    leads = [single(rng, n) for n in range(args.singles)]
    leads += [burst(rng, n, args.hard_share, tuple(args.burst_cps)) for n in range(args.bursts)]
    settings = Settings(_env_file=None)
    bursts = [sorted(e.at for e in lead.messages) for lead in leads if lead.kind != "single"]
    gaps = [b - a for times in bursts for a, b in zip(times, times[1:], strict=False)]
    print(
        f"first reply: our wait before the turn starts; {args.singles} singles, {args.bursts} bursts "
        f"({args.hard_share:.0%} with a whole-looking part mid-burst, parts typed at "
        f"{args.burst_cps[0]:g}-{args.burst_cps[1]:g} chars/s), seed {args.seed}\n"
        f"DEBOUNCE_QUIET_S={settings.debounce_quiet_s:g} DEBOUNCE_COMPLETE_S={settings.debounce_complete_s:g} "
        f"DEBOUNCE_PRESENCE_S={settings.debounce_presence_s:g} DEBOUNCE_TYPING_S={settings.debounce_typing_s:g} "
        f"DEBOUNCE_MAX_S={settings.debounce_max_s:g}; gap between a burst's parts p50 {pct(gaps, 50):.1f} s, "
        f"p90 {pct(gaps, 90):.1f} s"
    )
    out = report(leads, settings, tuple(args.model_s), args.seed)
    print(
        f"bursts spanning more than DEBOUNCE_MAX_S (split by the cap in every mode, not counted): {out.over_cap}"
    )
    p50_ok = pct(out.waits, 50) <= 1.0
    bursts_ok = out.one_turn("burst", "burst*") >= 95.0
    print(
        f"goals with presence: singles p50 <= 1.0 s {'MET' if p50_ok else 'MISSED'}; "
        f">= 95 % bursts one turn {'MET' if bursts_ok else 'MISSED'}"
    )
    return 0 if p50_ok and bursts_ok else 1


if __name__ == "__main__":
    sys.exit(main())

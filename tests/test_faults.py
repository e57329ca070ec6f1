"""Faults: providers failing for a while, the LLM slow or broken, the store locked, the
process killed at random points of its turns. Whatever happens, every message a lead
sends is answered exactly once, in the order the lead wrote.

The bot talks to a real loopback fake of OpenAI, Z-API, Chatwoot and the Meta
Conversions API (tests/helpers/provider_server.py), so timeouts are real timeouts: a
provider "hanging for 25 s" is cut by the bot's own client timeout, shrunk through
settings so each test takes seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from agent.prompts import load_prompt_bundle
from runtime import policies
from tests.conftest import zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import eventually
from tests.helpers.loopback import db_rows, loopback_settings
from tests.helpers.provider_server import Fault, ProviderServer
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import STORE

TAG = re.compile(r"\[L\d+-M\d+\]")


def phone(lead: int) -> str:
    return f"551198765{lead:04d}"


def tag(lead: int, n: int) -> str:
    return f"[L{lead}-M{n}]"


def text_for(lead: int, n: int) -> str:
    return f"Oi, aqui é o lead {lead}, mensagem {n} {tag(lead, n)}"


def lead_payload(lead: int, n: int) -> dict[str, Any]:
    return zapi_message(message_id=f"3EB0F{lead:03d}{n:012d}", phone=phone(lead), text=text_for(lead, n))


def messages_to(provider: ProviderServer, lead: int) -> list[str]:
    return [s["message"] for s in provider.state.sent if s["phone"] == phone(lead)]


def tags_to(provider: ProviderServer, lead: int) -> list[str]:
    return [t for message in messages_to(provider, lead) for t in TAG.findall(message)]


def expected_tags(wrote: dict[int, list[int]]) -> dict[int, list[str]]:
    return {lead: [tag(lead, n) for n in ns] for lead, ns in wrote.items()}


def received_tags(provider: ProviderServer, wrote: dict[int, list[int]]) -> dict[int, list[str]]:
    return {lead: tags_to(provider, lead) for lead in wrote}


async def settle(client: TestClient, timeout: float) -> str | None:
    """Wait for the settled bot (no turn, nothing pending or in flight): after it nothing
    more can arrive, so what the leads received is final. None, or why it never settled
    (the caller first compares what arrived, which says more)."""
    try:
        await settled(client, timeout=timeout)
    except AssertionError as exc:
        return str(exc)
    return None


async def all_answered(
    client: TestClient, provider: ProviderServer, wrote: dict[int, list[int]], timeout: float = 20
) -> None:
    unsettled = await settle(client, timeout)
    assert received_tags(provider, wrote) == expected_tags(wrote)
    assert unsettled is None, unsettled


@pytest.fixture(autouse=True)
def quick_breakers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Circuit breakers (if a route has one) half-open after 0.2 s instead of 30-60 s:
    the clocks shrink, the behaviour does not."""
    table = {
        name: dataclasses.replace(spec, reset_timeout_s=min(spec.reset_timeout_s, 0.2))
        for name, spec in policies.INTEGRATIONS.items()
    }
    monkeypatch.setattr(policies, "INTEGRATIONS", MappingProxyType(table))


@pytest.fixture
async def provider() -> ProviderServer:
    server = ProviderServer()
    await server.start()
    yield server
    await server.stop()


StartBot = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def start_bot(
    provider: ProviderServer, aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> StartBot:
    """A bot in this process on `tmp_path`'s database, on the test's business clock (a
    weekday inside opening hours); call it again for a restart."""

    async def start(**overrides: Any) -> TestClient:
        return await aiohttp_client(
            create_app(loopback_settings(tmp_path, provider, **overrides), clock=clock)
        )

    return start


async def write(client: TestClient, lead: int, n: int) -> int:
    response = await client.post("/webhooks/zapi", json=lead_payload(lead, n))
    return response.status


async def conversation(client: TestClient, wrote: dict[int, list[int]], rounds: int, gap_s: float) -> None:
    """Each lead writes `rounds` messages, `gap_s` apart (separate turns, unless a turn
    is retrying when the next one arrives: then one answer covers both)."""
    for n in range(1, rounds + 1):
        for lead in range(1, 4):
            assert await write(client, lead, n) == 200
            wrote.setdefault(lead, []).append(n)
        await asyncio.sleep(gap_s)


# --- providers failing for a while ------------------------------------------------------


async def test_transient_500_429_and_timeouts_from_every_provider_are_invisible_to_the_leads(
    provider: ProviderServer, start_bot: StartBot
) -> None:
    """OpenAI and Z-API answer 500, 429 with Retry-After, or hang for 25 s (cut by the
    client timeout) on a handful of calls: within the retry budget, so nobody notices."""
    provider.state.chat_faults = deque(
        [
            Fault(500),
            Fault(429, retry_after="1"),
            Fault(200, hang_s=25),
            Fault(502),
            Fault(429, retry_after="2"),
            Fault(500, hang_s=25),
        ]
    )
    provider.state.send_faults = deque(
        [
            Fault(500),
            Fault(429, retry_after="1"),
            Fault(500, hang_s=25),
            Fault(503),
            Fault(429, retry_after="1"),
        ]
    )
    client = await start_bot(outbox_max_attempts=6)  # more attempts than there are faults
    wrote: dict[int, list[int]] = {}
    await conversation(client, wrote, rounds=3, gap_s=0.3)
    await all_answered(client, provider, wrote)
    assert not provider.state.chat_faults and not provider.state.send_faults  # every fault was hit


async def test_an_outage_longer_than_the_retry_budget_still_answers_every_message_once_in_order(
    provider: ProviderServer, start_bot: StartBot
) -> None:
    """Z-API is down (500 / 429 / hanging) for 1.5 s and OpenAI for 0.8 s, while every
    reply's own retry budget (3 attempts, backoff <= 50 ms here; ~6 s in production) runs
    out in about 0.1 s. An outage is nobody's fault: when the providers are back, every
    lead gets every answer, once, in order; no reply is left as a dead letter."""
    now = asyncio.get_running_loop().time()
    provider.state.send_down_until = now + 1.5
    provider.state.send_outage = [Fault(500), Fault(429, retry_after="1"), Fault(503, hang_s=25)]
    provider.state.chat_down_until = now + 0.8
    provider.state.chat_outage = [Fault(500), Fault(429, retry_after="1"), Fault(200, hang_s=25)]
    client = await start_bot()
    wrote: dict[int, list[int]] = {}
    await conversation(client, wrote, rounds=3, gap_s=0.5)  # written during the outage
    await asyncio.sleep(0.6)
    for lead in range(1, 4):  # and one more once the providers are back
        assert await write(client, lead, 4) == 200
        wrote[lead].append(4)
    unsettled = await settle(client, timeout=20)
    dead = db_rows(
        client.app[STORE].path, "SELECT kind, attempts, last_error FROM outbox WHERE status = 'dead'"
    )  # type: ignore[attr-defined]
    assert (received_tags(provider, wrote), dead) == (expected_tags(wrote), [])
    assert unsettled is None, unsettled


# --- the LLM slow and failing ---------------------------------------------------------


async def test_a_slow_then_failing_llm_still_answers_each_message_once(
    provider: ProviderServer, start_bot: StartBot
) -> None:
    """The model takes 25 s (the bot gives up at OPENAI_TIMEOUT_S), answers too late for
    a caller who already gave up, fails with 500 and 429: the turn waits and retries,
    the lead gets one answer per message, and the late answers are never sent."""
    provider.state.chat_faults = deque(
        [
            Fault(200, hang_s=25),  # the slow model: cut by the client timeout
            Fault(200, hang_s=1.0),  # answers 1 s later, to a caller that left at 0.3 s
            Fault(500),
            Fault(429, retry_after="1"),
            Fault(200, hang_s=1.0),
        ]
    )
    client = await start_bot(openai_max_attempts=3)
    assert await write(client, 1, 1) == 200
    await asyncio.sleep(0.5)  # the lead insists while the model is still failing
    assert await write(client, 1, 2) == 200
    wrote = {1: [1, 2]}
    await all_answered(client, provider, wrote)
    # Let the late answers arrive (the 1 s hangs; only the 25 s one is still open), and
    # the bot settle again: still nothing more for the lead.
    await eventually(lambda: provider.state.chat_finished >= provider.state.chat_started - 1, timeout=5)
    await settled(client)
    assert received_tags(provider, wrote) == expected_tags(wrote)
    assert all(TAG.search(m) for m in messages_to(provider, 1)), messages_to(provider, 1)


async def test_an_llm_that_keeps_failing_gets_the_fixed_apology_once_and_then_recovers(
    provider: ProviderServer, start_bot: StartBot
) -> None:
    """Slow first, then malformed output on every call: after TURN_MAX_FAILURES the lead
    gets the fixed apology, once, and the model is not called again for that message;
    when the model is back, the next message gets a real answer."""
    apology = load_prompt_bundle().turn_failed_reply
    provider.state.chat_faults = deque([Fault(200, hang_s=25)])
    provider.state.raw_chat_content = '{"reply": "Olá! Sou da Seleto'  # cut mid-JSON
    client = await start_bot()
    assert await write(client, 1, 1) == 200
    await settled(client, timeout=15)  # settled: the message is given up on, not retried forever
    assert messages_to(provider, 1) == [apology]
    calls = provider.state.chat_started

    provider.state.raw_chat_content = None
    assert await write(client, 1, 2) == 200
    await settled(client)
    assert messages_to(provider, 1) == [apology, f"Resposta para: {text_for(1, 2)}"]
    assert provider.state.chat_started == calls + 1  # the new message only: the first is not thought again


# --- the store locked -------------------------------------------------------------------


async def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another connection (a backup, an operator's sqlite3 shell, a CLI command) takes
    the database's write lock with BEGIN EXCLUSIVE and keeps it for `seconds`."""
    held = threading.Event()

    def run() -> None:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            held.set()
            time.sleep(seconds)
            conn.execute("COMMIT")
        finally:
            conn.close()

    thread = threading.Thread(target=run, name="store-lock", daemon=True)
    thread.start()
    assert await asyncio.to_thread(held.wait, 10)
    return thread


def inbound_count(client: TestClient) -> int:
    return db_rows(client.app[STORE].path, "SELECT COUNT(*) FROM inbound")[0][0]  # type: ignore[attr-defined]


async def post_until_accepted(client: TestClient, lead: int, n: int, *, timeout: float = 10) -> list[int]:
    """What a provider does with a 503: the same delivery again a little later."""
    statuses: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses.append(await write(client, lead, n))
        if statuses[-1] == 200:
            return statuses
        assert statuses[-1] == 503, statuses
        await asyncio.sleep(0.1)
    raise AssertionError(f"never accepted: {statuses}")


async def test_a_short_lock_only_delays_webhooks_and_every_message_is_answered_once(
    provider: ProviderServer, start_bot: StartBot
) -> None:
    """A lock shorter than SQLite's busy timeout: webhooks wait for it (or get a 503 the
    provider retries); nothing is lost and nobody is answered twice."""
    client = await start_bot()
    assert await write(client, 1, 1) == 200
    await settled(client)
    assert tags_to(provider, 1) == [tag(1, 1)]
    path = client.app[STORE].path  # type: ignore[attr-defined]

    lock = await hold_write_lock(path, 1.0)
    statuses = await asyncio.gather(*(write(client, lead, 2) for lead in (1, 2, 3)))
    await asyncio.to_thread(lock.join)
    assert set(statuses) <= {200, 503}, statuses
    for lead, status in zip((1, 2, 3), statuses, strict=True):
        if status == 503:
            await post_until_accepted(client, lead, 2)
    await all_answered(client, provider, {1: [1, 2], 2: [2], 3: [2]})


async def test_a_locked_store_never_freezes_the_bot(provider: ProviderServer, start_bot: StartBot) -> None:
    """With the production busy timeout, while another process holds the write lock
    for 3 s: a request that needs no store is answered at once, and a webhook gets its
    answer (stored, or 503 for the provider to retry) well within a provider's patience,
    not when the lock happens to go away."""
    client = await start_bot()
    path = client.app[STORE].path  # type: ignore[attr-defined]
    lock = await hold_write_lock(path, 3.0)
    started = time.monotonic()

    async def timed(request: Awaitable[aiohttp.ClientResponse]) -> tuple[int, float]:
        response = await request
        return response.status, round(time.monotonic() - started, 2)

    webhook, root = await asyncio.gather(
        timed(client.post("/webhooks/zapi", json=lead_payload(1, 1))), timed(client.get("/"))
    )
    await asyncio.to_thread(lock.join)
    assert root[0] == 200 and root[1] < 1.0, f"GET / took {root[1]} s while the store was locked"
    assert webhook[0] in (200, 503) and webhook[1] < 1.5, f"the webhook got {webhook[0]} after {webhook[1]} s"
    if webhook[0] == 503:
        await post_until_accepted(client, 1, 1)
    await all_answered(client, provider, {1: [1]})


async def test_a_long_lock_gets_503s_stores_nothing_and_everything_is_answered_once_after_it(
    provider: ProviderServer, start_bot: StartBot
) -> None:
    """A lock longer than the busy timeout (5 s in production, 100 ms here): webhooks get
    503 so the provider retries, nothing is half-stored, and a turn that could not
    commit meanwhile commits after the lock, once."""
    provider.state.chat_faults = deque([Fault(200, hang_s=0.3)])  # lead 1's turn commits inside the lock
    client = await start_bot(openai_timeout_s=2.0)
    client.app[STORE].db.execute("PRAGMA busy_timeout=100")  # type: ignore[attr-defined]
    path = client.app[STORE].path  # type: ignore[attr-defined]

    assert await write(client, 1, 1) == 200
    await eventually(lambda: provider.state.chat_started >= 1, timeout=5)  # lead 1's turn is thinking
    lock = await hold_write_lock(path, 1.2)
    before = inbound_count(client)
    refused = await asyncio.gather(write(client, 2, 1), write(client, 3, 1))
    assert refused == [503, 503]
    assert inbound_count(client) == before  # a 503 stored nothing
    await asyncio.to_thread(lock.join)

    for lead in (2, 3):
        await post_until_accepted(client, lead, 1)
    await all_answered(client, provider, {1: [1], 2: [1], 3: [1]})


async def test_a_lock_taken_while_a_reply_is_on_the_wire_neither_blocks_nor_repeats_replies(
    provider: ProviderServer, start_bot: StartBot
) -> None:
    """Z-API takes 0.6 s to accept a reply; meanwhile the database is locked for 1 s, so
    the bot cannot record that the reply went out. After the lock the lead writes again:
    that answer must arrive, and a later restart must not send the first reply again."""
    provider.state.send_faults = deque([Fault(200, hang_s=0.6)])  # slow, then accepted
    client = await start_bot(http_timeout_s=2.0)
    client.app[STORE].db.execute("PRAGMA busy_timeout=100")  # type: ignore[attr-defined]
    path = client.app[STORE].path  # type: ignore[attr-defined]

    assert await write(client, 1, 1) == 200
    await eventually(lambda: provider.state.send_started >= 1, timeout=5)  # the reply is on the wire
    lock = await hold_write_lock(path, 1.0)
    await asyncio.to_thread(lock.join)
    assert tags_to(provider, 1) == [tag(1, 1)]

    assert await post_until_accepted(client, 1, 2)
    unsettled = await settle(client, timeout=5)
    second_before_restart = len(tags_to(provider, 1)) >= 2
    outbox_before_restart = db_rows(path, "SELECT id, status, attempts FROM outbox ORDER BY id")
    await client.close()

    restarted = await start_bot(http_timeout_s=2.0)  # the next deploy, on the same database
    unsettled_after = await settle(restarted, timeout=5)
    received = tags_to(provider, 1)
    assert (second_before_restart, received) == (True, [tag(1, 1), tag(1, 2)]), (
        f"second answer delivered before the restart: {second_before_restart}; the lead received "
        f"{received} in all; outbox (id, status, attempts) before the restart: {outbox_before_restart}; "
        f"before the restart: {unsettled or 'settled'}"
    )
    assert (unsettled, unsettled_after) == (None, None)

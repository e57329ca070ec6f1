"""Crash and restart: a killed bot loses no message and never answers one twice.

The bot runs as a real process against a loopback fake of OpenAI and Z-API and is
killed with SIGKILL at chosen points of a turn; a new process on the same database
must finish the work exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import zapi_message
from tests.helpers.bot_process import BotProcess
from tests.helpers.fakes import eventually
from tests.helpers.provider_server import ProviderServer


@pytest.fixture
async def provider() -> ProviderServer:
    server = ProviderServer()
    await server.start()
    yield server
    if server.state.llm_hang:
        server.state.llm_hang.set()
    if server.state.send_hang:
        server.state.send_hang.set()
    await server.stop()


async def deliver(bot: BotProcess, payload: dict) -> None:
    async with aiohttp.ClientSession() as session, session.post(bot.zapi_webhook, json=payload) as response:
        assert response.status == 200


def answered(provider: ProviderServer) -> Counter[str]:
    """Every text the provider took, with how many times: an exact, hour-free picture
    (these replies never carry a hand-off, so business hours cannot add a message)."""
    return Counter(s["message"] for s in provider.state.sent)


async def test_sigkill_while_the_llm_is_thinking_then_restart_answers_exactly_once(
    tmp_path: Path, provider: ProviderServer
) -> None:
    db = tmp_path / "bot.sqlite3"
    provider.state.llm_hang = asyncio.Event()
    first = BotProcess(sqlite_path=db, provider_url=provider.url, log_path=tmp_path / "bot1.log")
    await first.start()
    try:
        await deliver(first, zapi_message(message_id="3EB0CRASH0000001", text="Oi, tudo bem?"))
        await eventually(lambda: provider.state.chat_started >= 1, timeout=10)  # the model is thinking
    finally:
        first.kill()
    assert provider.state.sent == []

    provider.state.llm_hang.set()
    second = BotProcess(sqlite_path=db, provider_url=provider.url, log_path=tmp_path / "bot2.log")
    await second.start()
    try:
        await second.settled(timeout=20)
    finally:
        second.terminate()
    assert answered(provider) == Counter({"Resposta para: Oi, tudo bem?": 1})
    assert outbox(db) == [("done", 1)]


def replied_to(provider: ProviderServer) -> set[str]:
    """The lead texts the provider has a reply to."""
    return {m.removeprefix("Resposta para: ") for m in answered(provider)}


def outbox(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status, attempts FROM outbox ORDER BY id").fetchall()


async def test_sigkill_after_commit_before_delivery_then_restart_delivers_once(
    tmp_path: Path, provider: ProviderServer
) -> None:
    db = tmp_path / "bot.sqlite3"
    provider.state.send_fail_first = 1  # first send fails; the retry is scheduled seconds later
    first = BotProcess(
        sqlite_path=db, provider_url=provider.url, log_path=tmp_path / "bot1.log", OUTBOX_BACKOFF_BASE_S="3"
    )
    await first.start()
    try:
        await deliver(first, zapi_message(message_id="3EB0CRASH0000002", text="Quero a FB300"))
        await eventually(lambda: outbox(db) == [("pending", 1)], timeout=10)
    finally:
        first.kill()
    assert provider.state.sent == []
    assert provider.state.chat_calls == 1

    second = BotProcess(sqlite_path=db, provider_url=provider.url, log_path=tmp_path / "bot2.log")
    await second.start()
    try:
        await second.settled(timeout=20)  # the retry is due ~3 s after the first failure
    finally:
        second.terminate()
    assert answered(provider) == Counter({"Resposta para: Quero a FB300": 1})
    assert provider.state.chat_calls == 1  # the committed turn was not thought again
    assert outbox(db) == [("done", 2)]


async def test_sigkill_while_a_send_is_on_the_wire_still_delivers_after_restart(
    tmp_path: Path, provider: ProviderServer
) -> None:
    """The one window no sender can close without an idempotent provider API: the
    provider may have taken the request when the process died. We resend (a reply
    is never lost); Z-API offers no idempotency key to make that visibly once."""
    db = tmp_path / "bot.sqlite3"
    provider.state.send_hang = asyncio.Event()
    first = BotProcess(sqlite_path=db, provider_url=provider.url, log_path=tmp_path / "bot1.log")
    await first.start()
    try:
        await deliver(first, zapi_message(message_id="3EB0CRASH0000003", text="Vocês atendem Curitiba?"))
        await eventually(lambda: provider.state.send_started >= 1, timeout=10)  # the reply is on the wire
    finally:
        first.kill()
    assert outbox(db) == [("inflight", 1)]
    provider.state.send_hang.set()

    second = BotProcess(sqlite_path=db, provider_url=provider.url, log_path=tmp_path / "bot2.log")
    await second.start()
    try:
        await second.settled(timeout=20)
    finally:
        second.terminate()
    assert outbox(db) == [("done", 2)]
    assert provider.state.chat_calls == 1
    # Resent once, never lost: the provider has it once, or twice when the killed
    # request reached it too (the documented window), and nothing else.
    [(text, times)] = answered(provider).items()
    assert text == "Resposta para: Vocês atendem Curitiba?" and times in (1, 2), answered(provider)


# Several real bot processes in a row: a bound on a hang, not a timing (see pyproject's 180 s).
@pytest.mark.timeout(360)
async def test_leads_across_repeated_sigkills_are_each_answered_exactly_once(
    tmp_path: Path, provider: ProviderServer
) -> None:
    """Each round: some leads' turns finish and are delivered, the others are killed
    mid-thought; the final start must answer the rest, and nobody twice."""
    db = tmp_path / "bot.sqlite3"
    provider.state.llm_hang = asyncio.Event()
    provider.state.llm_hang_texts = set()
    wrote: list[str] = []
    for round_ in range(3):
        bot = BotProcess(sqlite_path=db, provider_url=provider.url, log_path=tmp_path / f"bot{round_}.log")
        await bot.start()
        try:
            for n in range(4):
                text = f"rodada {round_} lead {n}"
                if n % 2 == round_ % 2:
                    provider.state.llm_hang_texts.add(text)
                phone = f"55119{round_:02d}{n:06d}"
                await deliver(bot, zapi_message(message_id=f"3EB0R{round_}L{n:010d}", phone=phone, text=text))
                wrote.append(text)
            # The turns that can finish have finished: each of their replies is at the
            # provider and marked done, so the kill below cuts off no send. A state (it
            # cannot be overshot); the exact counts are checked right after.
            free = [t for t in wrote if t not in provider.state.llm_hang_texts]
            await eventually(
                lambda free=free: (
                    set(free) <= replied_to(provider) and not [s for s, _ in outbox(db) if s != "done"]
                ),
                timeout=15,
            )
        finally:
            bot.kill()
        assert answered(provider) == Counter({f"Resposta para: {t}": 1 for t in free})
        assert outbox(db) == [("done", 1)] * len(free)

    provider.state.llm_hang.set()
    final = BotProcess(sqlite_path=db, provider_url=provider.url, log_path=tmp_path / "final.log")
    await final.start()
    try:
        await final.settled(timeout=20)
    finally:
        assert final.terminate() == 0
    assert len(wrote) == 12
    assert answered(provider) == Counter({f"Resposta para: {t}": 1 for t in wrote})

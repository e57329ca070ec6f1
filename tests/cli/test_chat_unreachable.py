"""`python main.py chat` when the model cannot answer: one English line saying why (a
refused connection, a timeout, a bad key, a busy or broken provider), a bounded wait,
and `/sair`, `/quit` or Ctrl-D always ending chat, even mid-retry."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import pytest
from aioresponses import CallbackResult, aioresponses

from cli import chat, model_failure
from core.settings import Settings
from tests.conftest import fast_settings
from tests.helpers.fakes import FakeOpenAI, load_fixture

OPENAI = "https://api.openai.com/v1"
# OpenAI's documented body for a wrong key ("401 - Invalid Authentication: Incorrect API
# key provided"), https://platform.openai.com/docs/guides/error-codes
INVALID_KEY_401 = {
    "_source": "https://platform.openai.com/docs/guides/error-codes (401 - Incorrect API key provided)",
    "error": {
        "message": "Incorrect API key provided: sk-test-****b1a0. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    },
}
# Long enough that only the operator (or a failure that cannot pass) ends the wait.
NEVER_S = 3600.0
REQUEST = httpx.Request("POST", f"{OPENAI}/chat/completions")


def script(*lines: str) -> io.StringIO:
    return io.StringIO("".join(f"{line}\n" for line in lines))


def closed_port_url() -> str:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def inbound_statuses(settings: Settings) -> list[tuple[Any, ...]]:
    with sqlite3.connect(settings.sqlite_path) as db:
        return db.execute("SELECT status FROM inbound").fetchall()


async def test_start_names_the_model_endpoint(tmp_path: Path, openai_fake: FakeOpenAI) -> None:
    out = io.StringIO()
    settings = fast_settings(tmp_path, openai_model="gpt-4o-mini")
    assert await chat.run_chat(settings, stdin=script("/sair"), stdout=out) == 0
    assert "Model: gpt-4o-mini at https://api.openai.com/v1 (OPENAI_MODEL, OPENAI_BASE_URL)" in out.getvalue()


async def test_without_a_key_it_names_the_endpoint_and_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = fast_settings(tmp_path, openai_api_key=None, openai_base_url="http://localhost:11434/v1")
    assert await chat.run_chat(settings, stdin=script("Oi"), stdout=io.StringIO()) == 2
    assert capsys.readouterr().err.strip() == (
        "OPENAI_API_KEY is not set: chat talks to the real model (gpt-4o at http://localhost:11434/v1). "
        "Put OPENAI_API_KEY=sk-... in the environment or in .env and run chat again."
    )


async def test_a_refused_connection_is_named_and_chat_gives_up_after_the_bounded_wait(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_port_url()
    settings = fast_settings(tmp_path, openai_base_url=url, openai_max_attempts=2)
    out = io.StringIO()

    code = await chat.run_chat(settings, stdin=script("Oi", "/sair"), stdout=out, give_up_s=0.2)

    assert code == 0
    lines = out.getvalue().splitlines()
    refused = f"connection refused at {url}: nothing listens there; check OPENAI_BASE_URL"
    # Said once however many times it is retried, never called a timeout.
    assert lines.count(f"chat: {refused}; retrying for up to 0.2 s (/sair ends chat)") == 1
    assert (
        f"chat: gave up after 0.2 s ({refused}). Your message is kept, not answered: the bot retries "
        "it in the background while chat runs, and the next chat session answers it."
    ) in lines
    assert not any("timeout" in line.lower() for line in lines)
    assert not any("bot>" in line for line in lines)
    assert lines[-1] == "Bye."
    assert "Traceback" not in out.getvalue() + capsys.readouterr().err
    assert inbound_statuses(settings) == [("pending",)]


async def test_a_timeout_is_called_a_timeout(tmp_path: Path, openai_fake: FakeOpenAI) -> None:
    for _ in range(100):
        openai_fake.then(exception=TimeoutError())
    settings = fast_settings(tmp_path, openai_timeout_s=12)
    out = io.StringIO()
    assert await chat.run_chat(settings, stdin=script("Oi", "/sair"), stdout=out, give_up_s=0.1) == 0
    text = out.getvalue()
    assert f"chat: timeout: {OPENAI} did not answer within 12 s; retrying for up to 0.1 s" in text
    assert f"chat: gave up after 0.1 s (timeout: {OPENAI} did not answer within 12 s)" in text


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (429, f"the provider at {OPENAI} is busy or the account is over its limit (HTTP 429)"),
        (500, f"the provider at {OPENAI} is down (HTTP 500)"),
        (503, f"the provider at {OPENAI} is down (HTTP 503)"),
    ],
)
async def test_a_busy_or_broken_provider_is_named(
    tmp_path: Path, openai_fake: FakeOpenAI, status: int, reason: str
) -> None:
    for _ in range(100):
        openai_fake.then(status=status)
    settings = fast_settings(tmp_path)
    out = io.StringIO()
    assert await chat.run_chat(settings, stdin=script("Oi", "/sair"), stdout=out, give_up_s=0.1) == 0
    text = out.getvalue()
    assert f"chat: {reason}; retrying for up to 0.1 s (/sair ends chat)" in text
    assert f"chat: gave up after 0.1 s ({reason}). Your message is kept, not answered" in text
    assert inbound_statuses(settings) == [("pending",)]


async def test_a_refused_key_ends_chat_at_once_with_exit_1(tmp_path: Path, http_mock: aioresponses) -> None:
    http_mock.post(f"{OPENAI}/chat/completions", status=401, payload=INVALID_KEY_401, repeat=True)
    settings = fast_settings(tmp_path)
    out = io.StringIO()

    code = await chat.run_chat(
        settings, stdin=script("Oi", "Tem alguém aí?"), stdout=out, give_up_s=NEVER_S, reply_timeout_s=NEVER_S
    )

    assert code == 1
    lines = out.getvalue().splitlines()
    assert (
        f"chat: {OPENAI} refused the key (HTTP 401): check OPENAI_API_KEY "
        "(keys: https://platform.openai.com/api-keys). Your message is kept, not answered; "
        "fix this and run chat again."
    ) in lines
    assert lines[-1] == "Bye."
    assert "Tem alguém aí?" not in out.getvalue()  # the second line never became a turn
    assert "sk-test" not in out.getvalue()  # the provider's words (a key fragment) are not echoed
    assert inbound_statuses(settings) == [("pending",)]


@pytest.mark.parametrize("ending", [["/sair"], ["/QUIT"], []], ids=["sair", "quit", "ctrl-d"])
async def test_quitting_while_a_turn_waits_ends_chat_at_once(tmp_path: Path, ending: list[str]) -> None:
    settings = fast_settings(tmp_path, openai_base_url=closed_port_url())
    out = io.StringIO()

    code = await chat.run_chat(
        settings,
        stdin=script("Oi", *ending),
        stdout=out,
        give_up_s=NEVER_S,
        reply_timeout_s=NEVER_S,
        interactive=True,
    )

    assert code == 0
    text = out.getvalue()
    assert "gave up" not in text
    assert text.splitlines()[-2:] == [
        "chat: stopped waiting; your message is kept and answered the next time chat runs for this contact.",
        "Bye.",
    ]
    assert inbound_statuses(settings) == [("pending",)]


async def test_sair_typed_in_a_terminal_mid_retry_is_honoured(tmp_path: Path) -> None:
    """Through a pipe, as a terminal delivers lines: /sair arrives only after chat has
    said the model is unreachable, while the turn is being retried."""
    url = closed_port_url()
    settings = fast_settings(tmp_path, openai_base_url=url)
    read_fd, write_fd = os.pipe()
    out = io.StringIO()
    with os.fdopen(read_fd, "r", encoding="utf-8") as stdin, os.fdopen(write_fd, "w") as typed:
        session = asyncio.create_task(
            chat.run_chat(
                settings,
                stdin=stdin,
                stdout=out,
                give_up_s=NEVER_S,
                reply_timeout_s=NEVER_S,
                interactive=True,
            )
        )
        typed.write("Oi\n")
        typed.flush()
        async with asyncio.timeout(30):  # a hang guard, not a timing
            while f"connection refused at {url}" not in out.getvalue():
                await asyncio.sleep(0.01)
            typed.write("Tudo bem?\n/sair\n")
            typed.flush()
            code = await session

    assert code == 0
    text = out.getvalue()
    assert "gave up" not in text and text.rstrip().endswith("Bye.")
    assert "chat: stopped waiting" in text
    # The line typed mid-wait was kept for after the turn, not sent or lost: chat quit first.
    assert inbound_statuses(settings) == [("pending",)]


async def test_a_second_message_while_unreachable_names_the_cause_again(tmp_path: Path) -> None:
    url = closed_port_url()
    settings = fast_settings(tmp_path, openai_base_url=url)
    out = io.StringIO()
    code = await chat.run_chat(settings, stdin=script("Oi", "Alô?", "/sair"), stdout=out, give_up_s=0.2)
    assert code == 0
    text = out.getvalue()
    # The runner's earlier attempts are not this message's news: the cause is named again.
    assert text.count(f"chat: connection refused at {url}") == 2
    assert text.count("chat: gave up after 0.2 s") == 2
    # A background retry of the first message may also fail between the two (the generic
    # "could not answer (attempt N)" line): whether it lands inside the second wait is a
    # race of the runner's retry timer, so its absence is not asserted.


def chained(*errors: BaseException) -> BaseException:
    """errors[0] raised from errors[1] raised from ...: the shape the SDK's transport gives."""
    for outer, inner in zip(errors, errors[1:], strict=False):
        outer.__cause__ = inner
    return errors[0]


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            chained(
                openai.APIConnectionError(request=REQUEST), socket.gaierror(-2, "Name or service not known")
            ),
            f"host not found for {OPENAI}: check OPENAI_BASE_URL and the network",
        ),
        (
            chained(openai.APITimeoutError(request=REQUEST), aiohttp.ServerDisconnectedError()),
            f"connection to {OPENAI} failed (Server disconnected); check OPENAI_BASE_URL and the network",
        ),
        (openai.APITimeoutError(request=REQUEST), f"timeout: {OPENAI} did not answer within 30 s"),
    ],
    ids=["dns", "disconnected", "sdk-timeout"],
)
def test_other_transport_failures_are_named_by_their_root_cause(
    tmp_path: Path, error: BaseException, line: str
) -> None:
    failure = model_failure.explain_model_failure(error, fast_settings(tmp_path, openai_timeout_s=30))
    assert failure.text == line and not failure.fatal


async def test_a_model_that_neither_answers_nor_fails_gets_one_waiting_line(
    tmp_path: Path, http_mock: aioresponses
) -> None:
    released = asyncio.Event()
    completion = copy.deepcopy(load_fixture("openai/chat_completion_structured.json"))
    completion["choices"][0]["message"]["content"] = json.dumps(
        {
            "reply": "Oi! Demorei, mas cheguei.",
            "lead": {},
            "tool_calls": [],
            "summary": "Lead disse oi.",
            "image_description": None,
        }
    )

    async def slow_model(url: Any, **kwargs: Any) -> CallbackResult:
        await released.wait()
        return CallbackResult(status=200, payload=completion)

    http_mock.post(f"{OPENAI}/chat/completions", callback=slow_model, repeat=True)
    out = io.StringIO()
    session = asyncio.create_task(
        chat.run_chat(fast_settings(tmp_path), stdin=script("Oi", "/sair"), stdout=out, slow_notice_s=0.05)
    )
    waiting = (
        f"chat: no answer yet after 0.05 s from gpt-4o at {OPENAI} (OPENAI_TIMEOUT_S=30); /sair ends chat"
    )
    async with asyncio.timeout(30):  # a hang guard, not a timing
        while waiting not in out.getvalue():
            await asyncio.sleep(0.01)
        released.set()
        assert await session == 0
    text = out.getvalue()
    assert text.count(waiting) == 1
    assert text.index(waiting) < text.index("bot> Oi! Demorei, mas cheguei.")
    assert "gave up" not in text and "retrying" not in text

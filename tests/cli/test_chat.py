"""`python main.py chat`: a seller talks to the real agent and store in a terminal."""

from __future__ import annotations

import io
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

import main as entry
from cli import chat as main  # the chat command lives in cli/chat.py
from core.settings import Settings
from tests.conftest import OPENAI_KEY, fast_settings
from tests.helpers.fakes import FakeOpenAI

FIRST = "Oi, sou o João do Frigorífico Boi Bom"
SECOND = "Londrina PR"
REPLY_1 = "Olá, João! Que bom falar com o Frigorífico Boi Bom. De qual cidade vocês são?"
REPLY_2 = "Ótimo, Londrina! Qual equipamento vocês procuram e qual volume por dia?"


def rows(path: Path, sql: str, *args: Any) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql, args).fetchall()


def script(*lines: str) -> io.StringIO:
    return io.StringIO("".join(f"{line}\n" for line in lines))


def two_turns(openai_fake: FakeOpenAI) -> None:
    openai_fake.then(
        reply=REPLY_1,
        lead={"name": "João", "company": "Frigorífico Boi Bom", "segment": "frigorífico"},
    ).then(reply=REPLY_2, lead={"city": "Londrina", "state": "PR"})


async def test_a_conversation_in_the_terminal_shows_replies_and_the_lead_card(
    tmp_path: Path, openai_fake: FakeOpenAI
) -> None:
    two_turns(openai_fake)
    settings = fast_settings(tmp_path)
    out = io.StringIO()

    code = await main.run_chat(settings, stdin=script(FIRST, SECOND, "/sair"), stdout=out)

    assert code == 0
    text = out.getvalue()
    # The bot's replies reach the terminal through the cli channel, in order.
    assert "bot> Olá, João!" in text
    assert "bot> Ótimo, Londrina!" in text
    assert text.index("Olá, João!") < text.index(SECOND) < text.index("Ótimo, Londrina!")
    # After each turn, the lead card: known fields, score, temperature and reasons.
    assert text.count("--- Ficha do lead") == 2
    last_card = text[text.rindex("--- Ficha do lead") :]
    assert "Nome: João" in last_card
    assert "Empresa: Frigorífico Boi Bom" in last_card
    assert "Cidade: Londrina" in last_card
    assert "Estado (UF): PR" in last_card
    assert "Pontuação: " in last_card and "/100" in last_card
    assert any(f"Temperatura: {t}" in last_card for t in ("frio", "morno", "quente"))
    assert "Segmento-alvo" in last_card  # a score reason
    assert "you> " in text and text.rstrip().endswith("Bye.")
    # One LLM call per line, with the seller's words as the lead's.
    assert openai_fake.chat_calls == 2
    assert any(FIRST in content for content in openai_fake.user_contents(0))

    db = settings.sqlite_path
    assert rows(db, "SELECT channel, contact_key, name FROM leads") == [("cli", "cli:terminal", "João")]
    ((score, temperature),) = rows(db, "SELECT score, temperature FROM leads")
    assert temperature in ("frio", "morno", "quente") and 0 <= score <= 100
    assert f"Pontuação: {score}/100 | Temperatura: {temperature}" in last_card
    assert rows(db, "SELECT channel, status FROM inbound") == [("cli", "done"), ("cli", "done")]
    assert rows(db, "SELECT direction, text, status FROM messages ORDER BY id") == [
        ("in", FIRST, "received"),
        ("out", REPLY_1, "sent"),
        ("in", SECOND, "received"),
        ("out", REPLY_2, "sent"),
    ]
    assert rows(db, "SELECT status, COUNT(*) FROM outbox GROUP BY status") == [("done", 2)]


async def test_perfil_shows_the_card_and_end_of_input_ends_cleanly(
    tmp_path: Path, openai_fake: FakeOpenAI
) -> None:
    openai_fake.then(reply="Prazer, Ana!", lead={"name": "Ana"})
    settings = fast_settings(tmp_path)
    out = io.StringIO()

    # No /sair: the script just ends, like Ctrl-D.
    code = await main.run_chat(settings, stdin=script("/perfil", "", "Oi, aqui é a Ana"), stdout=out)

    assert code == 0
    text = out.getvalue()
    assert "Ainda não há dados deste lead." in text  # /perfil before any turn
    assert "bot> Prazer, Ana!" in text
    assert "Nome: Ana" in text
    assert openai_fake.chat_calls == 1  # /perfil and the blank line never reach the model
    assert rows(settings.sqlite_path, "SELECT COUNT(*) FROM inbound") == [(1,)]


async def test_the_same_contact_continues_and_fresh_starts_over(
    tmp_path: Path, openai_fake: FakeOpenAI
) -> None:
    settings = fast_settings(tmp_path)
    openai_fake.then(reply="Oi, João!", lead={"name": "João"})
    await main.run_chat(settings, contact="joao", stdin=script("Oi, sou o João"), stdout=io.StringIO())

    out = io.StringIO()
    openai_fake.then(reply="De onde você fala?", lead={})
    await main.run_chat(settings, contact="joao", stdin=script("Tudo bem?"), stdout=out)
    assert "Continuing this contact's conversation" in out.getvalue()
    assert "Nome: João" in out.getvalue()
    # The second session's prompt carried the first session's history.
    assert "Oi, sou o João" in json.dumps(openai_fake.chat_requests[-1]["messages"], ensure_ascii=False)

    fresh = io.StringIO()
    openai_fake.then(reply="Olá! Qual é o seu nome?", lead={})
    await main.run_chat(settings, contact="joao", fresh=True, stdin=script("Oi"), stdout=fresh)
    assert "Continuing this contact's conversation" not in fresh.getvalue()
    assert "Nome: João" not in fresh.getvalue()
    keys = [k for (k,) in rows(settings.sqlite_path, "SELECT contact_key FROM leads ORDER BY id")]
    assert keys[0] == "cli:joao" and len(keys) == 2
    assert keys[1].startswith("cli:joao-") and keys[1] != "cli:joao"


async def test_without_openai_key_it_says_so_and_exits_2_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = fast_settings(tmp_path, openai_api_key=None)
    code = await main.run_chat(settings, stdin=script("Oi"), stdout=io.StringIO())
    assert code == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err
    assert not settings.sqlite_path.exists()  # nothing was started


async def test_a_failed_turn_is_reported_then_answered(tmp_path: Path, openai_fake: FakeOpenAI) -> None:
    # 400 is not retried by the LLM client: the turn fails and the runner tries again.
    openai_fake.then(status=400).then(reply="Agora sim, olá!", lead={})
    out = io.StringIO()
    code = await main.run_chat(fast_settings(tmp_path), stdin=script("Oi", "/sair"), stdout=out)
    assert code == 0
    text = out.getvalue()
    line = "chat: https://api.openai.com/v1 rejected the request (HTTP 400); retrying for up to 30 s (/sair ends chat)"
    assert line in text.splitlines()
    assert text.index(line) < text.index("bot> Agora sim, olá!") < text.index("--- Ficha do lead")


async def test_no_answer_in_time_returns_to_the_prompt_and_keeps_the_message(
    tmp_path: Path, openai_fake: FakeOpenAI
) -> None:
    for _ in range(50):
        openai_fake.then(status=500)
    settings = fast_settings(tmp_path, openai_max_attempts=1, shutdown_grace_s=0.2)
    out = io.StringIO()
    code = await main.run_chat(settings, stdin=script("Oi", "/sair"), stdout=out, give_up_s=0.3)
    assert code == 0
    text = out.getvalue()
    assert (
        "chat: the provider at https://api.openai.com/v1 is down (HTTP 500); retrying for up to 0.3 s" in text
    )
    assert "chat: gave up after 0.3 s (the provider at https://api.openai.com/v1 is down (HTTP 500))" in text
    assert "Your message is kept, not answered" in text
    assert "bot>" not in text
    assert text.rstrip().endswith("Bye.")
    assert rows(settings.sqlite_path, "SELECT status FROM inbound") == [("pending",)]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A machine with only what the test sets: no bot variables, no .env in the cwd."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "chat.sqlite3"))
    return tmp_path


def test_main_chat_without_openai_key_exits_2(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["chat"]) == 2
    captured = capsys.readouterr()
    assert "OPENAI_API_KEY is not set" in captured.err
    assert "bot>" not in captured.out
    assert not (clean_env / "chat.sqlite3").exists()


def test_main_chat_runs_a_conversation_from_stdin(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    openai_fake: FakeOpenAI,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("SHUTDOWN_GRACE_S", "1")
    monkeypatch.setattr(sys, "stdin", script(FIRST, "/sair"))
    openai_fake.then(reply=REPLY_1, lead={"name": "João", "company": "Frigorífico Boi Bom"})

    assert entry.main(["chat", "--contact", "vendedor1"]) == 0

    out = capsys.readouterr().out
    assert "bot> Olá, João!" in out
    assert "Nome: João" in out
    assert rows(clean_env / "chat.sqlite3", "SELECT contact_key FROM leads") == [("cli:vendedor1",)]


def test_chat_settings_answer_at_once_and_log_quietly(tmp_path: Path) -> None:
    settings = main.chat_settings(fast_settings(tmp_path))
    assert settings.debounce_quiet_s == 0 and settings.debounce_max_s == 0
    assert settings.log_level == "CRITICAL"  # chat says what failed in one line
    assert settings.shutdown_grace_s <= 1.0  # /sair is never held up by a turn
    # An explicit LOG_LEVEL is respected.
    assert main.chat_settings(fast_settings(tmp_path, log_level="DEBUG")).log_level == "DEBUG"

"""`python main.py forget PHONE`: LGPD erasure from the command line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

import main
from core.keys import STORE
from tests.conftest import zapi_message
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled

LEAD = "5544999999999"


async def test_forget_erases_the_lead_and_keeps_only_an_anonymous_audit_row(
    bot: TestClient,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await bot.post("/webhooks/zapi", json=zapi_message(text="Oi, sou a Maria, meu email é maria@acougue.com.br"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]
    path = Path(bot.app[STORE].path)  # type: ignore[attr-defined]
    monkeypatch.setenv("SQLITE_PATH", str(path))

    # Run the command while the app is still up: it opens its own connection (WAL).
    code = await main._forget(main.Settings(_env_file=None, sqlite_path=path), "+55 (44) 99999-9999", "zapi")
    assert code == 0
    assert "apagados" in capsys.readouterr().out

    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM leads").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM inbound").fetchone() == (0,)
        audit = db.execute("SELECT channel, rows_deleted FROM erasures").fetchall()
        assert len(audit) == 1 and audit[0][0] == "zapi"
        dump = "\n".join(db.iterdump())
    assert LEAD not in dump
    assert "Maria" not in dump and "maria@" not in dump
    # Not even in the bytes of the file (free pages, WAL): secure_delete + checkpoint.
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert b"maria@acougue" not in raw


async def test_forget_an_unknown_phone_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = main.Settings(_env_file=None, sqlite_path=tmp_path / "x.sqlite3")
    assert await main._forget(settings, "5511000000000", "zapi") == 1
    assert "Nenhum lead" in capsys.readouterr().out
    assert await main._forget(settings, "abc", "zapi") == 2

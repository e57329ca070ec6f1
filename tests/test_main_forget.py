"""`python main.py forget PHONE`: LGPD erasure from the command line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

import main
from core.settings import Settings
from tests.conftest import zapi_message
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from web.keys import STORE

LEAD = "5544999999999"


async def test_forget_erases_the_lead_and_keeps_only_an_anonymous_audit_row(
    bot: TestClient,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await bot.post(
        "/webhooks/zapi", json=zapi_message(text="Oi, sou a Maria, meu email é maria@acougue.com.br")
    )
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]
    path = Path(bot.app[STORE].path)  # type: ignore[attr-defined]
    monkeypatch.setenv("SQLITE_PATH", str(path))

    # Run the command while the app is still up: it opens its own connection (WAL).
    code = await main._forget(main.Settings(_env_file=None, sqlite_path=path), "+55 (44) 99999-9999", "zapi")
    assert code == 0
    assert "are erased" in capsys.readouterr().out

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
    assert LEAD.encode() not in raw and b"Maria Souza" not in raw


async def test_a_replayed_or_new_webhook_of_a_forgotten_lead_is_acknowledged_and_dropped(
    bot: TestClient,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Z-API redelivers an old message (or the lead writes once more) after the erasure:
    the provider gets its 200, and the lead is not re-created nor answered."""
    first = zapi_message(text="Oi, sou a Maria")
    await bot.post("/webhooks/zapi", json=first)
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]
    path = Path(bot.app[STORE].path)  # type: ignore[attr-defined]
    settings = main.Settings(_env_file=None, sqlite_path=path)
    assert await main._forget(settings, LEAD, "whatsapp") == 0

    replay = await bot.post("/webhooks/zapi", json=first)
    again = await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id="3EB0FORGET0000000002", text="Oi de novo")
    )
    assert (replay.status, again.status) == (200, 200)
    assert (await replay.json())["accepted"] == 0 and (await again.json())["accepted"] == 0
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]  # no second answer
    assert await bot.app[STORE].get_lead(f"whatsapp:{LEAD}") is None
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM inbound").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM leads").fetchone() == (0,)


async def _lead(store_path: Path, contact_id: str, channel: str = "zapi") -> None:
    from core.models import InboundMessage, MessageKind
    from store.sqlite import SqliteStore

    store = SqliteStore(store_path)
    await store.open()
    try:
        await store.add_inbound(
            InboundMessage(
                channel=channel,
                contact_id=contact_id,
                provider_message_id=f"m-{contact_id}",
                kind=MessageKind.TEXT,
                text="Oi",
            )
        )
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("stored_as", "channel", "typed", "option"),
    [
        ("208573150634094@lid", "zapi", "208573150634094@lid", "whatsapp"),
        ("208573150634094@lid", "waha", "208573150634094@LID", "waha"),
        ("17841400000000001", "instagram", "17841400000000001", "instagram"),
        ("17841400000000001", "instagram", "instagram:17841400000000001", "whatsapp"),
        ("5544999999999", "zapi", "whatsapp:5544999999999", "whatsapp"),
        ("5544999999999", "whatsapp_cloud", "+55 (44) 99999-9999", "whatsapp_cloud"),
    ],
)
async def test_forget_accepts_every_contact_form_the_bot_stores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stored_as: str, channel: str, typed: str, option: str
) -> None:
    path = tmp_path / "sdr.sqlite3"
    await _lead(path, stored_as, channel)
    settings = main.Settings(_env_file=None, sqlite_path=path)
    assert await main._forget(settings, typed, option) == 0
    assert "are erased" in capsys.readouterr().out
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM inbound").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM erasures").fetchone() == (1,)


@pytest.mark.parametrize(
    ("typed", "channel", "says"),
    [
        ("5544999999999", "telegram", "unknown channel"),
        ("maria", "instagram", "Instagram id"),
        ("abc@lid", "whatsapp", "@lid"),
        ("5544 9999O-9999", "whatsapp", "phone"),  # a letter O for a zero: not a phone
        ("", "whatsapp", "contact"),
    ],
)
async def test_forget_refuses_what_names_no_contact_and_says_what_to_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], typed: str, channel: str, says: str
) -> None:
    path = tmp_path / "sdr.sqlite3"
    await _lead(path, "5544999999999")
    settings = main.Settings(_env_file=None, sqlite_path=path)
    assert await main._forget(settings, typed, channel) == 2
    assert says in capsys.readouterr().err
    with sqlite3.connect(path) as db:  # nothing was erased on a guess
        assert db.execute("SELECT COUNT(*) FROM inbound").fetchone() == (1,)


def _settings(path: Path) -> Settings:
    return Settings(_env_file=None, sqlite_path=path)  # a developer's .env must not pick the store


def test_the_command_line_wires_contact_and_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sdr.sqlite3"
    monkeypatch.setattr(main, "Settings", lambda: _settings(path))
    with pytest.raises(SystemExit) as refused:  # a usage error, before anything is opened
        main.main(["forget", "5544999999999", "--channel", "telegram"])
    assert refused.value.code == 2
    assert "invalid choice: 'telegram'" in capsys.readouterr().err
    assert main.main(["forget", "208573150634094@lid"]) == 1  # valid form, unknown lead
    assert "no whatsapp lead with that contact" in capsys.readouterr().err


async def test_forget_an_unknown_phone_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = main.Settings(_env_file=None, sqlite_path=tmp_path / "x.sqlite3")
    assert await main._forget(settings, "5511000000000", "zapi") == 1
    assert "no whatsapp lead with that contact" in capsys.readouterr().err
    assert await main._forget(settings, "abc", "zapi") == 2

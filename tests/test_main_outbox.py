"""`python main.py outbox ...`: an operator finds a dead side effect, reads why it died,
and resends it once, under the same idempotency key."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest

import main
from core.records import OutboxItem, TurnCommit
from core.settings import Settings
from store.sqlite import SqliteStore

KEY = "whatsapp:5511987654321"


async def seeded(path: Path) -> tuple[int, int]:
    """One dead CRM push and one delivered reply."""
    store = SqliteStore(path)
    await store.open()
    try:
        await store.commit_turn(
            TurnCommit(
                turn_id="t1",
                contact_key=KEY,
                channel="zapi",
                contact_id="5511987654321",
                phone=None,
                name=None,
                inbound_ids=[],
                messages=[],
                profile={},
                score=0,
                temperature="quente",
                score_reasons=[],
                lead_messages_added=0,
                outbox=[
                    OutboxItem(
                        "piperun_sync", f"crm:{KEY}", "piperun:t1", {"contact_key": KEY, "reason": "hot"}
                    ),
                    OutboxItem("send_text", f"reply:{KEY}", "reply:t1", {"text": "Olá"}),
                ],
            )
        )
        items = {i.kind: i for i in await store.claim_outbox(limit=10, now=datetime.now(UTC))}
        await store.kill_outbox(items["piperun_sync"].id or 0, error="PipeRunError: 422 pipeline_id inválido")
        await store.complete_outbox(items["send_text"].id or 0)
        return items["piperun_sync"].id or 0, items["send_text"].id or 0
    finally:
        await store.close()


async def test_an_operator_lists_shows_and_replays_one_dead_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ops.sqlite3"
    dead_id, done_id = await seeded(path)

    assert await main._outbox(Settings(_env_file=None, sqlite_path=path), _args("list", status="dead")) == 0
    listed = capsys.readouterr().out
    assert str(dead_id) in listed and "piperun_sync" in listed and "422" in listed
    assert "send_text" not in listed

    assert await main._outbox(Settings(_env_file=None, sqlite_path=path), _args("show", id=dead_id)) == 0
    shown = capsys.readouterr().out
    assert '"idempotency_key": "piperun:t1"' in shown and "pipeline_id inválido" in shown

    # A delivered item is not replayed: that would send it twice.
    assert await main._outbox(Settings(_env_file=None, sqlite_path=path), _args("replay", id=done_id)) == 1
    assert "not dead" in capsys.readouterr().err

    assert await main._outbox(Settings(_env_file=None, sqlite_path=path), _args("replay", id=dead_id)) == 0
    store = SqliteStore(path)
    await store.open()
    try:
        item = await store.get_outbox(dead_id)
        assert item is not None and item.status == "pending" and item.attempts == 0
        assert item.idempotency_key == "piperun:t1"
    finally:
        await store.close()


async def test_replay_without_an_id_asks_for_all_dead_explicitly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ops.sqlite3"
    await seeded(path)
    settings = Settings(_env_file=None, sqlite_path=path)
    assert await main._outbox(settings, _args("replay")) == 2
    assert "--all-dead" in capsys.readouterr().err
    assert await main._outbox(settings, _args("replay", all_dead=True)) == 0
    assert "1 dead item(s)" in capsys.readouterr().out
    assert await main._outbox(settings, _args("stats")) == 0
    stats = capsys.readouterr().out
    assert "dead=0" in stats and "piperun_sync: pending=1" in stats


def _args(action: str, **overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "action": action,
        "id": None,
        "status": None,
        "kind": None,
        "limit": 50,
        "all_dead": False,
    }
    values.update(overrides)
    return argparse.Namespace(**values)

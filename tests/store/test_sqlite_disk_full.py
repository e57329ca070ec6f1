"""A full disk under the embedded store: webhooks are refused (the store says it is
unavailable, health says `sqlite: error`) and, once space is freed, the bot resumes by
itself, without a restart, even in the web process that leaves checkpoints to the worker.

The disk is a real one: a small tmpfs mounted for the test (CI runs as root). Where
mounting is not permitted the test is skipped, saying so.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import StoreUnavailable
from core.models import InboundMessage, MessageKind
from core.records import OutboxItem
from store.sqlite import SqliteStore

DISK_BYTES = 8 * 1024 * 1024
# Less than the ~4 MB of WAL after which anyone checkpoints on their own.
HEADROOM_BYTES = 3 * 1024 * 1024
TEXT = "Quero um orçamento de placas solares para minha casa. " * 55  # ~3 KB a message
LEAD = "whatsapp:5511987650001"


def _mount_small_disk(path: Path) -> bool:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    try:
        mounted = _mount_small_disk(disk)
    except FileNotFoundError:
        mounted = False
    if not mounted:
        pytest.skip("mounting a tmpfs is not permitted here (needs root): no small disk to fill")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def _fill_leaving(disk: Path, headroom: int) -> Path:
    filler = disk / "other-app.log"
    filler.write_bytes(b"\0" * (_free_bytes(disk) - headroom))
    return filler


def _wal_bytes(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _message(n: int) -> InboundMessage:
    return InboundMessage(
        channel="whatsapp",
        contact_id="5511987650001",
        provider_message_id=f"wamid.{n}",
        kind=MessageKind.TEXT,
        text=TEXT,
    )


async def _write_until_full(store: SqliteStore) -> int:
    for n in range(10_000):
        try:
            await store.add_inbound(_message(n))
        except StoreUnavailable as exc:
            assert "full" in str(exc)
            return n
    raise AssertionError("the disk never filled")


async def test_web_process_recovers_from_a_full_disk_once_space_is_freed(small_disk: Path) -> None:
    db_path = small_disk / "sdr.sqlite3"
    web = SqliteStore(db_path)
    await web.open()
    web.leave_checkpoints_to_others()  # the web process of `python main.py`
    try:
        filler = _fill_leaving(small_disk, HEADROOM_BYTES)
        stored = await _write_until_full(web)
        assert stored > 100

        # Health must not say ok while webhooks are refused.
        with pytest.raises(StoreUnavailable, match="full"):
            await web.ping()
        with pytest.raises(StoreUnavailable, match="full"):
            await web.add_inbound(_message(20_000))

        filler.unlink()  # the operator frees space; nothing is restarted

        assert await web.add_inbound(_message(20_001)) is True
        await web.ping()
        # The WAL that filled the disk was checkpointed and truncated, not left holding it.
        assert _wal_bytes(db_path) < 64 * 1024
        pending = await web.pending_inbound(LEAD)
        assert len(pending) == stored + 1

        # And it does not creep back: more than the old headroom goes through without the
        # WAL growing past a few hundred KB (it used to wait for ~16 MB in this process).
        for n in range(30_000, 30_000 + 1_200):
            await web.add_inbound(_message(n))
        assert _wal_bytes(db_path) < 512 * 1024
        assert len(await web.pending_inbound(LEAD)) == stored + 1 + 1_200
    finally:
        await web.close()


def _reply(n: int) -> OutboxItem:
    return OutboxItem(
        kind="send_text",
        order_key=LEAD,
        idempotency_key=f"reply-{n}",
        payload={"contact_key": LEAD, "text": TEXT},
    )


async def test_a_worker_stuck_on_a_full_disk_resumes_once_space_is_freed(small_disk: Path) -> None:
    db_path = small_disk / "sdr.sqlite3"
    web, worker = SqliteStore(db_path), SqliteStore(db_path)
    await web.open()
    await worker.open()
    web.leave_checkpoints_to_others()
    try:
        filler = _fill_leaving(small_disk, HEADROOM_BYTES)
        await _write_until_full(web)
        # The worker's replies meet the full disk too.
        with pytest.raises(StoreUnavailable, match="full"):
            for n in range(100):
                await worker.enqueue(_reply(n))
        with pytest.raises(StoreUnavailable, match="full"):
            await worker.ping()

        filler.unlink()

        await worker.ping()  # the worker reclaims the WAL the web filled
        assert _wal_bytes(db_path) < 64 * 1024
        assert await worker.enqueue(_reply(1_000)) is True
        assert await web.add_inbound(_message(60_000)) is True
    finally:
        await worker.close()
        await web.close()

"""The one SQLite connection: opening it, its pragmas, transactions, and getting back on
its feet after the disk was full.

Calls run on the event loop thread on purpose: with WAL and `synchronous=NORMAL` a
write costs tens of microseconds, less than handing it to a thread, and a single
connection makes every transaction naturally serial. `BEGIN IMMEDIATE` takes the
write lock up front so a turn commit never fails half-way on a busy database.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from core.clock import utc_now
from core.errors import StoreUnavailable
from core.logging import get_logger
from core.records import contact_tombstone
from store.base import StoreBusy
from store.sqlite.erasure_key import KEY_BYTES, erasure_key_path, load_erasure_key
from store.sqlite.schema import apply_schema
from store.timestamps import iso

log = get_logger("store.sqlite")

# Calls run on the event loop, so waiting for another process's write lock stalls every
# request: wait a little (writers hold it for well under a millisecond), then report the
# store unavailable (webhooks answer 503, turns and deliveries retry) instead of freezing.
BUSY_TIMEOUT_MS = 250
# The health probe waits less for the write lock than a write would: a load balancer
# asks every few seconds and must be answered, and a lock held that long under a flood
# is "busy" (still up), not a failure.
PROBE_BUSY_TIMEOUT_MS = 50
# After a checkpoint the WAL file keeps its largest size unless this caps it: a burst
# (the worker down for an hour, an erasure) would otherwise hold that disk forever.
# About one autocheckpoint's worth (1000 pages), so normal cycles do not shrink and regrow it.
JOURNAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
# The web process of a split deployment leaves checkpoints to the worker, but not without
# limit: if the worker is down or stuck, the web checkpoints once the WAL reaches this many
# pages (about 16 MB, four times the worker's own threshold) instead of growing until the
# disk is full.
WEB_WAL_AUTOCHECKPOINT_PAGES = 4000
# Once the disk has been full, a process checkpoints every ~256 KB of WAL (a few ms each),
# the web one too: the normal threshold (~4 MB) is more than the headroom, so the WAL
# would fill the freed space again before anyone checkpointed, and a checkpoint needs
# free space to copy the pages into the database. Kept until the process restarts.
LOW_DISK_WAL_AUTOCHECKPOINT_PAGES = 64

_S = TypeVar("_S", bound="SqliteConnection")


def _busy(exc: BaseException | None) -> bool:
    """Another connection holds the lock (SQLITE_BUSY, SQLITE_LOCKED): nothing is broken."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return isinstance(exc, sqlite3.Error) and code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def unavailable_on_error(
    method: Callable[Concatenate[_S, _P], Awaitable[_T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Webhook-path writes: a locked or broken database is "retry later" (503), not a bug."""

    @functools.wraps(method)
    async def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            self._note_failure(exc)
            raise StoreUnavailable(str(exc)) from exc

    return wrapper


class SqliteConnection:
    """What every part of the SQLite store shares: the connection, the tombstone key,
    transactions, and the memory of a full disk."""

    backend_name = "sqlite"
    # One host, and of a split deployment only the worker delivers: a process-local
    # limiter meters every send without a write transaction per message. A deployment
    # where several processes send through one file sets it True (see `take_rate_slot`).
    shares_rate_limits = False

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else path
        self._db: sqlite3.Connection | None = None
        self._inbound_batch: list[tuple[tuple[Any, ...], asyncio.Future[bool]]] = []
        self._erasure_key = b""
        self._disk_full = False

    # --- lifecycle ----------------------------------------------------------------
    async def open(self) -> None:
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Deleted rows are zeroed, not just unlinked: an LGPD erasure must not leave the
        # lead's messages readable in free pages of the file.
        db.execute("PRAGMA secure_delete=ON")
        db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
        apply_schema(db)
        try:
            self._erasure_key = self._load_erasure_key(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _load_erasure_key(self, db: sqlite3.Connection) -> bytes:
        if not isinstance(self.path, Path):
            return secrets.token_bytes(KEY_BYTES)  # an in-memory database dies with its key
        key_path = erasure_key_path(self.path)
        existed = key_path.exists()
        key = load_erasure_key(key_path)
        tombstones = db.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0]
        if not existed and tombstones:
            # The database was moved without its key: old erasures no longer match.
            log.error("erasure_key_recreated", tombstones=tombstones, hint="restore the .erasure-key file")
        return key

    def leave_checkpoints_to_others(self) -> None:
        """The web process of a split deployment: a WAL checkpoint (copying the log back
        into the database, several milliseconds) would run inside a webhook's commit.
        The worker, which writes far more, checkpoints for both; the web steps in only
        when the WAL is far past the worker's threshold (the worker is down or stuck),
        and after a full disk (see `_reclaim_disk`)."""
        self.db.execute(f"PRAGMA wal_autocheckpoint={WEB_WAL_AUTOCHECKPOINT_PAGES}")

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable("store is not open")
        return self._db

    # --- a full disk ----------------------------------------------------------------
    def _note_failure(self, exc: sqlite3.Error) -> None:
        """A full disk is remembered: no automatic checkpoint fires while writes fail
        (autocheckpoints run after a successful commit, once the WAL passes ~4 MB, which
        a smaller headroom never reaches), so nothing would ever hand the WAL's space
        back. Every transaction, webhook insert and health probe from now on tries to,
        until one succeeds."""
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL:
            if not self._disk_full:
                log.error("sqlite_disk_full", hint="free disk space; the bot resumes by itself")
            self._disk_full = True
            if self._db is not None:
                self._db.execute(f"PRAGMA wal_autocheckpoint={LOW_DISK_WAL_AUTOCHECKPOINT_PAGES}")

    def _reclaim_disk(self) -> None:
        """Copy the WAL into the database and truncate it to zero bytes, so the space it
        holds is free again and writes resume without a restart. On a still-full disk
        the checkpoint fails in well under a millisecond, so it is simply tried again on
        the next write; it never waits for another process's lock (that would stall the
        event loop) and whichever process gets here first does it, the web one too."""
        if not self._disk_full or self._db is None:
            return
        db = self._db
        db.execute("PRAGMA busy_timeout=0")
        try:
            busy, _log, _done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return  # still full (or locked): the next write tries again
        finally:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not busy:
            self._disk_full = False
            log.info("sqlite_disk_reclaimed")

    # --- transactions -------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        self._reclaim_disk()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self._note_failure(exc)
            raise StoreUnavailable(f"sqlite busy: {exc}") from exc
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if isinstance(exc, sqlite3.Error):
                self._note_failure(exc)
            # A failed COMMIT may leave the transaction open (SQLite rolls back by itself
            # only for some errors): the write lock must not stay held.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @staticmethod
    def _begin_without_waiting(db: sqlite3.Connection) -> bool:
        db.execute("PRAGMA busy_timeout=0")
        try:
            db.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise
        finally:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    async def ping(self) -> None:
        """Prove the store can take a write, not just a read: a full disk or a read-only
        file would otherwise look healthy while every webhook is refused. A write lock
        another connection holds for the whole (short) wait is `StoreBusy`: the store is
        up, and merely busy."""
        db = self.db
        db.execute(f"PRAGMA busy_timeout={PROBE_BUSY_TIMEOUT_MS}")
        try:
            with self._tx() as tx:
                tx.execute("CREATE TABLE IF NOT EXISTS health_probe (at TEXT)")
                tx.execute("INSERT INTO health_probe (at) VALUES (?)", (iso(utc_now()),))
                tx.execute("DELETE FROM health_probe")
        except StoreUnavailable as exc:
            if _busy(exc.__cause__):
                raise StoreBusy(str(exc)) from exc
            raise
        except sqlite3.Error as exc:
            if _busy(exc):
                raise StoreBusy(str(exc)) from exc
            raise StoreUnavailable(str(exc)) from exc
        finally:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if self._disk_full:
            # A probe's few bytes still fit in the WAL's tail while a webhook's do not.
            raise StoreUnavailable("database or disk is full: the WAL could not be checkpointed yet")

    def _tombstoned(self, db: sqlite3.Connection, contact_key: str) -> bool:
        hashed = contact_tombstone(self._erasure_key, contact_key)
        return db.execute("SELECT 1 FROM tombstones WHERE hash = ?", (hashed,)).fetchone() is not None

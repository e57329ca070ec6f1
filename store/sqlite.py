"""Embedded SQLite store: the default that runs with no services at all.

Calls run on the event loop thread on purpose: with WAL and `synchronous=NORMAL` a
write costs tens of microseconds, less than handing it to a thread, and a single
connection makes every transaction naturally serial. `BEGIN IMMEDIATE` takes the
write lock up front so a turn commit never fails half-way on a busy database.

An erased lead's tombstone is keyed with a secret kept in a file next to the database
(`<db>.erasure-key`, created on first open with mode 0600), not inside it: a copy of the
database alone (a backup, a support dump) cannot be used to test phone numbers against
the tombstones. Back the key file up with the database; without it, old tombstones stop
matching (erased leads could come back if an old message is replayed).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.errors import StoreUnavailable
from core.logging import get_logger
from core.models import InboundMessage
from core.records import (
    ERASURE_KIND,
    OUTBOX_LANES,
    DueFollowUp,
    InboundRecord,
    InboundStatus,
    LeadRecord,
    OutboxItem,
    OutboxStats,
    StoredMessage,
    TurnCommit,
    contact_tombstone,
    endpoint_lane_prefix,
    erasure_lane,
    erasure_payload,
    lane_key,
    message_tombstone,
)

log = get_logger(__name__)

# Calls run on the event loop, so waiting for another process's write lock stalls every
# request: wait a little (writers hold it for well under a millisecond), then report the
# store unavailable (webhooks answer 503, turns and deliveries retry) instead of freezing.
BUSY_TIMEOUT_MS = 250
# Webhook inserts retry a busy write lock this often, without blocking the loop.
_FLUSH_RETRY_S = 0.0003
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS leads (
    id INTEGER PRIMARY KEY,
    contact_key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    phone TEXT,
    name TEXT,
    profile TEXT NOT NULL DEFAULT '{}',
    score INTEGER NOT NULL DEFAULT 0,
    temperature TEXT NOT NULL DEFAULT 'frio',
    score_reasons TEXT NOT NULL DEFAULT '[]',
    lead_message_count INTEGER NOT NULL DEFAULT 0,
    opted_out INTEGER NOT NULL DEFAULT 0,
    opted_out_at TEXT,
    handoff_state TEXT,
    handoff_reason TEXT,
    handoff_summary TEXT,
    handoff_at TEXT,
    summary TEXT,
    last_inbound_at TEXT,
    paused_until TEXT,
    chatwoot_contact_id INTEGER,
    chatwoot_source_id TEXT,
    chatwoot_conversation_id INTEGER,
    chatwoot_conversation_resolved INTEGER NOT NULL DEFAULT 0,
    crm_person_id INTEGER,
    crm_company_id INTEGER,
    crm_deal_id INTEGER,
    referral TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    channel TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'bot',
    started_at TEXT NOT NULL,
    last_message_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_lead ON conversations(lead_id, id);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    kind TEXT NOT NULL,
    text TEXT,
    provider_message_id TEXT,
    status TEXT,
    error TEXT,
    media_url TEXT,
    chatwoot_message_id INTEGER,
    turn_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_lead ON messages(lead_id, id);
CREATE INDEX IF NOT EXISTS messages_provider_id ON messages(provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS inbound (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    contact_key TEXT NOT NULL,
    message TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'ignored')),
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    received_at TEXT NOT NULL,
    processed_at TEXT,
    UNIQUE (channel, provider_message_id)
);
CREATE INDEX IF NOT EXISTS inbound_pending ON inbound(contact_key, id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    order_key TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'inflight', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_open ON outbox(order_key, id) WHERE status IN ('pending', 'inflight');
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS orcamentos (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    conversation_id INTEGER REFERENCES conversations(id),
    products TEXT NOT NULL,
    quantity TEXT,
    summary TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'novo',
    turn_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orcamentos_lead ON orcamentos(lead_id, id);
CREATE TABLE IF NOT EXISTS technical_questions (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    conversation_id INTEGER REFERENCES conversations(id),
    question TEXT NOT NULL,
    context TEXT,
    status TEXT NOT NULL DEFAULT 'aberta',
    turn_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS technical_questions_lead ON technical_questions(lead_id, id);
CREATE TABLE IF NOT EXISTS followups (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    contact_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    due_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'cancelled')),
    reason TEXT,
    scheduled_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS followups_due ON followups(due_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS followups_lead ON followups(lead_id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS turn_leases (
    contact_key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    acquired_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS erasures (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    erased_at TEXT NOT NULL,
    lead_created_at TEXT,
    temperature TEXT,
    rows_deleted TEXT NOT NULL
);
-- Keyed hashes (HMAC-SHA256) of erased contact keys and provider message ids, nothing else.
CREATE TABLE IF NOT EXISTS tombstones (
    hash TEXT PRIMARY KEY
) WITHOUT ROWID;
"""

# How long an erasure waits for other connections (the running bot) to let the WAL be
# truncated: old copies of the erased rows live there until it is.
_CHECKPOINT_TRIES = 40
_CHECKPOINT_PAUSE_S = 0.05
_KEY_BYTES = 32


def erasure_key_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".erasure-key")


def load_erasure_key(path: Path) -> bytes:
    """The tombstone key, created on first use (0600). Two processes opening a new
    database at once agree on one key: each writes its own candidate, and only the first
    hard link to the final name wins."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    candidate = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(_KEY_BYTES) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass  # another process won: use its key
        except OSError:  # a filesystem without hard links: exclusive create instead
            try:
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd2, "w", encoding="ascii") as out:
                    out.write(candidate.read_text(encoding="ascii"))
    finally:
        candidate.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except ValueError:  # not hex, or not even text (UnicodeDecodeError is a ValueError)
        key = b""
    if len(key) < _KEY_BYTES:
        # Never replaced silently: a new key would make every tombstone stop matching.
        raise StoreUnavailable(f"the erasure key file {path.name} is damaged; restore it from a backup")
    return key


# Columns added after the first release: an existing database gets them on open.
_ADDED_COLUMNS = {
    "messages": {"media_url": "TEXT", "error": "TEXT", "chatwoot_message_id": "INTEGER"},
    "leads": {
        "opted_out_at": "TEXT",
        "handoff_state": "TEXT",
        "handoff_reason": "TEXT",
        "handoff_summary": "TEXT",
        "handoff_at": "TEXT",
        "summary": "TEXT",
        "last_inbound_at": "TEXT",
        "paused_until": "TEXT",
        "chatwoot_contact_id": "INTEGER",
        "chatwoot_source_id": "TEXT",
        "chatwoot_conversation_id": "INTEGER",
        "chatwoot_conversation_resolved": "INTEGER NOT NULL DEFAULT 0",
        "crm_person_id": "INTEGER",
        "crm_company_id": "INTEGER",
        "crm_deal_id": "INTEGER",
    },
}


def _unavailable_on_error(method):  # type: ignore[no-untyped-def]
    """Webhook-path writes: a locked or broken database is "retry later" (503), not a bug."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            self._note_failure(exc)
            raise StoreUnavailable(str(exc)) from exc

    return wrapper


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


class SqliteStore:
    backend_name = "sqlite"

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
        db.executescript(SCHEMA)
        for table, columns in _ADDED_COLUMNS.items():
            existing = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns.items():
                if name not in existing:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS messages_chatwoot_id ON messages(chatwoot_message_id)"
            " WHERE chatwoot_message_id IS NOT NULL"
        )
        db.execute(
            "CREATE INDEX IF NOT EXISTS leads_chatwoot_conversation ON leads(chatwoot_conversation_id)"
        )
        # /metrics reads these on every scrape: an index each keeps that off the table scan.
        db.execute("CREATE INDEX IF NOT EXISTS outbox_status_kind ON outbox(status, kind)")
        db.execute("CREATE INDEX IF NOT EXISTS leads_temperature ON leads(temperature)")
        db.execute(
            "CREATE INDEX IF NOT EXISTS leads_crm_deal ON leads(crm_deal_id) WHERE crm_deal_id IS NOT NULL"
        )
        try:
            self._erasure_key = self._load_erasure_key(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _load_erasure_key(self, db: sqlite3.Connection) -> bytes:
        if not isinstance(self.path, Path):
            return secrets.token_bytes(_KEY_BYTES)  # an in-memory database dies with its key
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

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable("store is not open")
        return self._db

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

    async def ping(self) -> None:
        """Prove the store can take a write, not just a read: a full disk or a read-only
        file would otherwise look healthy while every webhook is refused."""
        try:
            with self._tx() as db:
                db.execute("CREATE TABLE IF NOT EXISTS health_probe (at TEXT)")
                db.execute("INSERT INTO health_probe (at) VALUES (?)", (_iso(_now()),))
                db.execute("DELETE FROM health_probe")
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        if self._disk_full:
            # A probe's few bytes still fit in the WAL's tail while a webhook's do not.
            raise StoreUnavailable("database or disk is full: the WAL could not be checkpointed yet")

    # --- inbox --------------------------------------------------------------------
    async def add_inbound(
        self, message: InboundMessage, *, status: InboundStatus = "pending", reason: str | None = None
    ) -> bool:
        """Group commit: inserts arriving in the same loop iteration share one transaction.

        Each caller still gets its answer only after the commit that made its row
        durable, so "stored before 200 OK" holds; under load, one commit serves many
        webhooks instead of one each.
        """
        row = (
            message.channel,
            message.provider_message_id,
            message.contact_key,
            message.model_dump_json(),
            status,
            reason,
            _iso(_now()),
            contact_tombstone(self._erasure_key, message.contact_key),
            message_tombstone(self._erasure_key, message.provider_message_id),
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._inbound_batch.append((row, future))
        if len(self._inbound_batch) == 1:
            loop.call_soon(self._flush_inbound)
        return await future

    def _flush_inbound(
        self,
        batch: list[tuple[tuple[Any, ...], asyncio.Future[bool]]] | None = None,
        deadline: float | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        if batch is None:
            batch, self._inbound_batch = self._inbound_batch, []
            deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
        assert deadline is not None
        try:
            db = self.db
            self._reclaim_disk()
            if not self._begin_without_waiting(db):
                # Another process (the turn worker) holds the write lock for a moment.
                # Waiting inside SQLite would block the loop in whole milliseconds; retry
                # shortly instead, so other webhooks are read meanwhile.
                if loop.time() < deadline:
                    loop.call_later(_FLUSH_RETRY_S, self._flush_inbound, batch, deadline)
                    return
                raise StoreUnavailable("sqlite busy: the write lock was not released in time")
            try:
                results = [self._insert_inbound(db, row) for row, _future in batch]
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, StoreUnavailable) as exc:
            if isinstance(exc, sqlite3.Error):
                self._note_failure(exc)
            error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(str(exc))
            for _row, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_row, future), inserted in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(inserted)

    @staticmethod
    def _insert_inbound(db: sqlite3.Connection, row: tuple[Any, ...]) -> bool:
        values, hashes = row[:7], row[7:]
        if db.execute(
            f"SELECT 1 FROM tombstones WHERE hash IN ({','.join('?' * len(hashes))})", hashes
        ).fetchone():
            log.info("inbound_dropped", reason="lead_erased", channel=row[0])
            return False
        return (
            db.execute(
                "INSERT INTO inbound (channel, provider_message_id, contact_key, message, status,"
                " reason, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (channel, provider_message_id) DO NOTHING",
                values,
            ).rowcount
            == 1
        )

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

    async def pending_contacts(self) -> list[str]:
        rows = self.db.execute(
            "SELECT contact_key FROM inbound WHERE status = 'pending' GROUP BY contact_key ORDER BY MIN(id)"
        ).fetchall()
        return [r[0] for r in rows]

    async def pending_inbound(self, contact_key: str) -> list[InboundRecord]:
        rows = self.db.execute(
            "SELECT id, message, attempts, received_at FROM inbound"
            " WHERE contact_key = ? AND status = 'pending' ORDER BY id",
            (contact_key,),
        ).fetchall()
        return [
            InboundRecord(
                id=r["id"],
                message=InboundMessage.model_validate_json(r["message"]),
                attempts=r["attempts"],
                received_at=_dt(r["received_at"]),
            )
            for r in rows
        ]

    async def record_turn_failure(self, inbound_ids: list[int], error: str) -> None:
        if not inbound_ids:
            return
        marks = ",".join("?" * len(inbound_ids))
        self.db.execute(
            f"UPDATE inbound SET attempts = attempts + 1, last_error = ? WHERE id IN ({marks})",
            (error[:500], *inbound_ids),
        )

    # --- leads and history --------------------------------------------------------
    async def get_lead(self, contact_key: str) -> LeadRecord | None:
        row = self.db.execute(
            "SELECT l.*, c.id AS conversation_id, c.started_at AS conversation_started_at,"
            " c.last_message_at AS conversation_last_message_at"
            " FROM leads l LEFT JOIN conversations c"
            "   ON c.id = (SELECT MAX(id) FROM conversations WHERE lead_id = l.id)"
            " WHERE l.contact_key = ?",
            (contact_key,),
        ).fetchone()
        if row is None:
            return None
        return LeadRecord(
            id=row["id"],
            contact_key=row["contact_key"],
            channel=row["channel"],
            contact_id=row["contact_id"],
            phone=row["phone"],
            name=row["name"],
            profile=json.loads(row["profile"]),
            score=row["score"],
            temperature=row["temperature"],
            score_reasons=json.loads(row["score_reasons"]),
            lead_message_count=row["lead_message_count"],
            opted_out=bool(row["opted_out"]),
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
            handoff_state=row["handoff_state"],
            handoff_reason=row["handoff_reason"],
            summary=row["summary"],
            last_inbound_at=_dt(row["last_inbound_at"]) if row["last_inbound_at"] else None,
            paused_until=_dt(row["paused_until"]) if row["paused_until"] else None,
            referral=json.loads(row["referral"]) if row["referral"] else None,
            chatwoot_contact_id=row["chatwoot_contact_id"],
            chatwoot_source_id=row["chatwoot_source_id"],
            chatwoot_conversation_id=row["chatwoot_conversation_id"],
            chatwoot_conversation_resolved=bool(row["chatwoot_conversation_resolved"]),
            conversation_id=row["conversation_id"],
            conversation_started_at=(
                _dt(row["conversation_started_at"]) if row["conversation_started_at"] else None
            ),
            conversation_last_message_at=(
                _dt(row["conversation_last_message_at"]) if row["conversation_last_message_at"] else None
            ),
            crm_person_id=row["crm_person_id"],
            crm_company_id=row["crm_company_id"],
            crm_deal_id=row["crm_deal_id"],
        )

    async def recent_messages(self, contact_key: str, limit: int) -> list[StoredMessage]:
        rows = self.db.execute(
            "SELECT m.id, m.direction, m.kind, m.text, m.created_at, m.provider_message_id, m.status"
            " FROM messages m JOIN leads l ON l.id = m.lead_id"
            " WHERE l.contact_key = ?"
            "   AND m.conversation_id = (SELECT MAX(id) FROM conversations WHERE lead_id = l.id)"
            " ORDER BY m.id DESC LIMIT ?",
            (contact_key, limit),
        ).fetchall()
        return [
            StoredMessage(
                id=r["id"],
                direction=r["direction"],
                kind=r["kind"],
                text=r["text"],
                created_at=_dt(r["created_at"]),
                provider_message_id=r["provider_message_id"],
                status=r["status"],
            )
            for r in reversed(rows)
        ]

    async def commit_turn(self, commit: TurnCommit) -> None:
        now = _iso(_now())
        # The runtime's clock for what it measures itself (sessions, follow-ups); the
        # outbox and audit timestamps stay on the real clock the dispatcher uses.
        turn_at = _iso(commit.at) if commit.at else now
        with self._tx() as db:
            if self._tombstoned(db, commit.contact_key):
                # Erased while the turn ran: writing it would bring the lead back.
                log.info("turn_dropped", reason="lead_erased", turn_id=commit.turn_id)
                return
            lead = db.execute(
                "INSERT INTO leads (contact_key, channel, contact_id, phone, name, profile, score,"
                " temperature, score_reasons, lead_message_count, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (contact_key) DO UPDATE SET"
                " channel = excluded.channel, contact_id = excluded.contact_id,"
                " phone = COALESCE(excluded.phone, leads.phone),"
                " name = COALESCE(excluded.name, leads.name),"
                " profile = excluded.profile, score = excluded.score,"
                " temperature = excluded.temperature, score_reasons = excluded.score_reasons,"
                " lead_message_count = leads.lead_message_count + excluded.lead_message_count,"
                " updated_at = excluded.updated_at"
                " RETURNING id, opted_out",
                (
                    commit.contact_key,
                    commit.channel,
                    commit.contact_id,
                    commit.phone,
                    commit.name,
                    json.dumps(commit.profile, ensure_ascii=False, default=str),
                    commit.score,
                    commit.temperature,
                    json.dumps(commit.score_reasons, ensure_ascii=False),
                    commit.lead_messages_added,
                    now,
                    now,
                ),
            ).fetchone()
            lead_id = lead[0]
            self._apply_lead_changes(db, lead_id, commit, turn_at)
            conv = db.execute(
                "SELECT id FROM conversations WHERE lead_id = ? ORDER BY id DESC LIMIT 1", (lead_id,)
            ).fetchone()
            if conv is None or commit.new_session:
                conv_id = db.execute(
                    "INSERT INTO conversations (lead_id, channel, started_at, last_message_at)"
                    " VALUES (?, ?, ?, ?) RETURNING id",
                    (lead_id, commit.channel, turn_at, turn_at),
                ).fetchone()[0]
            else:
                conv_id = conv[0]
                db.execute("UPDATE conversations SET last_message_at = ? WHERE id = ?", (turn_at, conv_id))
            refs: dict[str, int] = {}
            for msg in commit.messages:
                msg_id = db.execute(
                    "INSERT INTO messages (conversation_id, lead_id, direction, kind, text,"
                    " provider_message_id, status, media_url, turn_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        conv_id,
                        lead_id,
                        msg.direction,
                        msg.kind,
                        msg.text,
                        msg.provider_message_id,
                        msg.status,
                        msg.media_url,
                        commit.turn_id,
                        now,
                    ),
                ).fetchone()[0]
                if msg.ref:
                    refs[msg.ref] = msg_id
            if commit.inbound_ids:
                marks = ",".join("?" * len(commit.inbound_ids))
                db.execute(
                    f"UPDATE inbound SET status = 'done', processed_at = ? WHERE id IN ({marks})",
                    (now, *commit.inbound_ids),
                )
            for quote in commit.quotes:
                db.execute(
                    "INSERT INTO orcamentos (lead_id, conversation_id, products, quantity, summary,"
                    " turn_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        lead_id,
                        conv_id,
                        json.dumps(quote.products, ensure_ascii=False),
                        quote.quantity,
                        quote.summary,
                        commit.turn_id,
                        now,
                    ),
                )
            for question in commit.technical_questions:
                db.execute(
                    "INSERT INTO technical_questions (lead_id, conversation_id, question, context,"
                    " turn_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (lead_id, conv_id, question.question, question.context, commit.turn_id, now),
                )
            for item in commit.outbox:
                payload = dict(item.payload)
                ref = payload.pop("message_ref", None)
                if ref is not None:
                    payload["message_id"] = refs[ref]
                payload.setdefault("lead_id", lead_id)
                db.execute(
                    "INSERT INTO outbox (kind, order_key, idempotency_key, payload, status,"
                    " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)"
                    " ON CONFLICT (idempotency_key) DO NOTHING",
                    (
                        item.kind,
                        item.order_key,
                        item.idempotency_key,
                        json.dumps(payload, ensure_ascii=False),
                        now,
                        now,
                        now,
                    ),
                )

    def _apply_lead_changes(self, db: sqlite3.Connection, lead_id: int, commit: TurnCommit, now: str) -> None:
        if commit.summary is not None:
            db.execute("UPDATE leads SET summary = ? WHERE id = ?", (commit.summary, lead_id))
        if commit.referral is not None:
            db.execute(
                "UPDATE leads SET referral = COALESCE(referral, ?) WHERE id = ?",
                (json.dumps(commit.referral, ensure_ascii=False), lead_id),
            )
        if commit.lead_wrote:
            db.execute("UPDATE leads SET last_inbound_at = ? WHERE id = ?", (now, lead_id))
        if commit.handoff is not None:
            db.execute(
                "UPDATE leads SET handoff_state = 'requested', handoff_reason = ?, handoff_summary = ?,"
                " handoff_at = ? WHERE id = ?",
                (commit.handoff.reason, commit.handoff.summary, now, lead_id),
            )
        if commit.opt_out:
            db.execute(
                "UPDATE leads SET opted_out = 1, opted_out_at = COALESCE(opted_out_at, ?) WHERE id = ?",
                (now, lead_id),
            )
        # Whatever happened, the nudges scheduled before this turn are obsolete.
        db.execute(
            "UPDATE followups SET status = 'cancelled', reason = ?, updated_at = ?"
            " WHERE lead_id = ? AND status = 'pending'",
            ("lead_replied" if commit.lead_wrote else "replaced", now, lead_id),
        )
        if commit.fired_follow_up_id is not None:
            db.execute(
                "UPDATE followups SET status = 'sent', reason = NULL, updated_at = ? WHERE id = ?",
                (now, commit.fired_follow_up_id),
            )
        if commit.follow_up is not None and not commit.opt_out:
            db.execute(
                "INSERT INTO followups (lead_id, contact_key, attempt, due_at, status, scheduled_at,"
                " updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (
                    lead_id,
                    commit.contact_key,
                    commit.follow_up.attempt,
                    _iso(commit.follow_up.due_at),
                    now,
                    now,
                ),
            )

    async def due_follow_ups(self, *, now: datetime, limit: int) -> list[DueFollowUp]:
        rows = self.db.execute(
            "SELECT id, contact_key, attempt, due_at, scheduled_at FROM followups"
            " WHERE status = 'pending' AND due_at <= ? ORDER BY due_at LIMIT ?",
            (_iso(now), limit),
        ).fetchall()
        return [
            DueFollowUp(
                id=r["id"],
                contact_key=r["contact_key"],
                attempt=r["attempt"],
                due_at=_dt(r["due_at"]),
                scheduled_at=_dt(r["scheduled_at"]),
            )
            for r in rows
        ]

    async def cancel_follow_up(self, follow_up_id: int, *, reason: str) -> None:
        self.db.execute(
            "UPDATE followups SET status = 'cancelled', reason = ?, updated_at = ? WHERE id = ?",
            (reason, _iso(_now()), follow_up_id),
        )

    async def quotes(self, contact_key: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT o.* FROM orcamentos o JOIN leads l ON l.id = o.lead_id WHERE l.contact_key = ?"
            " ORDER BY o.id",
            (contact_key,),
        ).fetchall()
        return [{**dict(r), "products": json.loads(r["products"])} for r in rows]

    async def technical_questions(self, contact_key: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT q.* FROM technical_questions q JOIN leads l ON l.id = q.lead_id"
            " WHERE l.contact_key = ? ORDER BY q.id",
            (contact_key,),
        ).fetchall()
        return [dict(r) for r in rows]

    def _tombstoned(self, db: sqlite3.Connection, contact_key: str) -> bool:
        hashed = contact_tombstone(self._erasure_key, contact_key)
        return db.execute("SELECT 1 FROM tombstones WHERE hash = ?", (hashed,)).fetchone() is not None

    async def is_erased(self, contact_key: str) -> bool:
        return self._tombstoned(self.db, contact_key)

    async def forget_lead(self, contact_key: str) -> bool:
        now = _iso(_now())
        with self._tx() as db:
            lead = db.execute(
                "SELECT id, channel, created_at, temperature, chatwoot_contact_id, crm_person_id, crm_deal_id"
                " FROM leads WHERE contact_key = ?",
                (contact_key,),
            ).fetchone()
            lead_id = lead["id"] if lead is not None else None
            first_inbound = db.execute(
                "SELECT channel FROM inbound WHERE contact_key = ? ORDER BY id LIMIT 1", (contact_key,)
            ).fetchone()
            provider_ids = {
                r[0]
                for r in db.execute(
                    "SELECT provider_message_id FROM inbound WHERE contact_key = ?"
                    " UNION SELECT provider_message_id FROM messages"
                    " WHERE lead_id = ? AND provider_message_id IS NOT NULL",
                    (contact_key, lead_id),
                )
            }
            inbound = db.execute("DELETE FROM inbound WHERE contact_key = ?", (contact_key,)).rowcount
            outbox = self._delete_lead_outbox(db, contact_key, lead_id)
            db.execute("DELETE FROM turn_leases WHERE contact_key = ?", (contact_key,))
            known = lead is not None or inbound > 0
            if known:
                self._erase_known_lead(
                    db, contact_key, lead, first_inbound, provider_ids, inbound, outbox, now
                )
        # Even for a contact unknown now: a run that could not truncate left copies there.
        await self._truncate_wal()
        return known

    def _erase_known_lead(
        self,
        db: sqlite3.Connection,
        contact_key: str,
        lead: sqlite3.Row | None,
        first_inbound: sqlite3.Row | None,
        provider_ids: set[str],
        inbound: int,
        outbox: int,
        now: str,
    ) -> None:
        lead_id = lead["id"] if lead is not None else None
        counts = {"inbound": inbound, "outbox": outbox}
        if lead_id is not None:
            for table in ("messages", "orcamentos", "technical_questions", "followups"):
                counts[table] = db.execute(f"DELETE FROM {table} WHERE lead_id = ?", (lead_id,)).rowcount
            counts["conversations"] = db.execute(
                "DELETE FROM conversations WHERE lead_id = ?", (lead_id,)
            ).rowcount
            db.execute("DELETE FROM leads WHERE id = ?", (lead_id,))
        hashes = [contact_tombstone(self._erasure_key, contact_key)]
        hashes += [message_tombstone(self._erasure_key, pid) for pid in sorted(provider_ids)]
        db.executemany("INSERT OR IGNORE INTO tombstones (hash) VALUES (?)", [(h,) for h in hashes])
        source = lead if lead is not None else first_inbound
        assert source is not None  # known: a lead row, or at least one stored message
        channel = source["channel"]
        # The audit row proves the erasure happened without saying who it was about.
        erasure_id = db.execute(
            "INSERT INTO erasures (channel, erased_at, lead_created_at, temperature, rows_deleted)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (
                channel,
                now,
                lead["created_at"] if lead is not None else None,
                lead["temperature"] if lead is not None else None,
                json.dumps(counts),
            ),
        ).fetchone()[0]
        payload = erasure_payload(
            erasure_id=erasure_id,
            erased_at=now,
            channel=channel,
            chatwoot_contact_id=lead["chatwoot_contact_id"] if lead is not None else None,
            crm_person_id=lead["crm_person_id"] if lead is not None else None,
            crm_deal_id=lead["crm_deal_id"] if lead is not None else None,
        )
        db.execute(
            "INSERT INTO outbox (kind, order_key, idempotency_key, payload, status,"
            " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
            (
                ERASURE_KIND,
                erasure_lane(erasure_id),
                erasure_lane(erasure_id),
                json.dumps(payload),
                now,
                now,
                now,
            ),
        )

    @staticmethod
    def _delete_lead_outbox(db: sqlite3.Connection, contact_key: str, lead_id: int | None) -> int:
        """Every item of the lead, whatever its state: its lanes, its webhook lanes (one
        per endpoint) and anything else whose payload names it."""
        lanes = [lane_key(lane, contact_key) for lane in OUTBOX_LANES]
        prefix = endpoint_lane_prefix(contact_key)
        return db.execute(
            f"DELETE FROM outbox WHERE order_key IN ({','.join('?' * len(lanes))})"
            " OR substr(order_key, 1, ?) = ?"
            " OR json_extract(payload, '$.contact_key') = ?"
            " OR (? IS NOT NULL AND json_extract(payload, '$.lead_id') = ?)",
            (*lanes, len(prefix), prefix, contact_key, lead_id, lead_id),
        ).rowcount

    async def _truncate_wal(self) -> None:
        """Old copies of the erased pages live in the WAL until it is checkpointed and
        truncated; a reader in another process (the running bot) can hold that off for a
        moment, so it is tried again rather than left half done."""
        for _ in range(_CHECKPOINT_TRIES):
            busy, _log, _done = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            await asyncio.sleep(_CHECKPOINT_PAUSE_S)
        log.error("erasure_wal_not_truncated", hint="stop the bot and run forget again to clear the WAL")

    # A later report never moves a message back (a late "delivered" after "read").
    _STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}

    @_unavailable_on_error
    async def record_delivery_status(
        self, channel: str, provider_message_id: str, status: str, error: str | None = None
    ) -> bool:
        # Provider ids are unique per provider and never collide across them in practice;
        # `channel` is kept in the signature for stores that partition by it.
        row = self.db.execute(
            "SELECT id, status FROM messages WHERE provider_message_id = ? AND direction = 'out'"
            " ORDER BY id DESC LIMIT 1",
            (provider_message_id,),
        ).fetchone()
        if row is None:
            return False
        rank = self._STATUS_RANK
        if rank.get(status, 0) < rank.get(row["status"] or "queued", 0) and status != "failed":
            return True
        self.db.execute(
            "UPDATE messages SET status = ?, error = COALESCE(?, error) WHERE id = ?",
            (status, (error or None) and error[:500], row["id"]),
        )
        return True

    async def mark_message_failed(self, message_id: int, error: str) -> None:
        self.db.execute(
            "UPDATE messages SET status = 'failed', error = ? WHERE id = ?", (error[:500], message_id)
        )

    @_unavailable_on_error
    async def message_contact(self, provider_message_id: str) -> str | None:
        row = self.db.execute(
            "SELECT l.contact_key FROM messages m JOIN leads l ON l.id = m.lead_id"
            " WHERE m.provider_message_id = ? AND m.direction = 'out' ORDER BY m.id DESC LIMIT 1",
            (provider_message_id,),
        ).fetchone()
        return row[0] if row else None

    @_unavailable_on_error
    async def enqueue(self, item: OutboxItem) -> bool:
        now = _iso(_now())
        cur = self.db.execute(
            "INSERT INTO outbox (kind, order_key, idempotency_key, payload, status, next_attempt_at,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            (
                item.kind,
                item.order_key,
                item.idempotency_key,
                json.dumps(item.payload, ensure_ascii=False),
                now,
                now,
                now,
            ),
        )
        return cur.rowcount == 1

    async def request_handoff(self, contact_key: str, *, reason: str, summary: str) -> None:
        self.db.execute(
            "UPDATE leads SET handoff_state = COALESCE(handoff_state, 'requested'),"
            " handoff_reason = COALESCE(handoff_reason, ?), handoff_summary = COALESCE(handoff_summary, ?),"
            " handoff_at = COALESCE(handoff_at, ?), updated_at = ? WHERE contact_key = ?",
            (reason, summary, _iso(_now()), _iso(_now()), contact_key),
        )

    @_unavailable_on_error
    async def note_business_message(
        self, contact_key: str, *, provider_message_id: str, text: str | None, pause_until: datetime
    ) -> bool:
        lead = self.db.execute("SELECT id FROM leads WHERE contact_key = ?", (contact_key,)).fetchone()
        if lead is None:
            # A seller writing first to a new prospect: the bot must not barge in when they
            # answer, so the lead exists from now on, paused.
            channel, _, contact_id = contact_key.partition(":")
            now = _iso(_now())
            self.db.execute(
                "INSERT INTO leads (contact_key, channel, contact_id, paused_until, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (contact_key) DO NOTHING",
                (contact_key, channel, contact_id, _iso(pause_until), now, now),
            )
            return True
        # Ours when the provider id matches, or, since an echo can arrive before the send
        # call returns its id, when the same text went to this lead in the last minutes.
        recent = _iso(_now() - timedelta(minutes=10))
        ours = self.db.execute(
            "SELECT 1 FROM messages WHERE lead_id = ? AND direction = 'out'"
            " AND (provider_message_id = ? OR (text = ? AND created_at >= ?)) LIMIT 1",
            (lead["id"], provider_message_id, (text or "").strip(), recent),
        ).fetchone()
        if ours is not None:
            return False
        self.db.execute(
            "UPDATE leads SET paused_until = MAX(COALESCE(paused_until, ''), ?), updated_at = ? WHERE id = ?",
            (_iso(pause_until), _iso(_now()), lead["id"]),
        )
        return True

    async def save_chatwoot_link(
        self, contact_key: str, *, contact_id: int, source_id: str | None, conversation_id: int | None
    ) -> None:
        self.db.execute(
            "UPDATE leads SET chatwoot_contact_id = ?, chatwoot_source_id = COALESCE(?, chatwoot_source_id),"
            " chatwoot_conversation_id = ?, chatwoot_conversation_resolved = 0, updated_at = ?"
            " WHERE contact_key = ?",
            (contact_id, source_id, conversation_id, _iso(_now()), contact_key),
        )

    async def set_chatwoot_message_id(self, message_id: int, chatwoot_message_id: int) -> None:
        try:
            self.db.execute(
                "UPDATE messages SET chatwoot_message_id = ? WHERE id = ? AND chatwoot_message_id IS NULL",
                (chatwoot_message_id, message_id),
            )
        except sqlite3.IntegrityError:  # already linked to another row: keep the first link
            log.warning("chatwoot_message_id_already_linked")

    @_unavailable_on_error
    async def is_own_chatwoot_message(
        self, chatwoot_message_id: int, *, conversation_id: int | None = None, text: str | None = None
    ) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM messages WHERE chatwoot_message_id = ? AND COALESCE(turn_id, '') != 'human' LIMIT 1",
            (chatwoot_message_id,),
        ).fetchone()
        if row is not None or conversation_id is None or not text:
            return row is not None
        # Chatwoot's webhook can beat our own bookkeeping of the id we just created (and
        # after an outage the mirror posts messages queued long ago): a bot message with
        # the same text, for this lead, not yet linked to a Chatwoot id, is ours.
        row = self.db.execute(
            "SELECT 1 FROM messages m JOIN leads l ON l.id = m.lead_id"
            " WHERE l.chatwoot_conversation_id = ? AND m.direction = 'out' AND m.chatwoot_message_id IS NULL"
            " AND COALESCE(m.turn_id, '') != 'human' AND m.text = ? LIMIT 1",
            (conversation_id, text.strip()),
        ).fetchone()
        return row is not None

    @_unavailable_on_error
    async def lead_by_chatwoot_conversation(self, conversation_id: int) -> LeadRecord | None:
        row = self.db.execute(
            "SELECT contact_key FROM leads WHERE chatwoot_conversation_id = ?", (conversation_id,)
        ).fetchone()
        return await self.get_lead(row[0]) if row else None

    @_unavailable_on_error
    async def record_human_reply(
        self, contact_key: str, *, text: str, chatwoot_message_id: int
    ) -> int | None:
        with self._tx() as db:
            known = db.execute(
                "SELECT 1 FROM messages WHERE chatwoot_message_id = ?", (chatwoot_message_id,)
            ).fetchone()
            lead = db.execute("SELECT id FROM leads WHERE contact_key = ?", (contact_key,)).fetchone()
            if known is not None or lead is None:
                return None
            conv = db.execute(
                "SELECT id FROM conversations WHERE lead_id = ? ORDER BY id DESC LIMIT 1", (lead["id"],)
            ).fetchone()
            if conv is None:
                return None
            now = _iso(_now())
            return db.execute(
                "INSERT INTO messages (conversation_id, lead_id, direction, kind, text, status,"
                " chatwoot_message_id, turn_id, created_at) VALUES (?, ?, 'out', 'text', ?, 'queued', ?, 'human', ?)"
                " RETURNING id",
                (conv["id"], lead["id"], text, chatwoot_message_id, now),
            ).fetchone()[0]

    @_unavailable_on_error
    async def set_human_owned(
        self, contact_key: str, *, until: datetime | None, resolved: bool = False
    ) -> None:
        if until is not None:
            # A person took it (again): the conversation is live, whatever it was before.
            self.db.execute(
                "UPDATE leads SET paused_until = ?, chatwoot_conversation_resolved = 0, updated_at = ?"
                " WHERE contact_key = ?",
                (_iso(until), _iso(_now()), contact_key),
            )
            return
        # The id is kept (late events of that conversation still find the lead); the flag
        # makes the next mirror item look for a live conversation or open a new one.
        self.db.execute(
            "UPDATE leads SET paused_until = NULL, handoff_state = NULL, handoff_reason = NULL,"
            " handoff_summary = NULL, handoff_at = NULL,"
            " chatwoot_conversation_resolved = CASE WHEN ? THEN 1 ELSE chatwoot_conversation_resolved END,"
            " updated_at = ? WHERE contact_key = ?",
            (1 if resolved else 0, _iso(_now()), contact_key),
        )

    async def mark_message_sent(self, message_id: int, provider_message_id: str | None) -> None:
        self.db.execute(
            "UPDATE messages SET status = CASE WHEN status IN ('delivered', 'read', 'played') THEN status"
            " ELSE 'sent' END, provider_message_id = COALESCE(?, provider_message_id)"
            " WHERE id = ?",
            (provider_message_id, message_id),
        )

    # --- outbox -------------------------------------------------------------------
    def _outbox_item(self, row: sqlite3.Row) -> OutboxItem:
        return OutboxItem(
            id=row["id"],
            kind=row["kind"],
            order_key=row["order_key"],
            idempotency_key=row["idempotency_key"],
            payload=json.loads(row["payload"]),
            status=row["status"],
            attempts=row["attempts"],
            last_error=row["last_error"],
            next_attempt_at=_dt(row["next_attempt_at"]),
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
        )

    async def claim_outbox(self, *, limit: int, now: datetime) -> list[OutboxItem]:
        """Claim due items, at most one per order key, and only the head of each key:
        a later reply never overtakes an earlier one that is still retrying."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT o.* FROM outbox o"
                " JOIN (SELECT order_key, MIN(id) AS head FROM outbox"
                "       WHERE status IN ('pending', 'inflight') GROUP BY order_key) h"
                "   ON h.head = o.id"
                " WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
                " ORDER BY o.next_attempt_at, o.id LIMIT ?",
                (_iso(now), limit),
            ).fetchall()
            if rows:
                marks = ",".join("?" * len(rows))
                db.execute(
                    f"UPDATE outbox SET status = 'inflight', attempts = attempts + 1, updated_at = ?"
                    f" WHERE id IN ({marks})",
                    (_iso(now), *[r["id"] for r in rows]),
                )
        items = [self._outbox_item(r) for r in rows]
        for item in items:
            item.status = "inflight"
            item.attempts += 1
        return items

    async def outbox_progress(self, item_id: int, payload: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE outbox SET payload = ?, updated_at = ? WHERE id = ?",
            (json.dumps(payload, ensure_ascii=False), _iso(_now()), item_id),
        )

    async def complete_outbox(self, item_id: int) -> None:
        self.db.execute(
            "UPDATE outbox SET status = 'done', last_error = NULL, updated_at = ? WHERE id = ?",
            (_iso(_now()), item_id),
        )

    async def retry_outbox(self, item_id: int, *, error: str, next_attempt_at: datetime) -> None:
        self.db.execute(
            "UPDATE outbox SET status = 'pending', last_error = ?, next_attempt_at = ?, updated_at = ?"
            " WHERE id = ?",
            (error[:1000], _iso(next_attempt_at), _iso(_now()), item_id),
        )

    async def kill_outbox(self, item_id: int, *, error: str) -> None:
        self.db.execute(
            "UPDATE outbox SET status = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
            (error[:1000], _iso(_now()), item_id),
        )

    async def release_inflight(self) -> int:
        cur = self.db.execute(
            "UPDATE outbox SET status = 'pending', updated_at = ? WHERE status = 'inflight'",
            (_iso(_now()),),
        )
        return cur.rowcount

    async def next_outbox_due(self) -> datetime | None:
        # Only heads of their order key can be claimed: a follow-up waiting behind an
        # in-flight or backing-off reply is not "due", or the dispatcher would spin.
        row = self.db.execute(
            "SELECT MIN(o.next_attempt_at) FROM outbox o"
            " JOIN (SELECT order_key, MIN(id) AS head FROM outbox"
            "       WHERE status IN ('pending', 'inflight') GROUP BY order_key) h"
            "   ON h.head = o.id"
            " WHERE o.status = 'pending'"
        ).fetchone()
        return _dt(row[0]) if row and row[0] else None

    async def outbox_stats(self) -> OutboxStats:
        counts = dict(self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        return OutboxStats(
            pending=counts.get("pending", 0),
            inflight=counts.get("inflight", 0),
            dead=counts.get("dead", 0),
            done=counts.get("done", 0),
        )

    async def replay_dead(self, *, kind: str | None = None) -> int:
        sql = (
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?"
            " WHERE status = 'dead'"
        )
        args: list[Any] = [_iso(_now()), _iso(_now())]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        return self.db.execute(sql, args).rowcount

    async def outbox_stats_by_kind(self) -> dict[str, OutboxStats]:
        out: dict[str, dict[str, int]] = {}
        for kind, status, count in self.db.execute(
            "SELECT kind, status, COUNT(*) FROM outbox WHERE status IN ('pending', 'inflight', 'dead')"
            " GROUP BY kind, status"
        ).fetchall():
            out.setdefault(kind, {})[status] = count
        return {
            kind: OutboxStats(
                pending=c.get("pending", 0), inflight=c.get("inflight", 0), dead=c.get("dead", 0), done=0
            )
            for kind, c in out.items()
        }

    async def list_outbox(
        self, *, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> list[OutboxItem]:
        sql, args = "SELECT * FROM outbox WHERE 1 = 1", []
        if status:
            sql += " AND status = ?"
            args.append(status)
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(0, limit))
        return [self._outbox_item(r) for r in self.db.execute(sql, args).fetchall()]

    async def get_outbox(self, item_id: int) -> OutboxItem | None:
        row = self.db.execute("SELECT * FROM outbox WHERE id = ?", (item_id,)).fetchone()
        return self._outbox_item(row) if row else None

    async def replay_outbox(self, item_id: int) -> bool:
        now = _iso(_now())
        cur = self.db.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?"
            " WHERE id = ? AND status = 'dead'",
            (now, now, item_id),
        )
        return cur.rowcount == 1

    async def defer_outbox(self, item_id: int, *, next_attempt_at: datetime, reason: str) -> None:
        self.db.execute(
            "UPDATE outbox SET status = 'pending', attempts = MAX(attempts - 1, 0), next_attempt_at = ?,"
            " last_error = ?, updated_at = ? WHERE id = ? AND status = 'inflight'",
            (_iso(next_attempt_at), reason[:1000], _iso(_now()), item_id),
        )

    # --- turn leases (one process uses SQLite, but the contract is the same) -------------
    async def claim_contact(self, contact_key: str, *, owner: str, lease_s: float) -> bool:
        now = _now()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO turn_leases (contact_key, owner, expires_at, acquired_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (contact_key) DO UPDATE SET owner = excluded.owner,"
                "   expires_at = excluded.expires_at,"
                "   acquired_at = CASE WHEN turn_leases.owner = excluded.owner"
                "                      THEN turn_leases.acquired_at ELSE excluded.acquired_at END"
                " WHERE turn_leases.owner = excluded.owner OR turn_leases.expires_at <= ?",
                (
                    contact_key,
                    owner,
                    _iso(now + timedelta(seconds=max(lease_s, 0.001))),
                    _iso(now),
                    _iso(now),
                ),
            )
            return cur.rowcount == 1

    async def release_contact(self, contact_key: str, *, owner: str) -> None:
        self.db.execute("DELETE FROM turn_leases WHERE contact_key = ? AND owner = ?", (contact_key, owner))

    async def claim_ready_contacts(
        self, *, owner: str, limit: int, quiet_s: float, max_wait_s: float, lease_s: float
    ) -> list[str]:
        now = _now()
        rows = self.db.execute(
            "SELECT i.contact_key FROM inbound i WHERE i.status = 'pending'"
            " GROUP BY i.contact_key"
            " HAVING MAX(i.received_at) <= ? OR MIN(i.received_at) <= ?"
            " ORDER BY MIN(i.id)",
            (_iso(now - timedelta(seconds=quiet_s)), _iso(now - timedelta(seconds=max_wait_s))),
        ).fetchall()
        claimed: list[str] = []
        for (contact_key,) in rows:
            if len(claimed) >= limit:
                break
            held = self.db.execute(
                "SELECT owner FROM turn_leases WHERE contact_key = ? AND expires_at > ?",
                (contact_key, _iso(now)),
            ).fetchone()
            if held is not None and held[0] != owner:
                continue
            if await self.claim_contact(contact_key, owner=owner, lease_s=lease_s):
                claimed.append(contact_key)
        return claimed

    # --- CRM ----------------------------------------------------------------------
    async def save_crm_link(
        self, contact_key: str, *, person_id: int | None, company_id: int | None, deal_id: int | None
    ) -> None:
        self.db.execute(
            "UPDATE leads SET crm_person_id = COALESCE(?, crm_person_id),"
            " crm_company_id = COALESCE(?, crm_company_id), crm_deal_id = COALESCE(?, crm_deal_id),"
            " updated_at = ? WHERE contact_key = ?",
            (person_id, company_id, deal_id, _iso(_now()), contact_key),
        )

    async def lead_by_crm_deal(self, deal_id: int) -> LeadRecord | None:
        row = self.db.execute("SELECT contact_key FROM leads WHERE crm_deal_id = ?", (deal_id,)).fetchone()
        return await self.get_lead(row[0]) if row else None

    async def lead_counts(self) -> dict[str, int]:
        return dict(
            self.db.execute("SELECT temperature, COUNT(*) FROM leads GROUP BY temperature").fetchall()
        )

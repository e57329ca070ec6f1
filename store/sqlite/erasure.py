"""LGPD erasure: every row of a lead gone in one transaction, a tombstone so nothing
brings it back, an anonymous audit row, and the WAL truncated so no old copy survives."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from core.clock import utc_now
from core.outbox import LeadErasure
from core.records import (
    ERASURE_KIND,
    OUTBOX_LANES,
    contact_tombstone,
    endpoint_lane_prefix,
    erasure_lane,
    lane_key,
    message_tombstone,
)
from store.sqlite.connection import SqliteConnection, log
from store.timestamps import iso

# How long an erasure waits for other connections (the running bot) to let the WAL be
# truncated: old copies of the erased rows live there until it is.
_CHECKPOINT_TRIES = 40
_CHECKPOINT_PAUSE_S = 0.05


@dataclass(frozen=True)
class _Traces:
    """What is known of a contact before its rows go: the lead row (if any), its first
    stored message (when there is no lead yet) and every provider message id."""

    lead: sqlite3.Row | None
    first_inbound: sqlite3.Row | None
    provider_ids: set[str]

    @property
    def lead_id(self) -> int | None:
        return self.lead["id"] if self.lead is not None else None

    def lead_value(self, column: str) -> Any:
        return self.lead[column] if self.lead is not None else None


class Erasure(SqliteConnection):
    async def is_erased(self, contact_key: str) -> bool:
        return self._tombstoned(self.db, contact_key)

    async def forget_lead(self, contact_key: str) -> bool:
        now = iso(utc_now())
        with self._tx() as db:
            traces = _traces(db, contact_key)
            inbound = db.execute("DELETE FROM inbound WHERE contact_key = ?", (contact_key,)).rowcount
            outbox = _delete_lead_outbox(db, contact_key, traces.lead_id)
            db.execute("DELETE FROM turn_leases WHERE contact_key = ?", (contact_key,))
            db.execute("DELETE FROM seller_assignments WHERE contact_key = ?", (contact_key,))
            db.execute("DELETE FROM meetings WHERE contact_key = ?", (contact_key,))
            known = traces.lead is not None or inbound > 0
            if known:
                counts = {"inbound": inbound, "outbox": outbox} | _delete_lead_rows(db, traces.lead_id)
                self._bury(db, contact_key, traces)
                _record_erasure(db, traces, counts, now)
        # Even for a contact unknown now: a run that could not truncate left copies there.
        await self._truncate_wal()
        return known

    def _bury(self, db: sqlite3.Connection, contact_key: str, traces: _Traces) -> None:
        """The tombstone: keyed hashes of the contact and of its provider message ids."""
        hashes = [contact_tombstone(self._erasure_key, contact_key)]
        hashes += [message_tombstone(self._erasure_key, pid) for pid in sorted(traces.provider_ids)]
        db.executemany("INSERT OR IGNORE INTO tombstones (hash) VALUES (?)", [(h,) for h in hashes])

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


def _traces(db: sqlite3.Connection, contact_key: str) -> _Traces:
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
    return _Traces(lead, first_inbound, provider_ids)


def _delete_lead_outbox(db: sqlite3.Connection, contact_key: str, lead_id: int | None) -> int:
    """Every item of the lead, whatever its state: its lanes, its webhook lanes (one
    per endpoint) and anything else whose payload names it."""
    lanes = [lane_key(lane, contact_key) for lane in OUTBOX_LANES]
    prefix = endpoint_lane_prefix(contact_key)
    deleted: int = db.execute(
        f"DELETE FROM outbox WHERE order_key IN ({','.join('?' * len(lanes))})"
        " OR substr(order_key, 1, ?) = ?"
        " OR json_extract(payload, '$.contact_key') = ?"
        " OR (? IS NOT NULL AND json_extract(payload, '$.lead_id') = ?)",
        (*lanes, len(prefix), prefix, contact_key, lead_id, lead_id),
    ).rowcount
    return deleted


def _delete_lead_rows(db: sqlite3.Connection, lead_id: int | None) -> dict[str, int]:
    """The lead and everything hanging off it; the rows deleted per table."""
    counts: dict[str, int] = {}
    if lead_id is None:
        return counts
    for table in ("messages", "orcamentos", "technical_questions", "followups", "turn_usage"):
        counts[table] = db.execute(f"DELETE FROM {table} WHERE lead_id = ?", (lead_id,)).rowcount
    counts["conversations"] = db.execute("DELETE FROM conversations WHERE lead_id = ?", (lead_id,)).rowcount
    db.execute("DELETE FROM leads WHERE id = ?", (lead_id,))
    return counts


def _record_erasure(db: sqlite3.Connection, traces: _Traces, counts: dict[str, int], now: str) -> None:
    """The audit row, which proves the erasure happened without saying who it was about,
    and the outbox item that takes the erasure to Chatwoot, the CRM and the subscribers."""
    source = traces.lead if traces.lead is not None else traces.first_inbound
    assert source is not None  # known: a lead row, or at least one stored message
    channel = source["channel"]
    erasure_id = db.execute(
        "INSERT INTO erasures (channel, erased_at, lead_created_at, temperature, rows_deleted)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        (
            channel,
            now,
            traces.lead_value("created_at"),
            traces.lead_value("temperature"),
            json.dumps(counts),
        ),
    ).fetchone()[0]
    payload = LeadErasure(
        erasure_id=erasure_id,
        erased_at=now,
        channel=channel,
        chatwoot_contact_id=traces.lead_value("chatwoot_contact_id"),
        crm_person_id=traces.lead_value("crm_person_id"),
        crm_deal_id=traces.lead_value("crm_deal_id"),
    ).serialize()
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

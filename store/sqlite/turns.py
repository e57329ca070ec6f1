"""A turn's commit: everything one turn decided, written in one transaction, in steps.

The order of the steps matters only where one needs what an earlier one made: the
lead's id (every row hangs off it), the conversation's id (messages, quotes, questions)
and the ids of the new messages (outbox items that refer to them by `message_ref`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from core.clock import utc_now
from core.records import OutboxItem, TurnCommit
from store.sqlite.connection import SqliteConnection, log
from store.timestamps import iso


class Turns(SqliteConnection):
    async def commit_turn(self, commit: TurnCommit) -> None:
        now = iso(utc_now())
        # The runtime's clock for what it measures itself (sessions, follow-ups); the
        # outbox and audit timestamps stay on the real clock the dispatcher uses.
        turn_at = iso(commit.at) if commit.at else now
        with self._tx() as db:
            if self._tombstoned(db, commit.contact_key):
                # Erased while the turn ran: writing it would bring the lead back.
                log.info("turn_dropped", reason="lead_erased", turn_id=commit.turn_id)
                return
            lead_id = _upsert_lead(db, commit, now)
            _apply_lead_changes(db, lead_id, commit, turn_at)
            _reschedule_follow_ups(db, lead_id, commit, turn_at)
            conv_id = _current_conversation(db, lead_id, commit, turn_at)
            refs = _insert_messages(db, commit, lead_id=lead_id, conv_id=conv_id, now=now)
            _mark_inbound_done(db, commit.inbound_ids, now)
            _insert_requests(db, commit, lead_id=lead_id, conv_id=conv_id, now=now)
            _insert_outbox(db, commit.outbox, lead_id=lead_id, refs=refs, now=now)
            _insert_usage(db, commit, lead_id=lead_id, turn_at=turn_at)


def _upsert_lead(db: sqlite3.Connection, commit: TurnCommit, now: str) -> int:
    # The lead's first message (its first inbound's arrival, else now) and the bot's first
    # reply (now, as its messages'), kept once each: the dashboard's time to first reply.
    first_in = now if any(m.direction == "in" for m in commit.messages) else None
    first_reply = now if any(m.direction == "out" for m in commit.messages) else None
    arrived = "?"
    if commit.inbound_ids and first_in is not None:
        marks = ",".join("?" * len(commit.inbound_ids))
        arrived = f"COALESCE((SELECT MIN(received_at) FROM inbound WHERE id IN ({marks})), ?)"
    row = db.execute(
        "INSERT INTO leads (contact_key, channel, contact_id, phone, name, profile, score,"
        " temperature, score_reasons, lead_message_count, created_at, updated_at,"
        " first_reply_at, first_in_at)"
        f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {arrived})"
        " ON CONFLICT (contact_key) DO UPDATE SET"
        " first_in_at = COALESCE(leads.first_in_at, excluded.first_in_at),"
        " first_reply_at = COALESCE(leads.first_reply_at, excluded.first_reply_at),"
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
            first_reply,
            *(commit.inbound_ids if arrived != "?" else ()),
            first_in,
        ),
    ).fetchone()
    lead_id: int = row[0]
    return lead_id


def _apply_lead_changes(db: sqlite3.Connection, lead_id: int, commit: TurnCommit, now: str) -> None:
    if commit.summary is not None:
        db.execute("UPDATE leads SET summary = ? WHERE id = ?", (commit.summary, lead_id))
    if commit.referral is not None:
        db.execute(
            "UPDATE leads SET referral = COALESCE(referral, ?) WHERE id = ?",
            (json.dumps(commit.referral, ensure_ascii=False), lead_id),
        )
    if commit.utm:
        db.execute(
            "UPDATE leads SET utm = COALESCE(utm, ?) WHERE id = ?",
            (json.dumps(commit.utm, ensure_ascii=False), lead_id),
        )
    if commit.lead_wrote:
        db.execute("UPDATE leads SET last_inbound_at = ? WHERE id = ?", (now, lead_id))
    if commit.handoff is not None:
        db.execute(
            "UPDATE leads SET handoff_state = 'requested', handoff_reason = ?, handoff_summary = ?,"
            " handoff_at = ?,"
            # The dashboard's first handoff, kept when the bot gets the lead back.
            " handed_off_reason = CASE WHEN handed_off_at IS NULL THEN ? ELSE handed_off_reason END,"
            " handed_off_at = COALESCE(handed_off_at, ?) WHERE id = ?",
            (commit.handoff.reason, commit.handoff.summary, now, commit.handoff.reason, now, lead_id),
        )
    if commit.opt_out:
        db.execute(
            "UPDATE leads SET opted_out = 1, opted_out_at = COALESCE(opted_out_at, ?) WHERE id = ?",
            (now, lead_id),
        )


def _reschedule_follow_ups(db: sqlite3.Connection, lead_id: int, commit: TurnCommit, now: str) -> None:
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
                iso(commit.follow_up.due_at),
                now,
                now,
            ),
        )


def _current_conversation(db: sqlite3.Connection, lead_id: int, commit: TurnCommit, turn_at: str) -> int:
    """The lead's latest conversation, or a new one when there is none or the turn
    starts a new session."""
    conv = db.execute(
        "SELECT id FROM conversations WHERE lead_id = ? ORDER BY id DESC LIMIT 1", (lead_id,)
    ).fetchone()
    if conv is None or commit.new_session:
        created: int = db.execute(
            "INSERT INTO conversations (lead_id, channel, started_at, last_message_at)"
            " VALUES (?, ?, ?, ?) RETURNING id",
            (lead_id, commit.channel, turn_at, turn_at),
        ).fetchone()[0]
        return created
    conv_id: int = conv[0]
    db.execute("UPDATE conversations SET last_message_at = ? WHERE id = ?", (turn_at, conv_id))
    return conv_id


def _insert_messages(
    db: sqlite3.Connection, commit: TurnCommit, *, lead_id: int, conv_id: int, now: str
) -> dict[str, int]:
    """The new messages; returns the row id of each one the outbox refers to."""
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
    return refs


def _mark_inbound_done(db: sqlite3.Connection, inbound_ids: Sequence[int], now: str) -> None:
    if inbound_ids:
        marks = ",".join("?" * len(inbound_ids))
        db.execute(
            f"UPDATE inbound SET status = 'done', processed_at = ? WHERE id IN ({marks})",
            (now, *inbound_ids),
        )


def _insert_requests(
    db: sqlite3.Connection, commit: TurnCommit, *, lead_id: int, conv_id: int, now: str
) -> None:
    """The quotes and technical questions the turn recorded for the sales team."""
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


def _insert_outbox(
    db: sqlite3.Connection, items: Sequence[OutboxItem], *, lead_id: int, refs: dict[str, int], now: str
) -> None:
    """The turn's side effects; a `message_ref` becomes the id of the message it names."""
    for item in items:
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


def _insert_usage(db: sqlite3.Connection, commit: TurnCommit, *, lead_id: int, turn_at: str) -> None:
    """The turn's model usage, for the dashboard's cost figures (store/sqlite/analytics.py)."""
    usage = commit.usage
    if usage is None:
        return
    db.execute(
        "INSERT INTO turn_usage (lead_id, turn_id, model, prompt_tokens, cached_tokens,"
        " completion_tokens, transcription_seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            lead_id,
            commit.turn_id,
            usage.model,
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens,
            usage.transcription_seconds,
            turn_at,
        ),
    )

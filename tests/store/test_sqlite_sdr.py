"""What the SDR brain keeps in the embedded store: orçamentos, technical questions,
handoff, opt-out, the rolling summary, follow-up nudges, LGPD erasure, and old
databases upgraded in place.

Writes go through the `Store` methods (`commit_turn`, `forget_lead`, ...); SQL is only
used to look at what a seller or an auditor would see in the database file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.errors import StoreUnavailable
from core.models import InboundMessage, MessageKind
from core.records import (
    ERASURE_KIND,
    FollowUp,
    Handoff,
    NewMessage,
    OutboxItem,
    QuoteRequest,
    TechnicalQuestion,
    TurnCommit,
)
from store.sqlite import SqliteStore

LEAD_A = "5511987650001"
LEAD_B = "5511987650002"
NAME_A = "Maria Souza"
NAME_B = "João Pereira"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sdr.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(db_path)
    await s.open()
    yield s
    await s.close()


def key(contact: str = LEAD_A) -> str:
    return f"whatsapp:{contact}"


def now() -> datetime:
    return datetime.now(UTC)


def inbound(provider_id: str, *, contact: str = LEAD_A, text: str = "Oi") -> InboundMessage:
    return InboundMessage(
        channel="zapi",
        contact_id=contact,
        provider_message_id=provider_id,
        kind=MessageKind.TEXT,
        text=text,
        phone=contact,
        name=NAME_A if contact == LEAD_A else NAME_B,
    )


def turn(
    contact: str = LEAD_A,
    *,
    turn_id: str = "t0001",
    inbound_ids: list[int] | None = None,
    reply: str | None = None,
    **extras: Any,
) -> TurnCommit:
    messages = [NewMessage("in", "text", "quero uma FB300", status="received")]
    outbox: list[OutboxItem] = []
    if reply is not None:
        messages.append(NewMessage("out", "text", reply, status="queued", ref="reply-0"))
        outbox.append(
            OutboxItem(
                kind="send_text",
                order_key=f"reply:{key(contact)}",
                idempotency_key=f"reply:{key(contact)}:{turn_id}:0",
                payload={"channel": "zapi", "contact_id": contact, "text": reply, "message_ref": "reply-0"},
            )
        )
    return TurnCommit(
        turn_id=turn_id,
        contact_key=key(contact),
        channel="zapi",
        contact_id=contact,
        phone=contact,
        name=NAME_A if contact == LEAD_A else NAME_B,
        inbound_ids=inbound_ids or [],
        messages=messages,
        profile={"name": "Maria", "city": "Londrina"},
        score=30,
        temperature="frio",
        score_reasons=["segmento: +20"],
        lead_messages_added=1,
        outbox=outbox,
        **extras,
    )


def follow_ups(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as db:
        return db.execute(
            "SELECT id, contact_key, attempt, status, reason FROM followups ORDER BY id"
        ).fetchall()


def in_hours(hours: float) -> FollowUp:
    return FollowUp(due_at=now() + timedelta(hours=hours), attempt=1)


# --- what a turn writes for sales ------------------------------------------------------------


async def test_quotes_and_technical_questions_are_written_and_read_back(store: SqliteStore) -> None:
    await store.commit_turn(
        turn(
            quotes=[
                QuoteRequest(
                    products=["FB300", "molde 120 mm"],
                    quantity="2 unidades",
                    summary="Frigorífico em Londrina/PR, 3.000/dia, compra em 30 dias.",
                ),
            ],
            technical_questions=[
                TechnicalQuestion(question="A FB300 forma frango?", context="frigorífico de aves")
            ],
        )
    )
    await store.commit_turn(
        turn(
            turn_id="t0002",
            quotes=[QuoteRequest(products=["FBM100"], quantity=None, summary="Alternativa manual.")],
        )
    )

    quotes = await store.quotes(key())
    assert [(q["products"], q["quantity"], q["summary"], q["status"]) for q in quotes] == [
        (
            ["FB300", "molde 120 mm"],
            "2 unidades",
            "Frigorífico em Londrina/PR, 3.000/dia, compra em 30 dias.",
            "novo",
        ),
        (["FBM100"], None, "Alternativa manual.", "novo"),
    ]
    assert [q["turn_id"] for q in quotes] == ["t0001", "t0002"]
    lead = await store.get_lead(key())
    assert lead is not None
    assert all(q["lead_id"] == lead.id and q["conversation_id"] == lead.conversation_id for q in quotes)

    questions = await store.technical_questions(key())
    assert [(q["question"], q["context"], q["status"]) for q in questions] == [
        ("A FB300 forma frango?", "frigorífico de aves", "aberta")
    ]
    # Another lead sees none of them.
    assert await store.quotes(key(LEAD_B)) == []
    assert await store.technical_questions(key(LEAD_B)) == []


async def test_handoff_opt_out_and_summary_are_on_the_lead(store: SqliteStore) -> None:
    await store.commit_turn(turn(summary="Maria quer uma FB300 para o frigorífico."))
    lead = await store.get_lead(key())
    assert lead is not None
    assert (lead.summary, lead.handoff_state, lead.opted_out) == (
        "Maria quer uma FB300 para o frigorífico.",
        None,
        False,
    )
    assert lead.last_inbound_at is not None

    await store.commit_turn(
        turn(
            turn_id="t0002",
            handoff=Handoff(reason="pediu_humano", summary="Pediu um vendedor."),
            summary=None,
        )
    )
    lead = await store.get_lead(key())
    assert lead is not None
    assert (lead.handoff_state, lead.handoff_reason) == ("requested", "pediu_humano")
    assert lead.summary == "Maria quer uma FB300 para o frigorífico."  # no new summary keeps the old one

    await store.commit_turn(turn(turn_id="t0003", opt_out=True))
    lead = await store.get_lead(key())
    assert lead is not None and lead.opted_out is True
    # A later ordinary commit never clears do-not-contact.
    await store.commit_turn(turn(turn_id="t0004"))
    lead = await store.get_lead(key())
    assert lead is not None and lead.opted_out is True


async def test_a_commit_with_opt_out_never_schedules_a_follow_up(store: SqliteStore, db_path: Path) -> None:
    await store.commit_turn(turn(opt_out=True, follow_up=in_hours(2)))
    assert follow_ups(db_path) == []
    assert await store.due_follow_ups(now=now() + timedelta(days=30), limit=10) == []


async def test_a_commit_schedules_the_follow_up_it_carries(store: SqliteStore) -> None:
    due_at = now() + timedelta(hours=2)
    await store.commit_turn(turn(follow_up=FollowUp(due_at=due_at, attempt=1)))
    [due] = await store.due_follow_ups(now=due_at, limit=10)
    assert (due.contact_key, due.attempt) == (key(), 1)
    assert abs((due.due_at - due_at).total_seconds()) < 0.001
    assert due.scheduled_at <= now()


async def test_every_commit_cancels_the_leads_pending_follow_ups(store: SqliteStore, db_path: Path) -> None:
    await store.commit_turn(turn(follow_up=in_hours(2)))
    await store.commit_turn(turn(LEAD_B, follow_up=in_hours(2)))
    # The lead writes again: the pending nudge is moot, the new turn schedules its own.
    await store.commit_turn(turn(turn_id="t0002", follow_up=in_hours(2)))
    rows = follow_ups(db_path)
    assert [(r[1], r[3], r[4]) for r in rows] == [
        (key(), "cancelled", "lead_replied"),
        (key(LEAD_B), "pending", None),
        (key(), "pending", None),
    ]

    # A commit without a new nudge still cancels.
    await store.commit_turn(turn(turn_id="t0003"))
    assert [(r[1], r[3], r[4]) for r in follow_ups(db_path)][2] == (key(), "cancelled", "lead_replied")
    assert follow_ups(db_path)[1][3] == "pending"  # other leads untouched


async def test_a_fired_follow_up_is_marked_sent_and_the_next_replaces_nothing_else(
    store: SqliteStore, db_path: Path
) -> None:
    await store.commit_turn(turn(follow_up=in_hours(2)))
    [due] = await store.due_follow_ups(now=now() + timedelta(hours=3), limit=10)
    # The bot writes first (no inbound): the fired nudge is sent, the next is scheduled.
    nudge = turn(
        turn_id="t0002",
        follow_up=FollowUp(due_at=now() + timedelta(hours=24), attempt=2),
        lead_wrote=False,
        fired_follow_up_id=due.id,
    )
    nudge.messages = [NewMessage("out", "text", "Oi Maria, conseguiu ver?", status="queued")]
    nudge.lead_messages_added = 0
    before = await store.get_lead(key())
    await store.commit_turn(nudge)

    rows = follow_ups(db_path)
    assert [(r[2], r[3], r[4]) for r in rows] == [(1, "sent", None), (2, "pending", None)]
    after = await store.get_lead(key())
    assert before is not None and after is not None
    # The nudge is not the lead writing: their last message time and count stay.
    assert after.last_inbound_at == before.last_inbound_at
    assert after.lead_message_count == before.lead_message_count


async def test_a_bot_only_commit_cancels_with_reason_replaced(store: SqliteStore, db_path: Path) -> None:
    await store.commit_turn(turn(follow_up=in_hours(2)))
    await store.commit_turn(turn(turn_id="t0002", lead_wrote=False, follow_up=in_hours(5)))
    assert [(r[3], r[4]) for r in follow_ups(db_path)] == [("cancelled", "replaced"), ("pending", None)]


async def test_due_follow_ups_returns_only_due_pending_ones_oldest_first(store: SqliteStore) -> None:
    t0 = now()
    await store.commit_turn(turn(LEAD_A, follow_up=FollowUp(due_at=t0 + timedelta(hours=2), attempt=1)))
    await store.commit_turn(turn(LEAD_B, follow_up=FollowUp(due_at=t0 + timedelta(hours=1), attempt=1)))

    assert await store.due_follow_ups(now=t0, limit=10) == []
    assert [d.contact_key for d in await store.due_follow_ups(now=t0 + timedelta(minutes=61), limit=10)] == [
        key(LEAD_B)
    ]
    due = await store.due_follow_ups(now=t0 + timedelta(hours=3), limit=10)
    assert [d.contact_key for d in due] == [key(LEAD_B), key(LEAD_A)]
    assert [d.contact_key for d in await store.due_follow_ups(now=t0 + timedelta(hours=3), limit=1)] == [
        key(LEAD_B)
    ]

    await store.cancel_follow_up(due[0].id, reason="opted_out")
    assert [d.contact_key for d in await store.due_follow_ups(now=t0 + timedelta(hours=3), limit=10)] == [
        key(LEAD_A)
    ]


async def test_cancel_follow_up_records_the_reason(store: SqliteStore, db_path: Path) -> None:
    await store.commit_turn(turn(follow_up=in_hours(2)))
    [due] = await store.due_follow_ups(now=now() + timedelta(hours=3), limit=10)
    await store.cancel_follow_up(due.id, reason="outside_24h_window")
    assert [(r[3], r[4]) for r in follow_ups(db_path)] == [("cancelled", "outside_24h_window")]


# --- LGPD erasure --------------------------------------------------------------------------------


async def _full_lead(store: SqliteStore, contact: str, tag: str) -> None:
    """A lead with everything a conversation leaves behind, plus a message still waiting."""
    await store.add_inbound(inbound(f"{tag}-1", contact=contact, text=f"Sou {tag}, meu fone é {contact}"))
    ids = [r.id for r in await store.pending_inbound(key(contact))]
    await store.commit_turn(
        turn(
            contact,
            turn_id=f"{tag}-t1",
            inbound_ids=ids,
            reply=f"Prazer! Anotei o número {contact}.",
            quotes=[QuoteRequest(products=["FB300"], quantity="1", summary=f"Lead {tag}, fone {contact}")],
            technical_questions=[TechnicalQuestion(question="Forma frango?", context=f"contato {contact}")],
            handoff=Handoff(reason="lead_quente", summary=f"{tag} quer comprar"),
            summary=f"{tag} ({contact}) quer uma FB300.",
            follow_up=in_hours(2),
        )
    )
    await store.add_inbound(inbound(f"{tag}-2", contact=contact, text="ainda está aí?"))


async def test_forget_lead_erases_everything_about_the_lead_and_nothing_else(
    store: SqliteStore, db_path: Path
) -> None:
    await _full_lead(store, LEAD_A, "maria")
    await _full_lead(store, LEAD_B, "joao")

    assert await store.forget_lead(key(LEAD_A)) is True

    assert await store.get_lead(key(LEAD_A)) is None
    assert await store.recent_messages(key(LEAD_A), 50) == []
    assert await store.pending_inbound(key(LEAD_A)) == []
    assert key(LEAD_A) not in await store.pending_contacts()
    assert await store.quotes(key(LEAD_A)) == []
    assert await store.technical_questions(key(LEAD_A)) == []
    due = await store.due_follow_ups(now=now() + timedelta(days=1), limit=10)
    assert [d.contact_key for d in due] == [key(LEAD_B)]
    claimed = await store.claim_outbox(limit=10, now=now() + timedelta(seconds=1))
    replies = [item for item in claimed if item.kind != ERASURE_KIND]
    assert [item.payload["contact_id"] for item in replies] == [LEAD_B]  # A's queued reply is gone
    # What is left of A in the queue is the erasure itself, naming no one.
    [erasure] = [item for item in claimed if item.kind == ERASURE_KIND]
    assert (
        LEAD_A not in json.dumps(erasure.payload)
        and LEAD_A not in erasure.order_key + erasure.idempotency_key
    )

    # The other lead is intact.
    other = await store.get_lead(key(LEAD_B))
    assert other is not None and other.name == NAME_B and other.handoff_state == "requested"
    assert len(await store.recent_messages(key(LEAD_B), 50)) == 2
    assert len(await store.pending_inbound(key(LEAD_B))) == 1
    assert len(await store.quotes(key(LEAD_B))) == 1
    assert len(await store.technical_questions(key(LEAD_B))) == 1


async def test_forget_lead_keeps_one_anonymous_audit_row(store: SqliteStore, db_path: Path) -> None:
    await _full_lead(store, LEAD_A, "maria")
    created_at = (await store.get_lead(key(LEAD_A))).created_at  # type: ignore[union-attr]
    assert await store.forget_lead(key(LEAD_A)) is True

    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM erasures")]
    assert len(rows) == 1
    [audit] = rows
    assert audit["channel"] == "zapi"
    assert audit["temperature"] == "frio"
    assert datetime.fromisoformat(audit["lead_created_at"]) == created_at
    assert datetime.fromisoformat(audit["erased_at"]) <= now()
    deleted = json.loads(audit["rows_deleted"])
    assert deleted["messages"] == 2 and deleted["orcamentos"] == 1 and deleted["technical_questions"] == 1
    assert deleted["followups"] == 1 and deleted["inbound"] == 2 and deleted["outbox"] == 1
    text = json.dumps(audit, ensure_ascii=False)
    for personal in (LEAD_A, LEAD_A[-8:], "Maria", "maria", "Souza", "Londrina"):
        assert personal not in text


def _all_table_text(db_path: Path) -> str:
    """Every row of every table, as text (what a query on the database can reveal)."""
    with sqlite3.connect(db_path) as db:
        return "\n".join(db.iterdump())


async def test_after_forget_the_phone_is_in_no_table(store: SqliteStore, db_path: Path) -> None:
    await _full_lead(store, LEAD_A, "maria")
    await _full_lead(store, LEAD_B, "joao")
    assert LEAD_A in _all_table_text(db_path)

    await store.forget_lead(key(LEAD_A))

    dump = _all_table_text(db_path)
    assert LEAD_A not in dump
    assert NAME_A not in dump
    assert LEAD_B in dump  # the other lead is still there


async def test_after_forget_the_phone_is_not_left_in_the_database_files(
    store: SqliteStore, db_path: Path
) -> None:
    """Deleted rows must not stay readable in free pages of the file or in its WAL."""
    await _full_lead(store, LEAD_A, "maria")
    await store.forget_lead(key(LEAD_A))
    await store.close()

    leftovers = [
        path.name
        for path in db_path.parent.iterdir()
        if path.name.startswith(db_path.name) and LEAD_A.encode() in path.read_bytes()
    ]
    assert leftovers == []


async def test_after_forget_no_copy_of_the_lead_is_in_the_files_even_with_the_bot_still_running(
    store: SqliteStore, db_path: Path
) -> None:
    """The bot's connection stays open (as when `forget` runs beside a live bot), the lead
    had outbound-webhook items (done and pending, one lane per endpoint) carrying the
    card: not one byte of phone, name or e-mail may be left in db, -wal or -shm."""
    email = "maria@acougue.com.br"
    card = {"lead": {"contact_key": key(), "phone": LEAD_A, "name": NAME_A, "email": email}}
    hooks = [
        OutboxItem(
            kind="outbound_webhook",
            order_key=f"hooks:{key()}#{endpoint}",
            idempotency_key=f"hook:{endpoint}:lead.created:t0001:0",
            payload={"contact_key": key(), "endpoint_id": endpoint, "event": "lead.created", "data": card},
        )
        for endpoint in ("crm-a", "crm-b")
    ]
    await _full_lead(store, LEAD_A, "maria")
    commit = turn(LEAD_A, turn_id="t0002")
    commit.outbox, commit.profile = hooks, {"email": email}
    await store.commit_turn(commit)
    [first, *_] = await store.claim_outbox(limit=10, now=now() + timedelta(seconds=1))
    await store.complete_outbox(first.id or 0)
    bot = SqliteStore(db_path)  # the running bot's own connection
    await bot.open()
    try:
        assert (await bot.get_lead(key())) is not None  # it has read the lead, and stays open
        assert await store.forget_lead(key()) is True
        files = {p.name: p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)}
    finally:
        await bot.close()
    assert {db_path.name, db_path.name + "-wal"} <= set(files)
    for needle in (LEAD_A, NAME_A, email, "Souza"):
        found = [name for name, raw in files.items() if needle.encode() in raw]
        assert found == [], f"{needle!r} left in {found}"


async def test_the_tombstone_key_is_a_private_file_that_survives_a_restart(db_path: Path) -> None:
    first = SqliteStore(db_path)
    await first.open()
    await first.add_inbound(inbound("k-1"))
    assert await first.forget_lead(key()) is True
    await first.close()
    key_file = db_path.with_name(db_path.name + ".erasure-key")
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert LEAD_A.encode() not in key_file.read_bytes()

    again = SqliteStore(db_path)  # a restart: the same key, so the same tombstone matches
    await again.open()
    try:
        assert await again.is_erased(key()) is True
        assert await again.add_inbound(inbound("k-2")) is False
    finally:
        await again.close()


async def test_a_damaged_tombstone_key_stops_the_store_instead_of_being_replaced(db_path: Path) -> None:
    db_path.with_name(db_path.name + ".erasure-key").write_text("not a key\n")
    broken = SqliteStore(db_path)
    with pytest.raises(StoreUnavailable, match="erasure key"):
        await broken.open()


async def test_two_processes_opening_a_new_database_at_once_share_one_key(db_path: Path) -> None:
    a, b = SqliteStore(db_path), SqliteStore(db_path)
    await a.open()
    await b.open()
    try:
        await a.add_inbound(inbound("k-1"))
        assert await a.forget_lead(key()) is True
        assert await b.is_erased(key()) is True
    finally:
        await a.close()
        await b.close()


async def test_forget_an_unknown_contact_returns_false_and_writes_no_audit(
    store: SqliteStore, db_path: Path
) -> None:
    await _full_lead(store, LEAD_B, "joao")
    assert await store.forget_lead(key(LEAD_A)) is False
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM erasures").fetchone() == (0,)
    assert await store.get_lead(key(LEAD_B)) is not None


async def test_forget_a_contact_who_only_has_waiting_messages(store: SqliteStore, db_path: Path) -> None:
    await store.add_inbound(inbound("only-1", contact=LEAD_A, text="Oi"))
    assert await store.forget_lead(key(LEAD_A)) is True
    assert await store.pending_inbound(key(LEAD_A)) == []
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT channel, lead_created_at FROM erasures").fetchall() == [("zapi", None)]


# --- upgrading a database made by the first release ----------------------------------------------

FIRST_RELEASE_LEADS = """
CREATE TABLE leads (
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
    referral TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


async def test_an_old_database_gets_the_new_columns_and_keeps_its_leads(db_path: Path) -> None:
    stamp = now().isoformat()
    with sqlite3.connect(db_path) as db:
        db.executescript(FIRST_RELEASE_LEADS)
        db.execute(
            "INSERT INTO leads (contact_key, channel, contact_id, phone, name, profile, score, temperature,"
            " score_reasons, lead_message_count, created_at, updated_at)"
            " VALUES (?, 'zapi', ?, ?, ?, '{\"name\": \"Maria\"}', 40, 'morno', '[]', 3, ?, ?)",
            (key(), LEAD_A, LEAD_A, NAME_A, stamp, stamp),
        )

    store = SqliteStore(db_path)
    await store.open()
    try:
        with sqlite3.connect(db_path) as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(leads)")}
        assert {
            "opted_out_at",
            "handoff_state",
            "handoff_reason",
            "handoff_summary",
            "handoff_at",
            "summary",
            "last_inbound_at",
        } <= columns

        lead = await store.get_lead(key())
        assert lead is not None
        assert (lead.name, lead.profile, lead.score, lead.temperature, lead.lead_message_count) == (
            NAME_A,
            {"name": "Maria"},
            40,
            "morno",
            3,
        )
        assert (lead.summary, lead.handoff_state, lead.last_inbound_at) == (None, None, None)

        # The upgraded database takes the new kinds of commit.
        await store.commit_turn(
            turn(
                summary="Retomou o contato.",
                handoff=Handoff(reason="outro", summary="x"),
                follow_up=in_hours(2),
            )
        )
        lead = await store.get_lead(key())
        assert lead is not None
        assert (lead.summary, lead.handoff_state, lead.lead_message_count) == (
            "Retomou o contato.",
            "requested",
            4,
        )
    finally:
        await store.close()

    # Opening again is a no-op (no duplicate column errors).
    again = SqliteStore(db_path)
    await again.open()
    await again.close()

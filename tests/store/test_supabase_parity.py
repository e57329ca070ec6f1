"""The Supabase store behaves like the SQLite store where the contract suite does not
look: quotes and technical questions, follow-ups, delivery reports, business messages,
the Chatwoot and CRM links, human replies, metrics and erasure.

One scripted conversation runs through the `Store` protocol on both backends (SQLite in
a temp file, Supabase over the PostgREST bridge on a fresh Postgres schema) and every
observation is compared, with clock-made timestamps and row ids blanked out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.models import AdReferral, InboundMessage, MessageKind
from core.records import (
    FollowUp,
    Handoff,
    NewMessage,
    OutboxItem,
    QuoteRequest,
    TechnicalQuestion,
    TurnCommit,
)
from store.base import Store
from store.sqlite import SqliteStore
from store.supabase import SupabaseStore

A, B, C = "5511987650001", "5511987650002", "5511987650003"
KEY = "parity-service-role-key"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def key(contact: str) -> str:
    return f"whatsapp:{contact}"


def inbound(provider_id: str, contact: str, text: str) -> InboundMessage:
    return InboundMessage(
        channel="zapi",
        contact_id=contact,
        provider_message_id=provider_id,
        kind=MessageKind.TEXT,
        text=text,
        phone=contact,
        name="Maria Souza",
        timestamp=T0,
        referral=AdReferral(ctwa_clid="ARAkLk", source_id="120210"),
    )


def turn(contact: str, turn_id: str, inbound_ids: list[int], **extras: Any) -> TurnCommit:
    reply = f"Resposta {turn_id}"
    return TurnCommit(
        turn_id=turn_id,
        contact_key=key(contact),
        channel="zapi",
        contact_id=contact,
        phone=contact,
        name="Maria Souza",
        inbound_ids=inbound_ids,
        messages=[
            NewMessage("in", "text", "quero uma FB300", status="received"),
            NewMessage("out", "text", reply, status="queued", ref="r0"),
        ],
        profile={"name": "Maria", "city": "Londrina", "at": T0},
        score=70,
        temperature="quente",
        score_reasons=["segmento: +20"],
        lead_messages_added=len(inbound_ids),
        outbox=[
            OutboxItem(
                kind="send_text",
                order_key=f"reply:{key(contact)}",
                idempotency_key=f"reply:{key(contact)}:{turn_id}:0",
                payload={"channel": "zapi", "contact_id": contact, "text": reply, "message_ref": "r0"},
            )
        ],
        at=T0,
        **extras,
    )


def plain(value: Any) -> Any:
    """Comparable form: dataclasses as dicts, clock-made timestamps and row ids blanked."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {
            k: ("<set>" if v is not None else None) if _volatile(k) else plain(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _volatile(name: str) -> bool:
    return name in {"id", "lead_id", "conversation_id", "message_id"} or name.endswith("_at")


async def scenario(store: Store) -> list[Any]:
    seen: list[Any] = []
    note = seen.append

    # Inbox and a failed turn.
    note(await store.add_inbound(inbound("m1", A, "Oi")))
    note(await store.add_inbound(inbound("m2", A, "quero uma FB300")))
    note(await store.add_inbound(inbound("m3", B, "Bom dia")))
    ids = [r.id for r in await store.pending_inbound(key(A))]
    await store.record_turn_failure(ids, "LLMUnavailable: " + "x" * 600)
    note([(r.message.text, r.attempts) for r in await store.pending_inbound(key(A))])

    # A full turn, then a nudge the bot sends first.
    await store.commit_turn(
        turn(
            A,
            "t1",
            ids,
            quotes=[
                QuoteRequest(products=["FB300", "molde"], quantity="2", summary="Frigorífico, 3.000/dia")
            ],
            technical_questions=[TechnicalQuestion(question="Forma frango?", context="aves")],
            handoff=Handoff(reason="lead_quente", summary="Quer comprar"),
            summary="Maria quer uma FB300.",
            follow_up=FollowUp(due_at=T0 + timedelta(hours=2), attempt=1),
            referral={"ctwa_clid": "ARAkLk"},
        )
    )
    note(await store.quotes(key(A)))
    note(await store.technical_questions(key(A)))
    note(await store.quotes(key(B)))
    [due] = await store.due_follow_ups(now=T0 + timedelta(hours=3), limit=10)
    note((due.contact_key, due.attempt, due.due_at))
    note(await store.due_follow_ups(now=T0 + timedelta(hours=1), limit=10))
    nudge = turn(
        A,
        "t2",
        [],
        lead_wrote=False,
        fired_follow_up_id=due.id,
        follow_up=FollowUp(due_at=T0 + timedelta(hours=24), attempt=2),
        new_session=True,
    )
    await store.commit_turn(nudge)
    [second] = await store.due_follow_ups(now=T0 + timedelta(days=2), limit=10)
    await store.cancel_follow_up(second.id, reason="outside_24h_window")
    note(await store.due_follow_ups(now=T0 + timedelta(days=2), limit=10))
    note(await store.get_lead(key(A)))

    # Delivery: sent, reports in any order, a failure, the contact behind a provider id.
    claimed = await store.claim_outbox(limit=10, now=datetime.now(UTC))
    note([(i.kind, i.idempotency_key, i.payload) for i in claimed])
    await store.mark_message_sent(claimed[0].payload["message_id"], "wamid.A1")
    for status in ("read", "delivered", "sent"):
        note(await store.record_delivery_status("zapi", "wamid.A1", status))
    note(await store.record_delivery_status("zapi", "wamid.unknown", "read"))
    note(await store.message_contact("wamid.A1"))
    note(await store.message_contact("wamid.unknown"))
    await store.mark_message_sent(claimed[0].payload["message_id"], None)  # a late "sent" keeps "read"
    note(
        [
            (m.direction, m.text, m.status, m.provider_message_id)
            for m in await store.recent_messages(key(A), 10)
        ]
    )
    await store.mark_message_failed(claimed[0].payload["message_id"], "HTTP 400 " + "y" * 600)
    note(await store.record_delivery_status("zapi", "wamid.A1", "failed", ""))
    note([m.status for m in await store.recent_messages(key(A), 10)])

    # Handoff outside a turn: the first reason stays; an unknown contact is a no-op.
    await store.request_handoff(key(A), reason="pediu_humano", summary="outra")
    await store.request_handoff(key(C), reason="x", summary="y")
    lead = await store.get_lead(key(A))
    note((lead.handoff_state, lead.handoff_reason) if lead else None)
    note(await store.get_lead(key(C)))

    # The business writes from the phone: a new prospect, the bot's own echo, a person.
    pause = T0 + timedelta(hours=12)
    note(
        await store.note_business_message(
            key(C), provider_message_id="wamid.C1", text="Oi", pause_until=pause
        )
    )
    note(await store.get_lead(key(C)))
    note(
        await store.note_business_message(
            key(A), provider_message_id="wamid.A1", text=None, pause_until=pause
        )
    )
    note(
        await store.note_business_message(
            key(A), provider_message_id="wamid.X", text=" Resposta t2 ", pause_until=pause
        )
    )
    note(
        await store.note_business_message(
            key(A), provider_message_id="wamid.Y", text="Sou o Carlos", pause_until=pause
        )
    )
    note((await store.get_lead(key(A))).paused_until)  # type: ignore[union-attr]

    # Chatwoot: the link, the bot's own messages, a seller's reply, ownership.
    await store.save_chatwoot_link(key(A), contact_id=42, source_id="src-1", conversation_id=77)
    await store.save_chatwoot_link(key(A), contact_id=42, source_id=None, conversation_id=78)
    found = await store.lead_by_chatwoot_conversation(78)
    note((found.contact_key, found.chatwoot_source_id, found.chatwoot_conversation_id) if found else None)
    note(await store.lead_by_chatwoot_conversation(77))
    note(await store.lead_by_chatwoot_contact(42))
    note(await store.lead_by_chatwoot_contact(43))
    bot_message = claimed[0].payload["message_id"]
    note(await store.is_own_chatwoot_message(900, conversation_id=78, text="Resposta t2"))
    await store.set_chatwoot_message_id(bot_message, 900)
    await store.set_chatwoot_message_id(bot_message, 901)  # already linked: the first link stays
    note(await store.is_own_chatwoot_message(900))
    note(await store.is_own_chatwoot_message(901))
    human = await store.record_human_reply(key(A), text="Sou o Carlos, vendedor", chatwoot_message_id=950)
    note(human is not None)
    note(await store.record_human_reply(key(A), text="de novo", chatwoot_message_id=950))
    note(await store.record_human_reply(key(B), text="sem lead", chatwoot_message_id=951))
    note(await store.is_own_chatwoot_message(950, conversation_id=78, text="Sou o Carlos, vendedor"))
    await store.set_human_owned(key(A), until=T0 + timedelta(hours=6))
    note(await store.get_lead(key(A)))
    await store.set_human_owned(key(A), until=None, resolved=True)
    note(await store.get_lead(key(A)))

    # Back through an ad: the newest ad replaces the first; nothing for an unknown lead.
    note(await store.record_referral(key(A), {"source_id": "120210000000000777", "source_type": "ad"}))
    note(await store.record_referral(key(B), {"source_id": "120210000000000777"}))
    note((await store.get_lead(key(A))).referral)  # type: ignore[union-attr]

    # Outbox outside a turn, CRM link, metrics.
    extra = OutboxItem(
        kind="capi_event", order_key=f"capi:{key(A)}", idempotency_key="capi:1", payload={"e": 1}
    )
    note(await store.enqueue(extra))
    note(await store.enqueue(extra))
    await store.save_crm_link(key(A), person_id=101, company_id=None, deal_id=None)
    await store.save_crm_link(key(A), person_id=None, company_id=202, deal_id=303)
    deal = await store.lead_by_crm_deal(303)
    note((deal.crm_person_id, deal.crm_company_id, deal.crm_deal_id) if deal else None)
    note(await store.lead_counts())
    note(await store.outbox_stats_by_kind())
    note(await store.outbox_stats())

    # LGPD erasure.
    note(await store.forget_lead(key(A)))
    note(await store.get_lead(key(A)))
    note(await store.quotes(key(A)))
    note([i.idempotency_key for i in await store.list_outbox()])
    note(await store.forget_lead(key(A)))
    note(await store.record_referral(key(A), {"source_id": "120210000000000777"}))
    note(await store.lead_by_chatwoot_contact(42))
    note(await store.pending_contacts())
    return [plain(v) for v in seen]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "parity.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def supabase_store() -> AsyncIterator[SupabaseStore]:
    from tests.helpers.postgrest_bridge import PostgrestBridge
    from tests.store.pg_support import fresh_schema

    with fresh_schema() as schema:
        bridge = PostgrestBridge(schema, api_key=KEY)
        store = SupabaseStore("https://sdr-parity.supabase.co", KEY, transport=bridge.transport())
        await store.open()
        try:
            yield store
        finally:
            await store.close()
            bridge.close()


async def test_the_supabase_store_answers_like_the_sqlite_store(
    sqlite_store: SqliteStore, supabase_store: SupabaseStore
) -> None:
    expected = await scenario(sqlite_store)
    actual = await scenario(supabase_store)
    assert len(actual) == len(expected)
    for index, (ours, reference) in enumerate(zip(actual, expected, strict=True)):
        assert ours == reference, f"observation #{index} differs"

"""The `Store` contract, erasure: `forget_lead` takes everything of the lead, leaves a
tombstone that no late or replayed delivery gets past, and one erasure item naming no one.

Runs on every backend of `conftest.py` (SQLite, and Supabase over the PostgREST bridge on
a real Postgres), through the protocol only.
"""

from __future__ import annotations

import json

from core.records import ERASURE_KIND, NewMessage
from store.base import Store
from tests.store.test_store_contract import (
    LEAD_A,
    LEAD_B,
    inbound,
    key,
    reply_item,
    turn,
)

NAME = "Maria Souza"
EMAIL = "maria@acougue.com.br"
LID = "208573150634094@lid"


async def _lead_with_history(store: Store, contact: str = LEAD_A, tag: str = "a") -> None:
    """A lead with a stored message, an answered turn (our reply has a provider id), and
    queued side effects in every kind of lane, the webhook ones carrying the lead card."""
    await store.add_inbound(inbound(f"{tag}-in-1", contact=contact, text=f"Sou a {NAME}, {EMAIL}"))
    [record] = await store.pending_inbound(key(contact))
    card = {"lead": {"phone": contact, "name": NAME, "email": EMAIL}}
    hook = reply_item(
        f"{tag}-hook", order_key=f"hooks:{key(contact)}#crm-x", contact_key=key(contact), data=card
    )
    hook.kind = "outbound_webhook"
    await store.commit_turn(
        turn(
            contact=contact,
            turn_id=f"{tag}-turn-1",
            inbound_ids=[record.id],
            messages=[
                NewMessage("in", "text", f"Sou a {NAME}, {EMAIL}", provider_message_id=f"{tag}-in-1"),
                NewMessage(
                    "out", "text", "Prazer, Maria!", provider_message_id=f"{tag}-out-1", status="sent"
                ),
            ],
            profile={"name": NAME, "email": EMAIL},
            outbox=[reply_item(f"{tag}-reply", order_key=f"reply:{key(contact)}", contact_id=contact), hook],
        )
    )
    await store.save_chatwoot_link(key(contact), contact_id=1042, source_id="src-1", conversation_id=318)
    await store.save_crm_link(key(contact), person_id=90001, company_id=None, deal_id=90002)


async def test_forget_takes_every_queued_item_of_the_lead_and_leaves_one_erasure_item(store: Store) -> None:
    await _lead_with_history(store)
    await _lead_with_history(store, LEAD_B, "b")

    assert await store.forget_lead(key()) is True

    items = await store.list_outbox()
    [erasure] = [i for i in items if i.kind == ERASURE_KIND]
    kept = sorted(i.idempotency_key for i in items if i.kind != ERASURE_KIND)
    assert kept == ["b-hook", "b-reply"]  # the other lead's are untouched
    # The erasure item carries where the lead lived elsewhere, and nothing about who it was.
    assert erasure.payload["chatwoot_contact_id"] == 1042
    assert (erasure.payload["crm_person_id"], erasure.payload["crm_deal_id"]) == (90001, 90002)
    assert erasure.payload["channel"] == "zapi" and erasure.payload["erasure_id"]
    shown = json.dumps(erasure.payload) + erasure.order_key + erasure.idempotency_key
    for personal in (LEAD_A, NAME, "Maria", EMAIL):
        assert personal not in shown
    assert await store.get_lead(key()) is None
    assert await store.is_erased(key()) is True
    assert await store.is_erased(key(LEAD_B)) is False


async def test_a_replayed_or_late_message_of_an_erased_lead_is_dropped(store: Store) -> None:
    await _lead_with_history(store)
    assert await store.forget_lead(key()) is True

    assert await store.add_inbound(inbound("a-in-1", contact=LEAD_A)) is False  # an old webhook, replayed
    assert await store.add_inbound(inbound("a-in-late", contact=LEAD_A)) is False  # a late one, never seen
    from_phone = inbound("a-echo", contact=LEAD_A)
    from_phone.from_me = True
    assert await store.add_inbound(from_phone, status="ignored", reason="from_me") is False
    assert await store.pending_inbound(key()) == []
    assert key() not in await store.pending_contacts()
    assert await store.get_lead(key()) is None
    # Someone else writes as usual.
    assert await store.add_inbound(inbound("b-in-1", contact=LEAD_B)) is True


async def test_an_erased_message_id_is_dropped_under_another_contact_form(store: Store) -> None:
    """The provider may replay an old message naming the lead by its hidden id (@lid)
    instead of the phone: the message id alone is enough to know it."""
    await _lead_with_history(store)
    assert await store.forget_lead(key()) is True
    assert await store.add_inbound(inbound("a-in-1", contact=LID)) is False
    assert await store.pending_inbound(key(LID)) == []
    assert await store.is_erased(key(LID)) is False  # the lid itself was never the erased key


async def test_a_turn_of_a_lead_erased_while_it_ran_writes_nothing(store: Store) -> None:
    await store.add_inbound(inbound("a-in-1"))
    [record] = await store.pending_inbound(key())
    assert await store.forget_lead(key()) is True

    await store.commit_turn(
        turn(
            inbound_ids=[record.id],
            messages=[NewMessage("out", "text", "Olá, Maria!")],
            outbox=[reply_item("late-reply", order_key=f"reply:{key()}")],
        )
    )
    assert await store.get_lead(key()) is None
    assert await store.recent_messages(key(), 10) == []
    assert [i.kind for i in await store.list_outbox()] == [ERASURE_KIND]


async def test_an_erased_lid_lead_can_be_forgotten_and_stays_forgotten(store: Store) -> None:
    await store.add_inbound(inbound("lid-1", contact=LID))
    assert await store.forget_lead(key(LID)) is True
    assert await store.add_inbound(inbound("lid-2", contact=LID)) is False
    assert await store.is_erased(key(LID)) is True


async def test_forgetting_an_unknown_contact_writes_no_tombstone(store: Store) -> None:
    assert await store.forget_lead(key()) is False
    assert await store.is_erased(key()) is False
    assert await store.list_outbox() == []
    assert await store.add_inbound(inbound("a-in-1")) is True

"""The `Store` contract, continued: operator views of the outbox (dead letters, replay,
circuit deferrals), turn leases shared by several instances, and the CRM link.

Like `test_store_contract.py`, these talk only through the protocol, so they run on
every backend listed in `conftest.py`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from store.base import Store
from tests.store.test_store_contract import (
    LEAD_A,
    LEAD_B,
    LEAD_C,
    claim_all,
    enqueue,
    inbound,
    key,
    later,
    reply_item,
    turn,
)

# --- dead letters and replay ----------------------------------------------------------


async def test_list_outbox_filters_by_status_and_kind_newest_first(store: Store) -> None:
    await enqueue(store, reply_item("r1"), reply_item("r2", order_key="reply:zapi:" + LEAD_B))
    [first, second] = sorted(await claim_all(store), key=lambda i: i.id or 0)
    await store.kill_outbox(first.id or 0, error="400 invalid phone")

    dead = await store.list_outbox(status="dead")
    assert [i.idempotency_key for i in dead] == ["r1"]
    assert dead[0].last_error == "400 invalid phone"
    assert dead[0].created_at is not None and dead[0].updated_at is not None
    everything = await store.list_outbox()
    assert [i.idempotency_key for i in everything] == ["r2", "r1"]
    assert await store.list_outbox(kind="chatwoot_message") == []
    assert len(await store.list_outbox(limit=1)) == 1


async def test_get_outbox_shows_one_item_with_its_payload(store: Store) -> None:
    await enqueue(store, reply_item("r1", text="Bom dia!"))
    [item] = await claim_all(store)
    shown = await store.get_outbox(item.id or 0)
    assert shown is not None
    assert shown.payload["text"] == "Bom dia!" and shown.status == "inflight" and shown.attempts == 1
    assert await store.get_outbox(987654) is None


async def test_replaying_one_dead_item_keeps_its_idempotency_key_and_resets_attempts(store: Store) -> None:
    await enqueue(store, reply_item("r1"))
    [item] = await claim_all(store)
    await store.kill_outbox(item.id or 0, error="boom")

    assert await store.replay_outbox(item.id or 0) is True
    [again] = await claim_all(store)
    assert again.id == item.id and again.idempotency_key == "r1" and again.attempts == 1
    # Only dead items replay: a live one is left alone, an unknown id is refused.
    assert await store.replay_outbox(item.id or 0) is False
    assert await store.replay_outbox(987654) is False
    # The same key is still unique: enqueueing it again adds nothing.
    await enqueue(store, reply_item("r1"))
    assert len(await store.list_outbox()) == 1


async def test_a_deferred_item_is_pending_again_without_spending_an_attempt(store: Store) -> None:
    await enqueue(store, reply_item("r1"))
    [item] = await claim_all(store)
    retry_at = later(60)
    await store.defer_outbox(item.id or 0, next_attempt_at=retry_at, reason="circuit_open")

    shown = await store.get_outbox(item.id or 0)
    assert shown is not None and shown.status == "pending" and shown.attempts == 0
    assert await claim_all(store) == []  # not before the breaker half-opens
    [again] = await claim_all(store, at=retry_at + timedelta(seconds=1))
    assert again.attempts == 1
    assert (await store.outbox_stats()).dead == 0


async def test_stats_by_kind_count_open_and_dead_items_per_integration(store: Store) -> None:
    crm = reply_item("c1", order_key="crm:" + key())
    crm.kind = "piperun_sync"
    await enqueue(store, reply_item("r1"), crm, reply_item("r2", order_key="reply:zapi:" + LEAD_B))
    claimed = await claim_all(store)
    dead = next(i for i in claimed if i.idempotency_key == "r2")
    await store.kill_outbox(dead.id or 0, error="gone")
    done = next(i for i in claimed if i.idempotency_key == "c1")
    await store.complete_outbox(done.id or 0)

    stats = await store.outbox_stats_by_kind()
    assert stats["send_text"].inflight == 1 and stats["send_text"].dead == 1
    assert "piperun_sync" not in stats or (stats["piperun_sync"].pending, stats["piperun_sync"].dead) == (
        0,
        0,
    )


# --- turn leases across instances -----------------------------------------------------


async def test_a_leads_turn_is_leased_to_one_instance_at_a_time(store: Store) -> None:
    ck = key()
    assert await store.claim_contact(ck, owner="bot-1", lease_s=30) is True
    assert await store.claim_contact(ck, owner="bot-2", lease_s=30) is False
    assert await store.claim_contact(ck, owner="bot-1", lease_s=30) is True  # renewal
    await store.release_contact(ck, owner="bot-2")  # not its lease: nothing happens
    assert await store.claim_contact(ck, owner="bot-2", lease_s=30) is False
    await store.release_contact(ck, owner="bot-1")
    assert await store.claim_contact(ck, owner="bot-2", lease_s=30) is True


async def test_the_lease_of_a_dead_instance_is_taken_over_when_it_expires(store: Store) -> None:
    ck = key()
    assert await store.claim_contact(ck, owner="bot-dead", lease_s=0.2) is True
    assert await store.claim_contact(ck, owner="bot-2", lease_s=30) is False
    await asyncio.sleep(0.3)
    assert await store.claim_contact(ck, owner="bot-2", lease_s=30) is True
    assert await store.claim_contact(ck, owner="bot-dead", lease_s=30) is False


async def test_ready_contacts_wait_for_the_quiet_window_and_skip_leased_ones(store: Store) -> None:
    await store.add_inbound(inbound("a1", contact=LEAD_A))
    await store.add_inbound(inbound("b1", contact=LEAD_B))
    await store.add_inbound(inbound("c1", contact=LEAD_C))
    # Still inside the quiet window: nobody is ready.
    assert (
        await store.claim_ready_contacts(owner="bot-1", limit=10, quiet_s=60, max_wait_s=60, lease_s=30) == []
    )

    assert await store.claim_contact(key(LEAD_B), owner="bot-2", lease_s=30) is True
    await asyncio.sleep(0.05)
    ready = await store.claim_ready_contacts(owner="bot-1", limit=10, quiet_s=0.01, max_wait_s=60, lease_s=30)
    assert ready == [key(LEAD_A), key(LEAD_C)]  # oldest first; B belongs to bot-2
    # They are now leased to bot-1: another instance gets nothing twice.
    assert (
        await store.claim_ready_contacts(owner="bot-3", limit=10, quiet_s=0.01, max_wait_s=60, lease_s=30)
        == []
    )
    assert await store.claim_contact(key(LEAD_A), owner="bot-3", lease_s=30) is False


async def test_ready_contacts_respect_the_limit_and_skip_answered_messages(store: Store) -> None:
    await store.add_inbound(inbound("a1", contact=LEAD_A))
    await store.add_inbound(inbound("b1", contact=LEAD_B))
    [rec] = await store.pending_inbound(key(LEAD_A))
    await store.commit_turn(turn(contact=LEAD_A, inbound_ids=[rec.id]))
    await asyncio.sleep(0.05)
    ready = await store.claim_ready_contacts(owner="bot-1", limit=1, quiet_s=0.01, max_wait_s=60, lease_s=30)
    assert ready == [key(LEAD_B)]


async def test_a_burst_that_never_goes_quiet_is_ready_after_the_max_wait(store: Store) -> None:
    await store.add_inbound(inbound("a1"))
    await asyncio.sleep(0.15)
    await store.add_inbound(inbound("a2"))  # the lead is still typing...
    ready = await store.claim_ready_contacts(owner="bot-1", limit=10, quiet_s=60, max_wait_s=0.1, lease_s=30)
    assert ready == [key()]  # ...but the first message has waited long enough


# --- CRM link -------------------------------------------------------------------------


async def test_the_crm_link_is_kept_on_the_lead_and_partial_updates_keep_the_rest(store: Store) -> None:
    await store.commit_turn(turn())
    await store.save_crm_link(key(), person_id=101, company_id=None, deal_id=None)
    await store.save_crm_link(key(), person_id=None, company_id=202, deal_id=303)
    lead = await store.get_lead(key())
    assert lead is not None
    assert (lead.crm_person_id, lead.crm_company_id, lead.crm_deal_id) == (101, 202, 303)
    found = await store.lead_by_crm_deal(303)
    assert found is not None and found.contact_key == key()
    assert await store.lead_by_crm_deal(404) is None


async def test_forgetting_a_lead_drops_every_lane_of_its_outbox(store: Store) -> None:
    crm = reply_item("c1", order_key="crm:" + key())
    crm.kind = "piperun_sync"
    mirror = reply_item("m1", order_key="chatwoot:" + key())
    mirror.kind = "chatwoot_message"
    hook = reply_item("h1", order_key="hooks:" + key() + "#crm-b", data={"lead": {"phone": LEAD_A}})
    hook.kind = "outbound_webhook"
    other = reply_item("o1", order_key="reply:" + key(LEAD_B), contact_id=LEAD_B)
    await enqueue(store, reply_item("r1", order_key="reply:" + key()), crm, mirror, hook)
    await enqueue(store, other, contact=LEAD_B)
    assert await store.forget_lead(key()) is True
    left = await store.list_outbox()
    assert sorted(i.idempotency_key for i in left if i.kind != "lead_erasure") == ["o1"]

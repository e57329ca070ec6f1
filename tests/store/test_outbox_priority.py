"""The `Store` contract for issue 18: under a flood, a lead's reply is claimed before the
Chatwoot mirror, and both before the CRM, Conversions API and webhooks, without giving
up the order-key rules (one per key, only its head: a later item never overtakes an
earlier one still retrying). Runs on every backend of `conftest.py`."""

from __future__ import annotations

from typing import Any

from core.outbox import BACK_OFFICE_PRIORITY, LEAD_PRIORITY, PAYLOADS, TEAM_PRIORITY, claim_priority
from core.records import OutboxItem
from store.base import Store
from tests.store.test_store_contract import LEAD_A, LEAD_B, LEAD_C, claim_all, enqueue, later


def item(kind: str, idem: str, order_key: str, **payload: Any) -> OutboxItem:
    return OutboxItem(kind=kind, order_key=order_key, idempotency_key=idem, payload={"n": idem, **payload})


def crm(idem: str, contact: str = LEAD_A) -> OutboxItem:
    return item("piperun_sync", idem, f"crm:zapi:{contact}")


def mirror(idem: str, contact: str = LEAD_A) -> OutboxItem:
    return item("chatwoot_message", idem, f"chatwoot:zapi:{contact}")


def reply(idem: str, contact: str = LEAD_A) -> OutboxItem:
    return item("send_text", idem, f"reply:zapi:{contact}")


def keys(items: list[OutboxItem]) -> list[str]:
    return [i.idempotency_key for i in items]


def test_every_kind_has_the_priority_issue_18_gives_it() -> None:
    lead = {"send_text", "send_media", "reengage", "meta_lead_fetch"}
    team = {"chatwoot_message", "chatwoot_profile", "chatwoot_handoff", "chatwoot_note"}
    for kind in PAYLOADS:
        expected = LEAD_PRIORITY if kind in lead else TEAM_PRIORITY if kind in team else BACK_OFFICE_PRIORITY
        assert claim_priority(kind) == expected, kind
    assert claim_priority("a_kind_from_a_newer_release") == BACK_OFFICE_PRIORITY


async def test_a_lead_reply_is_claimed_before_mirror_and_crm_queued_earlier(store: Store) -> None:
    await enqueue(store, crm("crm-b", LEAD_B), mirror("mirror-b", LEAD_B), contact=LEAD_B)
    await enqueue(store, item("outbound_webhook", "hook-c", f"hooks:zapi:{LEAD_C}#e1"), contact=LEAD_C)
    await enqueue(store, reply("reply-a"))

    assert keys(await claim_all(store, limit=1)) == ["reply-a"]
    assert keys(await claim_all(store, limit=1)) == ["mirror-b"]
    # Within a priority, due order: the CRM sync was queued before the webhook.
    assert keys(await claim_all(store, limit=5)) == ["crm-b", "hook-c"]


async def test_one_claim_returns_replies_first_then_fills_the_limit_from_lower_priorities(
    store: Store,
) -> None:
    await enqueue(store, crm("crm-a"), mirror("mirror-a"), reply("reply-a"))
    await enqueue(store, mirror("mirror-b", LEAD_B), reply("reply-b", LEAD_B), contact=LEAD_B)

    assert keys(await claim_all(store, limit=3)) == ["reply-a", "reply-b", "mirror-a"]
    assert keys(await claim_all(store, limit=3)) == ["mirror-b", "crm-a"]


async def test_a_higher_priority_item_never_overtakes_an_earlier_one_of_its_order_key(store: Store) -> None:
    """Priority orders heads, it does not make one: a reply queued in a key behind a
    retrying note still waits for it."""
    shared = f"reply:zapi:{LEAD_A}"
    await enqueue(store, item("chatwoot_note", "note", shared), item("send_text", "after", shared))
    await enqueue(store, reply("other", LEAD_B), contact=LEAD_B)

    assert keys(await claim_all(store)) == ["other", "note"]
    [note] = [i for i in await store.list_outbox(status="inflight") if i.idempotency_key == "note"]
    await store.retry_outbox(note.id or 0, error="HTTP 500", next_attempt_at=later(60))
    assert await claim_all(store) == []  # "after" waits behind its retrying head
    assert keys(await claim_all(store, at=later(120))) == ["note"]
    await store.complete_outbox(note.id or 0)
    assert keys(await claim_all(store)) == ["after"]


async def test_the_next_due_time_is_the_earliest_head_of_any_priority(store: Store) -> None:
    await enqueue(store, reply("reply-a"), reply("reply-a2"), crm("crm-a"))
    claimed = {i.idempotency_key: i for i in await claim_all(store)}
    assert set(claimed) == {"reply-a", "crm-a"}
    await store.retry_outbox(claimed["reply-a"].id or 0, error="x", next_attempt_at=later(600))
    await store.retry_outbox(claimed["crm-a"].id or 0, error="x", next_attempt_at=later(60))

    due = await store.next_outbox_due()  # reply-a2 is due, but not claimable behind reply-a
    assert due is not None and abs((due - later(60)).total_seconds()) < 5
    assert keys(await claim_all(store, at=later(120))) == ["crm-a"]

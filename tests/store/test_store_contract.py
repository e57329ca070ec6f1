"""The `Store` contract: what the runtime relies on from any backend.

Every test here talks to the store only through the `Store` protocol
(`store/base.py`), never through SQL, so the same suite proves every
backend listed in `conftest.py` (`open_store` / `store` fixtures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import StoreUnavailable
from core.models import InboundMessage, MessageKind, contact_key_for
from core.records import NewMessage, OutboxItem, TurnCommit
from store.base import Store

OpenStore = Callable[[], Awaitable[Store]]

LEAD_A = "5511987650001"
LEAD_B = "5511987650002"
LEAD_C = "5511987650003"


# --- builders -------------------------------------------------------------------------


def inbound(
    provider_id: str, *, contact: str = LEAD_A, channel: str = "zapi", text: str = "Oi"
) -> InboundMessage:
    return InboundMessage(
        channel=channel,
        contact_id=contact,
        provider_message_id=provider_id,
        kind=MessageKind.TEXT,
        text=text,
        phone=contact if channel == "zapi" else None,
        name="Maria Souza",
    )


def key(contact: str = LEAD_A, channel: str = "zapi") -> str:
    return contact_key_for(channel, contact)


def reply_item(
    idem: str, *, order_key: str = "reply:zapi:" + LEAD_A, text: str = "Olá!", **payload: Any
) -> OutboxItem:
    return OutboxItem(
        kind="send_text",
        order_key=order_key,
        idempotency_key=idem,
        payload={"channel": "zapi", "contact_id": LEAD_A, "text": text, **payload},
    )


def turn(
    *,
    contact: str = LEAD_A,
    inbound_ids: list[int] | None = None,
    messages: list[NewMessage] | None = None,
    outbox: list[OutboxItem] | None = None,
    profile: dict[str, Any] | None = None,
    lead_messages_added: int = 1,
    name: str | None = "Maria Souza",
    turn_id: str = "turn0001",
    score: int = 10,
    temperature: str = "frio",
) -> TurnCommit:
    return TurnCommit(
        turn_id=turn_id,
        contact_key=key(contact),
        channel="zapi",
        contact_id=contact,
        phone=contact,
        name=name,
        inbound_ids=inbound_ids or [],
        messages=messages or [],
        profile=profile or {},
        score=score,
        temperature=temperature,
        score_reasons=["1 mensagem do lead: +2"],
        lead_messages_added=lead_messages_added,
        outbox=outbox or [],
    )


def now() -> datetime:
    return datetime.now(UTC)


def later(seconds: float = 3600) -> datetime:
    return now() + timedelta(seconds=seconds)


async def enqueue(store: Store, *items: OutboxItem, contact: str = LEAD_A) -> None:
    await store.commit_turn(turn(contact=contact, outbox=list(items), lead_messages_added=0))


async def claim_all(store: Store, *, at: datetime | None = None, limit: int = 100) -> list[OutboxItem]:
    return await store.claim_outbox(limit=limit, now=at or now())


# --- inbox ----------------------------------------------------------------------------


async def test_a_provider_retry_of_the_same_message_is_stored_once(store: Store) -> None:
    message = inbound("3EB0C0NTRACT0001")
    assert await store.add_inbound(message) is True
    assert await store.add_inbound(message) is False
    assert await store.add_inbound(inbound("3EB0C0NTRACT0001", text="different body, same id")) is False

    pending = await store.pending_inbound(key())
    assert len(pending) == 1
    assert pending[0].message == message
    assert pending[0].attempts == 0


async def test_concurrent_deliveries_of_one_message_store_it_once(store: Store) -> None:
    """A provider firing the same webhook several times at once (or two workers)."""
    message = inbound("3EB0C0NCURRENT01")
    results = await asyncio.gather(*(store.add_inbound(message) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert len(await store.pending_inbound(key())) == 1


async def test_concurrent_distinct_messages_are_all_stored_in_arrival_order(store: Store) -> None:
    messages = [inbound(f"3EB0PAR{n:04d}", contact=(LEAD_A, LEAD_B)[n % 2], text=f"m{n}") for n in range(20)]
    results = await asyncio.gather(*(store.add_inbound(m) for m in messages))
    assert results == [True] * 20
    assert [r.message.text for r in await store.pending_inbound(key(LEAD_A))] == [
        f"m{n}" for n in range(0, 20, 2)
    ]
    assert [r.message.text for r in await store.pending_inbound(key(LEAD_B))] == [
        f"m{n}" for n in range(1, 20, 2)
    ]
    assert await store.pending_contacts() == [key(LEAD_A), key(LEAD_B)]


async def test_the_same_provider_id_on_another_channel_is_another_message(store: Store) -> None:
    assert await store.add_inbound(inbound("MID-1", channel="zapi")) is True
    assert await store.add_inbound(inbound("MID-1", channel="instagram")) is True

    assert len(await store.pending_inbound(key(channel="zapi"))) == 1
    assert len(await store.pending_inbound(key(channel="instagram"))) == 1


async def test_ignored_messages_are_recorded_but_never_pending(store: Store) -> None:
    assert await store.add_inbound(inbound("3EB0FROMME000001"), status="ignored", reason="from_me") is True
    assert await store.add_inbound(inbound("3EB0FROMME000001")) is False  # still deduplicated
    assert await store.pending_contacts() == []
    assert await store.pending_inbound(key()) == []


async def test_pending_contacts_come_in_order_of_their_oldest_waiting_message(store: Store) -> None:
    await store.add_inbound(inbound("m1", contact=LEAD_B))
    await store.add_inbound(inbound("m2", contact=LEAD_A))
    await store.add_inbound(inbound("m3", contact=LEAD_B))
    await store.add_inbound(inbound("m4", contact=LEAD_C))
    assert await store.pending_contacts() == [key(LEAD_B), key(LEAD_A), key(LEAD_C)]

    # B's messages are answered: B drops out, the others keep their order.
    ids = [r.id for r in await store.pending_inbound(key(LEAD_B))]
    await store.commit_turn(turn(contact=LEAD_B, inbound_ids=ids))
    assert await store.pending_contacts() == [key(LEAD_A), key(LEAD_C)]


async def test_pending_inbound_lists_a_contacts_messages_oldest_first(store: Store) -> None:
    for index in range(4):
        await store.add_inbound(inbound(f"burst-{index}", text=f"parte {index}"))
    await store.add_inbound(inbound("other", contact=LEAD_B))
    records = await store.pending_inbound(key())
    assert [r.message.text for r in records] == ["parte 0", "parte 1", "parte 2", "parte 3"]
    assert [r.id for r in records] == sorted(r.id for r in records)


async def test_a_failed_turn_counts_an_attempt_and_keeps_the_messages_pending(store: Store) -> None:
    await store.add_inbound(inbound("m1"))
    ids = [r.id for r in await store.pending_inbound(key())]
    await store.record_turn_failure(ids, "LLMUnavailable: openai unavailable")
    await store.record_turn_failure(ids, "LLMUnavailable: openai unavailable")
    records = await store.pending_inbound(key())
    assert [r.attempts for r in records] == [2]
    assert await store.pending_contacts() == [key()]


# --- one turn, one transaction --------------------------------------------------------


async def test_commit_turn_writes_the_whole_turn(store: Store) -> None:
    await store.add_inbound(inbound("m1", text="Oi"))
    await store.add_inbound(inbound("m2", text="quero uma formadora"))
    ids = [r.id for r in await store.pending_inbound(key())]

    await store.commit_turn(
        turn(
            inbound_ids=ids,
            messages=[
                NewMessage("in", "text", "Oi", provider_message_id="m1", status="received"),
                NewMessage("in", "text", "quero uma formadora", provider_message_id="m2", status="received"),
                NewMessage("out", "text", "Olá, Maria!", status="queued", ref="reply-0"),
            ],
            outbox=[reply_item("reply:m1:0", text="Olá, Maria!", message_ref="reply-0")],
            profile={"name": "Maria", "product_interest": "formadora"},
            lead_messages_added=2,
            score=25,
            temperature="morno",
        )
    )

    assert await store.pending_inbound(key()) == []
    assert await store.pending_contacts() == []
    lead = await store.get_lead(key())
    assert lead is not None
    assert (lead.channel, lead.contact_id, lead.phone, lead.name) == ("zapi", LEAD_A, LEAD_A, "Maria Souza")
    assert lead.profile == {"name": "Maria", "product_interest": "formadora"}
    assert (lead.score, lead.temperature, lead.lead_message_count) == (25, "morno", 2)
    assert lead.score_reasons == ["1 mensagem do lead: +2"]

    history = await store.recent_messages(key(), 20)
    assert [(m.direction, m.text, m.status) for m in history] == [
        ("in", "Oi", "received"),
        ("in", "quero uma formadora", "received"),
        ("out", "Olá, Maria!", "queued"),
    ]
    [item] = await claim_all(store)
    # The outbox payload points at the stored reply by its real id, not by the ref.
    assert "message_ref" not in item.payload
    assert item.payload["message_id"] == history[-1].id
    assert item.payload["text"] == "Olá, Maria!"
    assert (item.kind, item.idempotency_key, item.status, item.attempts) == (
        "send_text",
        "reply:m1:0",
        "inflight",
        1,
    )


async def test_a_turn_that_fails_half_way_leaves_nothing_behind(store: Store) -> None:
    await store.add_inbound(inbound("m1", text="Oi"))
    ids = [r.id for r in await store.pending_inbound(key())]
    broken = turn(
        inbound_ids=ids,
        messages=[
            NewMessage("in", "text", "Oi", provider_message_id="m1", status="received"),
            NewMessage("out", "text", "Olá!", status="queued", ref="reply-0"),
        ],
        outbox=[
            reply_item("reply:m1:0", message_ref="reply-0"),
            # Points at a message that is not part of the turn: fails after the lead,
            # the messages, the inbound update and the first outbox row were written.
            reply_item("reply:m1:1", message_ref="reply-does-not-exist"),
        ],
        profile={"name": "Maria"},
    )
    with pytest.raises(Exception):  # noqa: B017 - the backend's own error type
        await store.commit_turn(broken)

    assert [r.id for r in await store.pending_inbound(key())] == ids
    assert await store.pending_contacts() == [key()]
    assert await store.get_lead(key()) is None
    assert await store.recent_messages(key(), 20) == []
    stats = await store.outbox_stats()
    assert (stats.pending, stats.inflight, stats.done, stats.dead) == (0, 0, 0, 0)
    assert await claim_all(store) == []

    # The store is still usable and the same turn, fixed, commits.
    broken.outbox = broken.outbox[:1]
    await store.commit_turn(broken)
    assert await store.pending_inbound(key()) == []
    assert len(await store.recent_messages(key(), 20)) == 2
    assert (await store.outbox_stats()).pending == 1


async def test_a_failed_turn_does_not_touch_an_existing_lead(store: Store) -> None:
    await store.commit_turn(turn(profile={"name": "Maria"}, lead_messages_added=1, score=12))
    with pytest.raises(Exception):  # noqa: B017
        await store.commit_turn(
            turn(
                messages=[NewMessage("in", "text", "oi de novo")],
                outbox=[reply_item("x", message_ref="nope")],
                profile={"name": "Maria", "city": "Campinas"},
                lead_messages_added=5,
                score=90,
                temperature="quente",
            )
        )
    lead = await store.get_lead(key())
    assert lead is not None
    assert (lead.profile, lead.lead_message_count, lead.score, lead.temperature) == (
        {"name": "Maria"},
        1,
        12,
        "frio",
    )
    assert await store.recent_messages(key(), 20) == []


async def test_the_same_idempotency_key_is_enqueued_once(store: Store) -> None:
    await enqueue(store, reply_item("reply:zapi:1:0", text="primeira"))
    await enqueue(store, reply_item("reply:zapi:1:0", text="segunda cópia"))
    stats = await store.outbox_stats()
    assert stats.pending == 1
    [item] = await claim_all(store)
    assert item.payload["text"] == "primeira"


async def test_an_idempotency_key_already_delivered_is_not_enqueued_again(store: Store) -> None:
    await enqueue(store, reply_item("reply:zapi:1:0"))
    [item] = await claim_all(store)
    assert item.id is not None
    await store.complete_outbox(item.id)
    await enqueue(store, reply_item("reply:zapi:1:0"))
    stats = await store.outbox_stats()
    assert (stats.pending, stats.done) == (0, 1)


async def test_a_leads_profile_is_replaced_and_its_message_count_accumulates(store: Store) -> None:
    await store.commit_turn(turn(profile={"name": "João"}, lead_messages_added=2, score=10))
    first = await store.get_lead(key())
    await store.commit_turn(
        turn(
            profile={"name": "João", "city": "Londrina", "state": "PR"},
            lead_messages_added=3,
            name=None,  # a turn that does not know the name must not erase it
            score=35,
            temperature="morno",
            turn_id="turn0002",
        )
    )
    lead = await store.get_lead(key())
    assert lead is not None and first is not None
    assert lead.id == first.id
    assert lead.lead_message_count == 5
    assert lead.profile == {"name": "João", "city": "Londrina", "state": "PR"}
    assert (lead.score, lead.temperature) == (35, "morno")
    assert lead.name == "Maria Souza"
    assert lead.created_at == first.created_at
    assert lead.updated_at >= first.updated_at


async def test_get_lead_of_an_unknown_contact_is_none(store: Store) -> None:
    assert await store.get_lead(key(LEAD_C)) is None
    assert await store.recent_messages(key(LEAD_C), 20) == []


async def test_recent_messages_are_the_last_n_in_chronological_order(store: Store) -> None:
    for index in range(30):
        await store.commit_turn(
            turn(
                messages=[
                    NewMessage("in", "text", f"lead {index}"),
                    NewMessage("out", "text", f"bot {index}"),
                ],
                turn_id=f"turn{index:04d}",
            )
        )
    await store.commit_turn(turn(contact=LEAD_B, messages=[NewMessage("in", "text", "outro lead")]))

    window = await store.recent_messages(key(), 20)
    assert len(window) == 20
    expected = [t for i in range(20, 30) for t in (f"lead {i}", f"bot {i}")]
    assert [m.text for m in window] == expected
    assert [m.direction for m in window[:2]] == ["in", "out"]
    assert [m.id for m in window] == sorted(m.id for m in window)
    assert [m.text for m in await store.recent_messages(key(), 3)] == ["bot 28", "lead 29", "bot 29"]
    assert [m.text for m in await store.recent_messages(key(LEAD_B), 20)] == ["outro lead"]


async def test_a_sent_reply_records_the_providers_id(store: Store) -> None:
    await store.commit_turn(
        turn(
            messages=[NewMessage("out", "text", "Olá!", status="queued", ref="r")],
            outbox=[reply_item("i", message_ref="r")],
        )
    )
    [item] = await claim_all(store)
    await store.mark_message_sent(item.payload["message_id"], "3EB0SENT00000001")
    [message] = await store.recent_messages(key(), 20)
    assert (message.status, message.provider_message_id) == ("sent", "3EB0SENT00000001")


# --- outbox ---------------------------------------------------------------------------


async def test_claim_takes_only_the_head_of_each_order_key(store: Store) -> None:
    a = "reply:zapi:" + LEAD_A
    b = "reply:zapi:" + LEAD_B
    await enqueue(
        store,
        reply_item("a1", order_key=a, text="A1"),
        reply_item("a2", order_key=a, text="A2"),
        reply_item("b1", order_key=b, text="B1"),
    )
    first = await claim_all(store)
    assert sorted(i.payload["text"] for i in first) == ["A1", "B1"]
    by_text = {i.payload["text"]: i for i in first}
    # While A1 is in flight, A2 waits.
    assert await claim_all(store) == []

    # A1 fails and backs off: it still blocks A2 (no overtaking), but not B.
    await store.retry_outbox(by_text["A1"].id, error="SendError: HTTP 500", next_attempt_at=later(60))
    await store.complete_outbox(by_text["B1"].id)
    assert await claim_all(store) == []

    [retried] = await claim_all(store, at=later(120))
    assert retried.payload["text"] == "A1"
    assert retried.attempts == 2
    assert retried.last_error == "SendError: HTTP 500"
    await store.complete_outbox(retried.id)

    [second] = await claim_all(store)
    assert second.payload["text"] == "A2"


async def test_a_retrying_reply_of_one_contact_does_not_block_another_contact(store: Store) -> None:
    a = "reply:zapi:" + LEAD_A
    await enqueue(store, reply_item("a1", order_key=a), reply_item("a2", order_key=a))
    [a1] = await claim_all(store)
    await store.retry_outbox(a1.id, error="timeout", next_attempt_at=later(60))
    await enqueue(store, reply_item("b1", order_key="reply:zapi:" + LEAD_B, text="B1"), contact=LEAD_B)
    [claimed] = await claim_all(store)
    assert claimed.payload["text"] == "B1"


async def test_a_dead_reply_does_not_block_the_ones_after_it(store: Store) -> None:
    a = "reply:zapi:" + LEAD_A
    await enqueue(store, reply_item("a1", order_key=a, text="A1"), reply_item("a2", order_key=a, text="A2"))
    [a1] = await claim_all(store)
    await store.kill_outbox(a1.id, error="SendError: HTTP 400")
    [a2] = await claim_all(store)
    assert a2.payload["text"] == "A2"


async def test_claim_respects_next_attempt_at(store: Store) -> None:
    await enqueue(store, reply_item("a1"))
    [item] = await claim_all(store)
    due = later(30)
    await store.retry_outbox(item.id, error="HTTP 503", next_attempt_at=due)

    assert await claim_all(store) == []
    assert await claim_all(store, at=due - timedelta(seconds=1)) == []
    next_due = await store.next_outbox_due()
    assert next_due is not None and abs((next_due - due).total_seconds()) < 0.001
    [again] = await claim_all(store, at=due)
    assert again.id == item.id


async def test_claim_respects_the_limit_and_marks_claimed_items_inflight(store: Store) -> None:
    for index, contact in enumerate((LEAD_A, LEAD_B, LEAD_C)):
        await enqueue(
            store,
            reply_item(f"k{index}", order_key=f"reply:zapi:{contact}", text=str(index)),
            contact=contact,
        )
    first = await claim_all(store, limit=2)
    assert [i.payload["text"] for i in first] == ["0", "1"]
    assert all(i.status == "inflight" and i.attempts == 1 for i in first)
    stats = await store.outbox_stats()
    assert (stats.pending, stats.inflight) == (1, 2)

    [last] = await claim_all(store, limit=2)
    assert last.payload["text"] == "2"
    assert await claim_all(store) == []
    assert await claim_all(store, limit=0) == []


async def test_release_inflight_puts_claimed_items_back(store: Store) -> None:
    await enqueue(store, reply_item("a1", order_key="k1"), reply_item("b1", order_key="k2"))
    claimed = await claim_all(store)
    assert len(claimed) == 2
    assert await store.release_inflight() == 2
    assert await store.release_inflight() == 0
    stats = await store.outbox_stats()
    assert (stats.pending, stats.inflight) == (2, 0)

    again = await claim_all(store)
    assert sorted(i.id for i in again) == sorted(i.id for i in claimed)
    assert all(i.attempts == 2 for i in again)


async def test_retry_kill_complete_replay_and_stats(store: Store) -> None:
    await enqueue(
        store,
        reply_item("d1", order_key="k1"),
        reply_item("d2", order_key="k2"),
        OutboxItem(kind="crm_push", order_key="k3", idempotency_key="p1", payload={"deal": 1}),
        reply_item("r1", order_key="k4"),
    )
    items = {i.idempotency_key: i for i in await claim_all(store)}
    assert len(items) == 4
    await store.complete_outbox(items["d1"].id)
    await store.kill_outbox(items["d2"].id, error="SendError: HTTP 400 phone not on WhatsApp")
    await store.kill_outbox(items["p1"].id, error="PermanentDeliveryError: bad deal")
    await store.retry_outbox(items["r1"].id, error="HTTP 502", next_attempt_at=later(60))

    stats = await store.outbox_stats()
    assert (stats.pending, stats.inflight, stats.done, stats.dead) == (1, 0, 1, 2)
    assert await store.next_outbox_due() is not None

    # Replay only one kind; the other dead item stays dead.
    assert await store.replay_dead(kind="crm_push") == 1
    stats = await store.outbox_stats()
    assert (stats.pending, stats.dead) == (2, 1)
    [replayed] = await claim_all(store)
    assert replayed.idempotency_key == "p1"
    assert replayed.attempts == 1  # a replay starts a fresh round of attempts

    assert await store.replay_dead() == 1
    [reply] = await claim_all(store)
    assert reply.idempotency_key == "d2"
    assert reply.last_error == "SendError: HTTP 400 phone not on WhatsApp"
    assert await store.replay_dead() == 0


async def test_next_outbox_due_is_none_when_nothing_is_pending(store: Store) -> None:
    assert await store.next_outbox_due() is None
    await enqueue(store, reply_item("a1"))
    assert await store.next_outbox_due() is not None
    [item] = await claim_all(store)
    assert await store.next_outbox_due() is None
    await store.complete_outbox(item.id)
    assert await store.next_outbox_due() is None


async def test_outbox_progress_is_kept_for_the_next_attempt(store: Store) -> None:
    await enqueue(store, reply_item("a1"))
    [item] = await claim_all(store)
    await store.outbox_progress(item.id, {**item.payload, "parts_sent": 1})
    await store.retry_outbox(item.id, error="HTTP 500", next_attempt_at=now())
    [again] = await claim_all(store, at=later(1))
    assert again.payload["parts_sent"] == 1


async def test_a_closed_store_is_unavailable_not_a_crash(open_store: OpenStore) -> None:
    """Webhooks turn StoreUnavailable into 503 so the provider retries later."""
    store = await open_store()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.add_inbound(inbound("m1"))
    with pytest.raises(StoreUnavailable):
        await store.commit_turn(turn())


# --- restart --------------------------------------------------------------------------


async def test_everything_survives_closing_and_reopening(open_store: OpenStore) -> None:
    first = await open_store()
    await first.add_inbound(inbound("m1", text="Oi"))
    await first.add_inbound(inbound("m2", contact=LEAD_B, text="Bom dia"))
    ids = [r.id for r in await first.pending_inbound(key())]
    await first.commit_turn(
        turn(
            inbound_ids=ids,
            messages=[
                NewMessage("in", "text", "Oi", provider_message_id="m1"),
                NewMessage("out", "text", "Olá!", status="queued", ref="r0"),
            ],
            outbox=[reply_item("reply:m1:0", message_ref="r0"), reply_item("other", order_key="k2")],
            profile={"name": "Maria"},
        )
    )
    claimed = await claim_all(first, limit=1)  # "crash" with one item in flight
    assert len(claimed) == 1
    await first.close()

    second = await open_store()
    await second.ping()
    assert await second.add_inbound(inbound("m1", text="Oi")) is False
    assert await second.pending_contacts() == [key(LEAD_B)]
    lead = await second.get_lead(key())
    assert lead is not None and lead.profile == {"name": "Maria"} and lead.lead_message_count == 1
    assert [m.text for m in await second.recent_messages(key(), 20)] == ["Oi", "Olá!"]
    stats = await second.outbox_stats()
    assert (stats.pending, stats.inflight) == (1, 1)
    assert await second.release_inflight() == 1
    assert len(await claim_all(second)) == 2

"""Typed outbox items write the same JSON the dict builders wrote, and read old rows.

Existing rows and the Supabase SQL read these keys, so the order and presence of every
key is part of the contract: the expected dicts below are the ones the old builders
wrote, compared as the JSON text the SQLite store keeps.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import AuthFailed, OutsideWindow, ProviderRejected, ProviderUnavailable
from core.outbox import (
    PAYLOADS,
    CapiEvent,
    ChatwootErase,
    ChatwootMessage,
    OutboundWebhook,
    PipeRunErase,
    PipeRunSync,
    Reengage,
    SendText,
    log_fields,
)
from core.records import OutboxItem
from runtime.breaker import CircuitOpenError
from runtime.dispatcher import OutboxDispatcher
from runtime.policies import PermanentDeliveryError, is_transient
from tests.helpers.errors import SendError


def stored(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


def test_a_bot_reply_is_the_dict_the_turn_wrote() -> None:
    bubble = SendText.bot_reply(
        channel="zapi",
        contact_id="5511",
        contact_key="whatsapp:5511",
        text="Olá!",
        typing_s=2,
        message_ref="reply-0",
        turn_id="t1",
        purpose="follow_up",
    )
    expected = {
        "channel": "zapi",
        "contact_id": "5511",
        "contact_key": "whatsapp:5511",
        "text": "Olá!",
        "typing_s": 2,
        "message_ref": "reply-0",
        "turn_id": "t1",
        "purpose": "follow_up",
    }
    assert stored(bubble.serialize()) == stored(expected)
    item = bubble.to_item("reply:whatsapp:5511:7:0")
    assert (item.kind, item.order_key) == ("send_text", "reply:whatsapp:5511")


def test_a_reply_without_purpose_has_no_purpose_key() -> None:
    bubble = SendText.bot_reply(
        channel="zapi",
        contact_id="1",
        contact_key="whatsapp:1",
        text="x",
        typing_s=1,
        message_ref="r",
        turn_id="t",
    )
    assert "purpose" not in bubble.serialize()


def test_a_human_reply_is_the_dict_the_chatwoot_webhook_wrote() -> None:
    reply = SendText.human_reply(
        channel="zapi", contact_id="1", contact_key="whatsapp:1", text="Oi", message_id=9
    )
    expected = {
        "channel": "zapi",
        "contact_id": "1",
        "contact_key": "whatsapp:1",
        "text": "Oi",
        "typing_s": 1,
        "message_id": 9,
        "human_agent": True,
    }
    assert stored(reply.serialize()) == stored(expected)
    assert not reply.silenceable


def test_erasure_items_keep_an_explicit_none() -> None:
    assert ChatwootErase(erasure_id=None, chatwoot_contact_id=4).serialize() == {
        "erasure_id": None,
        "chatwoot_contact_id": 4,
    }
    assert PipeRunErase(erasure_id=3, crm_person_id=None, crm_deal_id=8).serialize() == {
        "erasure_id": 3,
        "crm_person_id": None,
        "crm_deal_id": 8,
    }


def test_a_stored_row_reads_back_and_writes_back_unchanged() -> None:
    row = {"contact_key": "whatsapp:1", "reason": "hot", "turn_id": "t1", "lead_id": 5, "legacy": "kept"}
    sync = PipeRunSync.parse(row)
    assert sync.lead_id == 5
    assert sync.serialize() == row
    progressed = sync.updated(link={"person_id": 1}).serialize()
    assert list(progressed) == ["contact_key", "reason", "turn_id", "lead_id", "link", "legacy"]
    assert progressed["link"] == {"person_id": 1}


def test_a_webhook_log_grows_on_a_copy() -> None:
    hook = OutboundWebhook.parse(
        {"endpoint_id": "crm", "event": "lead.hot", "timestamp": "2026-01-01T00:00:00+00:00"}
    )
    logged = hook.updated(deliveries=[{"status": 500}])
    assert hook.deliveries == []
    assert logged.serialize()["deliveries"] == [{"status": 500}]


def test_capi_price_only_when_given() -> None:
    assert list(CapiEvent(contact_key="k", stage="Lead", event_time=1).serialize()) == [
        "contact_key",
        "stage",
        "event_time",
    ]


def test_every_kind_is_registered_once() -> None:
    assert set(PAYLOADS) == {
        "send_text",
        "send_media",
        "reengage",
        "meta_lead_fetch",
        "chatwoot_message",
        "chatwoot_profile",
        "chatwoot_handoff",
        "chatwoot_note",
        "piperun_sync",
        "piperun_note",
        "piperun_activity",
        "meta_capi",
        "outbound_webhook",
        "lead_erasure",
        "chatwoot_erase",
        "piperun_erase",
    }


def test_log_fields_name_the_contact_whatever_the_kind() -> None:
    assert log_fields({"contact_key": "whatsapp:1", "turn_id": "t"}) == ("whatsapp:1", "t")
    assert log_fields({"channel": "zapi", "contact_id": "1"}) == ("zapi:1", None)
    assert log_fields({"contact_key": 12}) == (None, None)


async def test_an_invalid_payload_is_dead_at_once_without_its_text(tmp_path: Any) -> None:
    seen: list[ChatwootMessage] = []

    async def handler(_item: OutboxItem, payload: ChatwootMessage) -> None:
        seen.append(payload)

    dispatcher = OutboxDispatcher(store=None, workers=1, poll_s=1.0)  # type: ignore[arg-type]
    dispatcher.register_typed(ChatwootMessage, handler, policy=None)  # type: ignore[arg-type]
    route = dispatcher.routes["chatwoot_message"]
    item = OutboxItem(
        kind="chatwoot_message", order_key="o", idempotency_key="i", payload={"text": "segredo"}
    )
    with pytest.raises(PermanentDeliveryError) as raised:
        await route.handler(item)
    assert "contact_key" in str(raised.value) and "segredo" not in str(raised.value)
    good = OutboxItem(
        kind="chatwoot_message",
        order_key="o",
        idempotency_key="i",
        payload={"contact_key": "k", "direction": "in", "text": "Oi"},
    )
    await route.handler(good)
    assert [p.text for p in seen] == ["Oi"]


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ProviderUnavailable("503", status=503), True),
        (CircuitOpenError("x", 1.0), True),
        (ProviderRejected("400", status=400), False),
        (AuthFailed("401", status=401), False),
        (OutsideWindow("closed", status=400), False),
        (PermanentDeliveryError("bad"), False),
        # an error known only by its status is classified by it
        (SendError("500", status=500, retryable=True), True),
        (SendError("400", status=400, retryable=False), False),
    ],
)
def test_retry_is_decided_by_type(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_reengage_once_per_silence() -> None:
    item = Reengage(channel="instagram", contact_id="9", contact_key="instagram:9").to_item(since="never")
    assert item.idempotency_key == "reengage:instagram:9:never"
    assert item.payload == {"channel": "instagram", "contact_id": "9", "contact_key": "instagram:9"}


def test_an_invalid_reply_picks_no_breaker_instead_of_logging_its_words() -> None:
    """The breaker selector runs before the handler: on an invalid payload it must not
    raise, or the dispatcher logs a validation traceback carrying the lead's text."""
    from runtime.routes import _breaker_key

    broken = OutboxItem(kind="send_text", order_key="o", idempotency_key="i", payload={"text": "segredo"})
    assert _breaker_key(broken, "channel") is None
    good = SendText(channel="zapi", contact_id="5511999999999", text="Oi").item(
        order_key="o", idempotency_key="i"
    )
    assert _breaker_key(good, "channel") == "zapi"

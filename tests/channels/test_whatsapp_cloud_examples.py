"""Every webhook example in Meta's business-messaging OpenAPI, parsed as the agent will
read it (tests/fixtures/whatsapp_cloud/openapi_webhook_examples.json)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from channels.whatsapp_cloud import WhatsAppCloudChannel
from core.models import MessageKind
from tests.channels.test_whatsapp_cloud import load, make_config

EXAMPLES: dict[str, Any] = load("openapi_webhook_examples.json")["examples"]

# example -> (kind, text) of the one message, or the reason it is not a message
EXPECTED: dict[str, tuple[MessageKind, str | None] | str] = {
    "Text Message": (MessageKind.TEXT, "Does it come in another color?"),
    "Text Message with Context (Product Inquiry)": (
        MessageKind.TEXT,
        "[sobre o produto di9ozbzfi4 do catálogo] Is this still available?",
    ),
    "Text Message from Click to WhatsApp Ad": (MessageKind.TEXT, "Hello! Can I get more info on this?"),
    "Reaction Message": (MessageKind.REACTION, "👍"),
    "Image Message": (MessageKind.IMAGE, None),
    "Location Message": (MessageKind.LOCATION, None),
    "Contact Sharing Message": (MessageKind.CONTACT, None),
    "Unsupported Message": "unsupported",
    "Button Message": (MessageKind.BUTTON_REPLY, "Unsubscribe"),
    "Interactive List Reply Message": (MessageKind.LIST_REPLY, "Priority Mail Express"),
    "Interactive Button Reply Message": (MessageKind.BUTTON_REPLY, "Cancel"),
    "Order Message": (
        MessageKind.OTHER,
        "[enviou um pedido do catálogo: 2x di9ozbzfi4 (30 USD cada); 1x nqryix03ez (25 USD cada)]",
    ),
    "System Message": "system",
    "Group Create Message": "not_a_message",
    "Group Settings Update": "not_a_message",
    "Group Remove Participants": "not_a_message",
}


@pytest.fixture
def channel() -> WhatsAppCloudChannel:
    return WhatsAppCloudChannel(make_config())


def test_every_published_example_is_covered() -> None:
    assert set(EXAMPLES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_example_reads_as_expected(channel: WhatsAppCloudChannel, name: str) -> None:
    result = channel.parse(copy.deepcopy(EXAMPLES[name]))
    expected = EXPECTED[name]
    if isinstance(expected, str):
        assert result.messages == [] and [e.reason for e in result.ignored] == [expected]
        return
    [msg] = result.messages
    kind, text = expected
    assert msg.kind is kind
    if text is not None:
        assert msg.text == text


def test_the_image_example_keeps_its_caption_and_media_id(channel: WhatsAppCloudChannel) -> None:
    [msg] = channel.parse(copy.deepcopy(EXAMPLES["Image Message"])).messages
    assert msg.media_url == "whatsapp-media:1003383421387256"
    assert msg.media_caption == "Taj Mahal" and msg.media_mime == "image/jpeg"


def test_the_ctwa_example_keeps_the_ad(channel: WhatsAppCloudChannel) -> None:
    [msg] = channel.parse(copy.deepcopy(EXAMPLES["Text Message from Click to WhatsApp Ad"])).messages
    assert msg.referral is not None
    assert msg.referral.source_id == "120226305854810726" and msg.referral.source_type == "ad"
    assert msg.referral.ctwa_clid and msg.referral.ctwa_clid.startswith("Aff-n8ZTODiE79d22")


def _order(items: list[dict[str, Any]], text: str = "") -> dict[str, Any]:
    payload = copy.deepcopy(EXAMPLES["Order Message"])
    order = payload["entry"][0]["changes"][0]["value"]["messages"][0]["order"]
    order["product_items"], order["text"] = items, text
    return payload


def test_an_order_note_and_odd_lines_still_read(channel: WhatsAppCloudChannel) -> None:
    items = [{"product_retailer_id": "kit-1", "quantity": "3", "item_price": 19.9, "currency": "BRL"},
             {"product_retailer_id": None, "quantity": True, "item_price": "abc"}]  # fmt: skip
    [msg] = channel.parse(_order(items, text="Entrega em Campinas")).messages
    assert msg.text == "[enviou um pedido do catálogo: 3x kit-1 (19.90 BRL cada); ?x ?] Entrega em Campinas"


def test_a_long_cart_is_summarised(channel: WhatsAppCloudChannel) -> None:
    items = [
        {"product_retailer_id": f"p{n}", "quantity": 1, "item_price": 1, "currency": "BRL"} for n in range(25)
    ]
    [msg] = channel.parse(_order(items)).messages
    assert msg.text is not None and msg.text.count("1x p") == 10 and "e mais 15 itens" in msg.text


def test_an_empty_order_still_says_it_is_an_order(channel: WhatsAppCloudChannel) -> None:
    [msg] = channel.parse(_order([])).messages
    assert msg.text == "[enviou um pedido do catálogo]"

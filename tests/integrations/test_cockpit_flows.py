"""The sales team's cockpit end to end, through the real app: a seller's files reach the
lead on WhatsApp, quote requests become labelled notes beside the sellers' own labels,
and a seller can write first to a lead the bot knows."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aioresponses import CallbackResult, aioresponses

from core.settings import Settings
from tests.helpers.fakes import FakeOpenAI, FakeZapi, load_fixture
from tests.helpers.settle import settled
from tests.integrations.test_chatwoot_flow import LEAD, FakeChatwoot, chatwoot_settings, lead_says, signed

ZAPI = "https://api.z-api.io/instances/3C01A9F0E1B2C3D4/token/F0E1D2C3B4A5968778695A4B"
FILES = "https://chatwoot.example.com/rails/active_storage/blobs/redirect"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return chatwoot_settings(tmp_path)


@pytest.fixture
def chatwoot(http_mock: aioresponses) -> FakeChatwoot:
    return FakeChatwoot(http_mock)


def sellers_files() -> dict[str, Any]:
    """Chatwoot's webhook of a public reply with a PDF and a photo (fixture cites its
    source), on our Chatwoot host and for the conversation the bot created."""
    payload = copy.deepcopy(load_fixture("chatwoot/webhook_message_created_attachments.json"))
    for attachment in payload["attachments"]:
        attachment["data_url"] = attachment["data_url"].replace(
            "https://chat.agrosouza.com.br/rails/active_storage/blobs/redirect", FILES
        )
    return payload


async def post_chatwoot(bot: TestClient, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    response = await bot.post("/webhooks/chatwoot", data=body, headers=signed(body))
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_sellers_pdf_and_photo_reach_the_lead_on_zapi_as_files_with_the_caption(
    bot: TestClient,
    http_mock: aioresponses,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    chatwoot: FakeChatwoot,
) -> None:
    openai_fake.then(reply="Oi! Como posso ajudar?")
    await lead_says(bot, "Oi", 1)
    await settled(bot)
    payload = sellers_files()
    pdf, photo = (a["data_url"] for a in payload["attachments"])
    http_mock.get(pdf, body=b"%PDF-1.7 proposta", content_type="application/pdf")
    http_mock.get(photo, body=b"\xff\xd8\xff\xe0foto", content_type="image/jpeg")
    sent: dict[str, dict[str, Any]] = {}

    def z_api(name: str) -> Any:
        async def record(url: Any, **kwargs: Any) -> CallbackResult:
            sent[name] = kwargs["json"]
            return CallbackResult(payload=load_fixture("zapi/send_media_response.json"))

        return record

    http_mock.post(f"{ZAPI}/send-document/pdf", callback=z_api("document"))
    http_mock.post(f"{ZAPI}/send-image", callback=z_api("image"))

    assert (await post_chatwoot(bot, payload))["outcome"] == "relayed"
    await settled(bot)
    assert sent["document"]["phone"] == LEAD
    assert sent["document"]["document"].startswith("data:application/pdf;base64,")
    assert sent["document"]["caption"] == payload["content"]  # the seller's words, once
    assert sent["image"]["image"].startswith("data:image/jpeg;base64,")
    assert not sent["image"].get("caption")
    assert zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?"]  # no empty text bubble
    # The same webhook again sends nothing twice.
    assert (await post_chatwoot(bot, payload))["outcome"] == "duplicate"


async def test_a_quote_request_is_a_labelled_note_and_the_sellers_labels_survive_the_card(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    openai_fake.then(reply="Oi! Como posso ajudar?")
    await lead_says(bot, "Oi", 1)
    await settled(bot)
    chatwoot.labels = ["morno", "feira-2026", "vip"]  # a seller tagged the conversation
    quote = {
        "tool": "request_quote",
        "products": ["FB300"],
        "quantity": "2 mil por dia",
        "summary": "Quer orçamento da FB300 para o frigorífico.",
    }
    openai_fake.then(
        reply="Vou pedir o orçamento ao vendedor.",
        tools=[quote],
        lead={"name": "Maria Souza", "product_interest": "FB300", "segment": "frigorífico"},
    )
    await lead_says(bot, "Quanto custa a FB300?", 2)
    await settled(bot)
    notes = [m for m in chatwoot.messages if m.get("private")]
    assert any(n["content"].startswith("🧾 Pedido de orçamento") and "FB300" in n["content"] for n in notes)
    assert "feira-2026" in chatwoot.labels and "vip" in chatwoot.labels  # never erased
    assert "orcamento" in chatwoot.labels
    assert len([label for label in chatwoot.labels if label in ("frio", "morno", "quente")]) <= 1

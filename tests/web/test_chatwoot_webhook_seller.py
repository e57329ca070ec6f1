"""POST /webhooks/chatwoot, what a seller does in Chatwoot: files reach the lead as files,
a long text as several bubbles within the channel's limit, a seller may write first in a
conversation the bot did not open, and a message that does not say whether it is a
private note never reaches the lead.

Chatwoot is faked at the HTTP boundary (tests/integrations/test_chatwoot_flow.py's
FakeChatwoot) and webhook bodies are the recorded payloads in tests/fixtures/chatwoot/
(sources cited in each file)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses

from core.records import LeadRecord
from core.settings import Settings
from integrations.chatwoot import parse_webhook_event
from tests.helpers.fakes import FakeOpenAI, FakeZapi, load_fixture
from tests.helpers.settle import settled
from tests.integrations.test_chatwoot_flow import (
    FakeChatwoot,
    chatwoot_event,
    chatwoot_settings,
    lead_says,
    rows,
    signed,
)
from web.chatwoot_relay import relay_items
from web.keys import STORE

LEAD = "5544999999999"
KEY = f"whatsapp:{LEAD}"
FILES = "webhook_message_created_attachments.json"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return chatwoot_settings(tmp_path)


@pytest.fixture
def chatwoot(http_mock: aioresponses) -> FakeChatwoot:
    return FakeChatwoot(http_mock)


async def linked_lead(bot: TestClient, openai_fake: FakeOpenAI) -> None:
    """A lead who wrote once: mirrored into Chatwoot contact 1042, conversation 318."""
    openai_fake.then(reply="Oi! Como posso ajudar?")
    await lead_says(bot, "Oi", 1)
    await settled(bot)


async def queued(bot: TestClient, kind: str) -> list[tuple[str, dict[str, Any]]]:
    items = await bot.app[STORE].list_outbox(kind=kind)
    return sorted((item.idempotency_key, item.payload) for item in items)


def stored_reply_texts(bot: TestClient) -> list[str]:
    return [row[0] for row in rows(bot, "SELECT text FROM messages WHERE turn_id = 'human' ORDER BY id")]


# --- a seller's files -------------------------------------------------------------------


async def test_a_sellers_files_go_to_the_lead_each_as_a_file_with_the_words_as_caption(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    await linked_lead(bot, openai_fake)
    assert (await chatwoot_event(bot, FILES))["outcome"] == "relayed"
    event = load_fixture(f"chatwoot/{FILES}")
    pdf, photo = (a["data_url"] for a in event["attachments"])
    media = await queued(bot, "send_media")
    assert [key for key, _ in media] == ["chatwoot-media:90240:7301", "chatwoot-media:90240:7302"]
    first, second = (payload for _, payload in media)
    assert (first["url"], first["file_type"], first["file_name"]) == (pdf, "file", "proposta-FB300.pdf")
    assert first["caption"] == event["content"] and first["human_agent"] is True
    assert (first["channel"], first["contact_id"], first["contact_key"]) == ("zapi", LEAD, KEY)
    assert (second["url"], second["file_type"], second["file_name"]) == (
        photo,
        "image",
        "linha instalada.jpg",
    )
    assert "caption" not in second
    # The words travel as the caption: no separate text bubble.
    assert not [key for key, _ in await queued(bot, "send_text") if key.startswith("chatwoot-reply:90240")]
    assert stored_reply_texts(bot) == [event["content"]]
    assert (await chatwoot_event(bot, FILES))["outcome"] == "duplicate"


async def test_a_reply_with_only_a_file_is_relayed_and_recorded_by_its_name(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    await linked_lead(bot, openai_fake)
    event = load_fixture(f"chatwoot/{FILES}")
    outcome = await chatwoot_event(bot, FILES, content=None, attachments=event["attachments"][:1])
    assert outcome["outcome"] == "relayed"
    [(key, payload)] = await queued(bot, "send_media")
    assert key == "chatwoot-media:90240:7301" and "caption" not in payload
    assert stored_reply_texts(bot) == ["[anexo: proposta-FB300.pdf]"]


async def test_a_location_alone_is_nothing_to_send(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    await linked_lead(bot, openai_fake)
    location = {"id": 7310, "message_id": 90240, "file_type": "location", "account_id": 7,
                "coordinates_lat": -23.42, "coordinates_long": -51.93, "fallback_title": "Fábrica",
                "data_url": "https://maps.google.com/?q=-23.42,-51.93"}  # fmt: skip
    outcome = await chatwoot_event(bot, FILES, content="", attachments=[location])
    assert outcome["outcome"] == "empty"
    assert await queued(bot, "send_media") == [] and stored_reply_texts(bot) == []


# --- a seller writing first -----------------------------------------------------------------


def elsewhere(conversation_id: int, *, contact_id: int = 1042, inbox_id: int = 3) -> dict[str, Any]:
    """The agent-reply fixture in another conversation (of `contact_id`, in `inbox_id`)."""
    conversation = copy.deepcopy(
        load_fixture("chatwoot/webhook_message_created_account.json")["conversation"]
    )
    conversation.update(id=conversation_id, inbox_id=inbox_id)
    conversation["contact_inbox"].update(contact_id=contact_id, inbox_id=inbox_id)
    conversation["meta"]["sender"]["id"] = contact_id
    return {"conversation": conversation, "inbox": {"id": inbox_id, "name": "WhatsApp SDR (API)"}}


async def test_a_seller_may_start_a_conversation_with_a_lead_the_bot_knows(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    await linked_lead(bot, openai_fake)
    agent_text = load_fixture("chatwoot/webhook_message_created_account.json")["content"]
    outcome = await chatwoot_event(bot, "webhook_message_created_account.json", **elsewhere(401))
    assert outcome["outcome"] == "relayed"
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?", agent_text]
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None and lead.chatwoot_conversation_id == 401  # now the lead's conversation
    # The next words in that conversation are the known conversation's.
    outcome = await chatwoot_event(
        bot, "webhook_message_created_account.json", id=90241, content="Tudo certo?", **elsewhere(401)
    )
    assert outcome["outcome"] == "relayed"


@pytest.mark.parametrize(
    "where",
    [
        elsewhere(402, contact_id=5555),  # a contact the bot never created
        elsewhere(403, inbox_id=9),  # our contact, in another inbox (the company's own number)
    ],
)
async def test_a_conversation_of_someone_else_stays_unknown(
    bot: TestClient,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    chatwoot: FakeChatwoot,
    where: dict[str, Any],
) -> None:
    await linked_lead(bot, openai_fake)
    outcome = await chatwoot_event(bot, "webhook_message_created_account.json", **where)
    assert outcome["outcome"] == "unknown_conversation"
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None and lead.chatwoot_conversation_id == 318
    assert stored_reply_texts(bot) == []


async def test_a_private_note_in_a_conversation_the_bot_did_not_open_stays_there(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    await linked_lead(bot, openai_fake)
    outcome = await chatwoot_event(bot, "webhook_message_created_private_note.json", **elsewhere(404))
    assert outcome["outcome"] == "unknown_conversation"
    assert stored_reply_texts(bot) == []


# --- older payloads -----------------------------------------------------------------------


@pytest.mark.parametrize("private", ["absent", None])
async def test_a_message_that_does_not_say_private_never_reaches_the_lead(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot, private: Any
) -> None:
    await linked_lead(bot, openai_fake)
    body = load_fixture("chatwoot/webhook_message_created_account.json")
    if private == "absent":
        del body["private"]
    else:
        body["private"] = None
    outcome = await _post(bot, body)
    assert outcome == "private_unknown"
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?"] and stored_reply_texts(bot) == []


async def test_the_help_center_sample_is_understood_and_never_relayed(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    await linked_lead(bot, openai_fake)
    sample = load_fixture("chatwoot/webhook_help_center_sample.json")
    assert await _post(bot, sample) == "unknown_conversation"  # display_id 1: not ours
    # The same shape about our conversation, as an agent's outgoing message: no `private`.
    ours = copy.deepcopy(sample)
    ours["conversation"]["display_id"] = "318"
    ours["message_type"] = "outgoing"
    assert await _post(bot, ours) == "private_unknown"
    assert stored_reply_texts(bot) == []


async def _post(bot: TestClient, payload: dict[str, Any]) -> str:
    body = json.dumps(payload).encode()
    response = await bot.post("/webhooks/chatwoot", data=body, headers=signed(body))
    assert response.status == 200, await response.text()
    return str((await response.json())["outcome"])


# --- the channel's limit --------------------------------------------------------------------


def instagram_lead() -> LeadRecord:
    now = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    return LeadRecord(
        id=1, contact_key="instagram:17841400000000001", channel="instagram",
        contact_id="17841400000000001", phone=None, name="Mariana", profile={}, score=0,
        temperature="morno", score_reasons=[], lead_message_count=1, opted_out=False,
        created_at=now, updated_at=now, chatwoot_contact_id=1042, chatwoot_conversation_id=318,
    )  # fmt: skip


LONG = " ".join(
    [
        "Oi Mariana, aqui é o Carlos do comercial da Agro Souza, tudo bem com você e com a equipe da fábrica?"
        " Conversei agora com o time técnico sobre a linha de hambúrgueres que vocês querem montar em Londrina."
    ]
    * 6
)


def test_a_long_text_goes_as_bubbles_within_instagrams_limit_in_order() -> None:
    body = load_fixture("chatwoot/webhook_message_created_account.json")
    event = parse_webhook_event({**body, "content": LONG})
    items = relay_items(instagram_lead(), event, message_id=55)
    assert len(LONG.encode()) > 1000 and len(items) > 1
    assert [i.idempotency_key for i in items] == ["chatwoot-reply:90230"] + [
        f"chatwoot-reply:90230:{n}" for n in range(1, len(items))
    ]
    texts = [i.payload["text"] for i in items]
    assert all(len(text.encode()) <= 1000 for text in texts)
    assert " ".join(texts) == LONG
    assert {i.order_key for i in items} == {items[0].order_key}  # one lane: they arrive in order
    assert [i.payload.get("message_id") for i in items] == [55] + [None] * (len(items) - 1)
    assert all(i.payload["human_agent"] is True for i in items)


def test_a_long_text_with_files_goes_first_and_the_files_follow_without_a_caption() -> None:
    body = load_fixture(f"chatwoot/{FILES}")
    event = parse_webhook_event({**body, "content": LONG})
    items = relay_items(instagram_lead(), event, message_id=56)
    kinds = [i.kind for i in items]
    assert kinds[-2:] == ["send_media", "send_media"] and set(kinds[:-2]) == {"send_text"}
    assert all("caption" not in i.payload for i in items[-2:])
    assert items[0].payload["message_id"] == 56 and "message_id" not in items[-2].payload

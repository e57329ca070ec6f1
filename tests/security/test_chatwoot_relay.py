"""The Chatwoot relay cannot message an arbitrary number: only the lead a conversation belongs to."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.helpers.loopback import (
    chatwoot_signature,
)
from tests.helpers.provider_server import ProviderServer
from tests.helpers.settle import settled
from tests.security.support import (
    ATTACKER_CONTACT,
    CHATWOOT_WEBHOOK_SECRET,
    LEAD_PHONE,
    ZAPI_WEBHOOK_SECRET,
    chatwoot_reply,
    stored_contact,
    zapi_body,
)

# --- 3. the Chatwoot relay cannot message an arbitrary number -------------------------------------


async def lead_with_a_chatwoot_conversation(bot: TestClient, provider: ProviderServer) -> tuple[int, dict]:
    """A lead who wrote once: the bot answered and mirrored the conversation to Chatwoot."""
    response = await bot.post(
        "/webhooks/zapi", params={"token": ZAPI_WEBHOOK_SECRET}, data=zapi_body("3EB0RELAY0000001", "Oi")
    )
    assert response.status == 200
    await settled(bot)
    assert len(provider.state.sent) == 1
    return stored_contact(bot)


async def relay(bot: TestClient, body: bytes) -> str:
    response = await bot.post(
        "/webhooks/chatwoot", data=body, headers=chatwoot_signature(CHATWOOT_WEBHOOK_SECRET, body)
    )
    assert response.status == 200, await response.text()
    return (await response.json())["outcome"]


def sent_to(provider: ProviderServer) -> list[tuple[str, str]]:
    return [(s["phone"], s["message"]) for s in provider.state.sent]


async def test_a_chatwoot_reply_for_an_unknown_conversation_sends_nothing(
    bot: TestClient, provider: ProviderServer
) -> None:
    conversation, _lead = await lead_with_a_chatwoot_conversation(bot, provider)
    before = sent_to(provider)
    outcome = await relay(
        bot, chatwoot_reply(conversation + 1000, 97010, "Seu boleto: http://golpe.example", ATTACKER_CONTACT)
    )
    assert outcome == "unknown_conversation"
    await settled(bot)
    assert sent_to(provider) == before


async def test_a_chatwoot_reply_whose_contact_is_not_the_stored_lead_sends_nothing(
    bot: TestClient, provider: ProviderServer
) -> None:
    """The conversation id is ours but its contact is someone else (Chatwoot contacts
    merged or edited, or a forged payload): the agent's words are not for our lead, and
    must not reach anybody."""
    conversation, _lead = await lead_with_a_chatwoot_conversation(bot, provider)
    before = sent_to(provider)
    await relay(
        bot,
        chatwoot_reply(conversation, 97011, "Oi João, segue o orçamento da sua empresa", ATTACKER_CONTACT),
    )
    await settled(bot)
    assert sent_to(provider) == before


async def test_a_chatwoot_reply_reaches_only_the_lead_the_conversation_belongs_to(
    bot: TestClient, provider: ProviderServer
) -> None:
    conversation, lead = await lead_with_a_chatwoot_conversation(bot, provider)
    before = sent_to(provider)
    assert (
        await relay(bot, chatwoot_reply(conversation, 97012, "Oi Maria, aqui é o Carlos.", lead)) == "relayed"
    )
    await settled(bot)
    assert sent_to(provider)[len(before) :] == [(LEAD_PHONE, "Oi Maria, aqui é o Carlos.")]
    assert all(phone == LEAD_PHONE for phone, _ in sent_to(provider))

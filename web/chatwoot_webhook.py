"""POST /webhooks/chatwoot: what the sales team does in Chatwoot reaches the lead.

An agent's public reply (its text, split to the channel's limit, and its files) is
queued to the lead on the channel they wrote on and pauses the bot; private notes stay
in Chatwoot, and so does a message that does not say whether it is one (older releases);
the bot's own mirrored messages (recognised by the ids it stored) are never echoed back.
A seller may also start a conversation in our inbox with a contact the bot created: it
becomes the lead's conversation. A conversation set to `open` belongs to the humans;
`resolved` or back to `pending` gives it back to the bot. Everything here is a few store
writes, so Chatwoot gets its answer well within its 5 s.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from core.errors import StoreUnavailable, WebhookRejected
from core.logging import get_logger
from core.records import LeadRecord
from integrations.chatwoot import ChatwootWebhookEvent, parse_webhook_event, verify_webhook
from web.chatwoot_relay import relay_items, reply_record_text
from web.keys import CLOCK, NOTIFIER, SETTINGS, STORE
from web.middlewares import json_error

log = get_logger(__name__)

# While a conversation is `open` the humans own it, however long that takes.
HUMAN_OWNED = timedelta(days=3650)


def _ok(outcome: str) -> web.Response:
    return web.json_response({"status": "ok", "outcome": outcome})


async def handle_chatwoot_webhook(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    raw = await request.read()
    try:
        verify_webhook(settings.chatwoot_webhook_secret, request, raw)
        event = parse_webhook_event(raw)
    except WebhookRejected as exc:
        log.info("webhook_rejected", channel="chatwoot", status=exc.status, reason=exc.message)
        return json_error(exc.status, exc.message)
    try:
        return await _apply(request, event)
    except StoreUnavailable as exc:
        log.error("webhook_store_unavailable", channel="chatwoot", error=str(exc))
        return json_error(503, "store unavailable, retry later")


def _same_contact(lead: LeadRecord, event: ChatwootWebhookEvent) -> bool:
    """What the event says about the conversation's contact must match what we stored."""
    if (
        lead.chatwoot_contact_id is not None
        and event.contact_id is not None
        and event.contact_id != lead.chatwoot_contact_id
    ):
        return False
    return not (
        lead.chatwoot_source_id
        and event.contact_source_id
        and event.contact_source_id != lead.chatwoot_source_id
    )


async def _apply(request: web.Request, event: ChatwootWebhookEvent) -> web.Response:
    store = request.app[STORE]
    conversation_id = event.conversation_id
    if conversation_id is None:
        return _ok("ignored")
    lead = await store.lead_by_chatwoot_conversation(conversation_id)
    if lead is None:
        return _ok(await _seller_started(request, event, conversation_id))
    if not _same_contact(lead, event):
        # The conversation id is ours but its contact is someone else (contacts merged or
        # edited in Chatwoot, or a forged payload): the words are not for our lead.
        log.warning("chatwoot_contact_mismatch", conversation_id=conversation_id)
        return _ok("contact_mismatch")
    if event.event == "message_created":
        return _ok(await _agent_message(request, event, lead, conversation_id))
    status = event.conversation_status
    # Only an explicit status change moves ownership: `conversation_updated` fires for
    # labels, assignee or timers too, carrying the unchanged status.
    if event.event == "conversation_status_changed" and status:
        await _status_changed(request, lead, status)
        return _ok(f"status_{status}")
    return _ok("ignored")


def _our_inbox(request: web.Request, event: ChatwootWebhookEvent) -> bool:
    configured = (request.app[SETTINGS].chatwoot_inbox_id or "").strip()
    inbox = event.conversation_inbox_id
    return bool(configured) and inbox is not None and str(inbox) == configured


async def _seller_started(request: web.Request, event: ChatwootWebhookEvent, conversation_id: int) -> str:
    """A conversation the bot did not open: a seller writing first, in our inbox, to a
    contact the bot created for a lead, is relayed to that lead, and the conversation
    becomes the lead's. Anything else is not ours."""
    store = request.app[STORE]
    if event.private_unknown:
        return "private_unknown"
    contact_id = event.contact_id
    if not event.is_agent_reply or contact_id is None or not _our_inbox(request, event):
        return "unknown_conversation"
    lead = await store.lead_by_chatwoot_contact(contact_id)
    if lead is None or lead.chatwoot_contact_id != contact_id:
        return "unknown_conversation"
    text = reply_record_text(event)
    if event.message_id is None or await store.is_own_chatwoot_message(
        event.message_id, conversation_id=conversation_id, text=text
    ):
        return "own_message"
    if not text:
        return "empty"
    await store.save_chatwoot_link(
        lead.contact_key,
        contact_id=contact_id,
        source_id=event.contact_source_id,
        conversation_id=conversation_id,
    )
    log.info("chatwoot_seller_started_conversation", channel=lead.channel)
    return await _relay(request, event, lead, text)


async def _agent_message(
    request: web.Request, event: ChatwootWebhookEvent, lead: LeadRecord, conversation_id: int
) -> str:
    """An agent's public reply goes to the lead and pauses the bot; the outcome word."""
    store = request.app[STORE]
    if event.private_unknown:
        return "private_unknown"  # maybe a private note: never risk it reaching the lead
    if not event.is_agent_reply:
        return "not_an_agent_reply"  # incoming mirror, private note, bot message...
    text = reply_record_text(event)
    if event.message_id is None or await store.is_own_chatwoot_message(
        event.message_id, conversation_id=conversation_id, text=text
    ):
        return "own_message"
    if not text:
        return "empty"
    return await _relay(request, event, lead, text)


async def _relay(request: web.Request, event: ChatwootWebhookEvent, lead: LeadRecord, text: str) -> str:
    """Record the reply (a second delivery of the same webhook stops here), pause the
    bot, and queue the reply's bubbles and files to the lead."""
    store = request.app[STORE]
    assert event.message_id is not None
    message_id = await store.record_human_reply(
        lead.contact_key, text=text, chatwoot_message_id=event.message_id
    )
    if message_id is None:
        return "duplicate"
    pause = timedelta(hours=request.app[SETTINGS].bot_pause_hours)
    await store.set_human_owned(lead.contact_key, until=request.app[CLOCK]() + pause)
    items = relay_items(lead, event, message_id=message_id)
    for item in items:
        await store.enqueue(item)
    request.app[NOTIFIER].wake()
    log.info("agent_reply_relayed", channel=lead.channel, items=len(items))
    return "relayed"


async def _status_changed(request: web.Request, lead: LeadRecord, status: str) -> None:
    """`open` belongs to the humans; `resolved` or back to `pending` gives it to the bot."""
    store = request.app[STORE]
    if status == "open":
        await store.set_human_owned(lead.contact_key, until=request.app[CLOCK]() + HUMAN_OWNED)
    elif status in ("resolved", "pending"):
        await store.set_human_owned(
            lead.contact_key,
            until=None,
            resolved=status == "resolved" and not request.app[SETTINGS].chatwoot_reopen_resolved,
        )
    log.info("chatwoot_conversation_status", status=status)

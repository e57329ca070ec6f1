"""POST /webhooks/chatwoot: what the sales team does in Chatwoot reaches the lead.

An agent's public reply is queued to the lead on the channel they wrote on and pauses
the bot; private notes stay in Chatwoot; the bot's own mirrored messages (recognised by
the ids it stored) are never echoed back. A conversation set to `open` belongs to the
humans; `resolved` or back to `pending` gives it back to the bot. Everything here is a
few store writes, so Chatwoot gets its answer well within its 5 s.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from core.errors import StoreUnavailable, WebhookRejected
from core.logging import get_logger
from core.outbox import SendText
from core.records import LeadRecord
from integrations.chatwoot import ChatwootWebhookEvent, parse_webhook_event, verify_webhook
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
        return _ok("unknown_conversation")
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


async def _agent_message(
    request: web.Request, event: ChatwootWebhookEvent, lead: LeadRecord, conversation_id: int
) -> str:
    """An agent's public reply goes to the lead and pauses the bot; the outcome word."""
    store = request.app[STORE]
    if not event.is_agent_reply:
        return "not_an_agent_reply"  # incoming mirror, private note, bot message...
    text = (event.content or "").strip()
    if event.message_id is None or await store.is_own_chatwoot_message(
        event.message_id, conversation_id=conversation_id, text=text
    ):
        return "own_message"
    if not text:
        return "empty"
    message_id = await store.record_human_reply(
        lead.contact_key, text=text, chatwoot_message_id=event.message_id
    )
    if message_id is None:
        return "duplicate"
    pause = timedelta(hours=request.app[SETTINGS].bot_pause_hours)
    await store.set_human_owned(lead.contact_key, until=request.app[CLOCK]() + pause)
    reply = SendText.human_reply(
        channel=lead.channel,
        contact_id=lead.contact_id,
        contact_key=lead.contact_key,
        text=text,
        message_id=message_id,
    )
    await store.enqueue(reply.to_item(f"chatwoot-reply:{event.message_id}"))
    request.app[NOTIFIER].wake()
    log.info("agent_reply_relayed", channel=lead.channel)
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

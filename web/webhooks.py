"""The one webhook handler every channel shares: authenticate, parse, store, ack.

Nothing here waits on the LLM or an outbound call: the 200 means "stored durably",
and the runtime takes it from there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from aiohttp import web

from channels.base import ParsedWebhook, PresenceEvent, presence_subscriber
from channels.meta_common import verify_signature, verify_subscription
from core.errors import StoreUnavailable, WebhookRejected
from core.logging import get_logger
from core.models import InboundMessage, contact_key_for
from core.outbox import LeadAdsFetch
from integrations.meta_leads import LeadgenEvent, parse_leadgen_webhook
from runtime.delivery import schedule_reengage
from runtime.notifier import Notifier
from runtime.quiet_window import ends_thought
from web.keys import CHANNEL_HEALTH, CHANNELS, CLOCK, HTTP, NOTIFIER, SETTINGS, STORE
from web.middlewares import json_error

log = get_logger(__name__)


class BackgroundCalls:
    """Best-effort provider calls a webhook starts and never waits for (WAHA's presence
    subscription): owned by the app, so shutdown cancels what is still running instead
    of leaving it to a closed HTTP session. At most `limit` at once: past that a call is
    not started (it is a hint, not a message)."""

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def full(self) -> bool:
        return len(self._tasks) >= self._limit

    def start(self, call: Coroutine[Any, Any, None], *, name: str) -> None:
        if self.full:
            call.close()
            log.debug("background_call_skipped", call=name)
            return
        task = asyncio.create_task(self._guarded(call, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(call: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a hint's bug must not go unseen, nor further
            log.warning("background_call_failed", call=name, error=type(exc).__name__)

    async def settled(self) -> None:
        """Wait for the calls under way (tests, and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, _app: web.Application | None = None) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.settled()


BACKGROUND_CALLS = web.AppKey("background_calls", BackgroundCalls)


def _replace_lone_surrogates(value: Any) -> Any:
    """Half of an emoji (a lone \\ud83d escape) is valid JSON but not storable text:
    keep the message, with U+FFFD where the broken character was."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


def _decode(raw: bytes) -> Any:
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
        raise WebhookRejected(400, "body is not valid JSON") from None
    if b"\\ud" in raw or b"\\uD" in raw:
        try:
            payload = _replace_lone_surrogates(payload)
        except RecursionError:  # parsed, but nested deeper than any provider sends
            raise WebhookRejected(400, "body is nested too deeply") from None
    return payload


async def handle_webhook(request: web.Request, channel_name: str) -> web.Response:
    """Authenticate with the channel's own rule, then parse and store."""
    channel = request.app[CHANNELS][channel_name]
    raw = await request.read()
    try:
        channel.authenticate(request, raw)
        parsed = channel.parse(_decode(raw))
    except WebhookRejected as exc:
        log.info("webhook_rejected", channel=channel.name, status=exc.status, reason=exc.message)
        return json_error(exc.status, exc.message)
    return await _store(request, channel.name, parsed)


# Meta posts both products to one URL; `object` says which one it is.
META_OBJECTS = {"whatsapp_business_account": "whatsapp_cloud", "instagram": "instagram"}


async def handle_meta_webhook(request: web.Request) -> web.Response:
    """WhatsApp Cloud API and Instagram Direct: one signature check, then the product's parser."""
    raw = await request.read()
    try:
        verify_signature(request.app[SETTINGS].meta_app_secret, request, raw)
        payload = _decode(raw)
        kind = payload.get("object") if isinstance(payload, dict) else None
        name = META_OBJECTS.get(kind) if isinstance(kind, str) else None
        if name is None:
            if kind == "page":  # Lead Ads (`leadgen`); Messenger's fields are acknowledged
                return await _lead_ads(request, parse_leadgen_webhook(payload))
            raise WebhookRejected(422, f"unsupported Meta webhook object: {str(kind)[:40]!r}")
        channel = request.app[CHANNELS].get(name)
        if channel is None:
            raise WebhookRejected(422, f"{name} is not available in this build")
        parsed = channel.parse(payload)
    except WebhookRejected as exc:
        log.info("webhook_rejected", channel="meta", status=exc.status, reason=exc.message)
        return json_error(exc.status, exc.message)
    return await _store(request, name, parsed)


async def _lead_ads(request: web.Request, events: list[LeadgenEvent]) -> web.Response:
    """Each announced lead becomes an outbox item that reads it from the Graph API: stored
    before the 200, idempotent on its leadgen_id (Meta retries and replays)."""
    store = request.app[STORE]
    accepted = duplicates = 0
    try:
        for event in events:
            fetch = LeadAdsFetch(
                leadgen_id=event.leadgen_id,
                page_id=event.page_id,
                form_id=event.form_id,
                ad_id=event.ad_id,
                adgroup_id=event.adgroup_id,
                created_time=int(event.created_time.timestamp()),
            )
            if await store.enqueue(fetch.to_item()):
                accepted += 1
            else:
                duplicates += 1
    except StoreUnavailable as exc:
        log.error("webhook_store_unavailable", channel="meta_leads", error=str(exc))
        return json_error(503, "store unavailable, retry later")
    if accepted:
        request.app[NOTIFIER].wake()
        log.info("lead_ads_announced", leads=accepted, duplicates=duplicates)
    ignored = 0 if events else 1
    return web.json_response(
        {"status": "ok", "accepted": accepted, "duplicates": duplicates, "ignored": ignored}
    )


async def handle_meta_verification(request: web.Request) -> web.Response:
    try:
        challenge = verify_subscription(request.app[SETTINGS].meta_verify_token, request)
    except WebhookRejected as exc:
        log.warning("meta_verification_rejected", status=exc.status, reason=exc.message)
        return json_error(exc.status, exc.message)
    log.info("meta_webhook_verified")
    return web.Response(text=challenge, content_type="text/plain")


async def _business_wrote(request: web.Request, message: InboundMessage) -> None:
    """Someone at the company wrote to the lead from the phone or the app: the bot steps
    aside for BOT_PAUSE_HOURS so bot and human never talk over each other."""
    hours = request.app[SETTINGS].bot_pause_hours
    paused = await request.app[STORE].note_business_message(
        message.contact_key,
        provider_message_id=message.provider_message_id,
        text=message.text,
        pause_until=request.app[CLOCK]() + timedelta(hours=hours),
    )
    if paused:
        log.info("bot_paused_for_human", channel=message.channel, hours=hours)


def _pass_presence(notifier: Notifier, channel_name: str, presences: list[PresenceEvent]) -> None:
    """A hint for the quiet window of a burst that is pending (or about to be): never
    stored, never a turn on its own (runtime/scheduler.py), so it needs no store."""
    for presence in presences:
        notifier.presence(contact_key_for(channel_name, presence.contact_id), presence.state)


def _watch_presence(request: web.Request, channel_name: str, contact_ids: list[str]) -> None:
    """A lead's first message (to this process, lately): subscribe to their chat presence
    where the provider needs it (WAHA), in the background, so their next burst has it.
    Never on the ack's path: the call only starts here."""
    channel = presence_subscriber(request.app[CHANNELS].get(channel_name))
    calls = request.app.get(BACKGROUND_CALLS)
    if channel is None or calls is None:
        return
    for contact_id in dict.fromkeys(contact_ids):
        if calls.full or not channel.presence_due(contact_id):
            continue
        calls.start(channel.subscribe_presence(request.app[HTTP], contact_id), name="presence-subscribe")


async def _store(request: web.Request, channel_name: str, parsed: ParsedWebhook) -> web.Response:
    store = request.app[STORE]
    notifier = request.app[NOTIFIER]
    accepted = duplicates = 0
    fresh: list[str] = []
    try:
        for event in parsed.ignored:
            if event.message is not None:
                stored = await store.add_inbound(event.message, status="ignored", reason=event.reason)
                if stored and event.message.from_me:  # a provider retry must not extend the pause
                    await _business_wrote(request, event.message)
        for message in parsed.messages:
            if await store.add_inbound(message):
                accepted += 1
                fresh.append(message.contact_id)
                notifier.notify(message.contact_key, complete=ends_thought(message))
            else:
                duplicates += 1
        for status in parsed.statuses:
            await store.record_delivery_status(
                channel_name, status.provider_message_id, status.status, status.error
            )
            if status.status == "failed" and status.outside_window:
                # Meta took the reply, then refused it: the 24-hour window had closed.
                contact_key = await store.message_contact(status.provider_message_id)
                if contact_key is not None:
                    await schedule_reengage(store, channel_name, contact_key)
        for back in parsed.referrals:
            # A lead already in a thread came back through an ad: the newest ad gets the
            # credit (and Meta CAPI the match); a stranger's referral stores nothing.
            key = contact_key_for(channel_name, back.contact_id)
            if await store.record_referral(key, back.referral.model_dump(exclude_none=True)):
                log.info("lead_referral_recorded", channel=channel_name)
    except StoreUnavailable as exc:
        log.error("webhook_store_unavailable", channel=channel_name, error=str(exc))
        return json_error(503, "store unavailable, retry later")
    _pass_presence(notifier, channel_name, parsed.presences)
    _watch_presence(request, channel_name, fresh)
    if parsed.connection is not None:
        request.app[CHANNEL_HEALTH].set_connection(channel_name, parsed.connection)
    if parsed.ignored:
        log.debug("webhook_ignored", channel=channel_name, reasons=[e.reason for e in parsed.ignored])
    return web.json_response(
        {
            "status": "ok",
            "accepted": accepted,
            "duplicates": duplicates,
            "ignored": len(parsed.ignored),
            "statuses": len(parsed.statuses),
            "referrals": len(parsed.referrals),
            "presences": len(parsed.presences),
        }
    )

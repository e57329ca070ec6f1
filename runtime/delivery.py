"""Outbox handlers that deliver to a lead through the channel they wrote on.

Every provider's quirks end here in one shape: the send is rate-limited per provider,
Meta's 24-hour customer-service window is respected (outside it: the approved
re-engagement template, or a person takes over), a credentials failure turns the
channel red in /api/health, and an invalid recipient is recorded on the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiohttp

from channels.base import (
    Channel,
    OutgoingMedia,
    OutgoingMediaKind,
    SentMessage,
    media_sender,
    number_checker,
    templates,
)
from channels.errors import RecipientNotOnWhatsApp
from core.errors import OutsideWindow, ProviderError
from core.logging import get_logger
from core.outbox import ChatwootHandoff, ChatwootNote, Reengage, SendMedia, SendText, chatwoot_lane
from core.records import OutboxItem
from runtime.channel_health import ChannelHealth
from runtime.handoff_card import HandoffCard
from runtime.persist import until_stored
from runtime.policies import HeldUntil, PermanentDeliveryError
from runtime.ratelimit import Limiter, limiter_for
from runtime.seller_notes import SellerNotes
from runtime.templates import FIRST_TOUCH, MEETING_REMINDER, SELLER_START, Template, TemplateBook
from store.base import Store

log = get_logger(__name__)

# Instagram lets a human agent answer for 7 days with the HUMAN_AGENT tag.
HUMAN_AGENT_WINDOW_HOURS = 7 * 24

# (url, max bytes) -> (bytes, mime type, file name): a seller's Chatwoot attachment,
# fetched from Chatwoot's own origin only (ChatwootClient.download_attachment).
AttachmentFetcher = Callable[[str, int], Awaitable[tuple[bytes, str, str]]]


class _ToLead(Protocol):
    """What a text and a file to the lead share, for the window and refusal rules."""

    @property
    def contact_key(self) -> str | None: ...
    @property
    def message_id(self) -> int | None: ...
    @property
    def human_agent(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """Outside the window: WHATSAPP_REENGAGE_TEMPLATE (and its language) if set, else a
    handoff, announced in Chatwoot when Chatwoot is configured."""

    reengage_template: str | None = None
    template_language: str = "pt_BR"
    chatwoot: bool = False


class Delivery:
    def __init__(
        self,
        *,
        channels: Mapping[str, Channel],
        session: aiohttp.ClientSession,
        store: Store,
        config: DeliveryConfig,
        health: ChannelHealth,
        card: HandoffCard,
        clock: Callable[[], datetime] | None = None,
        templates: TemplateBook | None = None,
        notes: SellerNotes | None = None,
        attachments: AttachmentFetcher | None = None,
        max_media_bytes: int = 16 * 1024 * 1024,
        limiters: Mapping[str, Limiter] | None = None,
    ) -> None:
        self.channels = channels
        self.session = session
        self.store = store
        self.config = config
        self.health = health
        self.card = card
        self.clock = clock or (lambda: datetime.now(UTC))
        self.templates = templates or _env_only(config)
        self.notes = notes
        self.attachments = attachments
        self.max_media_bytes = max_media_bytes
        # A provider's rate is its account's: metered in the store when instances share
        # it (Supabase), so N instances do not send N times the rate. Never on `clock`,
        # which the scenarios move: shared slots stay on the store's own clock.
        self.limiters: Mapping[str, Limiter] = limiters or {
            name: limiter_for(store, name, ch.rate_per_s, shared=store.shares_rate_limits)
            for name, ch in channels.items()
        }

    async def reengage(self, _item: OutboxItem, payload: Reengage) -> None:
        self._hold(payload.not_before)
        channel = self.channels.get(payload.channel)
        if channel is None or not channel.configured:
            raise PermanentDeliveryError(f"cannot re-engage through {payload.channel!r}")
        lead = await self.store.get_lead(payload.contact_key)
        if lead is None or lead.opted_out:
            log.info("reengage_skipped", reason="opted_out" if lead else "lead_gone")
            return
        try:
            await self._window_closed(
                channel,
                payload.contact_id,
                payload.contact_key,
                message_id=None,
                purpose=payload.purpose,
                values=payload.template_values,
            )
        except RecipientNotOnWhatsApp as exc:
            await self._not_on_whatsapp(channel, payload.contact_key, None, str(exc))

    def _hold(self, not_before: str | None) -> None:
        """A stale form's first touch waits for business hours (runtime/first_touch.py)."""
        if not_before is None:
            return
        until, now = datetime.fromisoformat(not_before), self.clock()
        if until > now:
            raise HeldUntil(until, "first touch waits for business hours", now=now)

    async def _on_whatsapp(self, channel: Channel, payload: SendText) -> bool:
        """False only when the provider says the number has no WhatsApp; a provider that
        cannot tell (or fails to) lets the send decide."""
        checker = number_checker(channel)
        if checker is None:
            return True
        # A lookup, not a message: it does not spend the channel's send rate.
        return await checker.on_whatsapp(self.session, payload.contact_id) is not False

    async def _not_on_whatsapp(
        self, channel: Channel, contact_key: str | None, message_id: int | None, detail: str
    ) -> None:
        """Recorded on the message and the lead, and handed to the sellers: a call or an
        e-mail can still reach this lead; retrying WhatsApp cannot."""
        log.warning("lead_not_on_whatsapp", channel=channel.name, detail=detail[:200])
        if message_id is not None:
            await self.store.mark_message_failed(message_id, f"not on WhatsApp: {detail}"[:500])
        if contact_key is None:
            return
        card = self.card
        await self.store.request_handoff(
            contact_key, reason=card.not_on_whatsapp_reason, summary=card.not_on_whatsapp_summary
        )
        if self.config.chatwoot:
            note = ChatwootHandoff(
                contact_key=contact_key,
                card=card.situation(card.not_on_whatsapp_reason, card.not_on_whatsapp_note),
            )
            await self.store.enqueue(
                note.item(
                    order_key=chatwoot_lane(contact_key), idempotency_key=f"cw-not-on-whatsapp:{contact_key}"
                )
            )

    async def _silenced(self, payload: SendText) -> str | None:
        """Why this bot message must not go out now, checked at the last moment: a lead
        can opt out, or a person can start talking, while the reply waits in the queue."""
        if not payload.silenceable or not payload.contact_key:
            return None
        lead = await self.store.get_lead(payload.contact_key)
        if lead is None:
            return None
        if lead.opted_out:
            return "the lead opted out"
        if lead.paused_until is not None and lead.paused_until > self.clock():
            return "a person at the company is talking to the lead"
        return None

    def _channel_for(self, payload: SendText | SendMedia) -> Channel:
        channel = self.channels.get(payload.channel)
        if channel is None:
            raise PermanentDeliveryError(f"unknown channel {payload.channel!r}")
        if not channel.configured:
            raise PermanentDeliveryError(
                f"{channel.name} is not configured; set its credentials and replay the outbox"
            )
        return channel

    async def send_text(self, item: OutboxItem, payload: SendText) -> None:
        self._hold(payload.not_before)
        channel = self._channel_for(payload)
        message_id = payload.message_id
        reason = await self._silenced(payload)
        if reason is not None:
            log.info("reply_cancelled", reason=reason)
            if message_id is not None:
                await self.store.mark_message_failed(message_id, f"not sent: {reason}")
            return
        if await self._held_by_window(channel, payload, occasion=item.idempotency_key):
            return
        if payload.first_touch and not await self._first_touch_reachable(channel, payload):
            return
        await self.limiters[channel.name].acquire()
        try:
            sent = await channel.send_text(
                self.session,
                payload.contact_id,
                payload.text,
                typing_s=payload.typing_s,
                human_agent=payload.human_agent,
                seen_message_ids=payload.seen or (),
            )
        except RecipientNotOnWhatsApp as exc:
            await self._not_on_whatsapp(channel, payload.contact_key, message_id, str(exc))
            return
        except ProviderError as exc:
            if await self._refused(channel, payload, exc, occasion=item.idempotency_key):
                return
            raise
        await self._sent(channel, message_id, sent)

    async def _first_touch_reachable(self, channel: Channel, payload: SendText) -> bool:
        """Asked once per lead: the first bubble's answer is the lead's record (a handoff
        for "not on WhatsApp"), and the later bubbles of the same touch follow it."""
        if payload.contact_key is not None:
            lead = await self.store.get_lead(payload.contact_key)
            if lead is not None and lead.handoff_reason == self.card.not_on_whatsapp_reason:
                if payload.message_id is not None:
                    await self.store.mark_message_failed(payload.message_id, "not on WhatsApp")
                return False
        if await self._on_whatsapp(channel, payload):
            return True
        await self._not_on_whatsapp(channel, payload.contact_key, payload.message_id, "the provider says so")
        return False

    async def send_media(self, _item: OutboxItem, payload: SendMedia) -> None:
        """A file a seller sent from Chatwoot: fetched from Chatwoot, sent by the channel."""
        channel = self._channel_for(payload)
        sender = media_sender(channel)
        if sender is None:
            raise PermanentDeliveryError(f"{channel.name} cannot send files to the lead")
        if self.attachments is None:
            raise PermanentDeliveryError("Chatwoot is not configured: the seller's file cannot be fetched")
        if await self._held_by_window(channel, payload):
            return
        data, mime, file_name = await self.attachments(payload.url, self.max_media_bytes)
        media = OutgoingMedia(
            kind=media_kind(payload.file_type, mime),
            data=data,
            mime=mime,
            file_name=payload.file_name or file_name,
            caption=payload.caption,
            url=payload.url,
        )
        await self.limiters[channel.name].acquire()
        try:
            sent = await sender.send_media(
                self.session, payload.contact_id, media, human_agent=payload.human_agent
            )
        except ProviderError as exc:
            if await self._refused(channel, payload, exc):
                return
            raise
        await self._sent(channel, payload.message_id, sent)

    async def _sent(self, channel: Channel, message_id: int | None, sent: SentMessage) -> None:
        self.health.send_ok(channel.name)
        if message_id is not None:
            # The provider has it: a store hiccup now must not turn into a second send.
            await until_stored(
                lambda: self.store.mark_message_sent(message_id, sent.provider_message_id),
                what="mark_message_sent",
            )

    async def _held_by_window(
        self, channel: Channel, payload: SendText | SendMedia, *, occasion: str | None = None
    ) -> bool:
        """Outside the channel's window nothing free-form goes out: the purpose's template
        is queued instead (a seller's own words: the seller_start template; a meeting
        reminder: the meeting_reminder template, once per reminder: `occasion`)."""
        if not await self._outside_window(channel, payload):
            return False
        assert payload.contact_key is not None
        purpose = _template_purpose(payload)
        await schedule_reengage(
            self.store,
            channel.name,
            payload.contact_key,
            purpose=purpose,
            occasion=_occasion(purpose, occasion),
            values=_template_values(payload),
        )
        if payload.message_id is not None:
            await self.store.mark_message_failed(
                payload.message_id, f"not sent: outside the {channel.window_hours} h window"
            )
        return True

    async def _refused(
        self,
        channel: Channel,
        payload: SendText | SendMedia,
        exc: ProviderError,
        *,
        occasion: str | None = None,
    ) -> bool:
        """Record what the provider's refusal means; True when it is handled (a closed
        window: re-engage instead), False when the outbox should decide (retry or dead)."""
        if exc.auth_failed:
            self.health.auth_failed(channel.name, str(exc))
        message_id = payload.message_id
        if exc.invalid_recipient and message_id is not None:
            await self.store.mark_message_failed(message_id, f"invalid recipient: {exc}")
        if channel.window_hours is not None and isinstance(exc, OutsideWindow) and payload.contact_key:
            # The provider knows better than our clock.
            purpose = _template_purpose(payload)
            await schedule_reengage(
                self.store,
                channel.name,
                payload.contact_key,
                purpose=purpose,
                occasion=_occasion(purpose, occasion),
                values=_template_values(payload),
            )
            if message_id is not None:
                await self.store.mark_message_failed(message_id, f"refused: {exc}")
            return True
        return False

    async def _outside_window(self, channel: Channel, payload: _ToLead) -> bool:
        if channel.window_hours is None or not payload.contact_key:
            return False
        lead = await self.store.get_lead(payload.contact_key)
        if lead is None or lead.last_inbound_at is None:
            return False
        human = payload.human_agent
        hours = HUMAN_AGENT_WINDOW_HOURS if human and channel.name == "instagram" else channel.window_hours
        return self.clock() - lead.last_inbound_at > timedelta(hours=hours)

    async def _window_closed(
        self,
        channel: Channel,
        contact_id: str,
        contact_key: str,
        *,
        message_id: int | None,
        purpose: str | None = None,
        values: Mapping[str, str] | None = None,
    ) -> None:
        """Free text cannot go out: the purpose's approved template, or a person takes over."""
        template = self.templates.for_purpose(purpose)
        sender = templates(channel)
        if template is not None and sender is not None:
            await self._send_template(channel, contact_id, contact_key, template, values)
            outcome = f"outside the {channel.window_hours} h window: template {template.name!r} sent instead"
        elif purpose == FIRST_TOUCH:
            # A form lead on the official API: without the template nobody may write first.
            card = self.card
            await self.store.request_handoff(
                contact_key,
                reason=card.first_touch_no_template_reason,
                summary=card.first_touch_no_template_summary,
            )
            if self.config.chatwoot:
                note = ChatwootHandoff(
                    contact_key=contact_key,
                    card=card.situation(
                        card.first_touch_no_template_reason, card.first_touch_no_template_note
                    ),
                )
                await self.store.enqueue(
                    note.item(
                        order_key=chatwoot_lane(contact_key),
                        idempotency_key=f"cw-first-touch:{contact_key}",
                    )
                )
            outcome = "a form lead and no first_touch template: handed off to a person"
        elif purpose == MEETING_REMINDER:
            # A reminder is no conversation to hand over: without its template it is
            # simply not sent (the lead has the confirmation and the calendar invite).
            outcome = f"outside the {channel.window_hours} h window and no meeting_reminder template: reminder dropped"
        elif purpose == SELLER_START:
            # A person is already on it: tell them their words did not go out, no handoff.
            await self._tell_seller(contact_key)
            outcome = f"outside the {channel.window_hours} h window and no template: the seller is told"
        else:
            await self.store.request_handoff(
                contact_key,
                reason=self.card.window_closed_reason,
                summary=self.card.window_closed_summary,
            )
            if self.config.chatwoot:
                # The team must see it: the same note + `open` as any other handoff.
                note = ChatwootHandoff(contact_key=contact_key, card=self.card.window_closed())
                await self.store.enqueue(
                    note.item(
                        order_key=chatwoot_lane(contact_key),
                        idempotency_key=f"cw-handoff-window:{contact_key}:{message_id}",
                    )
                )
            outcome = f"outside the {channel.window_hours} h window and no template: handed off to a person"
        log.warning("reply_outside_window", channel=channel.name, outcome=outcome)

    async def _send_template(
        self,
        channel: Channel,
        contact_id: str,
        contact_key: str,
        template: Template,
        values: Mapping[str, str] | None = None,
    ) -> None:
        sender = templates(channel)
        assert sender is not None
        lead = await self.store.get_lead(contact_key)
        await self.limiters[channel.name].acquire()
        await sender.send_template(
            self.session,
            contact_id,
            name=template.name,
            language=template.language,
            parameters=self.templates.parameters(template, lead, values),
        )

    async def _tell_seller(self, contact_key: str) -> None:
        if not self.config.chatwoot or self.notes is None:
            return
        note = ChatwootNote(contact_key=contact_key, note=self.notes.seller_window_closed)
        lead = await self.store.get_lead(contact_key)
        since = lead.last_inbound_at.isoformat() if lead and lead.last_inbound_at else "never"
        await self.store.enqueue(
            note.item(
                order_key=chatwoot_lane(contact_key),
                idempotency_key=f"cw-seller-window:{contact_key}:{since}",
            )
        )


def media_kind(file_type: str | None, mime: str) -> OutgoingMediaKind:
    """Chatwoot's attachment file_type (image, audio, video, file...), else the MIME type."""
    for kind in ("image", "audio", "video"):
        if file_type == kind or (file_type in (None, "", "file") and mime.startswith(kind + "/")):
            return kind
    return "document"


def _template_purpose(payload: SendText | SendMedia) -> str | None:
    """Which template a message held by the closed window becomes: a seller's words the
    seller_start one, a meeting reminder its own, any bot reply [reengage]'s."""
    if payload.human_agent:
        return SELLER_START
    if isinstance(payload, SendText) and payload.purpose == MEETING_REMINDER:
        return MEETING_REMINDER
    return None


def _template_values(payload: SendText | SendMedia) -> dict[str, str] | None:
    return payload.template_values if isinstance(payload, SendText) else None


def _occasion(purpose: str | None, occasion: str | None) -> str | None:
    """A meeting's 24 h and 1 h reminders may fall in one silence of the lead: each is its
    own template (the others keep one per silence and purpose)."""
    return occasion if purpose == MEETING_REMINDER else None


def _env_only(config: DeliveryConfig) -> TemplateBook:
    """WHATSAPP_REENGAGE_TEMPLATE alone, without variables (no prompts file given)."""
    if not config.reengage_template:
        return TemplateBook()
    only = Template(name=config.reengage_template, language=config.template_language)
    return TemplateBook(templates={"reengage": only})


async def schedule_reengage(
    store: Store,
    channel_name: str,
    contact_key: str,
    *,
    purpose: str | None = None,
    occasion: str | None = None,
    values: dict[str, str] | None = None,
) -> None:
    """Once per silence of the lead and purpose (and `occasion`, when given: one meeting
    reminder): however many replies hit the closed window (a split answer, a late failed
    status per bubble), one template or one handoff results. `values`: template variables
    the lead's record cannot fill (a meeting reminder's time and seller)."""
    lead = await store.get_lead(contact_key)
    if lead is None:
        return
    since = lead.last_inbound_at.isoformat() if lead.last_inbound_at else "never"
    if occasion is not None:
        since = f"{since}:{occasion}"
    given: dict[str, Any] = {"purpose": purpose} if purpose is not None else {}
    if values:
        given["template_values"] = values
    reengage = Reengage(channel=channel_name, contact_id=lead.contact_id, contact_key=contact_key, **given)
    await store.enqueue(reengage.to_item(since=since))

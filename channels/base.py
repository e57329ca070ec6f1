"""What every channel module provides, and what some of them can do besides.

A channel turns one provider's webhook into `InboundMessage`s and sends text back
through that provider. Adding a channel is one package implementing `Channel` plus its
registration in `channels.registry`.

Optional capabilities are small Protocols (`SendsTemplates`, `SendsMedia`,
`LooksUpProfiles`, `MarksRead`, `Probes`, `ChecksNumbers`, `SubscribesPresence`): a caller asks `templates(channel)` (or `isinstance(channel,
SendsTemplates)`) instead of fishing for a method with `getattr`, so a renamed method is
a type error rather than a feature that silently stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.models import MAX_CONTACT_ID_CHARS, AdReferral, IgnoredEvent, InboundMessage
from core.probe import ProbeIO, ProbeResult

DeliveryState = Literal["sent", "delivered", "read", "played", "failed"]


@dataclass(frozen=True)
class DeliveryStatus:
    """A provider's report on a message we sent (ids are the provider's message ids)."""

    provider_message_id: str
    status: DeliveryState
    error: str | None = None
    timestamp: datetime | None = None
    # The provider took the message, then refused it because the lead's 24-hour window
    # had closed (WhatsApp Cloud error 131047): the runtime re-engages instead.
    outside_window: bool = False
    # The provider took the message, then found no WhatsApp account behind the number
    # (WhatsApp Cloud error 131026): the runtime hands the lead to a seller instead.
    not_on_whatsapp: bool = False


@dataclass(frozen=True)
class ReferralEvent:
    """A lead already in a thread with us opened it again from an ad (Instagram
    `messaging_referrals`): no message, but the ad that brought them back, which keeps
    the lead's attribution (and Meta CAPI's match) on the newest ad."""

    contact_id: str
    referral: AdReferral
    timestamp: datetime | None = None


# What a lead's phone says they are doing in our chat, in one vocabulary for every
# provider (Z-API COMPOSING/RECORDING/PAUSED/AVAILABLE/UNAVAILABLE, WAHA typing/recording/
# paused/online/offline).
PresenceState = Literal["typing", "recording", "paused", "online", "offline"]


class PresenceEvent(BaseModel):
    """A lead's chat presence: a hint for when to answer, never a message. It is not
    stored, never starts a turn, and only moves the quiet window of one already pending
    (runtime/scheduler.py), within DEBOUNCE_MAX_S."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contact_id: str = Field(min_length=1, max_length=MAX_CONTACT_ID_CHARS)
    state: PresenceState


@dataclass
class ParsedWebhook:
    messages: list[InboundMessage] = field(default_factory=list)
    ignored: list[IgnoredEvent] = field(default_factory=list)
    statuses: list[DeliveryStatus] = field(default_factory=list)
    referrals: list[ReferralEvent] = field(default_factory=list)
    presences: list[PresenceEvent] = field(default_factory=list)
    # Connection state of the provider session when the event reports it (WAHA
    # `session.status`: WORKING, SCAN_QR_CODE, FAILED...); shown in /api/health.
    connection: str | None = None


@dataclass
class SentMessage:
    provider_message_id: str | None


OutgoingMediaKind = Literal["image", "document", "video", "audio"]


@dataclass(frozen=True)
class OutgoingMedia:
    """A file a person at the company sent the lead from Chatwoot (a proposal PDF, a photo).

    The bytes were already fetched under the media rule (from Chatwoot's own origin), so
    providers that take an upload or base64 never fetch anything themselves; `url` is where
    they came from, for a provider that only accepts a link (Instagram's Send API).
    """

    kind: OutgoingMediaKind
    data: bytes
    mime: str
    file_name: str
    caption: str | None = None
    url: str | None = None


@runtime_checkable
class MediaSource(Protocol):
    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        """The bytes behind a media URL this channel's webhook gave, at most `max_bytes`."""


class Channel(MediaSource, Protocol):
    name: str
    # Hours after the lead's last message during which free text may be sent (Meta's
    # customer-service window); None when the provider has no such rule.
    window_hours: int | None
    # Outbound messages per second this provider accepts from us.
    rate_per_s: float

    @property
    def configured(self) -> bool: ...

    @property
    def missing_webhook_secret(self) -> str | None:
        """The setting to fill in when this channel's webhook cannot be authenticated (and is
        therefore refused); None when it can, or when the channel has no webhook."""

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Raise WebhookRejected(401/403) unless the request proves it comes from the provider."""

    def parse(self, payload: object) -> ParsedWebhook:
        """Raise WebhookRejected(400/422) for bodies that are not the provider's shape."""

    async def send_text(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        text: str,
        *,
        typing_s: int,
        human_agent: bool = False,
        seen_message_ids: Sequence[str] = (),
    ) -> SentMessage:
        """`human_agent`: a person (not the bot) wrote it; Instagram tags it HUMAN_AGENT.
        `seen_message_ids`: the lead's messages this reply answers, for a provider whose
        read receipt names them (WAHA's sendSeen); the others ignore them."""


# --- optional capabilities ---------------------------------------------------------


@runtime_checkable
class SendsTemplates(Protocol):
    """Approved templates: what WhatsApp Cloud still delivers outside the 24-hour window.

    `parameters` fill the template body's {{1}}, {{2}}... in order (the lead's name, the
    product), as the template was approved with them."""

    async def send_template(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        *,
        name: str,
        language: str | None = None,
        parameters: Sequence[str] = (),
    ) -> SentMessage: ...


@runtime_checkable
class SendsMedia(Protocol):
    """A document, image, video or audio file to the lead, with its caption."""

    async def send_media(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        media: OutgoingMedia,
        *,
        human_agent: bool = False,
    ) -> SentMessage: ...


@runtime_checkable
class LooksUpProfiles(Protocol):
    """A display name the webhook does not carry (Instagram); None when it cannot be had."""

    async def fetch_profile_name(self, session: aiohttp.ClientSession, igsid: str) -> str | None: ...


@runtime_checkable
class MarksRead(Protocol):
    """Read receipts and the "typing..." bubble on the lead's message (WhatsApp Cloud)."""

    async def mark_read(
        self, session: aiohttp.ClientSession, message_id: str, *, typing: bool = False
    ) -> None: ...


@runtime_checkable
class Probes(Protocol):
    """The doctor's one read-only check of this provider's configuration."""

    async def probe(self, io: ProbeIO) -> ProbeResult: ...


@runtime_checkable
class ChecksNumbers(Protocol):
    """Whether a phone number has a WhatsApp account, asked before a first message to a
    lead who only filled a form. True or False when the provider said so; None when it
    cannot tell (timeout, 5xx, an answer of another shape): the caller then just sends.
    Never raises for the provider's failures."""

    async def on_whatsapp(self, session: aiohttp.ClientSession, phone: str) -> bool | None: ...


@runtime_checkable
class SubscribesPresence(Protocol):
    """A provider that reports a chat's presence (typing, recording) only once the bot
    subscribed to it (WAHA). `presence_due` is cheap and synchronous: True claims this
    lead's subscription, and the caller then runs `subscribe_presence` in the background;
    False when this process subscribed to it lately or the provider cannot. The call is
    best effort, short, and never raises for the provider's failures."""

    def presence_due(self, contact_id: str) -> bool: ...

    async def subscribe_presence(self, session: aiohttp.ClientSession, contact_id: str) -> None: ...


def templates(channel: object) -> SendsTemplates | None:
    return channel if isinstance(channel, SendsTemplates) else None


def media_sender(channel: object) -> SendsMedia | None:
    return channel if isinstance(channel, SendsMedia) else None


def profile_lookup(channel: object) -> LooksUpProfiles | None:
    return channel if isinstance(channel, LooksUpProfiles) else None


def read_receipts(channel: object) -> MarksRead | None:
    return channel if isinstance(channel, MarksRead) else None


def prober(channel: object) -> Probes | None:
    return channel if isinstance(channel, Probes) else None


def number_checker(channel: object) -> ChecksNumbers | None:
    return channel if isinstance(channel, ChecksNumbers) else None


def presence_subscriber(channel: object) -> SubscribesPresence | None:
    return channel if isinstance(channel, SubscribesPresence) else None

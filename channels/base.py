"""What every channel module provides.

A channel turns one provider's webhook into `InboundMessage`s and sends text back
through that provider. Adding a channel is one module implementing `Channel` plus its
registration in `channels.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

import aiohttp
from aiohttp import web

from core.models import IgnoredEvent, InboundMessage

DeliveryState = Literal["sent", "delivered", "read", "played", "failed"]


@dataclass(frozen=True)
class DeliveryStatus:
    """A provider's report on a message we sent (ids are the provider's message ids)."""

    provider_message_id: str
    status: DeliveryState
    error: str | None = None
    timestamp: datetime | None = None


@dataclass
class ParsedWebhook:
    messages: list[InboundMessage] = field(default_factory=list)
    ignored: list[IgnoredEvent] = field(default_factory=list)
    statuses: list[DeliveryStatus] = field(default_factory=list)
    # Connection state of the provider session when the event reports it (WAHA
    # `session.status`: WORKING, SCAN_QR_CODE, FAILED...); shown in /api/health.
    connection: str | None = None


@dataclass
class SentMessage:
    provider_message_id: str | None


class Channel(Protocol):
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
    ) -> SentMessage:
        """`human_agent`: a person (not the bot) wrote it; Instagram tags it HUMAN_AGENT."""

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes: ...

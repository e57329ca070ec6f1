"""What every channel module provides.

A channel turns one provider's webhook into `InboundMessage`s and sends text back
through that provider. Adding a channel is one module implementing `Channel` plus its
registration in `channels.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp import web

from core.models import IgnoredEvent, InboundMessage


class WebhookRejected(Exception):
    """The request is not acceptable; `status` is the 4xx to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ParsedWebhook:
    messages: list[InboundMessage] = field(default_factory=list)
    ignored: list[IgnoredEvent] = field(default_factory=list)


class SendError(Exception):
    """A provider refused or failed a send. `retryable` drives the outbox policy."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass
class SentMessage:
    provider_message_id: str | None


class Channel(Protocol):
    name: str

    @property
    def configured(self) -> bool: ...

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Raise WebhookRejected(401/403) unless the request proves it comes from the provider."""

    def parse(self, payload: object) -> ParsedWebhook:
        """Raise WebhookRejected(400/422) for bodies that are not the provider's shape."""

    async def send_text(
        self, session: aiohttp.ClientSession, contact_id: str, text: str, *, typing_s: int
    ) -> SentMessage: ...

    async def fetch_media(
        self, session: aiohttp.ClientSession, url: str, *, max_bytes: int
    ) -> bytes: ...

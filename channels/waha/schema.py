"""WAHA's webhook payloads as frozen models (channels/webhook_helpers.py: ProviderModel).

Shapes follow WAHA's docs (waha.devlike.pro, content/docs/how-to/events/index.md) and the
server's DTOs (github.com/devlikeapro/waha src/structures/*.dto.ts).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from channels.webhook_helpers import ProviderModel

# --- webhook payload models --------------------------------------------------------
# WAHA adds fields between releases; unknown keys are ignored so a new field never
# breaks us, while a documented field with the wrong type is a 422. Fields whose type
# differs per engine (timestamps, coordinates, `_data`) are typed loosely and read
# defensively instead.


class WMe(ProviderModel):
    id: str | None = None
    pushName: str | None = None


class WEnvelope(ProviderModel):
    event: str
    session: str | None = None
    engine: str | None = None
    # Event timestamp in ms ("Event Payload > Structure").
    timestamp: Any = None
    me: WMe | None = None
    payload: Any = None


class WMedia(ProviderModel):
    url: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    error: Any = None


class WLocation(ProviderModel):
    # The DTO declares strings, NOWEB/GOWS send numbers.
    latitude: float | str | None = None
    longitude: float | str | None = None
    description: str | None = None
    name: str | None = None
    address: str | None = None


class WReplyTo(ProviderModel):
    id: str | None = None
    participant: str | None = None
    body: str | None = None


class WMessage(ProviderModel):
    id: str | None = None
    timestamp: Any = None
    from_: str | None = Field(default=None, alias="from")
    fromMe: bool | None = None
    source: str | None = None
    to: str | None = None
    participant: str | None = None
    author: str | None = None
    body: str | None = None
    hasMedia: bool | None = None
    media: WMedia | None = None
    mediaUrl: str | None = None
    location: WLocation | None = None
    vCards: list[Any] | None = None
    replyTo: WReplyTo | None = None
    data: Any = Field(default=None, alias="_data")


class WAck(ProviderModel):
    id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    participant: str | None = None
    fromMe: bool | None = None
    # GOWS reports an unknown ack as null.
    ack: int | None = None
    ackName: str | None = None


class WSessionStatus(ProviderModel):
    status: str | None = None
    name: str | None = None


class WPresence(ProviderModel):
    participant: str | None = None
    lastKnownPresence: str | None = None
    lastSeen: Any = None


class WPresenceUpdate(ProviderModel):
    """`presence.update` (content/docs/how-to/presence/index.md): `id` is the chat, and
    a direct chat has one participant, the lead."""

    id: str | None = None
    presences: list[WPresence] | None = None

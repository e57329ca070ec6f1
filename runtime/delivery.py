"""Outbox handlers that deliver to a lead through the channel they wrote on."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from channels.base import Channel
from integrations.store.base import OutboxItem, Store
from runtime.dispatcher import Handler
from runtime.policies import PermanentDeliveryError


def send_text_handler(
    channels: Mapping[str, Channel], session: aiohttp.ClientSession, store: Store
) -> Handler:
    async def handle(item: OutboxItem) -> None:
        payload = item.payload
        channel = channels.get(payload.get("channel", ""))
        if channel is None:
            raise PermanentDeliveryError(f"unknown channel {payload.get('channel')!r}")
        if not channel.configured:
            raise PermanentDeliveryError(
                f"{channel.name} is not configured; set its credentials and replay the outbox"
            )
        sent = await channel.send_text(
            session, payload["contact_id"], payload["text"], typing_s=int(payload.get("typing_s", 1))
        )
        if payload.get("message_id") is not None:
            await store.mark_message_sent(int(payload["message_id"]), sent.provider_message_id)

    return handle

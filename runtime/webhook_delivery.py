"""Outbox handler for outbound webhooks (any other CRM or automation).

Each item is one event for one endpoint. Every attempt's result (status, duration,
error; never the payload or the secret) is appended to the item, so
`python main.py outbox show ID` is the endpoint's delivery log for that event, and
`outbox list --kind outbound_webhook` the log across events. The X-Webhook-Id is
derived from the item's idempotency key: retries and replays carry the same one, so
a receiver can drop what it already processed.

An event about a lead erased since it was queued is not sent (the erasure deletes the
lead's queued events; this catches one already claimed), except `lead.erased` itself,
which names no lead.
"""

from __future__ import annotations

from datetime import datetime

from core.logging import get_logger
from core.outbox import OutboundWebhook
from core.records import OutboxItem
from integrations.outbound_webhooks import (
    DeliveryResult,
    Endpoint,
    OutboundWebhookClient,
    WebhookDeliveryError,
    stable_delivery_id,
)
from runtime.lifecycle import Subscription
from runtime.policies import PermanentDeliveryError
from store.base import Store

log = get_logger(__name__)

# Attempts kept on the item: enough to see a pattern, bounded for a long outage.
MAX_LOGGED_ATTEMPTS = 20


def subscriptions(endpoints: list[Endpoint]) -> list[Subscription]:
    return [Subscription(ep.id, frozenset(ep.events)) for ep in endpoints if ep.enabled]


class WebhookDelivery:
    def __init__(self, client: OutboundWebhookClient, endpoints: list[Endpoint], store: Store) -> None:
        self.client = client
        self.endpoints = {ep.id: ep for ep in endpoints}
        self.store = store

    async def deliver(self, item: OutboxItem, payload: OutboundWebhook) -> None:
        endpoint = self.endpoints.get(str(payload.endpoint_id))
        if endpoint is None or not endpoint.enabled:
            # Removed or disabled since the event was queued: the operator said stop.
            log.info("outbound_webhook_skipped", reason="endpoint_removed", endpoint_id=payload.endpoint_id)
            return
        if payload.contact_key and await self.store.is_erased(payload.contact_key):
            log.info("outbound_webhook_skipped", reason="lead_erased", endpoint_id=endpoint.id)
            return
        if payload.event is None or payload.timestamp is None:
            raise PermanentDeliveryError("an outbound webhook item needs its event and timestamp")
        try:
            result = await self.client.deliver(
                endpoint,
                payload.event,
                stable_delivery_id(endpoint.id, item.idempotency_key),
                payload.data,
                datetime.fromisoformat(payload.timestamp),
                attempt=item.attempts,
            )
        except WebhookDeliveryError as exc:
            await self._log(item, payload, exc.result)
            raise
        await self._log(item, payload, result)

    async def _log(self, item: OutboxItem, payload: OutboundWebhook, result: DeliveryResult | None) -> None:
        if result is None or item.id is None:
            return
        attempts = [*payload.deliveries, result.as_dict()]
        item.payload = payload.updated(deliveries=attempts[-MAX_LOGGED_ATTEMPTS:]).serialize()
        await self.store.outbox_progress(item.id, item.payload)

"""Outbound webhooks: lead and conversation events pushed to any other CRM or automation.

One module per role: `config` (which receivers get which events), `signing` (the exact
bytes posted and their HMAC), `client` (one delivery attempt, typed errors, the delivery
log line). Retries, backoff, the breaker and the dead letters belong to the outbox.
"""

from integrations.outbound_webhooks.client import (
    DEFAULT_TIMEOUT_S,
    USER_AGENT,
    DeliveryResult,
    OutboundWebhookClient,
    WebhookDeliveryError,
    WebhookDeliveryRejected,
    WebhookDeliveryUnavailable,
)
from integrations.outbound_webhooks.config import (
    EVENTS,
    MIN_SECRET_CHARS,
    WILDCARD,
    Endpoint,
    OutboundWebhookConfigError,
    WebhookEvent,
    load_endpoints,
    subscribers,
)
from integrations.outbound_webhooks.signing import (
    encode_body,
    format_timestamp,
    sign,
    stable_delivery_id,
    verify,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "EVENTS",
    "MIN_SECRET_CHARS",
    "USER_AGENT",
    "WILDCARD",
    "DeliveryResult",
    "Endpoint",
    "OutboundWebhookClient",
    "OutboundWebhookConfigError",
    "WebhookDeliveryError",
    "WebhookDeliveryRejected",
    "WebhookDeliveryUnavailable",
    "WebhookEvent",
    "encode_body",
    "format_timestamp",
    "load_endpoints",
    "sign",
    "stable_delivery_id",
    "subscribers",
    "verify",
]

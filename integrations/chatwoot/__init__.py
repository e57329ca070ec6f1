"""Chatwoot (the sales team's cockpit): Application API client and webhook parsing.

One module per role: `schema` (Chatwoot's records, frozen, and its response shapes),
`client` (one HTTP attempt per call, typed `errors`, the doctor's `probe`) and `webhook`
(who may post a webhook and what a delivery says). Storing ids, ordering and retries
belong to the caller (the outbox).
"""

from integrations.chatwoot.client import ChatwootClient, ChatwootConfig
from integrations.chatwoot.errors import (
    ChatwootAuthFailed,
    ChatwootError,
    ChatwootRejected,
    ChatwootUnavailable,
)
from integrations.chatwoot.schema import (
    ChatwootContact,
    ChatwootContactInbox,
    ChatwootConversation,
    ChatwootMessage,
    ConversationStatus,
    MessageType,
    parse_contact_response,
    to_e164,
)
from integrations.chatwoot.webhook import (
    WEBHOOK_MAX_SKEW_S,
    ChatwootWebhookEvent,
    parse_webhook_event,
    verify_webhook,
)

__all__ = [
    "WEBHOOK_MAX_SKEW_S",
    "ChatwootAuthFailed",
    "ChatwootClient",
    "ChatwootConfig",
    "ChatwootContact",
    "ChatwootContactInbox",
    "ChatwootConversation",
    "ChatwootError",
    "ChatwootMessage",
    "ChatwootRejected",
    "ChatwootUnavailable",
    "ChatwootWebhookEvent",
    "ConversationStatus",
    "MessageType",
    "parse_contact_response",
    "parse_webhook_event",
    "to_e164",
    "verify_webhook",
]

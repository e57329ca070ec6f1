"""Chatwoot webhooks: who may post them, and what a delivery says.

Sources: github.com/chatwoot/docs docs/product/others/webhook-events.md and
Message#webhook_data; signed deliveries carry `X-Chatwoot-Signature: sha256=<hex>` of
`"{X-Chatwoot-Timestamp}.{raw body}"` (lib/webhooks/trigger.rb in recent releases).
Payload models are frozen: a delivery is read, never edited.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from core.errors import WebhookRejected
from core.secret_compare import secrets_match
from integrations.chatwoot.schema import ChatwootContactInbox, ChatwootInboxRef, ChatwootModel, describe

# Chatwoot's signed webhooks carry their own timestamp; older ones are replays.
WEBHOOK_MAX_SKEW_S = 300
# Message#message_type enum (app/models/message.rb); nested payloads send the integer.
_MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}


def verify_webhook(
    webhook_secret: SecretStr | None,
    request: web.Request,
    raw_body: bytes,
    *,
    now: float | None = None,
    max_skew_s: int = WEBHOOK_MAX_SKEW_S,
) -> None:
    """Raise WebhookRejected(401) unless the request proves it knows CHATWOOT_WEBHOOK_SECRET.

    Accepted proofs (any one): a Chatwoot signature (`X-Chatwoot-Signature: sha256=<hex>`
    of `"{X-Chatwoot-Timestamp}.{body}"`, timestamp within `max_skew_s`), or the secret
    itself as a URL token (`?token=`), an `X-Chatwoot-Webhook-Token` header or
    `Authorization: Bearer`. Account webhooks of older releases and agent bots do not
    sign, hence the token. Without a configured secret everything is refused.
    Every comparison is constant-time and every candidate is checked. The secret alone is
    taken, so the route can check a delivery without building a client.
    """
    if webhook_secret is None or not webhook_secret.get_secret_value():
        raise WebhookRejected(401, "chatwoot webhook secret is not configured")
    secret = webhook_secret.get_secret_value().encode()

    ok = False
    signature = request.headers.get("X-Chatwoot-Signature", "").strip()
    if signature:
        timestamp = request.headers.get("X-Chatwoot-Timestamp", "").strip()
        if re.fullmatch(r"\d{1,12}", timestamp):
            current = time.time() if now is None else now
            fresh = abs(current - int(timestamp)) <= max_skew_s
            digest = hmac.new(secret, timestamp.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
            matches = secrets_match(signature.lower(), f"sha256={digest}")
            ok = matches and fresh

    candidates: list[str] = []
    query_token = request.query.get("token")
    if query_token:
        candidates.append(query_token)
    header_token = request.headers.get("X-Chatwoot-Webhook-Token")
    if header_token:
        candidates.append(header_token.strip())
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        candidates.append(credentials.strip())
    for candidate in candidates:
        if secrets_match(candidate, secret):
            ok = True
    if not ok:
        raise WebhookRejected(401, "invalid, stale or missing chatwoot webhook credentials")


# --- webhook payloads ---------------------------------------------------------------

# Chatwoot ids are Postgres bigints: anything larger is not Chatwoot's (and would not fit
# the store's integer columns either).
WebhookId = Annotated[int, Field(ge=0, le=2**63 - 1)]


class WebhookAccount(ChatwootModel):
    id: WebhookId | None = None
    name: str | None = None


class WebhookSender(ChatwootModel):
    id: WebhookId | None = None
    name: str | None = None
    # "contact" (the lead), "user" (an agent, or the owner of the API token we post
    # with), "agent_bot"; absent on some system messages.
    type: str | None = None
    phone_number: str | None = None
    identifier: str | None = None


class WebhookConversationMeta(ChatwootModel):
    sender: WebhookSender | None = None


def _display_id_first(value: object) -> object:
    """The conversation's id as the API's URLs take it: `display_id` when the payload
    names it (the help-center sample, github.com/chatwoot/docs docs/product/features/
    webhooks.md, sends only `display_id`), else `id`, which current releases already
    fill with the display id (Conversations::EventDataPresenter#push_data `id:
    display_id`; ConversationsController finds by `display_id: params[:id]`)."""
    if isinstance(value, dict) and value.get("display_id") is not None:
        return {**value, "id": value["display_id"]}
    return value


class WebhookConversation(ChatwootModel):
    id: WebhookId
    status: str | None = None
    inbox_id: WebhookId | None = None
    contact_inbox: ChatwootContactInbox | None = None
    meta: WebhookConversationMeta | None = None
    labels: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _display_id(cls, value: object) -> object:
        return _display_id_first(value)


class WebhookAttachment(ChatwootModel):
    """Attachment#push_event_data (app/models/attachment.rb): files carry `data_url`
    (an Active Storage URL on Chatwoot's host), `thumb_url` and `file_size`; `file_type`
    is the enum name (image, audio, video, file, location, fallback, share,
    story_mention, contact, ig_reel...)."""

    id: WebhookId | None = None
    message_id: WebhookId | None = None
    file_type: str | None = None
    data_url: str | None = None
    thumb_url: str | None = None
    file_size: int | None = None
    extension: str | None = None


class ChatwootWebhookEvent(ChatwootModel):
    """One Chatwoot webhook delivery (account webhook, API-inbox webhook or agent bot).

    Message events (`message_created`/`message_updated`) carry the message at the top
    level (`id` is the message id) and the conversation under `conversation`;
    conversation events (`conversation_status_changed`, ...) are the conversation itself
    (`id` is the conversation's display id, `status` its new status).
    """

    event: str
    id: WebhookId | None = None
    content: str | None = None
    message_type: Literal["incoming", "outgoing", "activity", "template"] | None = None
    content_type: str | None = None
    content_attributes: dict[str, Any] = Field(default_factory=dict)
    # None: the payload did not say. Releases before Message#webhook_data carried
    # `private` (and the help-center sample) send private notes without it.
    private: bool | None = None
    source_id: str | None = None
    sender: WebhookSender | None = None
    conversation: WebhookConversation | None = None
    status: str | None = None
    inbox_id: WebhookId | None = None
    contact_inbox: ChatwootContactInbox | None = None
    meta: WebhookConversationMeta | None = None
    account: WebhookAccount | None = None
    inbox: ChatwootInboxRef | None = None
    attachments: list[WebhookAttachment] = Field(default_factory=list)

    @field_validator("event", mode="before")
    @classmethod
    def _event_name(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise ValueError("event must not be empty")
        return value

    @field_validator("message_type", mode="before")
    @classmethod
    def _message_type(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return _MESSAGE_TYPES.get(value, value)
        return value

    @field_validator("content_attributes", "attachments", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object, info: Any) -> object:
        if value is None:
            return {} if info.field_name == "content_attributes" else []
        return value

    @model_validator(mode="before")
    @classmethod
    def _conversation_display_id(cls, value: object) -> object:
        # A conversation event is the conversation itself: the same rule for its id.
        if isinstance(value, dict) and str(value.get("event", "")).startswith("conversation_"):
            return _display_id_first(value)
        return value

    # -- what the caller needs --------------------------------------------------------

    @property
    def is_message_event(self) -> bool:
        return self.event.startswith("message_")

    @property
    def message_id(self) -> int | None:
        return self.id if self.is_message_event else None

    @property
    def conversation_id(self) -> int | None:
        if self.is_message_event:
            return self.conversation.id if self.conversation is not None else None
        return self.id

    @property
    def conversation_status(self) -> str | None:
        if self.is_message_event:
            return self.conversation.status if self.conversation is not None else None
        return self.status

    @property
    def sender_type(self) -> str | None:
        if self.sender is None or not self.sender.type:
            return None
        return self.sender.type.strip().lower()

    @property
    def contact_source_id(self) -> str | None:
        ci = self.conversation.contact_inbox if self.conversation is not None else self.contact_inbox
        return ci.source_id if ci is not None else None

    @property
    def contact_id(self) -> int | None:
        """The Chatwoot contact the conversation belongs to (not the message's sender)."""
        ci = self.conversation.contact_inbox if self.conversation is not None else self.contact_inbox
        if ci is not None and ci.contact_id is not None:
            return ci.contact_id
        meta = self.conversation.meta if self.conversation is not None else self.meta
        if meta is not None and meta.sender is not None and (meta.sender.type or "contact") == "contact":
            return meta.sender.id
        return None

    @property
    def conversation_inbox_id(self) -> int | None:
        """The inbox the conversation lives in."""
        if self.conversation is not None and self.conversation.inbox_id is not None:
            return self.conversation.inbox_id
        if self.inbox_id is not None:
            return self.inbox_id
        return self.inbox.id if self.inbox is not None else None

    @property
    def outgoing_created(self) -> bool:
        return self.event == "message_created" and self.message_type == "outgoing"

    @property
    def private_unknown(self) -> bool:
        """An outgoing message that does not say whether it is a private note: never
        taken for a public reply (older releases send notes without `private`)."""
        return self.outgoing_created and self.private is None

    @property
    def is_agent_reply(self) -> bool:
        """An agent's public reply to relay to the lead (our own posts must be filtered by id)."""
        return self.outgoing_created and self.private is False and self.sender_type == "user"


_MESSAGE_EVENTS = ("message_created", "message_updated")


def parse_webhook_event(payload: object) -> ChatwootWebhookEvent:
    """Validate a webhook body (bytes, str or decoded JSON); WebhookRejected(400/422) if malformed."""
    if isinstance(payload, (bytes, bytearray, str)):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
            raise WebhookRejected(400, "chatwoot webhook body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "chatwoot webhook body must be a JSON object")
    if "event" not in payload:
        raise WebhookRejected(422, "invalid chatwoot webhook: missing 'event'")
    try:
        event = ChatwootWebhookEvent.model_validate(payload)
    except ValidationError as exc:
        raise WebhookRejected(422, f"invalid chatwoot webhook: {describe(exc)}") from None
    if event.event in _MESSAGE_EVENTS:
        if event.id is None:
            raise WebhookRejected(422, "invalid chatwoot webhook: message event without 'id'")
        if event.message_type is None:
            raise WebhookRejected(422, "invalid chatwoot webhook: message event without 'message_type'")
        if event.conversation is None:
            raise WebhookRejected(422, "invalid chatwoot webhook: message event without 'conversation'")
    elif event.event.startswith("conversation_"):
        if event.id is None:
            raise WebhookRejected(422, "invalid chatwoot webhook: conversation event without 'id'")
        if event.event == "conversation_status_changed" and not event.status:
            raise WebhookRejected(422, "invalid chatwoot webhook: status change without 'status'")
    return event


__all__ = [
    "WEBHOOK_MAX_SKEW_S",
    "ChatwootWebhookEvent",
    "WebhookAccount",
    "WebhookAttachment",
    "WebhookConversation",
    "WebhookConversationMeta",
    "WebhookSender",
    "parse_webhook_event",
    "verify_webhook",
]

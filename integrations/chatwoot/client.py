"""Chatwoot Application API client and webhook parsing (the sales team's cockpit).

Standalone building block for the Chatwoot mirror/handoff issue: it only talks HTTP and
parses payloads; storing ids, ordering and retries belong to the caller (the outbox).

Sources (Chatwoot's published API definitions, github.com/chatwoot/chatwoot):
- auth header `api_access_token` (app/controllers/concerns/access_token_auth_helper.rb);
- swagger/paths/application/contacts/{search,list_create,conversations}.yml,
  swagger/definitions/request/contact/create_payload.yml (inbox_id required),
  swagger/definitions/request/conversation/create_payload.yml (source_id required),
  swagger/definitions/request/conversation/create_message_payload.yml,
  swagger/paths/application/conversation/messages/create_attachment.yml (multipart,
  `attachments[]`), swagger/paths/application/conversation/{toggle_status,assignments}.yml,
  swagger/paths/application/conversation/labels/create.yml (the list REPLACES the labels);
- response shapes: app/views/api/v1/accounts/contacts/{create,search,update}.json.jbuilder,
  app/views/api/v1/models/{_contact,_contact_inbox,_message}.json.jbuilder;
- error bodies: app/controllers/concerns/request_exception_handler.rb
  (`{"error": ...}` for 401/404, `{"message": ..., "attributes": [...]}` for 422);
- webhooks: github.com/chatwoot/docs docs/product/others/webhook-events.md and
  Message#webhook_data; signed deliveries carry `X-Chatwoot-Signature: sha256=<hex>` of
  `"{X-Chatwoot-Timestamp}.{raw body}"` (lib/webhooks/trigger.rb in recent releases).

One attempt per call: every failure is a `ChatwootError` (a `SendError`) whose
`retryable` tells the outbox whether to try again; the API token never appears in
error texts or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import SendError, WebhookRejected
from core.secret_compare import secrets_match
from core.settings import Settings

_ERROR_DETAIL_MAX = 200
# Chatwoot's signed webhooks carry their own timestamp; older ones are replays.
WEBHOOK_MAX_SKEW_S = 300

ConversationStatus = Literal["open", "pending", "resolved", "snoozed"]
MessageType = Literal["incoming", "outgoing"]
_CONVERSATION_STATUSES = ("open", "pending", "resolved", "snoozed")
# Message#message_type enum (app/models/message.rb); nested payloads send the integer.
_MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}


class ChatwootError(SendError):
    """A Chatwoot call failed. `retryable`: 429/5xx/timeouts/transport; `auth_failed`: 401/403."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        auth_failed: bool = False,
    ) -> None:
        super().__init__(message, status=status, retryable=retryable, auth_failed=auth_failed)


# --- response models --------------------------------------------------------------
# Chatwoot adds fields every release and forks add more: unknown keys are ignored.


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatwootInboxRef(_Model):
    id: int | None = None
    name: str | None = None
    channel_type: str | None = None


class ChatwootContactInbox(_Model):
    source_id: str | None = None
    inbox: ChatwootInboxRef | None = None
    # Webhook payloads flatten the inbox to `inbox_id`.
    inbox_id: int | None = None
    contact_id: int | None = None

    @property
    def resolved_inbox_id(self) -> int | None:
        if self.inbox_id is not None:
            return self.inbox_id
        return self.inbox.id if self.inbox is not None else None


class ChatwootContact(_Model):
    id: int
    name: str | None = None
    phone_number: str | None = None
    identifier: str | None = None
    email: str | None = None
    custom_attributes: dict[str, Any] = Field(default_factory=dict)
    contact_inboxes: list[ChatwootContactInbox] = Field(default_factory=list)

    @field_validator("custom_attributes", "contact_inboxes", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object, info: Any) -> object:
        if value is None:
            return {} if info.field_name == "custom_attributes" else []
        return value

    def source_id_for(self, inbox_id: int | str | None) -> str | None:
        """The contact's source id in `inbox_id` (falls back to its only inbox)."""
        with_source = [ci for ci in self.contact_inboxes if ci.source_id]
        if inbox_id is not None:
            for ci in with_source:
                if ci.resolved_inbox_id is not None and str(ci.resolved_inbox_id) == str(inbox_id):
                    return ci.source_id
            return None
        return with_source[0].source_id if len(with_source) == 1 else None


class ChatwootConversation(_Model):
    # `id` is the conversation's display id: the one every /conversations/{id} URL takes.
    id: int
    status: str | None = None
    inbox_id: int | None = None
    contact_inbox: ChatwootContactInbox | None = None
    labels: list[str] = Field(default_factory=list)

    @field_validator("labels", mode="before")
    @classmethod
    def _null_labels(cls, value: object) -> object:
        return [] if value is None else value


class ChatwootMessage(_Model):
    id: int
    content: str | None = None
    message_type: int | str | None = None
    private: bool | None = None
    conversation_id: int | None = None


class ChatwootToggleResult(_Model):
    success: bool | None = None
    current_status: str | None = None
    conversation_id: int | None = None


def _unwrap_payload(data: Any) -> Any:
    if isinstance(data, dict) and "payload" in data and "id" not in data:
        return data["payload"]
    return data


def parse_contact_response(
    data: Any, inbox_id: int | str | None = None
) -> tuple[ChatwootContact, str | None]:
    """Read a contact out of any of the shapes Chatwoot answers with.

    - create (contacts/create.json.jbuilder): `{"payload": {"contact": {...}, "contact_inbox": {"source_id"}}}`
    - search/list: `{"payload": [{...}]}` (first contact)
    - update/show: `{"payload": {...contact...}}`
    - older releases and proxies: the contact object itself, or `{"contact": {...}}`.
    Returns the contact and its source id in `inbox_id` (None when none is given).
    Raises ValueError when no contact with an id is found.
    """
    body = _unwrap_payload(data)
    contact_inbox: Any = None
    if isinstance(body, list):
        body = next((item for item in body if isinstance(item, dict)), None)
    if isinstance(body, dict) and isinstance(body.get("contact"), dict):
        contact_inbox = body.get("contact_inbox")
        body = body["contact"]
        # `{"contact": {"payload": ...}}` has been seen behind some proxies.
        body = _unwrap_payload(body)
    if not isinstance(body, dict) or body.get("id") is None:
        raise ValueError("no contact id in the response")
    try:
        contact = ChatwootContact.model_validate(body)
    except ValidationError as exc:
        raise ValueError(_describe(exc)) from None

    source_id: str | None = None
    if isinstance(contact_inbox, dict):
        try:
            ci = ChatwootContactInbox.model_validate(contact_inbox)
        except ValidationError:
            ci = None
        if ci is not None and ci.source_id:
            ci_inbox = ci.resolved_inbox_id
            if inbox_id is None or ci_inbox is None or str(ci_inbox) == str(inbox_id):
                source_id = ci.source_id
    if source_id is None:
        source_id = contact.source_id_for(inbox_id)
    return contact, source_id


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _digits(value: str | None) -> str:
    return "".join(ch for ch in (value or "") if ch.isdigit())


def to_e164(phone: str) -> str:
    """`5511987654321`, `+55 (11) 98765-4321` -> `+5511987654321`; ValueError otherwise."""
    digits = _digits(phone)
    if not 8 <= len(digits) <= 15:
        raise ValueError("phone number must have 8 to 15 digits")
    return f"+{digits}"


# --- client -------------------------------------------------------------------------


class ChatwootClient:
    """Thin async client over Chatwoot's Application API for one account and inbox."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session

    # -- configuration ------------------------------------------------------------

    @property
    def configured(self) -> bool:
        s = self._settings
        return bool(s.chatwoot_api_url and s.chatwoot_api_token and s.chatwoot_account_id)

    @property
    def inbox_id(self) -> int | None:
        raw = self._settings.chatwoot_inbox_id
        if raw is None or not str(raw).strip().isdigit():
            return None
        return int(str(raw).strip())

    def _base(self) -> str:
        base = (self._settings.chatwoot_api_url or "").rstrip("/")
        # Accept CHATWOOT_API_URL given as ".../api/v1" as well as the bare host.
        if base.endswith("/api/v1"):
            base = base[: -len("/api/v1")]
        return f"{base}/api/v1/accounts/{self._settings.chatwoot_account_id}"

    def _secrets(self) -> list[str]:
        token = self._settings.chatwoot_api_token
        return [token.get_secret_value()] if token is not None else []

    def _scrub(self, text: str) -> str:
        for secret in sorted(self._secrets(), key=len, reverse=True):
            if secret:
                text = text.replace(secret, "[REDACTED]")
        return text

    # -- HTTP core ----------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        op: str,
        *,
        json_body: Any = None,
        data: aiohttp.FormData | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        if not self.configured:
            raise ChatwootError("chatwoot is not configured", retryable=False)
        token = self._settings.chatwoot_api_token
        assert token is not None
        headers = {"api_access_token": token.get_secret_value(), "Accept": "application/json"}
        kwargs: dict[str, Any] = {
            "headers": headers,
            "timeout": aiohttp.ClientTimeout(total=self._settings.http_timeout_s),
        }
        if json_body is not None:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        if params is not None:
            kwargs["params"] = dict(params)
        try:
            async with self._session.request(method, self._base() + path, **kwargs) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            raise ChatwootError(f"chatwoot {op} timed out", retryable=True) from None
        except aiohttp.ClientError as exc:
            # The exception text can carry the URL and headers; only its class is kept.
            raise ChatwootError(
                f"chatwoot {op} transport error: {type(exc).__name__}", retryable=True
            ) from None

        if not 200 <= status < 300:
            raise self._http_error(op, status, raw)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            # Done on Chatwoot's side; a retry could duplicate it.
            raise ChatwootError(
                f"chatwoot {op} answered HTTP {status} with a non-JSON body",
                status=status,
                retryable=False,
            ) from None

    def _http_error(self, op: str, status: int, raw: str) -> ChatwootError:
        detail = self._scrub(_error_detail(raw))[:_ERROR_DETAIL_MAX]
        message = f"chatwoot {op} failed: HTTP {status}"
        if detail:
            message = f"{message}: {detail}"
        return ChatwootError(
            message,
            status=status,
            retryable=status in (408, 425, 429) or status >= 500,
            auth_failed=status in (401, 403),
        )

    def _bad_response(self, op: str, why: str) -> ChatwootError:
        return ChatwootError(f"chatwoot {op}: unexpected response ({why})", retryable=False)

    # -- contacts -----------------------------------------------------------------

    async def search_contact(self, phone_or_identifier: str) -> ChatwootContact | None:
        """The contact whose identifier or phone matches exactly, else None.

        Chatwoot's search is a substring match over name/email/phone/identifier, so the
        results are filtered here: a partial hit must never attach a lead to someone else.
        """
        query = phone_or_identifier.strip()
        if not query:
            raise ChatwootError("chatwoot contact search needs a phone or identifier", retryable=False)
        data = await self._request("GET", "/contacts/search", "contact search", params={"q": query})
        items = _unwrap_payload(data)
        if items is None:
            return None
        if not isinstance(items, list):
            raise self._bad_response("contact search", "payload is not a list")
        wanted_digits = _digits(query)
        candidates: list[ChatwootContact] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            try:
                candidates.append(ChatwootContact.model_validate(item))
            except ValidationError:
                continue
        for contact in candidates:
            if contact.identifier and contact.identifier == query:
                return contact
        if len(wanted_digits) >= 8:
            for contact in candidates:
                if _digits(contact.phone_number) == wanted_digits:
                    return contact
        return None

    async def create_contact(
        self,
        name: str | None,
        phone: str | None,
        identifier: str | None,
        custom_attributes: Mapping[str, Any] | None = None,
    ) -> tuple[int, str | None]:
        """Create the contact in the configured inbox; returns (contact_id, source_id).

        `source_id` is the contact_inbox id Chatwoot generated for the inbox (needed to
        open conversations); None only if Chatwoot did not report one.
        A 422 (e.g. "Identifier has already been taken") is permanent: search instead.
        """
        inbox_id = self.inbox_id
        if inbox_id is None:
            raise ChatwootError("chatwoot inbox id is not configured", retryable=False)
        body: dict[str, Any] = {"inbox_id": inbox_id}
        if name:
            body["name"] = name
        if phone:
            try:
                body["phone_number"] = to_e164(phone)
            except ValueError as exc:
                raise ChatwootError(f"chatwoot create contact: {exc}", retryable=False) from None
        if identifier:
            body["identifier"] = identifier
        if custom_attributes:
            body["custom_attributes"] = dict(custom_attributes)
        data = await self._request("POST", "/contacts", "create contact", json_body=body)
        try:
            contact, source_id = parse_contact_response(data, inbox_id)
        except ValueError as exc:
            raise self._bad_response("create contact", str(exc)) from None
        return contact.id, source_id

    async def update_contact_attributes(self, contact_id: int, attrs: Mapping[str, Any]) -> ChatwootContact:
        data = await self._request(
            "PUT",
            f"/contacts/{int(contact_id)}",
            "update contact",
            json_body={"custom_attributes": dict(attrs)},
        )
        try:
            contact, _ = parse_contact_response(data)
        except ValueError as exc:
            raise self._bad_response("update contact", str(exc)) from None
        return contact

    async def delete_contact(self, contact_id: int) -> bool:
        """Delete the contact; Chatwoot deletes its conversations and messages with it
        (swagger/paths/application/contacts/crud.yml `contactDelete`; Contact
        `has_many :conversations, dependent: :destroy_async`). False when Chatwoot no
        longer has it (404), so deleting twice (a retry, a replay) is done, not an error."""
        try:
            await self._request("DELETE", f"/contacts/{int(contact_id)}", "delete contact")
        except ChatwootError as exc:
            if exc.status == 404:
                return False
            if exc.status is not None and 200 <= exc.status < 300:
                return True  # deleted; only the body was not JSON
            raise
        return True

    async def contact_conversations(self, contact_id: int) -> list[ChatwootConversation]:
        data = await self._request(
            "GET", f"/contacts/{int(contact_id)}/conversations", "contact conversations"
        )
        items = _unwrap_payload(data)
        if items is None:
            return []
        if not isinstance(items, list):
            raise self._bad_response("contact conversations", "payload is not a list")
        out: list[ChatwootConversation] = []
        for item in items:
            if isinstance(item, dict):
                try:
                    out.append(ChatwootConversation.model_validate(item))
                except ValidationError:
                    continue
        return out

    # -- conversations ------------------------------------------------------------

    async def create_conversation(
        self, contact_id: int, source_id: str, status: ConversationStatus = "pending"
    ) -> int:
        """Open a conversation in the configured inbox; `pending` means the bot owns it."""
        inbox_id = self.inbox_id
        if inbox_id is None:
            raise ChatwootError("chatwoot inbox id is not configured", retryable=False)
        _check_status(status)
        body = {
            "source_id": source_id,
            "inbox_id": inbox_id,
            "contact_id": int(contact_id),
            "status": status,
        }
        data = await self._request("POST", "/conversations", "create conversation", json_body=body)
        conv = _unwrap_payload(data)
        try:
            return ChatwootConversation.model_validate(conv).id
        except ValidationError as exc:
            raise self._bad_response("create conversation", _describe(exc)) from None

    async def create_message(
        self,
        conversation_id: int,
        content: str,
        *,
        message_type: MessageType,
        private: bool = False,
        attachment: tuple[str, bytes, str] | None = None,
    ) -> int:
        """Post a message (`incoming`: the lead's; `outgoing`: bot/agent; private: a note).

        `attachment` is (filename, bytes, mime type), sent as multipart `attachments[]`.
        Returns the Chatwoot message id (store it: webhooks echo our own messages back).
        """
        if message_type not in ("incoming", "outgoing"):
            raise ChatwootError("chatwoot message_type must be incoming or outgoing", retryable=False)
        path = f"/conversations/{int(conversation_id)}/messages"
        if attachment is None:
            body = {"content": content, "message_type": message_type, "private": bool(private)}
            data = await self._request("POST", path, "create message", json_body=body)
        else:
            filename, payload, mime = attachment
            form = aiohttp.FormData()
            form.add_field("content", content or "")
            form.add_field("message_type", message_type)
            form.add_field("private", "true" if private else "false")
            form.add_field("attachments[]", payload, filename=filename, content_type=mime)
            data = await self._request("POST", path, "create message", data=form)
        msg = _unwrap_payload(data)
        try:
            return ChatwootMessage.model_validate(msg).id
        except ValidationError as exc:
            raise self._bad_response("create message", _describe(exc)) from None

    async def conversation_messages(self, conversation_id: int) -> list[ChatwootMessage]:
        """The conversation's latest messages (`GET /conversations/{id}/messages`)."""
        data = await self._request("GET", f"/conversations/{int(conversation_id)}/messages", "list messages")
        items = _unwrap_payload(data)
        if not isinstance(items, list):
            return []
        out: list[ChatwootMessage] = []
        for item in items:
            try:
                out.append(ChatwootMessage.model_validate(item))
            except ValidationError:
                continue
        return out

    async def create_contact_inbox(self, contact_id: int) -> str | None:
        """Link an existing contact (found through another inbox) to ours; returns its source_id.

        `POST /contacts/{id}/contact_inboxes` with `inbox_id` (Chatwoot API: contact inboxes)."""
        inbox = self.inbox_id
        if inbox is None:
            raise ChatwootError("CHATWOOT_INBOX_ID is not set", retryable=False)
        data = await self._request(
            "POST",
            f"/contacts/{int(contact_id)}/contact_inboxes",
            "create contact inbox",
            json_body={"inbox_id": inbox},
        )
        payload = _unwrap_payload(data)
        source_id = payload.get("source_id") if isinstance(payload, dict) else None
        return str(source_id) if source_id else None

    async def toggle_status(self, conversation_id: int, status: ConversationStatus) -> str | None:
        """Set the conversation status; returns Chatwoot's `current_status`."""
        _check_status(status)
        data = await self._request(
            "POST",
            f"/conversations/{int(conversation_id)}/toggle_status",
            "toggle status",
            json_body={"status": status},
        )
        payload = _unwrap_payload(data)
        if isinstance(payload, dict):
            try:
                return ChatwootToggleResult.model_validate(payload).current_status
            except ValidationError:
                return None
        return None

    async def add_labels(self, conversation_id: int, labels: list[str]) -> list[str]:
        """Set the conversation's labels. Chatwoot REPLACES the list: pass all of them."""
        clean = [label.strip() for label in labels if isinstance(label, str) and label.strip()]
        data = await self._request(
            "POST",
            f"/conversations/{int(conversation_id)}/labels",
            "add labels",
            json_body={"labels": clean},
        )
        payload = _unwrap_payload(data)
        if isinstance(payload, list):
            return [str(label) for label in payload]
        return clean

    async def assign_team(self, conversation_id: int, team_id: int) -> None:
        await self._request(
            "POST",
            f"/conversations/{int(conversation_id)}/assignments",
            "assign team",
            json_body={"team_id": int(team_id)},
        )

    # -- webhooks -----------------------------------------------------------------

    def verify_webhook(self, request: web.Request, raw_body: bytes) -> None:
        verify_webhook(self._settings, request, raw_body)


def _check_status(status: str) -> None:
    if status not in _CONVERSATION_STATUSES:
        raise ChatwootError(
            f"chatwoot conversation status must be one of {', '.join(_CONVERSATION_STATUSES)}",
            retryable=False,
        )


def _error_detail(raw: str) -> str:
    """Chatwoot's own words: `message` (422), `error` (401/404), `errors` (Devise), else the body."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.strip()
    if isinstance(data, dict):
        for key in ("message", "error", "description"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        errors = data.get("errors")
        if isinstance(errors, list):
            texts = [e if isinstance(e, str) else json.dumps(e) for e in errors]
            if texts:
                return "; ".join(texts)
        if isinstance(errors, str) and errors.strip():
            return errors.strip()
    return raw.strip()


# --- webhook authentication ---------------------------------------------------------


def verify_webhook(
    settings: Settings,
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
    Every comparison is constant-time and every candidate is checked.
    """
    secret_value = settings.chatwoot_webhook_secret
    if secret_value is None or not secret_value.get_secret_value():
        raise WebhookRejected(401, "chatwoot webhook secret is not configured")
    secret = secret_value.get_secret_value().encode()

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


class WebhookAccount(_Model):
    id: WebhookId | None = None
    name: str | None = None


class WebhookSender(_Model):
    id: WebhookId | None = None
    name: str | None = None
    # "contact" (the lead), "user" (an agent, or the owner of the API token we post
    # with), "agent_bot"; absent on some system messages.
    type: str | None = None
    phone_number: str | None = None
    identifier: str | None = None


class WebhookConversationMeta(_Model):
    sender: WebhookSender | None = None


class WebhookConversation(_Model):
    id: WebhookId
    status: str | None = None
    inbox_id: WebhookId | None = None
    contact_inbox: ChatwootContactInbox | None = None
    meta: WebhookConversationMeta | None = None
    labels: list[str] | None = None


class WebhookAttachment(_Model):
    id: WebhookId | None = None
    file_type: str | None = None
    data_url: str | None = None
    extension: str | None = None


class ChatwootWebhookEvent(_Model):
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
    private: bool = False
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

    @field_validator("private", mode="before")
    @classmethod
    def _null_private(cls, value: object) -> object:
        return False if value is None else value

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
    def is_agent_reply(self) -> bool:
        """An agent's public reply to relay to the lead (our own posts must be filtered by id)."""
        return (
            self.event == "message_created"
            and self.message_type == "outgoing"
            and not self.private
            and self.sender_type == "user"
        )


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
        raise WebhookRejected(422, f"invalid chatwoot webhook: {_describe(exc)}") from None
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
    "ChatwootClient",
    "ChatwootContact",
    "ChatwootContactInbox",
    "ChatwootConversation",
    "ChatwootError",
    "ChatwootMessage",
    "ChatwootWebhookEvent",
    "WEBHOOK_MAX_SKEW_S",
    "parse_contact_response",
    "parse_webhook_event",
    "to_e164",
    "verify_webhook",
]

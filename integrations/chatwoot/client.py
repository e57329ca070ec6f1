"""Chatwoot Application API client (the sales team's cockpit).

Standalone building block for the Chatwoot mirror/handoff issue: it only talks HTTP;
storing ids, ordering and retries belong to the caller (the outbox).

Sources (Chatwoot's published API definitions, github.com/chatwoot/chatwoot):
- auth header `api_access_token` (app/controllers/concerns/access_token_auth_helper.rb);
- swagger/paths/application/contacts/{search,list_create,conversations}.yml,
  swagger/definitions/request/contact/create_payload.yml (inbox_id required),
  swagger/definitions/request/conversation/create_payload.yml (source_id required),
  swagger/definitions/request/conversation/create_message_payload.yml,
  swagger/paths/application/conversation/messages/create_attachment.yml (multipart,
  `attachments[]`), swagger/paths/application/conversation/{toggle_status,assignments}.yml,
  swagger/paths/application/conversation/labels/{index,create}.yml (the list REPLACES the
  labels: `labels` reads, merges and writes);
- attachment downloads: `download` (Chatwoot's own origin only);
- error bodies: app/controllers/concerns/request_exception_handler.rb
  (`{"error": ...}` for 401/404, `{"message": ..., "attributes": [...]}` for 422).

One attempt per call: every failure is a `ChatwootError` leaf, and only
`ChatwootUnavailable` is worth retrying (the outbox does); the API token never appears
in error texts or logs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr, ValidationError

from core.probe import ProbeIO, ProbeResult
from integrations.chatwoot.download import Downloaded, download
from integrations.chatwoot.errors import (
    ChatwootError,
    ChatwootRejected,
    ChatwootUnavailable,
    chatwoot_error_for_status,
)
from integrations.chatwoot.labels import clean_labels, merge_labels, same_labels
from integrations.chatwoot.probe import probe_inbox
from integrations.chatwoot.schema import (
    CONVERSATION_STATUSES,
    ChatwootContact,
    ChatwootConversation,
    ChatwootMessage,
    ChatwootToggleResult,
    ConversationStatus,
    MessageType,
    describe,
    parse_contact_response,
    phone_digits,
    to_e164,
    unwrap_payload,
)
from integrations.chatwoot.webhook import verify_webhook

_ERROR_DETAIL_MAX = 200


@dataclass(frozen=True, slots=True)
class ChatwootConfig:
    """The CHATWOOT_* values the client reads, and nothing else of the settings; built
    from Settings by web/configs/integrations.py. `inbox_id` stays the text it was given:
    the client decides whether it is a usable id."""

    api_url: str | None
    api_token: SecretStr | None
    account_id: str | None
    inbox_id: str | None
    webhook_secret: SecretStr | None
    timeout_s: float

    @property
    def configured(self) -> bool:
        return bool(self.api_url and self.api_token and self.account_id)


class ChatwootClient:
    """Thin async client over Chatwoot's Application API for one account and inbox."""

    def __init__(self, config: ChatwootConfig, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session

    # -- configuration ------------------------------------------------------------

    @property
    def configured(self) -> bool:
        return self._config.configured

    @property
    def inbox_id(self) -> int | None:
        raw = self._config.inbox_id
        if raw is None or not str(raw).strip().isdigit():
            return None
        return int(str(raw).strip())

    def _base(self) -> str:
        base = (self._config.api_url or "").rstrip("/")
        # Accept CHATWOOT_API_URL given as ".../api/v1" as well as the bare host.
        if base.endswith("/api/v1"):
            base = base[: -len("/api/v1")]
        return f"{base}/api/v1/accounts/{self._config.account_id}"

    def _headers(self) -> dict[str, str]:
        token = self._config.api_token
        return {
            "api_access_token": token.get_secret_value() if token is not None else "",
            "Accept": "application/json",
        }

    def _secrets(self) -> list[str]:
        token = self._config.api_token
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
            raise ChatwootRejected("chatwoot is not configured")
        kwargs: dict[str, Any] = {
            "headers": self._headers(),
            "timeout": aiohttp.ClientTimeout(total=self._config.timeout_s),
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
            raise ChatwootUnavailable(f"chatwoot {op} timed out") from None
        except aiohttp.ClientError as exc:
            # The exception text can carry the URL and headers; only its class is kept.
            raise ChatwootUnavailable(f"chatwoot {op} transport error: {type(exc).__name__}") from None

        if not 200 <= status < 300:
            raise self._http_error(op, status, raw)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            # Done on Chatwoot's side; a retry could duplicate it.
            raise ChatwootRejected(
                f"chatwoot {op} answered HTTP {status} with a non-JSON body", status=status
            ) from None

    def _http_error(self, op: str, status: int, raw: str) -> ChatwootError:
        detail = self._scrub(_error_detail(raw))[:_ERROR_DETAIL_MAX]
        message = f"chatwoot {op} failed: HTTP {status}"
        if detail:
            message = f"{message}: {detail}"
        return chatwoot_error_for_status(status, message)

    def _bad_response(self, op: str, why: str) -> ChatwootError:
        return ChatwootRejected(f"chatwoot {op}: unexpected response ({why})")

    # -- contacts -----------------------------------------------------------------

    async def search_contact(self, phone_or_identifier: str) -> ChatwootContact | None:
        """The contact whose identifier or phone matches exactly, else None.

        Chatwoot's search is a substring match over name/email/phone/identifier, so the
        results are filtered here: a partial hit must never attach a lead to someone else.
        """
        query = phone_or_identifier.strip()
        if not query:
            raise ChatwootRejected("chatwoot contact search needs a phone or identifier")
        data = await self._request("GET", "/contacts/search", "contact search", params={"q": query})
        items = unwrap_payload(data)
        if items is None:
            return None
        if not isinstance(items, list):
            raise self._bad_response("contact search", "payload is not a list")
        wanted_digits = phone_digits(query)
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
                if phone_digits(contact.phone_number) == wanted_digits:
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
            raise ChatwootRejected("chatwoot inbox id is not configured")
        body: dict[str, Any] = {"inbox_id": inbox_id}
        if name:
            body["name"] = name
        if phone:
            try:
                body["phone_number"] = to_e164(phone)
            except ValueError as exc:
                raise ChatwootRejected(f"chatwoot create contact: {exc}") from None
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
        items = unwrap_payload(data)
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
            raise ChatwootRejected("chatwoot inbox id is not configured")
        _check_status(status)
        body = {
            "source_id": source_id,
            "inbox_id": inbox_id,
            "contact_id": int(contact_id),
            "status": status,
        }
        data = await self._request("POST", "/conversations", "create conversation", json_body=body)
        conv = unwrap_payload(data)
        try:
            return ChatwootConversation.model_validate(conv).id
        except ValidationError as exc:
            raise self._bad_response("create conversation", describe(exc)) from None

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
            raise ChatwootRejected("chatwoot message_type must be incoming or outgoing")
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
        msg = unwrap_payload(data)
        try:
            return ChatwootMessage.model_validate(msg).id
        except ValidationError as exc:
            raise self._bad_response("create message", describe(exc)) from None

    async def conversation_messages(self, conversation_id: int) -> list[ChatwootMessage]:
        """The conversation's latest messages (`GET /conversations/{id}/messages`)."""
        data = await self._request("GET", f"/conversations/{int(conversation_id)}/messages", "list messages")
        items = unwrap_payload(data)
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
            raise ChatwootRejected("CHATWOOT_INBOX_ID is not set")
        data = await self._request(
            "POST",
            f"/contacts/{int(contact_id)}/contact_inboxes",
            "create contact inbox",
            json_body={"inbox_id": inbox},
        )
        payload = unwrap_payload(data)
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
        payload = unwrap_payload(data)
        if isinstance(payload, dict):
            try:
                return ChatwootToggleResult.model_validate(payload).current_status
            except ValidationError:
                return None
        return None

    async def add_labels(self, conversation_id: int, labels: list[str]) -> list[str]:
        """Set the conversation's labels. Chatwoot REPLACES the list: pass all of them
        (`merge_labels` reads them first)."""
        clean = clean_labels(labels)
        data = await self._request(
            "POST",
            f"/conversations/{int(conversation_id)}/labels",
            "add labels",
            json_body={"labels": clean},
        )
        payload = unwrap_payload(data)
        if isinstance(payload, list):
            return [str(label) for label in payload]
        return clean

    async def conversation_labels(self, conversation_id: int) -> list[str]:
        """The labels the conversation has now (`GET /conversations/{id}/labels`)."""
        data = await self._request("GET", f"/conversations/{int(conversation_id)}/labels", "list labels")
        payload = unwrap_payload(data)
        if not isinstance(payload, list):
            # Writing without knowing what is there would wipe the sellers' labels.
            raise self._bad_response("list labels", "payload is not a list")
        return clean_labels(payload)

    async def merge_labels(
        self, conversation_id: int, *, add: list[str], replace: frozenset[str] = frozenset()
    ) -> list[str]:
        """Add `add` (dropping the other labels of the `replace` family) and keep every
        other label: read, merge, write; nothing is written when nothing changes."""
        current = await self.conversation_labels(conversation_id)
        merged = merge_labels(current, add=add, replace=replace)
        if same_labels(current, merged):
            return current
        return await self.add_labels(conversation_id, merged)

    async def assign_team(self, conversation_id: int, team_id: int) -> None:
        await self._request(
            "POST",
            f"/conversations/{int(conversation_id)}/assignments",
            "assign team",
            json_body={"team_id": int(team_id)},
        )

    async def assign_agent(self, conversation_id: int, agent_id: int) -> None:
        """The conversation's assignee (swagger conversation/assignments.yml: `assignee_id`)."""
        await self._request(
            "POST",
            f"/conversations/{int(conversation_id)}/assignments",
            "assign agent",
            json_body={"assignee_id": int(agent_id)},
        )

    # -- attachments ----------------------------------------------------------------

    async def download_attachment(self, url: str, max_bytes: int) -> tuple[bytes, str, str]:
        """(bytes, mime type, file name) of an attachment's `data_url`, fetched only from
        CHATWOOT_API_URL's origin (integrations/chatwoot/download.py). Positional too, so
        it is runtime.delivery's AttachmentFetcher as it stands."""
        if not self.configured:
            raise ChatwootRejected("chatwoot is not configured")
        got: Downloaded = await download(
            self._session,
            url,
            chatwoot_url=self._config.api_url or "",
            headers={"api_access_token": self._headers()["api_access_token"]},
            max_bytes=max_bytes,
            timeout_s=self._config.timeout_s,
        )
        return got.data, got.mime, got.file_name

    # -- webhooks -----------------------------------------------------------------

    def verify_webhook(self, request: web.Request, raw_body: bytes) -> None:
        verify_webhook(self._config.webhook_secret, request, raw_body)

    # -- doctor ---------------------------------------------------------------------

    async def probe(self, io: ProbeIO) -> ProbeResult:
        """Read the configured inbox (or the account's inbox list), read-only."""
        return await probe_inbox(
            io,
            account_url=self._base(),
            headers=self._headers(),
            account=self._config.account_id,
            inbox=(self._config.inbox_id or "").strip(),
        )


def _check_status(status: str) -> None:
    if status not in CONVERSATION_STATUSES:
        raise ChatwootRejected(
            f"chatwoot conversation status must be one of {', '.join(CONVERSATION_STATUSES)}"
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


__all__ = ["ChatwootClient"]

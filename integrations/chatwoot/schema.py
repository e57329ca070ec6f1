"""Chatwoot's records as its Application API answers them (frozen: what Chatwoot said is
not edited on our side), and the reading of its many response shapes.

Sources (github.com/chatwoot/chatwoot): app/views/api/v1/accounts/contacts/
{create,search,update}.json.jbuilder, app/views/api/v1/models/{_contact,_contact_inbox,
_message}.json.jbuilder. Chatwoot adds fields every release and forks add more: unknown
keys are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ConversationStatus = Literal["open", "pending", "resolved", "snoozed"]
MessageType = Literal["incoming", "outgoing"]
CONVERSATION_STATUSES = ("open", "pending", "resolved", "snoozed")


# Chatwoot's ids are PostgreSQL bigints: a larger number is not an id but a forged body,
# refused at the edge (422) before it reaches a store column (SQLite: OverflowError).
ChatwootId = Annotated[int, Field(ge=0, le=2**63 - 1)]


class ChatwootModel(BaseModel):
    """Base of every Chatwoot record: unknown keys ignored, frozen."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ChatwootInboxRef(ChatwootModel):
    id: ChatwootId | None = None
    name: str | None = None
    channel_type: str | None = None


class ChatwootContactInbox(ChatwootModel):
    source_id: str | None = None
    inbox: ChatwootInboxRef | None = None
    # Webhook payloads flatten the inbox to `inbox_id`.
    inbox_id: ChatwootId | None = None
    contact_id: ChatwootId | None = None

    @property
    def resolved_inbox_id(self) -> int | None:
        if self.inbox_id is not None:
            return self.inbox_id
        return self.inbox.id if self.inbox is not None else None


class ChatwootContact(ChatwootModel):
    id: ChatwootId
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


class ChatwootConversation(ChatwootModel):
    # `id` is the conversation's display id: the one every /conversations/{id} URL takes.
    id: ChatwootId
    status: str | None = None
    inbox_id: ChatwootId | None = None
    contact_inbox: ChatwootContactInbox | None = None
    labels: list[str] = Field(default_factory=list)

    @field_validator("labels", mode="before")
    @classmethod
    def _null_labels(cls, value: object) -> object:
        return [] if value is None else value


class ChatwootMessage(ChatwootModel):
    id: ChatwootId
    content: str | None = None
    message_type: int | str | None = None
    private: bool | None = None
    conversation_id: ChatwootId | None = None


class ChatwootToggleResult(ChatwootModel):
    success: bool | None = None
    current_status: str | None = None
    conversation_id: ChatwootId | None = None


def unwrap_payload(data: Any) -> Any:
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
    body = unwrap_payload(data)
    contact_inbox: Any = None
    if isinstance(body, list):
        body = next((item for item in body if isinstance(item, dict)), None)
    if isinstance(body, dict) and isinstance(body.get("contact"), dict):
        contact_inbox = body.get("contact_inbox")
        body = body["contact"]
        # `{"contact": {"payload": ...}}` has been seen behind some proxies.
        body = unwrap_payload(body)
    if not isinstance(body, dict) or body.get("id") is None:
        raise ValueError("no contact id in the response")
    try:
        contact = ChatwootContact.model_validate(body)
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None

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


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def phone_digits(value: str | None) -> str:
    return "".join(ch for ch in (value or "") if ch.isdigit())


def to_e164(phone: str) -> str:
    """`5511987654321`, `+55 (11) 98765-4321` -> `+5511987654321`; ValueError otherwise."""
    digits = phone_digits(phone)
    if not 8 <= len(digits) <= 15:
        raise ValueError("phone number must have 8 to 15 digits")
    return f"+{digits}"


__all__ = [
    "CONVERSATION_STATUSES",
    "ChatwootContact",
    "ChatwootContactInbox",
    "ChatwootConversation",
    "ChatwootInboxRef",
    "ChatwootMessage",
    "ChatwootModel",
    "ChatwootToggleResult",
    "ConversationStatus",
    "MessageType",
    "describe",
    "parse_contact_response",
    "phone_digits",
    "to_e164",
    "unwrap_payload",
]

"""Outbox handlers that keep Chatwoot a faithful mirror of every conversation.

Every call goes through the outbox (ordered per lead), so a Chatwoot outage never
delays a reply to the lead and everything arrives, in order, once Chatwoot is back.
The lead's Chatwoot contact and conversation ids live in the store: concurrent turns
of one lead are serialised by the order key, so they cannot create two of either.

An item of a lead erased meanwhile (LGPD) does nothing; a contact created for it just as
the erasure ran is handed to the erasure (runtime/erasure.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.errors import AuthFailed
from core.logging import get_logger
from core.outbox import ChatwootHandoff, ChatwootMessage, ChatwootProfile
from core.records import OutboxItem
from integrations.chatwoot import ChatwootClient, ChatwootError
from runtime.channel_health import ChannelHealth
from runtime.erasure import late_chatwoot_item
from runtime.policies import PermanentDeliveryError
from store.base import Store

log = get_logger(__name__)


class _LeadErased(Exception):
    """The lead was erased: the item has nothing left to mirror."""


# Conversations in these states still belong to the lead's current session.
_LIVE = {"open", "pending"}


@dataclass(frozen=True, slots=True)
class MirrorConfig:
    """CHATWOOT_REOPEN_RESOLVED (a lead writing again reopens their resolved conversation)
    and CHATWOOT_HANDOFF_TEAM_ID (the team a handed-off conversation is assigned to)."""

    reopen_resolved: bool = False
    handoff_team_id: int | None = None


class ChatwootMirror:
    def __init__(
        self, client: ChatwootClient, store: Store, config: MirrorConfig, health: ChannelHealth
    ) -> None:
        self.client = client
        self.store = store
        self.config = config
        self.health = health

    async def _guard(self, coro: Any) -> Any:
        try:
            result = await coro
        except ChatwootError as exc:
            if isinstance(exc, AuthFailed):
                self.health.auth_failed("chatwoot", str(exc))
            raise
        self.health.send_ok("chatwoot")
        return result

    async def conversation(self, contact_key: str) -> tuple[int, int]:
        """(contact_id, conversation_id), found or created once and remembered in the store."""
        lead = await self.store.get_lead(contact_key)
        if lead is None:
            if await self.store.is_erased(contact_key):
                raise _LeadErased
            raise PermanentDeliveryError("the lead of this mirror item no longer exists")
        if (
            lead.chatwoot_contact_id is not None
            and lead.chatwoot_conversation_id is not None
            and not lead.chatwoot_conversation_resolved
        ):
            return lead.chatwoot_contact_id, lead.chatwoot_conversation_id
        contact_id, source_id = lead.chatwoot_contact_id, lead.chatwoot_source_id
        if contact_id is None:
            found = await self._guard(self.client.search_contact(lead.phone or contact_key))
            if found is not None:
                contact_id, source_id = found.id, found.source_id_for(self.client.inbox_id)
            else:
                contact_id, source_id = await self._guard(
                    self.client.create_contact(lead.name, lead.phone, contact_key, None)
                )
            await self.store.save_chatwoot_link(
                contact_key, contact_id=contact_id, source_id=source_id, conversation_id=None
            )
            if await self.store.is_erased(contact_key):
                await self.store.enqueue(late_chatwoot_item(contact_id))
                raise _LeadErased
        conversation_id = None
        for conversation in await self._guard(self.client.contact_conversations(contact_id)):
            ours = conversation.inbox_id in (None, self.client.inbox_id)
            if ours and (conversation.status in _LIVE or self.config.reopen_resolved):
                conversation_id = conversation.id
                if conversation.status not in _LIVE:
                    await self._guard(self.client.toggle_status(conversation.id, "pending"))
                break
        if conversation_id is None:
            if not source_id:
                # Known to Chatwoot through another inbox (the company's own WhatsApp, say).
                source_id = await self._guard(self.client.create_contact_inbox(contact_id))
            if not source_id:
                raise PermanentDeliveryError("Chatwoot gave the contact no link to our inbox (source_id)")
            conversation_id = await self._guard(
                self.client.create_conversation(contact_id, source_id, status="pending")
            )
        await self.store.save_chatwoot_link(
            contact_key, contact_id=contact_id, source_id=source_id, conversation_id=conversation_id
        )
        return contact_id, conversation_id

    async def _conversation_unless_erased(self, contact_key: str) -> tuple[int, int] | None:
        try:
            return await self.conversation(contact_key)
        except _LeadErased:
            log.info("chatwoot_mirror_skipped", reason="lead_erased")
            return None

    async def message(self, item: OutboxItem, payload: ChatwootMessage) -> None:
        found = await self._conversation_unless_erased(payload.contact_key)
        if found is None:
            return
        _contact, conversation_id = found
        message_type: Literal["incoming", "outgoing"] = "incoming" if payload.incoming else "outgoing"
        if item.attempts > 1:
            # A previous attempt may have been created before its answer was lost (a
            # timeout): look before posting the same message twice.
            existing = await self._posted_before(conversation_id, payload.text, message_type)
            if existing is not None:
                if payload.message_id is not None:
                    await self.store.set_chatwoot_message_id(payload.message_id, existing)
                return
        chatwoot_id = await self._guard(
            self.client.create_message(conversation_id, payload.text, message_type=message_type)
        )
        if payload.message_id is not None and chatwoot_id is not None:
            # Remembered so Chatwoot's webhook for this very message is never taken for an agent.
            await self.store.set_chatwoot_message_id(payload.message_id, int(chatwoot_id))

    async def _posted_before(self, conversation_id: int, text: str, message_type: str) -> int | None:
        wanted = 0 if message_type == "incoming" else 1  # Chatwoot's numeric message types
        recent = (await self._guard(self.client.conversation_messages(conversation_id)))[-5:]
        for message in reversed(recent):
            kind = message.message_type
            same_type = kind in (message_type, wanted)
            if same_type and (message.content or "").strip() == text.strip() and not message.private:
                return int(message.id)
        return None

    async def profile(self, _item: OutboxItem, payload: ChatwootProfile) -> None:
        found = await self._conversation_unless_erased(payload.contact_key)
        if found is None:
            return
        contact_id, conversation_id = found
        await self._guard(self.client.update_contact_attributes(contact_id, payload.attributes))
        await self._guard(self.client.add_labels(conversation_id, [payload.temperature]))

    async def handoff(self, _item: OutboxItem, payload: ChatwootHandoff) -> None:
        found = await self._conversation_unless_erased(payload.contact_key)
        if found is None:
            return
        _contact, conversation_id = found
        await self._guard(
            self.client.create_message(conversation_id, payload.card, message_type="outgoing", private=True)
        )
        await self._guard(self.client.toggle_status(conversation_id, "open"))
        if self.config.handoff_team_id:
            await self._guard(self.client.assign_team(conversation_id, self.config.handoff_team_id))

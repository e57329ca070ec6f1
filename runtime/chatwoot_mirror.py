"""Outbox handlers that keep Chatwoot a faithful mirror of every conversation.

Every call goes through the outbox (ordered per lead), so a Chatwoot outage never
delays a reply to the lead and everything arrives, in order, once Chatwoot is back.
The lead's Chatwoot contact and conversation ids live in the store: concurrent turns
of one lead are serialised by the order key, so they cannot create two of either.

An item of a lead erased meanwhile (LGPD) does nothing; a contact created for it just as
the erasure ran is handed to the erasure (runtime/erasure.py).

Labels are merged, never overwritten (Chatwoot's label write replaces the whole list and
the sellers label conversations too): the bot swaps only its own temperature word. A
file the lead sent is fetched by the channel that received it and posted as a real
Chatwoot attachment.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import aiohttp
from yarl import URL

from agent.scoring import Temperature
from channels.base import MediaSource
from channels.errors import MediaTooLarge
from core.errors import AuthFailed, ProviderError
from core.logging import get_logger
from core.outbox import ChatwootHandoff, ChatwootMessage, ChatwootNote, ChatwootProfile
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
# The bot's own labels: one temperature at a time; every other label is someone's.
TEMPERATURE_LABELS: frozenset[str] = frozenset(get_args(Temperature))
# Team-facing: why the lead's file is not attached to the mirrored message.
_NOT_COPIED_TOO_LARGE = "[O arquivo enviado pelo lead é grande demais e não foi copiado para o Chatwoot.]"
_NOT_COPIED = "[Não foi possível copiar para o Chatwoot o arquivo enviado pelo lead.]"
Attachment = tuple[str, bytes, str]  # file name, bytes, mime type


@dataclass(frozen=True, slots=True)
class MirrorConfig:
    """CHATWOOT_REOPEN_RESOLVED (a lead writing again reopens their resolved conversation),
    CHATWOOT_HANDOFF_TEAM_ID (the team a handed-off conversation is assigned to) and
    MEDIA_MAX_BYTES (the largest file of a lead copied into Chatwoot)."""

    reopen_resolved: bool = False
    handoff_team_id: int | None = None
    media_max_bytes: int = 16 * 1024 * 1024


class ChatwootMirror:
    """`media` maps a channel name to what fetches that channel's media (the channel
    itself: its credentials, the media rule), `session` is the HTTP session it fetches
    with; without them a lead's file stays the link in the message text."""

    def __init__(
        self,
        client: ChatwootClient,
        store: Store,
        config: MirrorConfig,
        health: ChannelHealth,
        *,
        media: Mapping[str, MediaSource] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.config = config
        self.health = health
        self.media: Mapping[str, MediaSource] = media or {}
        self.session = session

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
        attachment, text = None, payload.text
        if item.attempts > 1:
            # A previous attempt may have been created before its answer was lost (a
            # timeout): look before posting the same message twice.
            existing = await self._posted_before(conversation_id, _texts_posted(payload), message_type)
            if existing is not None:
                if payload.message_id is not None:
                    await self.store.set_chatwoot_message_id(payload.message_id, existing)
                return
        if payload.media_url:
            attachment, text = await self._lead_file(payload)
        chatwoot_id = await self._guard(
            self.client.create_message(
                conversation_id, text, message_type=message_type, attachment=attachment
            )
        )
        if payload.message_id is not None and chatwoot_id is not None:
            # Remembered so Chatwoot's webhook for this very message is never taken for an agent.
            await self.store.set_chatwoot_message_id(payload.message_id, int(chatwoot_id))

    async def _lead_file(self, payload: ChatwootMessage) -> tuple[Attachment | None, str]:
        """The lead's file as an attachment, fetched by the channel that received it, and
        the text to post with it. A file that cannot be had (too large, refused, gone) is
        named in the text instead; a fetch that may work later raises, so the outbox retries."""
        source = self.media.get(payload.channel or "")
        if source is None or self.session is None or not payload.media_url:
            # Not wired for this channel: a link the team can open is better than nothing.
            return None, _with_link(payload)
        try:
            data = await source.fetch_media(
                self.session, payload.media_url, max_bytes=self.config.media_max_bytes
            )
        except ProviderError as exc:
            if exc.retryable:
                raise
            log.info("chatwoot_media_not_copied", channel=payload.channel, reason=type(exc).__name__)
            note = _NOT_COPIED_TOO_LARGE if isinstance(exc, MediaTooLarge) else _NOT_COPIED
            return None, _with_note(payload.text, note)
        mime = (payload.media_mime or "").split(";")[0].strip().lower() or "application/octet-stream"
        return (_file_name(payload, mime), data, mime), payload.text

    async def _posted_before(
        self, conversation_id: int, texts: list[str], message_type: str, *, private: bool = False
    ) -> int | None:
        """The id of one of the last messages with one of `texts`, this type and privacy."""
        wanted = 0 if message_type == "incoming" else 1  # Chatwoot's numeric message types
        candidates = {text.strip() for text in texts}
        recent = (await self._guard(self.client.conversation_messages(conversation_id)))[-5:]
        for message in reversed(recent):
            kind = message.message_type
            same_type = kind in (message_type, wanted)
            same_text = (message.content or "").strip() in candidates
            if same_type and same_text and bool(message.private) == private:
                return int(message.id)
        return None

    async def profile(self, _item: OutboxItem, payload: ChatwootProfile) -> None:
        found = await self._conversation_unless_erased(payload.contact_key)
        if found is None:
            return
        contact_id, conversation_id = found
        await self._guard(self.client.update_contact_attributes(contact_id, payload.attributes))
        # Only the bot's temperature word is swapped; the sellers' labels stay.
        await self._guard(
            self.client.merge_labels(conversation_id, add=[payload.temperature], replace=TEMPERATURE_LABELS)
        )

    async def note(self, item: OutboxItem, payload: ChatwootNote) -> None:
        """A private note for the sellers (a quote request, a technical question), and the
        labels they filter by, added to whatever labels the conversation has."""
        found = await self._conversation_unless_erased(payload.contact_key)
        if found is None:
            return
        _contact, conversation_id = found
        posted = None
        if item.attempts > 1:
            posted = await self._posted_before(conversation_id, [payload.note], "outgoing", private=True)
        if posted is None:
            await self._guard(
                self.client.create_message(
                    conversation_id, payload.note, message_type="outgoing", private=True
                )
            )
        if payload.labels:
            await self._guard(self.client.merge_labels(conversation_id, add=list(payload.labels)))
        if payload.assignee_id is not None:
            await self._guard(self.client.assign_agent(conversation_id, payload.assignee_id))

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
        if payload.assignee_id is not None:
            await self._guard(self.client.assign_agent(conversation_id, payload.assignee_id))


def _with_link(payload: ChatwootMessage) -> str:
    link = payload.media_url if (payload.media_url or "").startswith("http") else ""
    return "\n".join(part for part in (payload.text, link) if part)


def _texts_posted(payload: ChatwootMessage) -> list[str]:
    """Every text an earlier attempt of this item may have posted."""
    if not payload.media_url:
        return [payload.text]
    notes = [_with_note(payload.text, note) for note in (_NOT_COPIED, _NOT_COPIED_TOO_LARGE)]
    return [payload.text, _with_link(payload), *notes]


def _with_note(text: str, note: str) -> str:
    return f"{text}\n\n{note}" if text.strip() else note


def _file_name(payload: ChatwootMessage, mime: str) -> str:
    """The name the lead's file had, else the URL's last segment, else one from its kind."""
    if payload.file_name and payload.file_name.strip():
        name = payload.file_name.strip().replace("\\", "/").rsplit("/", 1)[-1]
        if name:
            return name[:200]
    try:
        from_url = URL(payload.media_url or "").name
    except (TypeError, ValueError):
        from_url = ""
    if from_url and "." in from_url:
        return from_url[:200]
    extension = mimetypes.guess_extension(mime) or ""
    return f"{payload.media_kind or 'arquivo'}{extension}"

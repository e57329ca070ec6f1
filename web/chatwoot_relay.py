"""What a seller's Chatwoot reply becomes on the lead's channel: outbox items, in order.

A text longer than the channel takes (Instagram: 1,000 bytes) goes as several bubbles,
split where a person would (runtime.replies.fit_to_limit). Each file the seller attached
goes as its own `send_media` item (Chatwoot's `data_url`, fetched at delivery from
Chatwoot's own origin), the message's text as the first file's caption, as Chatwoot's
own channels send it. Only real files are relayed: a location, a contact card, a link
preview or an Instagram story mention has no file to send.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from yarl import URL

from core.outbox import SendMedia, SendText
from core.records import LeadRecord, OutboxItem
from integrations.chatwoot.webhook import ChatwootWebhookEvent, WebhookAttachment
from runtime.replies import MAX_TEXT_BYTES, fit_to_limit

# Attachment#file_type values that are a file the lead can receive.
FILE_TYPES = frozenset({"image", "audio", "video", "file"})


def relayable_files(event: ChatwootWebhookEvent) -> list[tuple[int, WebhookAttachment]]:
    """(position in the message, attachment) of every file worth sending."""
    return [
        (index, attachment)
        for index, attachment in enumerate(event.attachments)
        if attachment.data_url and (attachment.file_type or "file").lower() in FILE_TYPES
    ]


def attachment_name(attachment: WebhookAttachment, index: int) -> str:
    """The file's name as the seller uploaded it: Active Storage URLs end with it."""
    try:
        name = unquote(URL(attachment.data_url or "").path.rsplit("/", 1)[-1]).strip()
    except (TypeError, ValueError):
        name = ""
    if name and "." in name:
        return name[:200]
    extension = (attachment.extension or "").lstrip(".")
    return f"anexo-{index + 1}" + (f".{extension}" if extension else "")


def reply_record_text(event: ChatwootWebhookEvent) -> str:
    """What the lead's history keeps of the reply: its text, else which files went."""
    text = (event.content or "").strip()
    if text:
        return text
    names = [attachment_name(a, i) for i, a in relayable_files(event)]
    if not names:
        return ""
    label = "anexo" if len(names) == 1 else "anexos"
    return f"[{label}: {', '.join(names)}]"


def relay_items(lead: LeadRecord, event: ChatwootWebhookEvent, *, message_id: int) -> list[OutboxItem]:
    """The outbox items of one agent reply, in the order the lead gets them.

    Keys: `chatwoot-reply:{id}` for the first text bubble and `:{n}` after it;
    `chatwoot-media:{id}:{attachment id or position}` for each file. `message_id` (the
    stored reply) rides on the first item, which is what marks it sent."""
    assert event.message_id is not None
    text = (event.content or "").strip()
    files = relayable_files(event)
    limit = MAX_TEXT_BYTES.get(lead.channel)
    # The text rides as the first file's caption when it fits the channel's limit;
    # otherwise it goes first, split, and the files follow without a caption.
    caption_fits = bool(files) and (limit is None or len(text.encode()) <= limit)
    items: list[OutboxItem] = []
    if text and not caption_fits:
        for n, part in enumerate(fit_to_limit([text], limit)):
            where = {"channel": lead.channel, "contact_id": lead.contact_id, "contact_key": lead.contact_key}
            bubble = (
                SendText(**where, text=part, typing_s=1, human_agent=True)
                if n
                else SendText.human_reply(**where, text=part, message_id=message_id)
            )
            key = f"chatwoot-reply:{event.message_id}" + (f":{n}" if n else "")
            items.append(bubble.to_item(key))
    for position, (index, attachment) in enumerate(files):
        first = position == 0
        given: dict[str, Any] = {}
        if first and caption_fits and text:
            given["caption"] = text
        if first and not items:
            given["message_id"] = message_id
        media = SendMedia(
            channel=lead.channel,
            contact_id=lead.contact_id,
            contact_key=lead.contact_key,
            url=attachment.data_url or "",
            file_type=(attachment.file_type or "file").lower(),
            file_name=attachment_name(attachment, index),
            human_agent=True,
            **given,
        )
        ref = attachment.id if attachment.id is not None else index
        items.append(media.to_item(f"chatwoot-media:{event.message_id}:{ref}"))
    return items


__all__ = ["FILE_TYPES", "attachment_name", "relay_items", "relayable_files", "reply_record_text"]

"""Instagram Direct webhooks to `InboundMessage`s, read receipts and ad referrals.

One kind and one line of text per message, because that is what the agent reads:
Instagram-only content (shares, reels, story mentions and replies) has no neutral kind
and becomes OTHER with a pt-BR description the model can answer naturally. Our own sends
come back as echoes, kept so the runtime can tell the bot's from a person's. A lead who
comes back to the thread from an ad sends no message, only a `messaging_referrals` event:
it becomes a `ReferralEvent`, so the lead's attribution follows the newest ad.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from channels.base import DeliveryStatus, ParsedWebhook, ReferralEvent
from channels.instagram.schema import (
    IGAttachment,
    IGEvent,
    IGMessage,
    IGPostback,
    IGReferral,
    IGWebhook,
)
from channels.webhook_helpers import clean, describe_validation_error, epoch_to_datetime
from core.errors import WebhookRejected
from core.models import MAX_CONTACT_ID_CHARS, AdReferral, IgnoredEvent, InboundMessage, MessageKind

CHANNEL = "instagram"
LABEL = "Instagram"


# Attachment types in order of what says most about the message: real media first, then
# the `ig_post` that Meta now sends next to the legacy `share` for the same post.
_ATTACHMENT_PRIORITY = (
    "audio",
    "image",
    "video",
    "file",
    "ig_post",
    "share",
    "ig_reel",
    "reel",
    "story_mention",
    "ig_story",
    "story",
    "ephemeral",
)

_MEDIA_KINDS = {
    "audio": MessageKind.AUDIO,  # voice notes arrive as `audio`
    "image": MessageKind.IMAGE,  # images, gifs and stickers
    "video": MessageKind.VIDEO,
    "file": MessageKind.DOCUMENT,
}

# What the model (and the stored history) reads for Instagram-only content that has no
# channel-neutral kind; pt-BR because that is the conversation's language.
_SHARE_LABELS = {
    "ig_post": "[compartilhou uma publicação do Instagram]",
    "share": "[compartilhou uma publicação do Instagram]",
    "ig_reel": "[compartilhou um reel do Instagram]",
    "reel": "[compartilhou um reel do Instagram]",
    "story_mention": "[story mencionando a empresa]",
    "ig_story": "[compartilhou um story do Instagram]",
    "story": "[compartilhou um story do Instagram]",
    "ephemeral": "[enviou uma mídia temporária (visualização única) que não pode ser vista]",
}
STORY_REPLY_LABEL = "[respondeu a um story da empresa]"


def _pick_attachment(attachments: list[IGAttachment]) -> IGAttachment | None:
    typed = [a for a in attachments if clean(a.type)]
    for wanted in _ATTACHMENT_PRIORITY:
        for attachment in typed:
            if (attachment.type or "").strip().lower() == wanted:
                return attachment
    return typed[0] if typed else None


class InstagramParser:
    """Webhook bodies to messages; it only needs to know which account is ours, to tell
    the lead's messages from our own echoes."""

    def __init__(self, account_id: str | None) -> None:
        self._ours = clean(account_id)

    def parse(self, payload: object) -> ParsedWebhook:
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "Instagram webhook body must be a JSON object")
        if payload.get("object") != "instagram":
            # The Meta route dispatches on `object`; anything else reaching us is a bug
            # or a forgery, not something to acknowledge.
            raise WebhookRejected(422, "invalid Instagram payload: 'object' must be 'instagram'")
        try:
            webhook = IGWebhook.model_validate(payload)
        except ValidationError as exc:
            raise WebhookRejected(422, describe_validation_error(LABEL, exc)) from None
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise WebhookRejected(422, "invalid Instagram payload") from None

        result = ParsedWebhook()
        for entry in webhook.entry:
            for event in entry.messaging or []:
                self._parse_event(event, result)
            for standby in entry.standby or []:
                message = standby.get("message") if isinstance(standby, dict) else None
                mid = message.get("mid") if isinstance(message, dict) else None
                result.ignored.append(IgnoredEvent(reason="standby", provider_message_id=clean(mid)))
            for _change in entry.changes or []:
                result.ignored.append(IgnoredEvent(reason="not_a_message"))
        return result

    def _our_account(self) -> str | None:
        return self._ours

    def _parse_event(self, event: IGEvent, result: ParsedWebhook) -> None:
        sender = clean(event.sender.id) if event.sender else None
        recipient = clean(event.recipient.id) if event.recipient else None
        if sender is None:
            raise WebhookRejected(422, "invalid Instagram payload: messaging event without sender.id")
        stamp = epoch_to_datetime(event.timestamp)
        ours = self._our_account()

        if event.message is not None:
            self._parse_message(event.message, sender, recipient, stamp, result)
            return
        if event.read is not None:
            mid = clean(event.read.mid)
            if mid is None or sender == ours:
                # A watermark names no message, and the business reading the lead's
                # message is not a delivery report on ours.
                result.ignored.append(IgnoredEvent(reason="read", provider_message_id=mid))
            else:
                result.statuses.append(
                    DeliveryStatus(provider_message_id=mid, status="read", timestamp=stamp)
                )
            return
        if event.postback is not None:
            self._parse_postback(event.postback, sender, stamp, result)
            return
        if event.reaction is not None:
            mid = event.reaction.get("mid")
            result.ignored.append(IgnoredEvent(reason="reaction", provider_message_id=clean(mid)))
            return
        if event.message_edit is not None:
            mid = event.message_edit.get("mid")
            result.ignored.append(IgnoredEvent(reason="edit", provider_message_id=clean(mid)))
            return
        if event.referral is not None:
            self._parse_referral(event.referral, sender, stamp, result)
            return
        result.ignored.append(IgnoredEvent(reason="not_a_message"))

    def _parse_message(
        self,
        message: IGMessage,
        sender: str,
        recipient: str | None,
        stamp: datetime | None,
        result: ParsedWebhook,
    ) -> None:
        mid = clean(message.mid)
        if mid is None:
            raise WebhookRejected(422, "invalid Instagram payload: message without mid")
        ours = self._our_account()

        def ignored(reason: str) -> None:
            result.ignored.append(IgnoredEvent(reason=reason, provider_message_id=mid))

        if message.is_self or (recipient is not None and recipient == sender):
            ignored("self")  # a test message to our own account
            return
        if message.is_deleted:
            ignored("deleted")
            return
        if message.is_unsupported:
            ignored("unsupported")
            return
        if message.is_echo or (ours is not None and sender == ours):
            # Our own send (bot or a person in the Instagram app / another tool): the lead
            # is the recipient. Kept so the runtime can tell the bot's echoes (known mids)
            # from a human's, which pause the bot.
            if recipient is None:
                raise WebhookRejected(422, "invalid Instagram payload: echo without recipient.id")
            echo = self._to_inbound(message, mid, recipient, stamp, from_me=True)
            result.ignored.append(IgnoredEvent(reason="echo", provider_message_id=mid, message=echo))
            return
        result.messages.append(self._to_inbound(message, mid, sender, stamp, from_me=False))

    def _parse_referral(
        self, referral: IGReferral, sender: str, stamp: datetime | None, result: ParsedWebhook
    ) -> None:
        """A lead already in a thread with us opened it again (`messaging_referrals`).

        From an ad (source ADS) it is the lead's newest ad, which their attribution and
        Meta CAPI's match (by IGSID) must follow, though no message comes with it. An
        ig.me link (a `ref`, no ad) says nothing about ads and is only acknowledged; the
        first click on an ad comes inside the lead's first `message` instead.
        """
        ad = self._referral(referral)
        if ad is None or ad.source_type != "ad" or sender == self._our_account():
            result.ignored.append(IgnoredEvent(reason="referral"))
            return
        if len(sender) > MAX_CONTACT_ID_CHARS:
            raise WebhookRejected(422, "invalid Instagram payload: sender.id is too long")
        result.referrals.append(ReferralEvent(contact_id=sender, referral=ad, timestamp=stamp))

    def _parse_postback(
        self, postback: IGPostback, sender: str, stamp: datetime | None, result: ParsedWebhook
    ) -> None:
        """An Icebreaker or template button tapped: the lead's words, as a button reply."""
        mid = clean(postback.mid)
        if mid is None or sender == self._our_account():
            result.ignored.append(IgnoredEvent(reason="postback", provider_message_id=mid))
            return
        fields: dict[str, Any] = {}
        if stamp is not None:
            fields["timestamp"] = stamp
        result.messages.append(
            self._build(
                contact_id=sender,
                provider_message_id=mid,
                kind=MessageKind.BUTTON_REPLY,
                text=clean(postback.title) or clean(postback.payload),
                referral=self._referral(postback.referral),
                **fields,
            )
        )

    def _to_inbound(
        self,
        message: IGMessage,
        mid: str,
        contact_id: str,
        stamp: datetime | None,
        *,
        from_me: bool,
    ) -> InboundMessage:
        fields = self._content(message)
        if stamp is not None:
            fields["timestamp"] = stamp
        reply_to = clean(message.reply_to.mid) if message.reply_to else None
        return self._build(
            contact_id=contact_id,
            provider_message_id=mid,
            referral=self._referral(message.referral),
            from_me=from_me,
            reply_to_provider_id=reply_to,
            **fields,
        )

    def _build(self, **fields: Any) -> InboundMessage:
        try:
            return InboundMessage(channel=CHANNEL, phone=None, is_group=False, **fields)
        except ValidationError as exc:
            raise WebhookRejected(422, describe_validation_error(LABEL, exc)) from None

    @staticmethod
    def _referral(referral: IGReferral | None) -> AdReferral | None:
        """Click-to-Direct ad context; a Shop product referral has no ad and is dropped."""
        if referral is None:
            return None
        ctx = referral.ads_context_data
        source = clean(referral.source)
        if source is not None:
            # Same vocabulary as WhatsApp's `source_type` ("ad"), so reports can group
            # leads by origin across channels.
            source = "ad" if source.upper() == "ADS" else source.lower()
        result = AdReferral(
            source_id=clean(referral.ad_id),
            source_type=source,
            headline=clean(ctx.ad_title) if ctx else None,
            # The creative the lead clicked (image, else video thumbnail): Meta gives no
            # ad permalink here, and these CDN URLs expire.
            source_url=(clean(ctx.photo_url) or clean(ctx.video_url)) if ctx else None,
        )
        if result.source_id is None and result.source_type is None:
            return None
        return result

    @staticmethod
    def _content(message: IGMessage) -> dict[str, Any]:
        """One kind and one line of text per message, because that is what the agent reads.

        Instagram-only content (shares, reels, story mentions and replies) has no neutral
        kind; it becomes OTHER with a pt-BR description the model can answer naturally.
        """
        text = clean(message.text)
        story = message.reply_to.story if message.reply_to else None
        if story is not None:
            return {
                "kind": MessageKind.OTHER,
                "text": f"{STORY_REPLY_LABEL} {text}" if text else STORY_REPLY_LABEL,
                "media_url": clean(story.url),
            }
        attachment = _pick_attachment(message.attachments or [])
        if attachment is not None:
            kind_name = (attachment.type or "").strip().lower()
            payload = attachment.payload
            url = clean(payload.url) if payload else None
            if kind_name in _MEDIA_KINDS:
                return {"kind": _MEDIA_KINDS[kind_name], "media_url": url, "text": text}
            title = clean(payload.title) if payload else None
            # The type lands in the model's prompt: only a short identifier gets through.
            shown = re.sub(r"[^a-z0-9_]", "", kind_name)[:32] or "desconhecido"
            label = _SHARE_LABELS.get(kind_name, f"[enviou um anexo do tipo {shown}]")
            body = " ".join(p for p in (label, title, text) if p)
            return {"kind": MessageKind.OTHER, "text": body, "media_url": url}
        if message.quick_reply is not None:
            return {
                "kind": MessageKind.BUTTON_REPLY,
                "text": text or clean(message.quick_reply.payload),
            }
        if text is not None:
            return {"kind": MessageKind.TEXT, "text": text}
        return {"kind": MessageKind.OTHER}

"""Instagram Messaging webhook payloads as frozen models (channels/webhook_helpers.py).

Shapes follow developers.facebook.com/docs/instagram-messaging/webhooks and
.../instagram-platform/webhooks/examples (messages, echoes, reads, reactions, postbacks,
referrals, edits).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from channels.webhook_helpers import ProviderModel

# --- webhook payload models --------------------------------------------------------
# Meta adds fields and event types regularly; unknown keys are ignored so a new field
# never breaks us, while a known field with the wrong type is a 422 (not Meta's shape).


def _id_value(value: object) -> object:
    """Ids are strings, but Meta's own samples print some unquoted (`"ad_id": AD-ID`)."""
    if isinstance(value, bool):
        return value  # let pydantic refuse it: True is not an id
    if isinstance(value, int):
        return str(value)
    return value


Id = Annotated[str, BeforeValidator(_id_value)]


class IGParty(ProviderModel):
    id: Id | None = None


class IGAttachmentPayload(ProviderModel):
    url: str | None = None
    # Shares, ig_post and reels carry the post caption as `title`.
    title: str | None = None


class IGAttachment(ProviderModel):
    type: str | None = None
    payload: IGAttachmentPayload | None = None


class IGStory(ProviderModel):
    url: str | None = None
    id: Id | None = None


class IGReplyTo(ProviderModel):
    mid: str | None = None
    story: IGStory | None = None


class IGAdsContext(ProviderModel):
    ad_title: str | None = None
    photo_url: str | None = None
    video_url: str | None = None
    post_id: Id | None = None


class IGReferral(ProviderModel):
    ref: str | None = None
    ad_id: Id | None = None
    source: str | None = None
    type: str | None = None
    ads_context_data: IGAdsContext | None = None


class IGQuickReply(ProviderModel):
    payload: str | None = None


class IGMessage(ProviderModel):
    mid: str | None = None
    text: str | None = None
    attachments: list[IGAttachment] | None = None
    is_echo: bool | None = None
    is_self: bool | None = None
    is_deleted: bool | None = None
    is_unsupported: bool | None = None
    quick_reply: IGQuickReply | None = None
    referral: IGReferral | None = None
    reply_to: IGReplyTo | None = None


class IGRead(ProviderModel):
    mid: str | None = None
    # Messenger-style read receipts carry a watermark (ms) instead of one message id.
    watermark: float | None = None


class IGPostback(ProviderModel):
    mid: str | None = None
    title: str | None = None
    payload: str | None = None
    referral: IGReferral | None = None


class IGEvent(ProviderModel):
    sender: IGParty | None = None
    recipient: IGParty | None = None
    timestamp: float | None = None
    message: IGMessage | None = None
    read: IGRead | None = None
    postback: IGPostback | None = None
    referral: IGReferral | None = None
    reaction: dict[str, Any] | None = None
    message_edit: dict[str, Any] | None = None


class IGEntry(ProviderModel):
    # `id` and `time` are not read: the event's own ids and timestamp say it all, and an
    # odd value in a field we do not use must not cost a lead's message.
    messaging: list[IGEvent] | None = None
    # Events for threads another app controls (handover protocol): not ours to answer.
    standby: list[dict[str, Any]] | None = None
    # Comments, mentions and other Graph fields: not conversations with a lead.
    changes: list[dict[str, Any]] | None = None


class IGWebhook(ProviderModel):
    object: str
    entry: list[IGEntry]

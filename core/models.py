"""Typed messages that cross module boundaries.

Channels parse provider webhooks into `InboundMessage`; everything after the edge
works on these models, never on provider JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.forms import FormSubmission


class MessageKind(StrEnum):
    TEXT = "text"
    AUDIO = "audio"
    IMAGE = "image"
    DOCUMENT = "document"
    VIDEO = "video"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"
    BUTTON_REPLY = "button_reply"
    LIST_REPLY = "list_reply"
    REACTION = "reaction"
    # A filled form (Lead Ads, website, RD Station): the lead's answers, not their words.
    FORM = "form"
    OTHER = "other"


class AdReferral(BaseModel):
    """Where a lead came from when they clicked an ad (Click-to-WhatsApp, IG ads)."""

    model_config = ConfigDict(extra="ignore")

    ctwa_clid: str | None = None
    source_id: str | None = None
    source_url: str | None = None
    source_type: str | None = None
    headline: str | None = None
    # Meta Lead Ads: the lead's id is what the Conversions API for CRM matches on.
    leadgen_id: str | None = None
    form_id: str | None = None
    campaign_id: str | None = None


# Bounds on identifiers from a webhook, far above any provider's real ones: phone digits
# (E.164: at most 15), a WhatsApp LID or business-scoped id, an Instagram IGSID (~17);
# message ids up to Instagram's ~90-character mids. Anything longer is not an id but a
# payload someone built, refused at the edge (422) before it becomes a key in the store.
MAX_CONTACT_ID_CHARS = 128
MAX_MESSAGE_ID_CHARS = 256
MAX_PHONE_CHARS = 32
# A profile name is the lead's own text, not an id: a long one is cut, never a reason
# to lose the message it came with.
MAX_NAME_CHARS = 128


class InboundMessage(BaseModel):
    """One thing a contact sent us, whatever the channel."""

    model_config = ConfigDict(extra="forbid")

    channel: str
    contact_id: str = Field(
        max_length=MAX_CONTACT_ID_CHARS, description="Provider's id of the contact: phone digits, IGSID..."
    )
    provider_message_id: str = Field(max_length=MAX_MESSAGE_ID_CHARS)
    kind: MessageKind
    text: str | None = None
    media_url: str | None = None
    media_mime: str | None = None
    media_caption: str | None = None
    file_name: str | None = None
    phone: str | None = Field(default=None, max_length=MAX_PHONE_CHARS)
    name: str | None = None
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    referral: AdReferral | None = None
    from_me: bool = False
    is_group: bool = False
    reply_to_provider_id: str | None = Field(default=None, max_length=MAX_MESSAGE_ID_CHARS)
    form: FormSubmission | None = None

    @field_validator("name")
    @classmethod
    def _cut_name(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_NAME_CHARS:
            return value[:MAX_NAME_CHARS].rstrip()
        return value

    @property
    def contact_key(self) -> str:
        """Stable identity of a lead: one phone is one lead whichever WhatsApp provider
        carried the message; other channels (Instagram) key by their own id."""
        return contact_key_for(self.channel, self.contact_id)


# Providers of the same WhatsApp number: a lead's phone is their identity on all of them.
WHATSAPP_CHANNELS = frozenset({"zapi", "waha", "whatsapp_cloud"})
# What a person calls each channel (the lead card, the dashboard, the CRM).
CHANNEL_NAMES = {
    "whatsapp": "WhatsApp",
    **dict.fromkeys(WHATSAPP_CHANNELS, "WhatsApp"),
    "instagram": "Instagram",
}


def contact_key_for(channel: str, contact_id: str) -> str:
    if channel in WHATSAPP_CHANNELS or channel == "whatsapp":
        return f"whatsapp:{contact_id}"
    return f"{channel}:{contact_id}"


class IgnoredEvent(BaseModel):
    """A webhook we acknowledge and deliberately do not answer (status, group, ...)."""

    reason: str
    provider_message_id: str | None = None
    # Kept when the event is a message the business sent from the phone: a later
    # issue pauses the bot on those, so they are recorded, not dropped.
    message: InboundMessage | None = None


def mask_phone(value: str | None) -> str:
    """Keep enough of a phone to tell contacts apart in logs, never the whole number."""
    if not value:
        return "-"
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) < 6:
        return "***"
    return f"{digits[:4]}***{digits[-2:]}"


def mask_contact_key(key: str) -> str:
    channel, _, contact = key.partition(":")
    return f"{channel}:{mask_phone(contact)}"

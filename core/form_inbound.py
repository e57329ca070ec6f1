"""A filled form becomes the lead's first message on the first-touch channel."""

from __future__ import annotations

from core.errors import WebhookRejected
from core.forms import FormSource, FormSubmission
from core.lead_fields import normalize_phone
from core.models import MAX_MESSAGE_ID_CHARS, AdReferral, InboundMessage, MessageKind


def form_phone(submission: FormSubmission) -> str:
    """The lead's WhatsApp number (digits with country code), or a 422 naming the problem:
    the first touch is on WhatsApp, so a form without a number we can dial is refused at
    the edge (or dead-lettered, for a lead fetched from the Graph API), never guessed."""
    raw = submission.phone or submission.profile.get("phone")
    if not raw or not raw.strip():
        raise WebhookRejected(422, "the form has no phone number: the first touch is on WhatsApp")
    try:
        phone = normalize_phone(raw)
    except ValueError:
        raise WebhookRejected(
            422, "the form's phone number is not a number with area code (DDD), e.g. +55 11 91234-5678"
        ) from None
    assert phone is not None
    return phone


def form_message_id(submission: FormSubmission) -> str:
    return f"form:{submission.source.value}:{submission.external_id}"[:MAX_MESSAGE_ID_CHARS]


def form_inbound(submission: FormSubmission, *, channel: str) -> InboundMessage:
    """The form as the lead's first message on `channel` (LEAD_FIRST_TOUCH_CHANNEL)."""
    phone = form_phone(submission)
    attribution = submission.attribution
    referral = None
    if attribution.ad_id or attribution.leadgen_id:
        referral = AdReferral(
            source_id=attribution.ad_id,
            source_type="lead_ads" if submission.source is FormSource.META_LEAD_ADS else "ad",
            headline=attribution.ad_name or attribution.form_name,
            leadgen_id=attribution.leadgen_id,
            form_id=attribution.form_id,
            campaign_id=attribution.campaign_id,
        )
    return InboundMessage(
        channel=channel,
        contact_id=phone,
        provider_message_id=form_message_id(submission),
        kind=MessageKind.FORM,
        text=submission.message,
        phone=phone,
        name=submission.name,
        timestamp=submission.submitted_at,
        referral=referral,
        form=submission,
    )

"""Which CAPI event a lead's stage becomes, and on which path it travels.

Business messaging (`action_source=business_messaging`, `messaging_channel`, the event
names that path supports, and "Meta does not assist with deduplicating events for
Conversions API for Business Messaging"):
https://developers.facebook.com/documentation/ads-commerce/conversions-api/business-messaging
Custom event names: strings of at most 50 characters:
https://developers.facebook.com/documentation/meta-pixel/implementation/conversion-tracking
Conversions API for CRM (a Meta Lead Ads lead: every stage `system_generated`, with the
lead id and `custom_data.event_source`/`lead_event_source`):
https://developers.facebook.com/documentation/ads-commerce/conversions-api/conversion-leads-integration/payload-specification
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from core.logging import get_logger
from integrations.meta_capi.hashing import hash_user_data
from integrations.meta_capi.models import (
    CRM_EVENT_SOURCE,
    LEAD_ID,
    ActionSource,
    CapiCustomData,
    CapiEvent,
    CapiUserData,
    LeadStage,
    MessagingChannel,
    QualifiedEventName,
)

log = get_logger(__name__)

LEAD_LOST_EVENT = "lead_lost"
# custom_data.lead_event_source when the operator names no CRM (MetaCapiConfig).
DEFAULT_LEAD_EVENT_SOURCE = "SDR Agent"
# The names in META_CAPI_EVENTS that switch each stage on or off.
STAGE_SETTING_NAMES: dict[str, str] = {
    "lead": "Lead",
    "qualified": "QualifiedLead",
    "scheduled": "Schedule",
    "won": "Purchase",
    "lost": LEAD_LOST_EVENT,
}
# "The Conversions API for Business Messaging now supports the following types of events"
# (business-messaging onboarding guide, FAQ). Anything else cannot ride on a click id.
BUSINESS_MESSAGING_EVENTS = frozenset(
    {
        "Purchase",
        "LeadSubmitted",
        "InitiateCheckout",
        "AddToCart",
        "ViewContent",
        "OrderCreated",
        "OrderShipped",
        "OrderDelivered",
        "OrderCanceled",
        "OrderReturned",
        "CartAbandoned",
        "QualifiedLead",
        "RatingProvided",
        "ReviewProvided",
    }
)
# The business-messaging spelling of a web standard event with the same meaning.
_BUSINESS_MESSAGING_NAMES = {"Lead": "LeadSubmitted"}
# Repo channel names (channels/*.py `name`) that are WhatsApp numbers.
_WHATSAPP_CHANNELS = frozenset({"whatsapp", "whatsapp_cloud", "zapi", "waha"})


def capi_event_id(contact_key: str, stage: LeadStage, occurrence: str | None = None) -> str:
    """One id per contact and stage, whatever the attempt, process or payload.

    Meta deduplicates on (event_name, event_id); hashing keeps the contact key (a phone)
    out of a field Meta shows in Events Manager. `occurrence` separates real repeats of a
    stage (a second won deal).
    """
    key = (contact_key or "").strip()
    if not key:
        raise ValueError("contact_key is required for a deterministic event_id")
    basis = "\x1f".join(("meta-capi", "v1", key, stage, occurrence or ""))
    return "sdr-" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:40]


def messaging_channel_for(channel: str | None) -> MessagingChannel | None:
    """`whatsapp`/`instagram` for the repo's channel names (zapi, waha, whatsapp_cloud...)."""
    name = (channel or "").strip().lower()
    if name in _WHATSAPP_CHANNELS:
        return "whatsapp"
    if name == "instagram":
        return "instagram"
    return None


def stage_enabled(stage: LeadStage, enabled_events: Iterable[str]) -> bool:
    """Whether META_CAPI_EVENTS (e.g. ["Lead", "QualifiedLead", ...]) turns `stage` on."""
    return STAGE_SETTING_NAMES[stage] in set(enabled_events)


def _event_name(stage: LeadStage, qualified_event: QualifiedEventName) -> str:
    return {
        "lead": "Lead",
        "qualified": qualified_event,
        "scheduled": "Schedule",
        "won": "Purchase",
        "lost": LEAD_LOST_EVENT,
    }[stage]


def _referral_dict(referral: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
    if referral is None:
        return {}
    if isinstance(referral, BaseModel):
        return referral.model_dump()
    return dict(referral)


def _clean_id(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _leadgen_id(ref: Mapping[str, Any]) -> str | None:
    """The referral's Lead Ads `leadgen_id` as text (a stored dict may hold it as a number)."""
    value = ref.get("leadgen_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _clean_id(value)


def crm_lead_id(referral: Mapping[str, Any] | BaseModel | None) -> int | None:
    """The `user_data.lead_id` of a Meta Lead Ads lead: its `leadgen_id` when that is the
    15-17 digit number Meta generates; None for any other lead or any other value."""
    leadgen = _leadgen_id(_referral_dict(referral))
    return int(leadgen) if leadgen is not None and LEAD_ID.fullmatch(leadgen) else None


def _epoch(event_time: datetime | int | float | None) -> int:
    if event_time is None:
        return int(datetime.now(UTC).timestamp())
    if isinstance(event_time, datetime):
        if event_time.tzinfo is None:  # naive datetimes in this codebase are UTC
            event_time = event_time.replace(tzinfo=UTC)
        return int(event_time.timestamp())
    if isinstance(event_time, bool):
        raise ValueError("event_time must be a datetime or a Unix timestamp")
    return int(event_time)


def build_event(
    stage: LeadStage,
    *,
    contact_key: str,
    channel: str,
    event_time: datetime | int | float | None = None,
    phone: str | None = None,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    city: str | None = None,
    state: str | None = None,
    zip_code: str | None = None,
    country: str | None = None,
    referral: Mapping[str, Any] | BaseModel | None = None,
    page_scoped_user_id: str | None = None,
    instagram_account_id: str | None = None,
    whatsapp_business_account_id: str | None = None,
    value: float | int | Decimal | None = None,
    currency: str = "BRL",
    qualified_event: QualifiedEventName = "QualifiedLead",
    occurrence: str | None = None,
    lead_event_source: str = DEFAULT_LEAD_EVENT_SOURCE,
) -> CapiEvent:
    """The CAPI event for a lead reaching `stage`, from what the store already has.

    Stages: lead -> Lead, qualified -> QualifiedLead or CompleteRegistration, scheduled
    -> Schedule, won -> Purchase (needs `value`), lost -> the custom `lead_lost`.

    `action_source` is `business_messaging` only when the lead came from an ad and Meta
    can tie the event to the click: WhatsApp needs the referral's `ctwa_clid`, Instagram
    the lead's IGSID (`page_scoped_user_id`) plus an ad referral. That path accepts a
    fixed list of event names (BUSINESS_MESSAGING_EVENTS): `Lead` is spelled
    `LeadSubmitted` there, and Schedule / lead_lost / CompleteRegistration, which it
    does not accept, are sent as `system_generated` events matched on the hashed
    contact data. Without an ad, every event is `system_generated`.

    A Meta Lead Ads lead (a `leadgen_id` in the referral) goes the CRM way (`_crm_route`).
    `contact_key` seeds the deterministic `event_id` and is sent hashed as `external_id`.
    ValueError: an unknown stage, a won deal without a value, an invalid currency.
    """
    if stage not in STAGE_SETTING_NAMES:
        raise ValueError(f"unknown lead stage {stage!r}")
    ref = _referral_dict(referral)
    base_name = _event_name(stage, qualified_event)
    custom = _purchase(value, currency) if stage == "won" else None
    if _leadgen_id(ref) is not None:
        event_name, action_source, channel_field = base_name, "system_generated", None
        custom, ids = _crm_route(stage, ref, custom, lead_event_source)
    else:
        messaging = messaging_channel_for(channel)
        ids = _ad_ids(
            messaging,
            ref,
            page_scoped_user_id=page_scoped_user_id,
            instagram_account_id=instagram_account_id,
            whatsapp_business_account_id=whatsapp_business_account_id,
        )
        event_name, action_source, channel_field, ids = _path(base_name, messaging, ids)
    user_data = hash_user_data(
        phone=phone,
        email=email,
        first_name=first_name,
        last_name=last_name,
        city=city,
        state=state,
        zip_code=zip_code,
        country=country,
        external_id=contact_key,
    )
    user_data.update(ids)
    return CapiEvent(
        event_name=event_name,
        event_time=_epoch(event_time),
        event_id=capi_event_id(contact_key, stage, occurrence),
        action_source=action_source,
        messaging_channel=channel_field,
        user_data=CapiUserData(**user_data),
        custom_data=custom,
    )


def _crm_route(
    stage: LeadStage, ref: dict[str, Any], custom: CapiCustomData | None, lead_event_source: str
) -> tuple[CapiCustomData, dict[str, Any]]:
    """Conversions API for CRM: every stage of a lead who filled a Meta Lead Ads form,
    the first included, is `system_generated` with `custom_data.event_source` "crm" and
    `lead_event_source` (the CRM's name), and `user_data.lead_id` when the id is the
    15-17 digit number Meta generates. Any other value is left out (logged) and the
    event matches on the hashed contact data alone."""
    ids: dict[str, Any] = {}
    lead_id = crm_lead_id(ref)
    if lead_id is not None:
        ids["lead_id"] = lead_id
    else:
        log.warning("meta_capi_lead_id_dropped", reason="not a 15-17 digit leadgen_id", stage=stage)
    return _crm_custom(custom, lead_event_source), ids


def _ad_ids(
    messaging: MessagingChannel | None,
    ref: dict[str, Any],
    *,
    page_scoped_user_id: str | None,
    instagram_account_id: str | None,
    whatsapp_business_account_id: str | None,
) -> dict[str, str]:
    """The click ids that tie the event to an ad: WhatsApp's referral `ctwa_clid`, or an
    Instagram lead's IGSID when the referral says it came from an ad."""
    ad_ids: dict[str, str] = {}
    if messaging == "whatsapp" and (clid := _clean_id(ref.get("ctwa_clid"))):
        ad_ids["ctwa_clid"] = clid
        if waba := _clean_id(whatsapp_business_account_id):
            ad_ids["whatsapp_business_account_id"] = waba
    elif messaging == "instagram" and (igsid := _clean_id(page_scoped_user_id)):
        source_type = (_clean_id(ref.get("source_type")) or "").lower()
        from_ad = source_type == "ad" or _clean_id(ref.get("source_id")) is not None
        if from_ad:
            ad_ids["ig_sid"] = igsid
            if account := _clean_id(instagram_account_id):
                ad_ids["ig_account_id"] = account
    return ad_ids


def _path(
    base_name: str, messaging: MessagingChannel | None, ad_ids: dict[str, str]
) -> tuple[str, ActionSource, MessagingChannel | None, dict[str, str]]:
    """(event name, action source, messaging channel, click ids kept): business messaging
    when there are click ids and that path accepts the event, else system_generated."""
    if ad_ids:
        bm_name = _BUSINESS_MESSAGING_NAMES.get(base_name, base_name)
        if bm_name in BUSINESS_MESSAGING_EVENTS:
            return bm_name, "business_messaging", messaging, ad_ids
    # Click ids mean nothing outside business_messaging.
    return base_name, "system_generated", None, {}


def _crm_custom(purchase: CapiCustomData | None, lead_event_source: str) -> CapiCustomData:
    """custom_data of a Conversion Leads event: the purchase's value and currency (when
    won) beside event_source "crm" and the CRM's name."""
    name = (lead_event_source or "").strip() or DEFAULT_LEAD_EVENT_SOURCE
    return CapiCustomData(
        value=purchase.value if purchase else None,
        currency=purchase.currency if purchase else None,
        event_source=CRM_EVENT_SOURCE,
        lead_event_source=name,
    )


def _purchase(value: float | Decimal | None, currency: str) -> CapiCustomData:
    if value is None:
        raise ValueError("a won deal (Purchase) needs a value")
    code = (currency or "").strip().upper()
    return CapiCustomData(value=round(float(value), 2), currency=code)


__all__ = [
    "BUSINESS_MESSAGING_EVENTS",
    "DEFAULT_LEAD_EVENT_SOURCE",
    "LEAD_LOST_EVENT",
    "STAGE_SETTING_NAMES",
    "build_event",
    "capi_event_id",
    "crm_lead_id",
    "messaging_channel_for",
    "stage_enabled",
]

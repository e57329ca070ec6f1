"""The CAPI event as it goes in `data`, and Meta's answer.

Event fields (`event_name`, `event_time` in seconds and at most 7 days old, `event_id`
for deduplication, `action_source` incl. `business_messaging` and `system_generated`):
https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event/
Conversions API for CRM (Conversion Leads: a Lead Ads lead's CRM stages): `action_source`
`system_generated`, `user_data.lead_id` (the Lead Ads `leadgen_id`, an integer of 15-17
digits, not hashed), `custom_data.event_source` = "crm" and `custom_data.lead_event_source`
= the name of the tool the leads come from:
https://developers.facebook.com/documentation/ads-commerce/conversions-api/conversion-leads-integration/payload-specification
Return type `{events_received: integer, messages: [string], fbtrace_id: string}`:
https://developers.facebook.com/documentation/ads-commerce/marketing-api/reference/ads-pixel/events
Every model is frozen: an event is built once and replayed unchanged, an answer is read.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LeadStage = Literal["lead", "qualified", "scheduled", "won", "lost"]
MessagingChannel = Literal["whatsapp", "instagram"]
ActionSource = Literal[
    "business_messaging",
    "system_generated",
    "chat",
    "phone_call",
    "email",
    "website",
    "app",
    "physical_store",
    "other",
]
QualifiedEventName = Literal["QualifiedLead", "CompleteRegistration"]
# custom_data.event_source of every Conversion Leads (CRM) event.
CRM_EVENT_SOURCE = "crm"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_EVENT_NAME_MAX = 50
# "The Facebook generated ID for every lead. It is a 15-17 digit number obtained from the
# leadgen_id field in the lead generation Webhook" (payload specification).
LEAD_ID = re.compile(r"[1-9][0-9]{14,16}")
_LEAD_EVENT_SOURCE_MAX = 100


class CapiUserData(BaseModel):
    """Customer information parameters. Contact fields are SHA-256 hex, never clear text:
    the validators make a hand-built or replayed payload fail before it can leak PII."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    em: list[str] | None = None
    ph: list[str] | None = None
    fn: str | None = None
    ln: str | None = None
    ct: str | None = None
    st: str | None = None
    zp: str | None = None
    country: str | None = None
    external_id: list[str] | None = None
    # Conversion Leads: the Lead Ads leadgen_id, an integer, "Do not hash".
    lead_id: int | None = None
    # Messaging ids: "Do not hash" (customer-information-parameters).
    ctwa_clid: str | None = None
    whatsapp_business_account_id: str | None = None
    ig_account_id: str | None = None
    ig_sid: str | None = None

    @field_validator("em", "ph", "external_id")
    @classmethod
    def _hashed_list(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value or not all(isinstance(v, str) and _SHA256_HEX.fullmatch(v) for v in value):
            raise ValueError("must be a non-empty list of lowercase SHA-256 hex digests")
        return value

    @field_validator("fn", "ln", "ct", "st", "zp", "country")
    @classmethod
    def _hashed(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256_HEX.fullmatch(value):
            raise ValueError("must be a lowercase SHA-256 hex digest")
        return value

    @field_validator("lead_id", mode="before")
    @classmethod
    def _lead_id(cls, value: object) -> object:
        # An int of 15-17 digits; bool and float (an id rounded by a JSON reader) are refused.
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not LEAD_ID.fullmatch(str(value)):
            raise ValueError("lead_id must be the Lead Ads leadgen_id: an integer of 15-17 digits")
        return value

    @field_validator("ctwa_clid", "whatsapp_business_account_id", "ig_account_id", "ig_sid")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _not_empty(self) -> CapiUserData:
        if not self.model_dump(exclude_none=True):
            raise ValueError("user_data needs at least one customer information parameter")
        return self


class CapiCustomData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float | None = Field(default=None, ge=0)
    currency: str | None = None
    # Conversion Leads (CRM) events only: "crm", and the name of the CRM/tool.
    event_source: Literal["crm"] | None = None
    lead_event_source: str | None = Field(default=None, min_length=1, max_length=_LEAD_EVENT_SOURCE_MAX)

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, value: str | None) -> str | None:
        if value is not None and not _CURRENCY.fullmatch(value):
            raise ValueError("currency must be an ISO 4217 code in uppercase, e.g. BRL")
        return value

    @field_validator("lead_event_source")
    @classmethod
    def _source_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("lead_event_source must name the CRM")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _crm_pair(self) -> CapiCustomData:
        # The payload specification requires both on every Conversion Leads event.
        if (self.event_source is None) != (self.lead_event_source is None):
            raise ValueError("event_source and lead_event_source go together (Conversion Leads)")
        return self

    @property
    def crm(self) -> bool:
        return self.event_source == CRM_EVENT_SOURCE


class CapiEvent(BaseModel):
    """One server event, exactly as it goes in `data`. JSON round-trips, so the outbox
    can persist `model_dump(mode="json", exclude_none=True)` and replay it unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_name: str = Field(min_length=1, max_length=_EVENT_NAME_MAX)
    event_time: int = Field(gt=0)
    event_id: str = Field(min_length=1, max_length=100)
    action_source: ActionSource
    messaging_channel: MessagingChannel | None = None
    user_data: CapiUserData
    custom_data: CapiCustomData | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CapiEvent:
        ud = self.user_data
        if self.action_source == "business_messaging":
            if self.messaging_channel is None:
                raise ValueError("business_messaging events need messaging_channel")
            if self.messaging_channel == "whatsapp" and not ud.ctwa_clid:
                raise ValueError("whatsapp business_messaging events need user_data.ctwa_clid")
            if self.messaging_channel == "instagram" and not ud.ig_sid:
                raise ValueError("instagram business_messaging events need user_data.ig_sid")
        elif self.messaging_channel is not None:
            raise ValueError("messaging_channel is only for action_source business_messaging")
        crm = self.custom_data is not None and self.custom_data.crm
        if crm and self.action_source != "system_generated":
            raise ValueError("Conversion Leads (CRM) events need action_source system_generated")
        if ud.lead_id is not None and not crm:
            raise ValueError(
                "user_data.lead_id is for Conversion Leads events: custom_data.event_source crm "
                "and lead_event_source"
            )
        if self.event_name == "Purchase" and (
            self.custom_data is None or self.custom_data.value is None or not self.custom_data.currency
        ):
            raise ValueError("Purchase needs custom_data.value and custom_data.currency")
        return self

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class CapiRequest(BaseModel):
    """The JSON body of `POST /{pixel_id}/events` (the token goes in a header)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: list[CapiEvent] = Field(min_length=1, max_length=1000)
    test_event_code: str | None = None


class CapiResult(BaseModel):
    """Meta's answer: `{events_received, messages, fbtrace_id}`. `events_received` is None
    when a 2xx came without a readable body (accepted, not confirmed)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    events_received: int | None = None
    fbtrace_id: str | None = None
    messages: list[str] = Field(default_factory=list)

    @field_validator("messages", mode="before")
    @classmethod
    def _messages(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, list):
            return [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value]
        return [str(value)]

    @field_validator("events_received", mode="before")
    @classmethod
    def _count(cls, value: object) -> object:
        return as_int(value)

    @field_validator("fbtrace_id", mode="before")
    @classmethod
    def _trace(cls, value: object) -> object:
        return clean_text(value)


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def clean_text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


__all__ = [
    "CRM_EVENT_SOURCE",
    "LEAD_ID",
    "ActionSource",
    "CapiCustomData",
    "CapiEvent",
    "CapiRequest",
    "CapiResult",
    "CapiUserData",
    "LeadStage",
    "MessagingChannel",
    "QualifiedEventName",
    "as_int",
    "clean_text",
]

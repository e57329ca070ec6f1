"""A lead who filled a form (Meta Lead Ads, a website, RD Station), as one typed value.

Every form intake parses its own payload at its edge into `FormSubmission`; from there a
form lead travels like a WhatsApp message: `form_inbound` turns it into an
`InboundMessage` of kind `form` on the first-touch channel (core/form_inbound.py), stored in the inbox with the
same durability and idempotency (channel + `form:<source>:<id>`), and the turn that
answers it writes the first touch. So a crash, a duplicate webhook or an erased lead is
handled by the rules every message already follows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# A form is filled by a person in a minute or two; more than this many answers is not a
# form but a payload someone built.
MAX_FORM_ANSWERS = 50
MAX_ANSWER_CHARS = 1000


class FormSource(StrEnum):
    META_LEAD_ADS = "meta_lead_ads"
    API = "api"
    RDSTATION = "rdstation"


class FormAnswer(BaseModel):
    """A question the profile has no field for, kept for the agent and the sellers."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(max_length=200)
    answer: str = Field(max_length=MAX_ANSWER_CHARS)


# The UTM parameters a form's attribution carries (FormAttribution's fields of that name).
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


class FormAttribution(BaseModel):
    """What brought the lead: the ad and form (Lead Ads) or the page and UTMs (websites)."""

    model_config = ConfigDict(extra="forbid")

    leadgen_id: str | None = None
    form_id: str | None = None
    form_name: str | None = None
    ad_id: str | None = None
    ad_name: str | None = None
    adgroup_id: str | None = None
    campaign_id: str | None = None
    campaign_name: str | None = None
    page_id: str | None = None
    platform: str | None = None
    is_organic: bool | None = None
    conversion_identifier: str | None = None
    page_url: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None


class FormSubmission(BaseModel):
    """One filled form. `profile` holds values already mapped to `LeadProfile` field names
    (normalised later by the profile merge, which drops what is not valid)."""

    model_config = ConfigDict(extra="forbid")

    source: FormSource
    external_id: str = Field(min_length=1, max_length=200)
    submitted_at: datetime
    phone: str | None = None
    profile: dict[str, str] = Field(default_factory=dict)
    answers: list[FormAnswer] = Field(default_factory=list, max_length=MAX_FORM_ANSWERS)
    attribution: FormAttribution = Field(default_factory=FormAttribution)
    message: str | None = Field(default=None, max_length=4000)

    @property
    def name(self) -> str | None:
        return self.profile.get("name")

"""The lead as the sales team gets it in the CRM, and where it lives there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.lead_fields import normalize_cnpj
from core.models import CHANNEL_NAMES, WHATSAPP_CHANNELS
from integrations.piperun.identity import email_key

if TYPE_CHECKING:
    from core.records import LeadRecord


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = " ".join(value.split())
        return value or None
    return value


class LeadCard(BaseModel):
    """What the sales team gets in the CRM about one lead; built by the caller from the lead.

    `verified_phone` is the number the WhatsApp provider reported for the chat, the only
    phone that may find an existing CRM person; `phone` and `email` may be what the lead
    typed, written on the lead's own records and never used to find anyone.
    """

    model_config = ConfigDict(extra="ignore")

    contact_key: str = Field(min_length=1)
    channel: str
    verified_phone: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    company: str | None = None
    cnpj: str | None = None
    city: str | None = None
    state: str | None = None
    profile: dict[str, Any] = Field(default_factory=dict)
    score: int | None = None
    temperature: str | None = None
    score_reasons: list[str] = Field(default_factory=list)
    summary: str | None = None
    chatwoot_url: str | None = None

    @field_validator(
        "verified_phone",
        "name",
        "phone",
        "company",
        "city",
        "state",
        "temperature",
        "chatwoot_url",
        mode="before",
    )
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("summary", mode="before")
    @classmethod
    def _strip_summary(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> Any:
        return email_key(value) if isinstance(value, str) else value

    @field_validator("cnpj", mode="before")
    @classmethod
    def _cnpj(cls, value: Any) -> Any:
        # An invalid CNPJ would create a bogus company record: dropped, not pushed.
        try:
            return normalize_cnpj(value)
        except ValueError:
            return None

    @field_validator("profile", "score_reasons", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any, info: Any) -> Any:
        if value is None:
            return {} if info.field_name == "profile" else []
        return value

    @classmethod
    def from_record(cls, lead: LeadRecord, *, chatwoot_url: str | None = None) -> LeadCard:
        """The card of a stored lead: profile values win over the channel's name/phone for
        what the sellers read; only a WhatsApp lead's provider-reported number is verified."""
        profile = dict(lead.profile or {})
        whatsapp = lead.channel in WHATSAPP_CHANNELS or lead.channel == "whatsapp"
        return cls(
            contact_key=lead.contact_key,
            channel=lead.channel,
            verified_phone=lead.phone if whatsapp else None,
            name=profile.get("name") or lead.name,
            phone=profile.get("phone") or lead.phone,
            email=profile.get("email"),
            company=profile.get("company"),
            cnpj=profile.get("cnpj"),
            city=profile.get("city"),
            state=profile.get("state"),
            profile=profile,
            score=lead.score,
            temperature=lead.temperature,
            score_reasons=list(lead.score_reasons or []),
            summary=lead.summary,
            chatwoot_url=chatwoot_url,
        )

    @property
    def channel_name(self) -> str:
        channel = self.channel or self.contact_key.partition(":")[0]
        return CHANNEL_NAMES.get(channel.lower(), channel.capitalize())


class CrmLink(BaseModel):
    """Where a lead lives in PipeRun; the caller persists it after every change."""

    model_config = ConfigDict(extra="ignore")

    person_id: int | None = None
    company_id: int | None = None
    deal_id: int | None = None
    note_id: int | None = None


__all__ = ["CrmLink", "LeadCard"]

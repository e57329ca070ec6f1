"""Outbox handler that tells Meta what a lead became (Conversions API).

The item carries only the stage and when it happened; the lead's contact data is read
from the store at delivery time, so an erased lead (LGPD) sends nothing, and a
retried or replayed item builds the same event with the same event id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.logging import get_logger
from core.outbox import CapiEvent
from core.records import OutboxItem
from integrations.meta_capi import LeadStage, MetaCapiClient, build_event, split_name
from runtime.policies import PermanentDeliveryError
from store.base import Store

log = get_logger(__name__)

# Lifecycle stage names (as in META_CAPI_EVENTS) -> the CAPI module's stages.
STAGES: dict[str, LeadStage] = {
    "Lead": "lead",
    "QualifiedLead": "qualified",
    "Schedule": "scheduled",
    "Purchase": "won",
    "lead_lost": "lost",
}


@dataclass(frozen=True, slots=True)
class CapiConfig:
    """What the event needs beyond the lead: the Instagram account a page-scoped id
    belongs to, and the event name a qualified lead is reported under."""

    instagram_account_id: str | None = None
    qualified_event: Literal["QualifiedLead", "CompleteRegistration"] = "QualifiedLead"


class CapiDelivery:
    def __init__(self, client: MetaCapiClient, store: Store, config: CapiConfig) -> None:
        self.client = client
        self.store = store
        self.config = config

    async def event(self, _item: OutboxItem, payload: CapiEvent) -> None:
        stage = STAGES.get(str(payload.stage))
        if stage is None:
            raise PermanentDeliveryError(f"unknown CAPI stage {payload.stage!r}")
        lead = await self.store.get_lead(payload.contact_key)
        if lead is None:
            log.info("meta_capi_skipped", reason="lead_erased")
            return
        profile = lead.profile or {}
        first, last = split_name(lead.name or profile.get("name"))
        try:
            event = build_event(
                stage,
                contact_key=lead.contact_key,
                channel=lead.channel,
                event_time=payload.event_time,
                phone=lead.phone or profile.get("phone"),
                email=profile.get("email"),
                first_name=first,
                last_name=last,
                city=profile.get("city"),
                state=profile.get("state"),
                referral=lead.referral,
                page_scoped_user_id=lead.contact_id if lead.channel == "instagram" else None,
                instagram_account_id=self.config.instagram_account_id,
                whatsapp_business_account_id=self.client.whatsapp_business_account_id,
                value=payload.value,
                currency=payload.currency or "BRL",
                qualified_event=self.config.qualified_event,
                lead_event_source=self.client.lead_event_source,
            )
        except ValueError as exc:
            raise PermanentDeliveryError(f"cannot build the CAPI event: {exc}") from exc
        await self.client.send(event)

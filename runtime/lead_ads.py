"""A Lead Ads lead, from the Page webhook's announcement to the lead's first message.

The webhook only names the lead (`leadgen_id`); its answers are read from the Graph API
here, in the outbox, so a Graph outage or throttling delays the lead and loses nothing.
Read once, the lead is kept in the item's payload: a lead that cannot become a
conversation (no phone on the form) dies in the outbox with its answers, where
`python main.py outbox show` finds them. Then the form is stored like any other
(`core.form_inbound`), idempotent on its id, and its turn starts at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from core.errors import WebhookRejected
from core.form_fields import FormFieldMap
from core.form_inbound import form_inbound
from core.logging import get_logger
from core.models import mask_contact_key
from core.outbox import LeadAdsFetch
from core.records import OutboxItem
from integrations.meta_leads import GraphLead, LeadgenEvent, MetaLeadsClient, graph_lead_submission
from runtime.policies import PermanentDeliveryError
from store.base import Store

log = get_logger(__name__)


class LeadAdsIntake:
    def __init__(
        self,
        client: MetaLeadsClient,
        store: Store,
        fields: FormFieldMap,
        *,
        channel: str,
        notify: Callable[[str], None],
    ) -> None:
        self.client = client
        self.store = store
        self.fields = fields
        self.channel = channel
        self.notify = notify

    async def fetch(self, item: OutboxItem, payload: LeadAdsFetch) -> None:
        assert item.id is not None
        if payload.lead is not None:
            lead = GraphLead.model_validate(payload.lead)
        else:
            lead = await self.client.fetch_lead(payload.leadgen_id)
            # Kept before anything can fail: the answers outlive this item's outcome.
            await self.store.outbox_progress(item.id, {**item.payload, "lead": lead.model_dump(mode="json")})
        submission = graph_lead_submission(lead, _event(payload), self.fields)
        try:
            message = form_inbound(submission, channel=self.channel)
        except WebhookRejected as exc:
            raise PermanentDeliveryError(
                f"Lead Ads lead {payload.leadgen_id}: {exc.message}; its answers are kept in this "
                "outbox item (python main.py outbox show)"
            ) from None
        stored = await self.store.add_inbound(message)
        if stored:
            self.notify(message.contact_key)
        log.info(
            "form_lead_received" if stored else "form_lead_duplicate",
            source=submission.source.value,
            contact=mask_contact_key(message.contact_key),
        )


def _event(payload: LeadAdsFetch) -> LeadgenEvent:
    created = payload.created_time
    return LeadgenEvent(
        leadgen_id=payload.leadgen_id,
        page_id=payload.page_id,
        form_id=payload.form_id,
        ad_id=payload.ad_id,
        adgroup_id=payload.adgroup_id,
        created_time=datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC),
    )

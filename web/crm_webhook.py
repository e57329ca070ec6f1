"""POST /webhooks/crm: the CRM tells the bot what happened after the handoff.

A won deal becomes a Meta `Purchase` (with its value), a lost one `lead_lost`, a booked
meeting `Schedule`: the ads learn which conversations turned into sales. Any CRM (a
PipeRun automation, n8n, Zapier) can call it with a small JSON body and the shared
secret `CRM_WEBHOOK_SECRET`; without that secret configured the route refuses
everything, since a forged "won deal" would teach the ads a lie.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import StoreUnavailable
from core.logging import get_logger
from core.models import contact_key_for, mask_contact_key
from core.secret_compare import secrets_match
from runtime.lifecycle import CapiStage
from web.keys import LIFECYCLE, NOTIFIER, SETTINGS, STORE
from web.middlewares import json_error

log = get_logger(__name__)

STAGES: dict[str, CapiStage] = {
    "deal.won": "Purchase",
    "deal.lost": "lead_lost",
    "meeting.scheduled": "Schedule",
}


class CrmEvent(BaseModel):
    """Which lead: the PipeRun deal id the bot stored, or the lead's phone / contact key.

    A phone finds only the lead whose WhatsApp chat the provider reported from that
    number (its contact key), never one who merely typed it: a sale must not be
    credited to whoever wrote a customer's phone in a chat.
    """

    model_config = ConfigDict(extra="ignore")

    event: Literal["deal.won", "deal.lost", "meeting.scheduled"]
    deal_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    phone: str | None = None
    contact_key: str | None = None
    value: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    occurred_at: datetime | None = None


def _authenticated(request: web.Request, secret: str) -> bool:
    given = request.headers.get("X-Webhook-Secret") or request.query.get("token") or ""
    return secrets_match(given, secret)


async def handle_crm_webhook(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.crm_webhook_secret is None:
        return json_error(403, "CRM webhook disabled: set CRM_WEBHOOK_SECRET")
    if not _authenticated(request, settings.crm_webhook_secret.get_secret_value()):
        log.info("webhook_rejected", channel="crm", status=401)
        return json_error(401, "invalid or missing X-Webhook-Secret")
    try:
        event = CrmEvent.model_validate_json(await request.read())
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
        return json_error(422, f"invalid CRM event: check {', '.join(fields)}")
    if event.deal_id is None and not event.phone and not event.contact_key:
        return json_error(422, "say which lead: deal_id, phone or contact_key")
    try:
        return await _apply(request, event)
    except StoreUnavailable as exc:
        log.error("webhook_store_unavailable", channel="crm", error=str(exc))
        return json_error(503, "store unavailable, retry later")


async def _apply(request: web.Request, event: CrmEvent) -> web.Response:
    store = request.app[STORE]
    lead = None
    if event.deal_id is not None:
        lead = await store.lead_by_crm_deal(event.deal_id)
    if lead is None and event.contact_key:
        lead = await store.get_lead(event.contact_key)
    if lead is None and event.phone:
        digits = "".join(ch for ch in event.phone if ch.isdigit())
        lead = await store.get_lead(contact_key_for("zapi", digits)) if digits else None
    if lead is None:
        # Not an error the CRM could fix by retrying: acknowledge and say so.
        log.info("crm_event_unknown_lead", crm_event=event.event)
        return web.json_response({"status": "ignored", "reason": "unknown_lead"})
    at = event.occurred_at or datetime.now(UTC)
    if event.event == "deal.won":
        # The funnel's last stage (the dashboard's "ganhos"): the first won counts.
        await store.mark_deal_won(lead.contact_key, at=at)
    items = request.app[LIFECYCLE].external_event(
        lead,
        STAGES[event.event],
        at=at,
        value=event.value,
        currency=event.currency,
    )
    queued = [item.kind for item in items if await store.enqueue(item)]
    if queued:
        request.app[NOTIFIER].wake()
    log.info("crm_event", crm_event=event.event, contact=mask_contact_key(lead.contact_key), queued=queued)
    return web.json_response({"status": "ok", "queued": queued})

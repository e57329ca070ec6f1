"""Where every form intake on the web side ends: the form stored as the lead's first
message, the turn told to start at once (a form is complete; no quiet window to wait).

The lead's id returned to the caller is the contact key the store keys the lead by
(`whatsapp:<digits>`): the same phone from another form, a WhatsApp message or a CRM
event is the same lead.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from core.form_inbound import form_inbound
from core.forms import FormSubmission
from core.logging import get_logger
from core.models import mask_contact_key
from web.keys import NOTIFIER, SETTINGS, STORE

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StoredForm:
    lead_id: str
    duplicate: bool


async def store_form_lead(app: web.Application, submission: FormSubmission) -> StoredForm:
    """Store the form durably before the caller gets its answer.

    Raises `WebhookRejected` (422) for a form without a usable phone and lets
    `StoreUnavailable` through (the caller answers 503 so the sender retries). A form
    already stored (same source and id) is a duplicate: nothing is written twice and
    the lead is not touched twice."""
    message = form_inbound(submission, channel=app[SETTINGS].lead_first_touch_channel)
    stored = await app[STORE].add_inbound(message)
    if stored:
        app[NOTIFIER].notify(message.contact_key, immediate=True)
    log.info(
        "form_lead_received" if stored else "form_lead_duplicate",
        source=submission.source.value,
        contact=mask_contact_key(message.contact_key),
    )
    return StoredForm(lead_id=message.contact_key, duplicate=not stored)

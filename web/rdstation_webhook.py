"""POST /webhooks/rdstation: RD Station Marketing's conversion webhook.

RD Station posts `{"leads": [...]}` (integrations/rdstation/schema.py reads it) when a
lead converts on a form or landing page; each lead becomes a form lead the bot answers
on WhatsApp. RD's webhook carries no signature of its own, so the URL configured in RD
holds the secret: `/webhooks/rdstation?token=<RDSTATION_WEBHOOK_SECRET>` (or the
`X-Webhook-Secret` header, for a relay that can set one). Without the secret configured
the route refuses everything: anyone could otherwise make the bot message any number.

RD retries the whole POST on any non-2xx, so only what a retry could fix fails it (the
store down: 503). A lead without a usable phone is skipped and counted, never the batch:
`200 {"status": "ok", "accepted": n, "duplicates": n, "skipped": n}`. A conversion RD
sends again is a duplicate (nothing stored twice, the lead not messaged twice).
"""

from __future__ import annotations

from aiohttp import web

from core.errors import StoreUnavailable, WebhookRejected
from core.logging import get_logger
from core.secret_compare import secrets_match
from integrations.rdstation import RdPayloadError, parse_rdstation_batch
from web.form_intake import store_form_lead
from web.keys import CLOCK, FORM_FIELDS, SETTINGS
from web.middlewares import json_error
from web.webhooks import _decode

log = get_logger(__name__)

RETRY_AFTER_S = "10"


def _authenticated(request: web.Request, secret: str) -> bool:
    given = request.headers.get("X-Webhook-Secret") or request.query.get("token") or ""
    return secrets_match(given, secret)


async def handle_rdstation_webhook(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.rdstation_webhook_secret is None:
        return json_error(403, "RD Station webhook disabled: set RDSTATION_WEBHOOK_SECRET")
    if not _authenticated(request, settings.rdstation_webhook_secret.get_secret_value()):
        log.info("webhook_rejected", channel="rdstation", status=401)
        return json_error(401, "invalid or missing token (?token=RDSTATION_WEBHOOK_SECRET)")
    try:
        payload = _decode(await request.read())  # the app's body limit answers 413
        batch = parse_rdstation_batch(
            payload, received_at=request.app[CLOCK](), fields=request.app[FORM_FIELDS]
        )
    except WebhookRejected as exc:
        log.info("webhook_rejected", channel="rdstation", status=exc.status, reason=exc.message)
        return json_error(exc.status, exc.message)
    except RdPayloadError as exc:
        log.info("webhook_rejected", channel="rdstation", status=422, reason=str(exc))
        return json_error(422, str(exc))
    accepted = duplicates = 0
    skipped = len(batch.skipped)
    for reason in batch.skipped:
        log.warning("rdstation_lead_skipped", reason=reason)
    for submission in batch.submissions:
        try:
            stored = await store_form_lead(request.app, submission)
        except WebhookRejected as exc:  # no phone we can dial: nothing RD could fix by retrying
            skipped += 1
            log.warning(
                "rdstation_lead_skipped",
                reason=exc.message,
                conversion=submission.attribution.conversion_identifier,
            )
            continue
        except StoreUnavailable as exc:
            # RD retries the whole POST: what was already stored comes back as duplicates.
            log.error("webhook_store_unavailable", channel="rdstation", error=str(exc))
            response = json_error(503, "store unavailable, retry later")
            response.headers["Retry-After"] = RETRY_AFTER_S
            return response
        if stored.duplicate:
            duplicates += 1
        else:
            accepted += 1
    log.info("rdstation_webhook", accepted=accepted, duplicates=duplicates, skipped=skipped)
    return web.json_response(
        {"status": "ok", "accepted": accepted, "duplicates": duplicates, "skipped": skipped}
    )

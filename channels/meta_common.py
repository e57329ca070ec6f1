"""What the WhatsApp Cloud API and Instagram share: Meta's webhook authentication.

Both arrive on `/webhooks/meta`, signed the same way (`X-Hub-Signature-256`: HMAC-SHA256
of the raw body with the app secret) and verified the same way on subscription
(`hub.mode=subscribe`, `hub.verify_token`, echo `hub.challenge`).
Docs: https://developers.facebook.com/docs/graph-api/webhooks/getting-started
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from channels.base import WebhookRejected
from core.settings import Settings

SIGNATURE_HEADER = "X-Hub-Signature-256"


def verify_signature(settings: Settings, request: web.Request, raw_body: bytes) -> None:
    """Raise WebhookRejected unless the body is signed with our app secret.

    Without META_APP_SECRET nothing can be verified, so nothing is accepted: an
    unauthenticated Meta webhook could make the bot message anyone."""
    if settings.meta_app_secret is None:
        raise WebhookRejected(401, "META_APP_SECRET is not set: Meta webhooks cannot be verified")
    header = request.headers.get(SIGNATURE_HEADER, "")
    if not header.startswith("sha256="):
        raise WebhookRejected(401, "missing X-Hub-Signature-256")
    expected = hmac.new(
        settings.meta_app_secret.get_secret_value().encode(), raw_body, hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(header[len("sha256=") :].strip().lower(), expected):
        raise WebhookRejected(403, "invalid X-Hub-Signature-256")


def verify_subscription(settings: Settings, request: web.Request) -> str:
    """The `hub.challenge` to echo when Meta verifies the webhook URL."""
    query = request.rel_url.query
    if query.get("hub.mode") != "subscribe":
        raise WebhookRejected(400, "hub.mode must be subscribe")
    token = query.get("hub.verify_token", "")
    expected = settings.meta_verify_token.get_secret_value() if settings.meta_verify_token else None
    if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise WebhookRejected(403, "hub.verify_token does not match META_VERIFY_TOKEN")
    challenge = query.get("hub.challenge")
    if not challenge:
        raise WebhookRejected(400, "hub.challenge is missing")
    return challenge

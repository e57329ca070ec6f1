"""What the WhatsApp Cloud API and Instagram share: Meta's webhook authentication and
the shape of Graph API errors.

Both arrive on `/webhooks/meta`, signed the same way (`X-Hub-Signature-256`: HMAC-SHA256
of the raw body with the app secret) and verified the same way on subscription
(`hub.mode=subscribe`, `hub.verify_token`, echo `hub.challenge`).
Docs: https://developers.facebook.com/docs/graph-api/webhooks/getting-started

Both also refuse sends with the same Graph error JSON, but what a code means differs per
product (code 10 is "outside the window" or "permission denied" on Instagram depending
on the subcode), so only the parsing is shared here; the classification stays with
each channel.
Docs: https://developers.facebook.com/docs/graph-api/guides/error-handling
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from channels.errors import (
    ChannelAuthFailed,
    ChannelError,
    ChannelInvalidRecipient,
    ChannelRejected,
    ChannelUnavailable,
)
from core import errors
from core.errors import WebhookRejected
from core.secret_compare import secrets_match

SIGNATURE_HEADER = "X-Hub-Signature-256"


def verify_signature(app_secret: SecretStr | None, request: web.Request, raw_body: bytes) -> None:
    """Raise WebhookRejected unless the body is signed with our app secret (META_APP_SECRET).

    Without it nothing can be verified, so nothing is accepted: an unauthenticated Meta
    webhook could make the bot message anyone."""
    if app_secret is None:
        raise WebhookRejected(401, "META_APP_SECRET is not set: Meta webhooks cannot be verified")
    header = request.headers.get(SIGNATURE_HEADER, "")
    if not header.startswith("sha256="):
        raise WebhookRejected(401, "missing X-Hub-Signature-256")
    expected = hmac.new(app_secret.get_secret_value().encode(), raw_body, hashlib.sha256).hexdigest()
    if not secrets_match(header[len("sha256=") :].strip().lower(), expected):
        raise WebhookRejected(403, "invalid X-Hub-Signature-256")


def verify_subscription(verify_token: SecretStr | None, request: web.Request) -> str:
    """The `hub.challenge` to echo when Meta verifies the webhook URL with META_VERIFY_TOKEN."""
    query = request.rel_url.query
    if query.get("hub.mode") != "subscribe":
        raise WebhookRejected(400, "hub.mode must be subscribe")
    token = query.get("hub.verify_token", "")
    expected = verify_token.get_secret_value() if verify_token else None
    if expected is None or not secrets_match(token, expected):
        raise WebhookRejected(403, "hub.verify_token does not match META_VERIFY_TOKEN")
    challenge = query.get("hub.challenge")
    if not challenge:
        raise WebhookRejected(400, "hub.challenge is missing")
    return challenge


class MetaApiError(ChannelError):
    """A refusal that came with Meta's error JSON; the code is kept for callers and logs.

    Meta asks integrators to branch on `code` (and `error_data.details`), not on titles,
    which it plans to deprecate; `fbtrace_id` is what Meta support asks for. Raise one of
    the leaves below, which say what to do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id


class MetaUnavailable(MetaApiError, ChannelUnavailable):
    """Throttling or trouble on Meta's side: the same request can succeed later."""


class MetaRejected(MetaApiError, ChannelRejected):
    """Meta refused the request as it is."""


class MetaAuthFailed(MetaApiError, ChannelAuthFailed):
    """The token is expired, revoked or lacks a permission: the channel is broken."""


class MetaInvalidRecipient(MetaApiError, ChannelInvalidRecipient):
    """The person cannot receive from us."""


class OutsideWindow(MetaApiError, errors.OutsideWindow):
    """Meta refused free text because the lead's last message is older than 24 hours.

    A distinct type (and the word "window" in the message) so the runtime can fall back
    to what the product still allows (an approved template on WhatsApp, a human reply
    with the HUMAN_AGENT tag on Instagram) instead of recording a plain failure. Never
    retryable: waiting only makes the last message older.
    """


@dataclass(frozen=True)
class GraphError:
    """The fields of Meta's `{"error": {...}}` that decide what a refusal means.

    Text fields are stripped and None when empty, so callers never tell "" from missing.
    """

    present: bool  # False when the body had no usable error object at all
    code: int | None
    subcode: int | None
    message: str | None
    details: str | None
    fbtrace_id: str | None
    transient: bool


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def parse_graph_error(data: Any, *, as_int: Callable[[object], int | None]) -> GraphError:
    """Read Meta's error JSON without trusting any level of it.

    `as_int` is the channel's own reading of numeric fields: Meta sends codes as numbers
    or strings, and each channel has its own tolerance for them.
    """
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        err = {}
    error_data = err.get("error_data")
    return GraphError(
        present=bool(err),
        code=as_int(err.get("code")),
        subcode=as_int(err.get("error_subcode")),
        message=_text(err.get("message")),
        details=_text(error_data.get("details")) if isinstance(error_data, dict) else None,
        fbtrace_id=_text(err.get("fbtrace_id")),
        transient=err.get("is_transient") is True,
    )

"""Z-API channel: WhatsApp through the Brazilian Z-API gateway.

Payload shapes follow Z-API's published docs (developer.z-api.io, mirrored in the
github.com/Z-API/z-api-docs repo: docs/webhooks/on-message-received.md,
on-whatsapp-message-status-changes.md, on-message-send.md, docs/message/send-message-text.md,
send-message-image/-document/-video/-audio.md, docs/instance/status.md). Parsing lives in `parse`, the payload models in `schema`; this
module holds what needs the config (`ZapiConfig`): the webhook secret, the instance URLs, sending and
the doctor's probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

from channels.base import OutgoingMedia, ParsedWebhook, SentMessage
from channels.errors import (
    ChannelAuthFailed,
    ChannelError,
    ChannelInvalidRecipient,
    ChannelRejected,
    ChannelUnavailable,
    retry_after,
)
from channels.media_fetch import MediaFetcher
from channels.provider_http import error_detail, lookup, scrub
from channels.webhook_helpers import json_object, token_matches
from channels.zapi.config import ZapiConfig
from channels.zapi.media import media_request
from channels.zapi.parse import parse_webhook
from core.errors import WebhookRejected, is_retryable_status
from core.logging import get_logger
from core.models import mask_phone
from core.probe import ProbeIO, ProbeResult, ok, problem

log = get_logger(__name__)

# Z-API documents delayTyping/delayMessage as "a range of 1~15 sec"; values outside it
# are refused or silently altered by the provider, so we clamp before sending.
DELAY_MIN_S = 1
DELAY_MAX_S = 15

_ERROR_DETAIL_MAX = 200
# Z-API words its refusals as `{"error": ...}` or `{"message": ...}`.
_ERROR_PATHS = (("error",), ("message",), ("detail",))


class ZapiChannel:
    name = "zapi"
    window_hours: int | None = None  # Z-API rides on a phone: no customer-service window

    def __init__(self, config: ZapiConfig) -> None:
        self._config = config
        self.rate_per_s = config.rate_per_s

    @property
    def configured(self) -> bool:
        return self._config.configured

    @property
    def missing_webhook_secret(self) -> str | None:
        return "ZAPI_WEBHOOK_SECRET" if self._config.webhook_secret is None else None

    # -- inbound --------------------------------------------------------------------

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Z-API signs nothing, so a shared secret in the webhook URL is the only proof.

        Z-API cannot add custom headers to its webhook calls, hence `?token=` is the
        practical option; the headers are accepted for proxies that inject them.
        """
        secret = self._config.webhook_secret
        if secret is None:
            # Closed by default: an open route would let anyone make the bot message any
            # number from the company's WhatsApp, spend LLM turns and pause leads.
            raise WebhookRejected(
                403, "ZAPI_WEBHOOK_SECRET is not set: Z-API webhooks are refused until it is"
            )
        candidates: list[str] = []
        query_token = request.query.get("token")
        if query_token:
            candidates.append(query_token)
        header_token = request.headers.get("X-Webhook-Token")
        if header_token:
            candidates.append(header_token)
        auth = request.headers.get("Authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            candidates.append(credentials.strip())
        if not token_matches(candidates, secret.get_secret_value().encode()):
            raise WebhookRejected(401, "invalid or missing webhook token")

    def parse(self, payload: object) -> ParsedWebhook:
        return parse_webhook(payload)

    # -- the instance's API ---------------------------------------------------------

    def _instance_url(self, op: str) -> str:
        """`/instances/{id}/token/{token}/{op}`: the token rides in the path, so this URL
        never goes into a log or an error text (see `_secrets`)."""
        c = self._config
        token = c.instance_token.get_secret_value() if c.instance_token is not None else ""
        return f"{c.base_url.rstrip('/')}/instances/{c.instance_id}/token/{token}/{op}"

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self._config.client_token is not None:
            headers["Client-Token"] = self._config.client_token.get_secret_value()
        return headers

    def _secrets(self) -> list[str]:
        c = self._config
        values = [
            secret.get_secret_value() for secret in (c.instance_token, c.client_token) if secret is not None
        ]
        # Not a secret on its own, but with it in an error the URL could be rebuilt.
        if c.instance_id:
            values.append(c.instance_id)
        return values

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self._config.http_timeout_s)

    # -- outbound -------------------------------------------------------------------

    async def send_text(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        text: str,
        *,
        typing_s: int,
        human_agent: bool = False,
        seen_message_ids: Sequence[str] = (),
    ) -> SentMessage:
        """One attempt only: the outbox owns retries, so errors say whether to retry."""
        body: dict[str, Any] = {"phone": contact_id, "message": text}
        # Z-API's default is no "typing..." at all; only a positive wish is sent, clamped
        # to the documented 1..15 s.
        if typing_s and typing_s > 0:
            body["delayTyping"] = max(DELAY_MIN_S, min(DELAY_MAX_S, round(typing_s)))
        return await self._send(session, "send-text", body, contact_id)

    async def send_media(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        media: OutgoingMedia,
        *,
        human_agent: bool = False,
    ) -> SentMessage:
        """A seller's file from Chatwoot, as send-image/-video/-audio/-document/{ext}
        with the bytes inline (channels/zapi/media.py); one attempt, like send_text."""
        op, body = media_request(contact_id, media)
        if media.kind == "audio" and media.caption and media.caption.strip():
            log.warning("zapi_audio_caption_dropped", contact=mask_phone(contact_id))
        return await self._send(session, op, body, contact_id)

    async def _send(
        self, session: aiohttp.ClientSession, op: str, body: dict[str, Any], contact_id: str
    ) -> SentMessage:
        """POST one send operation; every send reads errors and ids the same way."""
        c = self._config
        if not (c.instance_id and c.instance_token):
            raise ChannelRejected("zapi is not configured")
        what = op.split("/", 1)[0]
        headers = self._headers(**{"Content-Type": "application/json"})
        try:
            async with session.post(
                self._instance_url(op), json=body, headers=headers, timeout=self._timeout()
            ) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
                wait = retry_after(resp.headers)
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            self._log_send_failure(contact_id, None, "timeout")
            raise ChannelUnavailable(f"zapi {what} timed out") from None
        except aiohttp.ClientError as exc:
            # The exception text can carry the URL, which embeds the instance token.
            self._log_send_failure(contact_id, None, type(exc).__name__)
            raise ChannelUnavailable(f"zapi {what} transport error: {type(exc).__name__}") from None

        if not 200 <= status < 300:
            raise self._send_error(what, status, raw, contact_id, wait)

        data = json_object(raw)
        # `messageId` is WhatsApp's id (the one status callbacks name); `id` the same
        # value for Zapier; `zaapId` is Z-API's own and is never reported back.
        message_id = data.get("messageId") or data.get("id")
        if not isinstance(message_id, str) or not message_id:
            error = data.get("error")
            if isinstance(error, str) and error.strip():
                # A 2xx that still says "error" and has no id: nothing was sent.
                detail = scrub(error.strip(), self._secrets())[:_ERROR_DETAIL_MAX]
                raise ChannelRejected(f"zapi {what} refused: {detail}", status=status)
            # Accepted but unidentified: report success, a resend would duplicate it.
            message_id = None
        return SentMessage(provider_message_id=message_id)

    def _send_error(
        self, what: str, status: int, raw: str, contact_id: str, wait: float | None
    ) -> ChannelError:
        detail = scrub(error_detail(raw, _ERROR_PATHS), self._secrets())[:_ERROR_DETAIL_MAX]
        retryable = is_retryable_status(status)
        self._log_send_failure(contact_id, status, "retryable" if retryable else "permanent")
        message = f"zapi {what} failed: HTTP {status}"
        message = f"{message}: {detail}" if detail else message
        if status in (401, 403):
            return ChannelAuthFailed(message, status=status)
        if retryable:
            return ChannelUnavailable(message, status=status, retry_after=wait)
        # Z-API answers 400 for numbers that are not on WhatsApp.
        if status in (400, 404) and "phone" in detail.lower():
            return ChannelInvalidRecipient(message, status=status)
        return ChannelRejected(message, status=status)

    @staticmethod
    def _log_send_failure(contact_id: str, status: int | None, what: str) -> None:
        log.warning("zapi_send_failed", contact=mask_phone(contact_id), status=status, error=what)

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        """Download a Z-API media URL (public storage, kept 30 days) without trusting its
        address or its size (channels/media_fetch.py).

        No Client-Token is sent: the URL is whatever the webhook said and may point
        anywhere, and Z-API storage does not need it.
        """
        return await MediaFetcher.from_config(self._config.media).fetch(
            url, max_bytes=max_bytes, timeout=self._timeout()
        )

    # -- number check ---------------------------------------------------------------

    async def on_whatsapp(self, session: aiohttp.ClientSession, phone: str) -> bool | None:
        """Whether `phone` has WhatsApp: GET /instances/{id}/token/{token}/phone-exists/{phone}
        (digits only, DDI DDD NUMBER) with the account's Client-Token header; 200
        {"exists": bool}. https://developer.z-api.io/en/contacts/get-iswhatsapp
        (docs/contacts/get-iswhatsapp.md in github.com/Z-API/z-api-docs, whose example
        wraps the object in a list: both are read).

        None when Z-API cannot tell (not configured, timeout, refused, another shape):
        the caller then sends and the send's own error decides. Never raises.
        """
        c = self._config
        digits = "".join(ch for ch in phone if ch.isdigit())
        if not (c.instance_id and c.instance_token) or not digits:
            return None
        data = await lookup(
            session,
            self._instance_url(f"phone-exists/{digits}"),
            headers=self._headers(Accept="application/json"),
            timeout=self._timeout(),
            failed=lambda status, what: self._check_failed(digits, status, what),
        )
        if data is None:
            return None
        exists = _exists(data)
        if exists is None:
            self._check_failed(digits, 200, "unexpected_body")
            return None
        return exists

    @staticmethod
    def _check_failed(phone: str, status: int | None, what: str) -> None:
        log.warning("zapi_phone_check_failed", contact=mask_phone(phone), status=status, error=what)

    # -- doctor ---------------------------------------------------------------------

    async def probe(self, io: ProbeIO) -> ProbeResult:
        """Instance status: GET /instances/{id}/token/{token}/status with the account's
        Client-Token header; 200 {"connected": bool, "error": str, "smartphoneConnected":
        bool}. https://developer.z-api.io/en/instance/status"""
        reply = await io.get(self._instance_url("status"), headers=self._headers(Accept="application/json"))
        text = reply.text.lower()
        if "client-token" in text or "null not allowed" in text or reply.status in (401, 403):
            # https://developer.z-api.io/en/security/client-token: every request of an account
            # with the security token on must carry it; the 403 body echoes the token sent.
            return problem(
                "invalid token: Z-API refused the Client-Token",
                "copy the account's security token (Z-API panel → Security) into ZAPI_CLIENT_TOKEN",
            )
        if reply.status == 404 or ("instance" in text and "not found" in text):
            return problem(
                "wrong instance ID or token: Z-API did not find the instance",
                "copy the instance's ID and token (Z-API panel → Instances) into "
                "ZAPI_INSTANCE_ID and ZAPI_INSTANCE_TOKEN",
            )
        data = reply.data if isinstance(reply.data, dict) else {}
        if not reply.ok or not isinstance(data.get("connected"), bool):
            return io.unexpected(reply, ("error",), ("message",))
        if not data["connected"]:
            said = io.provider_words(reply, ("error",))
            return problem(
                "instance found, but WhatsApp is disconnected" + (f" ({said})" if said else ""),
                "in the Z-API panel open the instance and scan the QR code with the company phone's WhatsApp",
            )
        if data.get("smartphoneConnected") is False:
            return ok("WhatsApp connected (warning: the phone has no internet right now)")
        return ok("WhatsApp connected")


def _exists(data: Any) -> bool | None:
    """`exists` of phone-exists' answer: an object, or the docs' one-element list of it."""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    value = data.get("exists") if isinstance(data, dict) else None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None

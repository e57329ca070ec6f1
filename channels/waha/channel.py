"""WAHA channel: WhatsApp through a self-hosted WAHA (WhatsApp HTTP API) server.

Shapes follow WAHA's published docs (waha.devlike.pro, source in
github.com/devlikeapro/waha-docs: content/docs/how-to/events/index.md for the HMAC
headers; send-messages/index.md and overview/how-to-avoid-blocking for
sendSeen/startTyping/sendText; how-to/sessions for the doctor's probe), the OpenAPI spec
(static/swagger/openapi.json: SendSeenRequest, Message*Request) and the server's DTOs (github.com/devlikeapro/waha src/structures/*.dto.ts). Parsing lives in `parse` and
`content`, the payload models in `schema`; this module holds what needs the config (`WahaConfig`):
webhook authentication, sending, media, presence subscriptions (`presence`) and the
doctor's probe.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from yarl import URL

from channels.base import OutgoingMedia, ParsedWebhook, SentMessage
from channels.errors import (
    ChannelAuthFailed,
    ChannelError,
    ChannelInvalidRecipient,
    ChannelRejected,
    ChannelUnavailable,
    retry_after,
)
from channels.media_fetch import WAHA_FILES_PATH, Credentials, MediaFetcher, Origin, parse_media_url
from channels.provider_http import lookup
from channels.waha.config import WahaConfig
from channels.waha.content import dig
from channels.waha.media import media_request
from channels.waha.parse import USER_SERVERS, chat_kind, parse_webhook, split_chat_id
from channels.waha.presence import SUBSCRIBE_TIMEOUT_S, PresenceSubscriptions
from channels.waha.refusal import refusal_detail
from channels.webhook_helpers import clean, json_or_none, token_matches
from core.errors import WebhookRejected, is_retryable_status
from core.logging import get_logger
from core.models import mask_phone
from core.probe import ProbeIO, ProbeResult, ok, problem
from core.secret_compare import secrets_match

log = get_logger(__name__)

HMAC_HEADER = "X-Webhook-Hmac"
HMAC_ALGORITHM_HEADER = "X-Webhook-Hmac-Algorithm"
HMAC_ALGORITHM = "sha512"
TOKEN_HEADER = "X-Webhook-Token"
API_KEY_HEADER = "X-Api-Key"

# Seen receipts and "typing..." are courtesy: they must never hold a worker as long as
# the message itself may take.
_COURTESY_TIMEOUT_MAX_S = 5.0

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}

# Failures that say the chat id itself is wrong. WEBJS reports a bad id as a 500
# "wid error: invalid wid"; other engines and versions word it differently.
_INVALID_RECIPIENT = re.compile(
    r"invalid wid|wid error|invalid jid|invalid chat ?id|chat ?id must|"
    r"not registered|not on whatsapp|not a whatsapp|phone_not_on_whatsapp|no lid for user|"
    r"(number|phone|chat|contact|jid|wid)[^.]{0,40}(does ?n[o']t exist|not exists?|not found|invalid)",
    re.IGNORECASE,
)
# 422 "Session status is not as expected. Try again later or restart the session": the
# phone is reconnecting or waiting for a QR scan; the message can go out later.
_SESSION_NOT_READY = re.compile(r"session status is not as expected", re.IGNORECASE)


# What to do about a session that is not WORKING (the doctor's hint).
_SESSION_HINTS = {
    "SCAN_QR_CODE": "open the WAHA dashboard (/dashboard) and scan the QR code with the company phone's WhatsApp",
    "STARTING": "the session is starting; wait a minute and run the doctor again",
    "STOPPED": "start the session in the WAHA dashboard (Start)",
    "FAILED": "restart the session in the WAHA dashboard (Restart); if it does not come back, log out and scan the QR code again",
}


class WahaChannel:
    name = "waha"
    window_hours: int | None = None  # WAHA rides on a phone: no customer-service window

    def __init__(self, config: WahaConfig) -> None:
        self._config = config
        self.rate_per_s = config.rate_per_s
        self._presence = PresenceSubscriptions(enabled=config.presence_subscribe and config.configured)

    @property
    def configured(self) -> bool:
        return self._config.configured

    @property
    def missing_webhook_secret(self) -> str | None:
        c = self._config
        if c.webhook_hmac_key is None and c.webhook_secret is None:
            return "WAHA_WEBHOOK_HMAC_KEY"
        return None

    # -- inbound: authentication ----------------------------------------------------

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Prefer WAHA's own HMAC signature; a URL secret is the fallback for setups
        that cannot configure `hmac.key` (WAHA Core's global webhook, older versions).

        When the HMAC key is set the signature is the only proof accepted: a URL
        token leaks through logs and proxies, a signature over the body does not.
        """
        c = self._config
        if c.webhook_hmac_key is not None:
            self._verify_hmac(request, raw_body, c.webhook_hmac_key.get_secret_value())
            return
        if c.webhook_secret is not None:
            self._verify_token(request, c.webhook_secret.get_secret_value())
            return
        # Closed by default, like every other webhook route.
        raise WebhookRejected(
            403,
            "WAHA_WEBHOOK_HMAC_KEY (or WAHA_WEBHOOK_SECRET) is not set: WAHA webhooks are refused until it is",
        )

    @staticmethod
    def _verify_hmac(request: web.Request, raw_body: bytes, key: str) -> None:
        provided = (request.headers.get(HMAC_HEADER) or "").strip()
        if not provided:
            raise WebhookRejected(401, f"missing {HMAC_HEADER} signature")
        algorithm = request.headers.get(HMAC_ALGORITHM_HEADER)
        # WAHA only signs with sha512; anything else is not WAHA (or a downgrade try).
        if algorithm is not None and algorithm.strip().lower() != HMAC_ALGORITHM:
            raise WebhookRejected(403, "unsupported webhook signature algorithm")
        expected = hmac.new(key.encode("utf-8"), raw_body, hashlib.sha512).hexdigest()
        if not secrets_match(provided.lower(), expected):
            raise WebhookRejected(403, "invalid webhook signature")

    @staticmethod
    def _verify_token(request: web.Request, secret: str) -> None:
        candidates = [
            value for value in (request.query.get("token"), request.headers.get(TOKEN_HEADER)) if value
        ]
        if not token_matches(candidates, secret.encode("utf-8")):
            raise WebhookRejected(401, "invalid or missing webhook token")

    def parse(self, payload: object) -> ParsedWebhook:
        parsed = parse_webhook(payload, session_name=self._config.session)
        if parsed.connection == "WORKING":
            # The session (re)started: the chats it was subscribed to may be forgotten.
            self._presence.forget()
        return parsed

    # -- outbound -------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        c = self._config
        return [
            secret.get_secret_value()
            for secret in (c.api_key, c.webhook_hmac_key, c.webhook_secret)
            if secret is not None
        ]

    def _headers(self, *, content_type: bool = True) -> dict[str, str]:
        headers = {"Content-Type": "application/json"} if content_type else {}
        headers["Accept"] = "application/json"
        if self._config.api_key is not None:
            headers[API_KEY_HEADER] = self._config.api_key.get_secret_value()
        return headers

    def _base_url(self) -> str:
        return (self._config.url or "").rstrip("/")

    @staticmethod
    def _chat_id_for(contact_id: str) -> str:
        """Turn a stored contact id back into the chatId WAHA expects."""
        value = (contact_id or "").strip()
        if "@" in value:
            local, server = split_chat_id(value)
            if server == "lid" and local:
                return f"{local}@lid"
            if server not in USER_SERVERS:
                raise ChannelInvalidRecipient(f"waha cannot send to a {chat_kind(value)} chat")
            value = local.split(":", 1)[0]
        digits = re.sub(r"\D", "", value)
        if not digits:
            raise ChannelInvalidRecipient("waha recipient has no phone digits")
        return f"{digits}@c.us"

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
        """One attempt only: the outbox owns retries, so errors say whether to retry.

        WAHA's anti-blocking guide asks for seen, typing, then the text. Seen and typing
        go out first and may fail without stopping the text; nothing here sleeps for
        `typing_s` (WAHA has no server-side typing delay and an outbox worker must not
        be parked for seconds), so a wish for typing only starts the indicator.

        `seen_message_ids`: the lead's messages this reply answers. sendSeen names them
        (`messageIds`, SendSeenRequest); without them WAHA marks the chat's unread
        messages seen, which is what the spec does for a bare chatId.
        """
        c = self._config
        if not c.url:
            raise ChannelRejected("waha is not configured")
        chat_id = self._chat_id_for(contact_id)
        base = self._base_url()
        body: dict[str, Any] = {"chatId": chat_id, "session": c.session}
        seen = dict(body)
        ids = [i.strip() for i in seen_message_ids if isinstance(i, str) and i.strip()]
        if ids:
            seen["messageIds"] = ids

        courtesy = [self._courtesy(session, f"{base}/api/sendSeen", seen, contact_id)]
        if typing_s and typing_s > 0:
            courtesy.append(self._courtesy(session, f"{base}/api/startTyping", body, contact_id))
        await asyncio.gather(*courtesy)
        return await self._send(session, "sendText", body | {"text": text}, contact_id)

    async def send_media(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        media: OutgoingMedia,
        *,
        human_agent: bool = False,
    ) -> SentMessage:
        """A seller's file from Chatwoot: sendImage, sendVideo, sendVoice or sendFile
        with the bytes inline (channels/waha/media.py); one attempt, like send_text."""
        c = self._config
        if not c.url:
            raise ChannelRejected("waha is not configured")
        op, body = media_request(self._chat_id_for(contact_id), c.session, media)
        if media.kind == "audio" and media.caption and media.caption.strip():
            log.warning("waha_audio_caption_dropped", contact=mask_phone(contact_id))
        return await self._send(session, op, body, contact_id)

    async def _send(
        self, session: aiohttp.ClientSession, op: str, payload: dict[str, Any], contact_id: str
    ) -> SentMessage:
        """POST one send operation; every send reads errors and ids the same way."""
        timeout = aiohttp.ClientTimeout(total=self._config.http_timeout_s)
        try:
            async with session.post(
                f"{self._base_url()}/api/{op}", json=payload, headers=self._headers(), timeout=timeout
            ) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
                wait = retry_after(resp.headers)
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            self._log_send_failure(contact_id, None, "timeout")
            raise ChannelUnavailable(f"waha {op} timed out") from None
        except aiohttp.ClientError as exc:
            self._log_send_failure(contact_id, None, type(exc).__name__)
            raise ChannelUnavailable(f"waha {op} transport error: {type(exc).__name__}") from None

        if not 200 <= status < 300:
            raise self._send_error(op, status, raw, contact_id, wait)

        # Accepted but unidentified is still success: a resend would duplicate it.
        return SentMessage(provider_message_id=self._sent_id(json_or_none(raw)))

    async def _courtesy(
        self, session: aiohttp.ClientSession, url: str, body: dict[str, Any], contact_id: str
    ) -> None:
        """Seen receipts and typing are nice to have; their failure is logged, not raised."""
        what = url.rsplit("/", 1)[-1]
        timeout = aiohttp.ClientTimeout(total=min(self._config.http_timeout_s, _COURTESY_TIMEOUT_MAX_S))
        try:
            async with session.post(url, json=body, headers=self._headers(), timeout=timeout) as resp:
                if not 200 <= resp.status < 300:
                    log.warning(
                        "waha_courtesy_failed",
                        call=what,
                        contact=mask_phone(contact_id),
                        status=resp.status,
                        auth_failed=resp.status in (401, 403),
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - courtesy must never stop the send
            log.warning(
                "waha_courtesy_failed", call=what, contact=mask_phone(contact_id), error=type(exc).__name__
            )

    def _send_error(
        self, op: str, status: int, raw: str, contact_id: str, wait: float | None
    ) -> ChannelError:
        detail = refusal_detail(raw, self._secrets())
        message = f"waha {op} failed: HTTP {status}"
        message = f"{message}: {detail}" if detail else message
        error: ChannelError
        if status in (401, 403):
            error, outcome = ChannelAuthFailed(message, status=status), "auth_failed"
        elif (
            status in (400, 404, 422, 500)
            and "session" not in detail.lower()
            and _INVALID_RECIPIENT.search(detail)
        ):
            error, outcome = ChannelInvalidRecipient(message, status=status), "invalid_recipient"
        elif (status == 422 and _SESSION_NOT_READY.search(detail)) or is_retryable_status(status):
            error, outcome = ChannelUnavailable(message, status=status, retry_after=wait), "retryable"
        else:
            error, outcome = ChannelRejected(message, status=status), "permanent"
        self._log_send_failure(contact_id, status, outcome)
        return error

    @staticmethod
    def _sent_id(data: Any) -> str | None:
        """The id WAHA will use for this message in message.ack and message.any.

        GOWS answers `{"id": "true_<chat>_<id>"}`, WEBJS the whatsapp-web.js message
        (`id._serialized`), NOWEB the Baileys message with a bare `key`, from which
        WAHA builds `<fromMe>_<chat@c.us>_<id>` for its events.
        """
        if not isinstance(data, dict):
            return None
        value = data.get("id")
        if isinstance(value, str) and value.strip():
            return value.strip()
        serialized = clean(dig(data, "id", "_serialized")) or clean(dig(data, "_data", "id", "_serialized"))
        if serialized:
            return serialized
        key = data.get("key")
        if isinstance(key, dict) and clean(key.get("id")) and clean(key.get("remoteJid")):
            remote = str(key["remoteJid"]).strip()
            local, server = split_chat_id(remote)
            if server == "s.whatsapp.net":
                remote = f"{local.split(':', 1)[0]}@c.us"
            from_me = "true" if key.get("fromMe") is not False else "false"
            return f"{from_me}_{remote}_{key['id'].strip()}"
        return None

    @staticmethod
    def _log_send_failure(contact_id: str, status: int | None, what: str) -> None:
        log.warning("waha_send_failed", contact=mask_phone(contact_id), status=status, error=what)

    # -- presence subscription ------------------------------------------------------

    def _presence_chat(self, contact_id: str) -> str | None:
        try:
            return self._chat_id_for(contact_id)
        except ChannelInvalidRecipient:  # a group or a broadcast: no lead to watch
            return None

    def presence_due(self, contact_id: str) -> bool:
        """Whether to subscribe to this lead's presence now; True claims it (for
        channels/waha/presence.py's TTL), so the caller must then call `subscribe_presence`."""
        chat_id = self._presence_chat(contact_id)
        return chat_id is not None and self._presence.due(chat_id)

    async def subscribe_presence(self, session: aiohttp.ClientSession, contact_id: str) -> None:
        """POST /api/{session}/presence/{chatId}/subscribe (no body, X-Api-Key to WAHA_URL
        only; 201): WAHA then sends this chat's presence.update. Never raises for WAHA's
        failures; see channels/waha/presence.py."""
        chat_id = self._presence_chat(contact_id)
        if chat_id is None or not self._config.url:
            return
        session_name = quote(self._config.session, safe="")
        await self._presence.subscribe(
            session,
            f"{self._base_url()}/api/{session_name}/presence/{quote(chat_id, safe='@')}/subscribe",
            chat_id=chat_id,
            headers=self._headers(content_type=False),
            timeout_s=min(self._config.http_timeout_s, SUBSCRIBE_TIMEOUT_S),
            secrets=self._secrets(),
        )

    # -- number check ---------------------------------------------------------------

    async def on_whatsapp(self, session: aiohttp.ClientSession, phone: str) -> bool | None:
        """Whether `phone` has WhatsApp: GET /api/contacts/check-exists?phone=<digits>&session=<name>
        with X-Api-Key; 200 WANumberExistResult {"numberExists": bool, "chatId"?: str}
        (OpenAPI operation ContactsController_checkExists, static/swagger/openapi.json in
        github.com/devlikeapro/waha-docs).

        None when WAHA cannot tell (not configured, timeout, session not ready, another
        shape): the caller then sends and the send's own error decides. Never raises.
        """
        c = self._config
        local, server = split_chat_id(phone) if "@" in phone else (phone, "c.us")
        # A @lid (or a group) is no phone number: there is nothing to ask.
        digits = re.sub(r"\D", "", local.split(":", 1)[0]) if server in USER_SERVERS else ""
        if not c.url or not digits:
            return None
        data = await lookup(
            session,
            f"{self._base_url()}/api/contacts/check-exists",
            params={"phone": digits, "session": c.session},
            headers=self._headers(content_type=False),
            timeout=aiohttp.ClientTimeout(total=self._config.http_timeout_s),
            failed=lambda status, what: self._check_failed(digits, status, what),
        )
        if data is None:
            return None
        exists = data.get("numberExists") if isinstance(data, dict) else None
        if not isinstance(exists, bool):
            self._check_failed(digits, 200, "unexpected_body")
            return None
        return exists

    @staticmethod
    def _check_failed(phone: str, status: int | None, what: str) -> None:
        log.warning("waha_phone_check_failed", contact=mask_phone(phone), status=status, error=what)

    def _media_target(self, parsed: URL) -> URL:
        """Where to really fetch a media URL.

        WAHA builds `media.url` from its own idea of its address (WAHA_BASE_URL, else
        http://localhost:3000 by default), which from another container is not WAHA at
        all; a loopback URL under /api/files/ is therefore read as "this file on our
        WAHA". Only files: a loopback URL to WAHA's API (GET /api/sendText sends a
        message) is left as it is, and the fetch policy refuses it as loopback.
        """
        base = self._config.url
        if not base or (parsed.host or "").lower() not in _LOOPBACK_HOSTS:
            return parsed
        if not parsed.raw_path.startswith(WAHA_FILES_PATH):
            return parsed
        try:
            return URL(base.rstrip("/") + parsed.raw_path_qs, encoded=True)
        except (TypeError, ValueError):
            return parsed

    def _files_credentials(self) -> Credentials | None:
        """The API key, for WAHA's file storage only: the URL comes from a webhook and
        could point anywhere (S3 storage, or a forged payload)."""
        base, api_key = self._config.url, self._config.api_key
        if not base or api_key is None:
            return None
        try:
            parsed = parse_media_url(base, error=ValueError)
        except ValueError:
            return None
        return Credentials(
            headers={API_KEY_HEADER: api_key.get_secret_value()},
            origin=Origin.of(parsed),
            path_prefix=parsed.raw_path.rstrip("/") + WAHA_FILES_PATH,
        )

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        """Download media from WAHA's file storage (or wherever it keeps media, such as
        S3) without trusting its address or its size; see channels/media_fetch.py."""
        target = self._media_target(parse_media_url(url))
        return await MediaFetcher.from_config(self._config.media).fetch(
            target,
            max_bytes=max_bytes,
            timeout=aiohttp.ClientTimeout(total=self._config.http_timeout_s),
            credentials=self._files_credentials(),
            auth_statuses=(401, 403),
        )

    # -- doctor ---------------------------------------------------------------------

    async def probe(self, io: ProbeIO) -> ProbeResult:
        """Get session: GET /api/sessions/{name} -> {"name", "status": STOPPED|STARTING|
        SCAN_QR_CODE|WORKING|FAILED, "me": {"id", "pushName"}, ...}; auth header X-Api-Key.
        https://waha.devlike.pro/docs/how-to/sessions"""
        name = self._config.session
        reply = await io.get(
            f"{self._base_url()}/api/sessions/{quote(name, safe='')}",
            headers=self._headers(content_type=False),
        )
        if reply.status in (401, 403):
            return problem(
                "invalid token: WAHA refused the API key",
                "put in WAHA_API_KEY the same key configured on the WAHA server",
            )
        if reply.status == 404:
            return problem(
                f"session '{name}' does not exist on this WAHA",
                "create the session in the WAHA dashboard or put the right name in WAHA_SESSION",
            )
        data = reply.data if isinstance(reply.data, dict) else {}
        status = data.get("status")
        if not reply.ok or not isinstance(status, str):
            return io.unexpected(reply, ("message",), ("error",))
        status = status.upper()
        if status == "WORKING":
            me = data.get("me")
            number = str((me.get("id") if isinstance(me, dict) else None) or "").split("@")[0]
            return ok(f"session '{name}' WORKING" + (f", number {mask_phone(number)}" if number else ""))
        return problem(
            f"session '{name}' is not ready ({status})",
            _SESSION_HINTS.get(status, "check the session in the WAHA dashboard"),
        )

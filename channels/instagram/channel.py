"""Instagram Direct channel: Meta's Instagram Messaging API.

Sending follows .../instagram-platform/instagram-api-with-instagram-login/messaging-api
(`/<IG_ID>/messages` or `/me/messages`, bearer token, `{"recipient": {"id"}, "message":
{"text"}}` or `{"attachment": {"type", "payload": {"url"}}}`, answer `{"recipient_id",
"message_id"}`) and .../messaging-api/sender-actions; the profile lookup
.../messenger-platform/instagram/features/user-profile. Parsing lives in `parse`, the
payload models in `schema`, the meaning of Meta's errors in `errors`, texts cut to the
Send API's limit in `text` and files as attachments in `media`.

Instagram arrives on the same `/webhooks/meta` as the WhatsApp Cloud API (`object:
"instagram"`), signed the same way, so authentication is `meta_common.verify_signature`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from channels import meta_common
from channels.base import OutgoingMedia, ParsedWebhook, SentMessage
from channels.errors import ChannelInvalidRecipient, ChannelRejected, ChannelUnavailable
from channels.instagram.config import InstagramConfig
from channels.instagram.errors import int_or_none, send_error
from channels.instagram.media import attachment_type, attachment_url
from channels.instagram.parse import InstagramParser
from channels.instagram.text import split_text
from channels.media_fetch import MediaFetcher
from channels.webhook_helpers import clean, json_object
from core.logging import get_logger
from core.meta_graph import graph_probe_problem
from core.models import mask_phone
from core.probe import ProbeIO, ProbeResult, ok

log = get_logger(__name__)

# A typing indicator is a nicety: it must not hold a send back for long, and Meta clears
# it by itself after a while, so the pause before the real message is bounded.
TYPING_MAX_S = 8
_TYPING_TIMEOUT_S = 5.0


class InstagramChannel:
    name = "instagram"
    # Meta's standard messaging window; a human agent may answer for 7 days with the
    # HUMAN_AGENT tag (`send_text(..., human_agent=True)`).
    window_hours: int | None = 24

    def __init__(
        self,
        config: InstagramConfig,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self.rate_per_s = config.rate_per_s
        # Injected so tests can observe the typing pause without waiting for it.
        self._sleep = sleep

    @property
    def configured(self) -> bool:
        return self._config.configured

    @property
    def missing_webhook_secret(self) -> str | None:
        return "META_APP_SECRET" if self._config.app_secret is None else None

    # -- inbound --------------------------------------------------------------------

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Same app secret and header as WhatsApp Cloud: one Meta app signs both."""
        meta_common.verify_signature(self._config.app_secret, request, raw_body)

    def parse(self, payload: object) -> ParsedWebhook:
        return InstagramParser(self._config.account_id).parse(payload)

    # -- outbound -------------------------------------------------------------------

    def _token(self) -> str | None:
        token = self._config.access_token
        return token.get_secret_value() if token is not None else None

    def _graph(self, path: str) -> str:
        c = self._config
        return f"{c.graph_url.rstrip('/')}/{c.graph_version.strip('/')}/{path}"

    def _messages_url(self) -> str:
        """`/me/messages`: the node both Meta flavours document for the token's own account.

        With Instagram Login (graph.instagram.com) `me` is the IG professional account;
        with Facebook Login (graph.facebook.com, Page token) it is the linked Page, whose
        id we do not hold. Either way the token decides who sends.
        """
        return self._graph("me/messages")

    def _headers(self) -> dict[str, str]:
        # A bearer header keeps the token out of URLs, and so out of aiohttp's
        # exception texts and any access log.
        return {"Authorization": f"Bearer {self._token()}", "Content-Type": "application/json"}

    def _timeout(self, cap: float | None = None) -> aiohttp.ClientTimeout:
        total = self._config.http_timeout_s
        return aiohttp.ClientTimeout(total=min(total, cap) if cap else total)

    def _recipient(self, contact_id: str) -> str:
        if not self.configured or self._token() is None:
            raise ChannelRejected("instagram is not configured")
        recipient = (contact_id or "").strip()
        if not recipient:
            raise ChannelInvalidRecipient("instagram recipient id is empty")
        return recipient

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

        Instagram refuses a text over 1,000 bytes, so a longer one (a seller's long reply
        relayed from Chatwoot) goes as several messages cut at paragraph, sentence or word
        boundaries (channels.instagram.text), in order; the last one's id is returned. A
        piece that fails raises, and the outbox's retry sends the earlier pieces again.

        `human_agent`: a person wrote it, so it may use Meta's 7-day HUMAN_AGENT tag. The
        bot's own replies never carry it: Meta grants the tag for manual answers only.
        """
        recipient = self._recipient(contact_id)
        url = self._messages_url()

        if typing_s and typing_s > 0 and await self._typing_on(session, url, recipient):
            await self._sleep(min(float(typing_s), TYPING_MAX_S))

        sent = SentMessage(provider_message_id=None)
        for piece in split_text(text):
            sent = await self._send(session, url, recipient, {"text": piece}, human_agent=human_agent)
        return sent

    async def send_media(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        media: OutgoingMedia,
        *,
        human_agent: bool = False,
    ) -> SentMessage:
        """A file from a person at the company, as an attachment Meta fetches by URL.

        Instagram's Send API takes attachments by link only (`message.attachment` with
        `payload.url`), so the file goes as `media.url` (Chatwoot's attachment URL, which
        must be reachable from Meta); without one nothing can be sent. The caption follows
        as a text message (an attachment carries none); the file's message id is returned.
        """
        recipient = self._recipient(contact_id)
        attachment = {"type": attachment_type(media), "payload": {"url": attachment_url(media)}}
        url = self._messages_url()
        sent = await self._send(session, url, recipient, {"attachment": attachment}, human_agent=human_agent)
        caption = (media.caption or "").strip()
        if caption:
            await self.send_text(session, contact_id, caption, typing_s=0, human_agent=human_agent)
        return sent

    async def _send(
        self,
        session: aiohttp.ClientSession,
        url: str,
        recipient: str,
        message: dict[str, Any],
        *,
        human_agent: bool,
    ) -> SentMessage:
        """One Send API request; Meta's refusals become the typed errors the outbox reads."""
        body: dict[str, Any] = {"recipient": {"id": recipient}, "message": message}
        if human_agent:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = "HUMAN_AGENT"
        try:
            async with session.post(url, json=body, headers=self._headers(), timeout=self._timeout()) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
                trace_header = resp.headers.get("x-fb-trace-id")
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            self._log_send_failure(recipient, None, "timeout")
            raise ChannelUnavailable("instagram send timed out") from None
        except aiohttp.ClientError as exc:
            self._log_send_failure(recipient, None, type(exc).__name__)
            raise ChannelUnavailable(f"instagram send transport error: {type(exc).__name__}") from None

        data = json_object(raw)
        if not 200 <= status < 300 or isinstance(data.get("error"), dict):
            error, what = send_error(status, data, raw, trace_header, self._secrets())
            self._log_send_failure(
                recipient, status, what, code=error.code, subcode=error.subcode, fbtrace_id=error.fbtrace_id
            )
            raise error
        message_id = data.get("message_id")
        if not isinstance(message_id, str) or not message_id.strip():
            # Accepted but unidentified: report success, a resend would duplicate it.
            return SentMessage(provider_message_id=None)
        return SentMessage(provider_message_id=message_id.strip())

    async def _typing_on(self, session: aiohttp.ClientSession, url: str, recipient: str) -> bool:
        """Show "typing…"; a failure here must never cost the lead the real message."""
        body = {"recipient": {"id": recipient}, "sender_action": "typing_on"}
        try:
            async with session.post(
                url, json=body, headers=self._headers(), timeout=self._timeout(_TYPING_TIMEOUT_S)
            ) as resp:
                if 200 <= resp.status < 300:
                    return True
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("instagram_typing_failed", contact=mask_phone(recipient), error=type(exc).__name__)
            return False
        log.info("instagram_typing_failed", contact=mask_phone(recipient), status=status)
        return False

    def _secrets(self) -> list[str]:
        token = self._token()
        return [token] if token else []

    @staticmethod
    def _log_send_failure(contact_id: str, status: int | None, what: str, **extra: Any) -> None:
        event = "instagram_auth_failed" if what == "auth" else "instagram_send_failed"
        (log.error if what == "auth" else log.warning)(
            event, contact=mask_phone(contact_id), status=status, error=what, **extra
        )

    async def fetch_profile_name(self, session: aiohttp.ClientSession, igsid: str) -> str | None:
        """The lead's display name (or @username), fetched once and cached by the caller.

        Webhooks carry no name, and a missing name must never block a conversation, so
        every failure is logged and answered with None.
        """
        contact = (igsid or "").strip()
        token = self._token()
        if token is None or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", contact):
            return None
        url = self._graph(contact)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with session.get(
                url, params={"fields": "name,username"}, headers=headers, timeout=self._timeout()
            ) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("instagram_profile_failed", contact=mask_phone(contact), error=type(exc).__name__)
            return None
        data = json_object(raw)
        if not 200 <= status < 300 or isinstance(data.get("error"), dict):
            found = data.get("error")
            error: dict[str, Any] = found if isinstance(found, dict) else {}
            log.warning(
                "instagram_profile_failed",
                contact=mask_phone(contact),
                status=status,
                code=int_or_none(error.get("code")),
                fbtrace_id=clean(error.get("fbtrace_id")),
            )
            return None
        name = clean(data.get("name"))
        username = clean(data.get("username"))
        return name or username

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        """Download an attachment's CDN URL without trusting its size.

        Meta's attachment URLs (lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=…&signature=…)
        are pre-signed and need no credentials; the token is never sent, since the URL is
        whatever the webhook said and may point anywhere (channels/media_fetch.py decides
        which addresses it may reach).
        """
        return await MediaFetcher.from_config(self._config.media).fetch(
            url, max_bytes=max_bytes, timeout=self._timeout()
        )

    # -- doctor ---------------------------------------------------------------------

    async def probe(self, io: ProbeIO) -> ProbeResult:
        """GET /{version}/{ig-user-id}?fields=username (bearer): the IG User node, read-only.
        https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user"""
        reply = await io.get(
            self._graph(self._config.account_id or ""),
            params={"fields": "username"},
            headers={"Authorization": f"Bearer {self._token() or ''}"},
        )
        data = reply.data if isinstance(reply.data, dict) else {}
        if not reply.ok:
            return graph_probe_problem(
                io,
                reply,
                id_label="Instagram account ID",
                id_env="INSTAGRAM_ACCOUNT_ID",
                token_env="INSTAGRAM_ACCESS_TOKEN",
                permission="instagram_manage_messages (or instagram_business_manage_messages)",
            )
        if not data.get("username"):
            return io.unexpected(reply)
        return ok(f"account @{data['username']}")

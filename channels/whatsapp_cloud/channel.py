"""WhatsApp Cloud API channel: Meta's official WhatsApp Business Platform.

Shapes follow Meta's published references (developers.facebook.com/documentation/
business-messaging/whatsapp/...): webhooks/reference/messages/*, smb_message_echoes,
business-scoped-user-ids, typing-indicators, business-phone-numbers/media and
support/error-codes, and Meta's business-messaging OpenAPI (facebook/openapi). Parsing
lives in `parse`, the payload models in `schema`, the meaning of Graph errors in
`errors`, request bodies in `messages` and where media may be fetched in `media`; this
module holds what needs the config (`WhatsAppCloudConfig`) and the token: signature
checks (shared with Instagram in `channels.meta_common`), sending text, templates and
files, read receipts, media downloads and the doctor's probe.

Media is not a URL in the webhook but a media id that needs our bearer token; it is
carried as `whatsapp-media:<id>` and only this module ever attaches the token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

from channels import meta_common
from channels.base import OutgoingMedia, ParsedWebhook, SentMessage
from channels.errors import ChannelInvalidRecipient, ChannelRejected, ChannelUnavailable, MediaTooLarge
from channels.media_fetch import Credentials, MediaFetcher, Origin
from channels.meta_common import MetaApiError
from channels.webhook_helpers import json_or_none
from channels.whatsapp_cloud.config import WhatsAppCloudConfig
from channels.whatsapp_cloud.errors import as_int, graph_error
from channels.whatsapp_cloud.media import download_url, media_id_of
from channels.whatsapp_cloud.messages import check_media, media_object, template_components, upload_form
from channels.whatsapp_cloud.parse import MEDIA_ID, digits, is_bsuid, parse_webhook
from core.errors import ProviderError
from core.logging import get_logger
from core.meta_graph import graph_probe_problem
from core.models import mask_phone
from core.probe import ProbeIO, ProbeResult, ok

log = get_logger(__name__)

# Meta's documented limit for a text message body.
TEXT_MAX_CHARS = 4096


class WhatsAppCloudChannel:
    name = "whatsapp_cloud"
    window_hours: int | None = 24  # Meta's customer-service window; outside it only templates go out

    def __init__(self, config: WhatsAppCloudConfig) -> None:
        self._config = config
        self.rate_per_s = config.rate_per_s

    @property
    def configured(self) -> bool:
        return self._config.configured

    @property
    def missing_webhook_secret(self) -> str | None:
        return "META_APP_SECRET" if self._config.app_secret is None else None

    # -- inbound --------------------------------------------------------------------

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Meta signs every POST with the app secret; nothing unsigned may reach the bot."""
        meta_common.verify_signature(self._config.app_secret, request, raw_body)

    def parse(self, payload: object) -> ParsedWebhook:
        return parse_webhook(payload, phone_number_id=self._config.phone_number_id)

    # -- outbound -------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        c = self._config
        return [secret.get_secret_value() for secret in (c.access_token, c.app_secret) if secret is not None]

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self._config.http_timeout_s)

    def _graph(self, *parts: str) -> str:
        c = self._config
        base = c.graph_url.rstrip("/")
        version = c.graph_version.strip("/")
        return "/".join([base, version, *parts])

    def _auth_headers(self) -> dict[str, str]:
        token = self._config.access_token
        assert token is not None  # guarded by _require_config
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

    def _require_config(self, op: str) -> str:
        c = self._config
        if not (c.phone_number_id and c.access_token):
            raise ChannelRejected(f"whatsapp_cloud {op}: channel is not configured")
        return c.phone_number_id.strip()

    @staticmethod
    def _recipient(contact_id: str) -> dict[str, str]:
        """Phones go in `to`; a business-scoped user id (username users) in `recipient`."""
        value = (contact_id or "").strip()
        if is_bsuid(value):
            return {"recipient": value}
        number = digits(value)
        if not number or len(number) < 8 or len(number) > 15:
            raise ChannelInvalidRecipient(
                "whatsapp_cloud: contact id is neither a phone number nor a business-scoped user id"
            )
        return {"to": number}

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

        `typing_s` has no equivalent here: the Cloud API shows "typing..." only through
        `mark_read(..., typing=True)` on the lead's message, and nothing here sleeps.
        `human_agent` is an Instagram tag; WhatsApp has no such concept.
        """
        phone_number_id = self._require_config("send_text")
        if not text or not text.strip():
            raise ChannelRejected("whatsapp_cloud send_text: empty text")
        if len(text) > TEXT_MAX_CHARS:
            raise ChannelRejected(
                f"whatsapp_cloud send_text: text has {len(text)} characters, "
                f"WhatsApp accepts at most {TEXT_MAX_CHARS}"
            )
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **self._recipient(contact_id),
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }
        data = await self._post_messages(session, phone_number_id, body, "send_text", contact_id)
        return SentMessage(provider_message_id=self._sent_id(data))

    async def send_template(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        *,
        name: str,
        language: str | None = None,
        parameters: Sequence[str] = (),
    ) -> SentMessage:
        """An approved template: the only thing Meta delivers outside the 24-hour window.

        `language` defaults to WHATSAPP_TEMPLATE_LANGUAGE; it must match a language the
        template was approved in, or Meta answers 132001 (template does not exist).
        `parameters` fill the body's {{1}}, {{2}}... in order; without any the template
        goes without `components`, as a template approved with no variables must.
        """
        phone_number_id = self._require_config("send_template")
        template_name = (name or "").strip()
        if not template_name:
            raise ChannelRejected("whatsapp_cloud send_template: template name is empty")
        code = (language or self._config.template_language or "").strip()
        if not code:
            raise ChannelRejected("whatsapp_cloud send_template: template language is empty")
        template: dict[str, Any] = {"name": template_name, "language": {"code": code}}
        components = template_components(parameters)
        if components:
            template["components"] = components
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **self._recipient(contact_id),
            "type": "template",
            "template": template,
        }
        data = await self._post_messages(session, phone_number_id, body, "send_template", contact_id)
        return SentMessage(provider_message_id=self._sent_id(data))

    async def send_media(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        media: OutgoingMedia,
        *,
        human_agent: bool = False,
    ) -> SentMessage:
        """A file from a person at the company: uploaded to Meta, then sent by its media id.

        Upload first (POST /{phone-number-id}/media) because a link would make Meta fetch
        the file from Chatwoot, which it cannot reach or must not be given. An audio takes
        no caption and a caption over 1,024 characters does not fit, so those follow the
        file as a text message. The file's message id is returned: it is the message the
        person sent. If that caption text fails after the file went out, the error is
        raised so the outbox retries or records it, and a retry sends the file again.
        `human_agent` is an Instagram tag; WhatsApp has no such concept.
        """
        phone_number_id = self._require_config("send_media")
        recipient = self._recipient(contact_id)
        check_media(media)
        caption = (media.caption or "").strip()
        if len(caption) > TEXT_MAX_CHARS:
            raise ChannelRejected(
                f"whatsapp_cloud send_media: caption has {len(caption)} characters, "
                f"WhatsApp accepts at most {TEXT_MAX_CHARS}"
            )
        media_id = await self._upload(session, phone_number_id, media, contact_id)
        obj, trailing_caption = media_object(media, media_id)
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **recipient,
            "type": media.kind,
            media.kind: obj,
        }
        data = await self._post_messages(session, phone_number_id, body, "send_media", contact_id)
        sent = SentMessage(provider_message_id=self._sent_id(data))
        if trailing_caption:
            await self.send_text(session, contact_id, trailing_caption, typing_s=0)
        return sent

    async def _upload(
        self, session: aiohttp.ClientSession, phone_number_id: str, media: OutgoingMedia, contact_id: str
    ) -> str:
        """The media id Meta gives the uploaded file (valid for 30 days, for this number)."""
        url = self._graph(phone_number_id, "media")
        data = await self._call(session, "POST", url, "upload_media", contact_id, data=upload_form(media))
        media_id = data.get("id")
        if not isinstance(media_id, str) or not MEDIA_ID.fullmatch(media_id.strip()):
            # Nothing was sent to the lead yet, so a retry (a new upload) is harmless.
            raise ChannelUnavailable("whatsapp_cloud upload_media: Meta answered without a media id")
        return media_id.strip()

    async def mark_read(
        self, session: aiohttp.ClientSession, message_id: str, *, typing: bool = False
    ) -> None:
        """Blue ticks on the lead's message and, with `typing`, the "typing..." bubble.

        Meta dismisses the indicator when we reply or after 25 seconds, so call it right
        before the turn's reply, and only when a reply will follow.
        """
        phone_number_id = self._require_config("mark_read")
        message_id = (message_id or "").strip()
        if not message_id:
            raise ChannelRejected("whatsapp_cloud mark_read: empty message id")
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        }
        if typing:
            body["typing_indicator"] = {"type": "text"}
        await self._post_messages(session, phone_number_id, body, "mark_read", None)

    @staticmethod
    def _sent_id(data: dict[str, Any]) -> str | None:
        messages = data.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            message_id = messages[0].get("id")
            if isinstance(message_id, str) and message_id.strip():
                return message_id.strip()
        # Accepted but unidentified: report success, a resend would duplicate it.
        return None

    async def _post_messages(
        self,
        session: aiohttp.ClientSession,
        phone_number_id: str,
        body: dict[str, Any],
        op: str,
        contact_id: str | None,
    ) -> dict[str, Any]:
        url = self._graph(phone_number_id, "messages")
        return await self._call(
            session, "POST", url, op, contact_id, json=body, headers={"Content-Type": "application/json"}
        )

    async def _call(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        op: str,
        contact_id: str | None,
        *,
        headers: dict[str, str] | None = None,
        require_object: bool = False,
        **request: Any,
    ) -> dict[str, Any]:
        """One Graph request with the bearer token; Meta's refusals become typed errors.

        `require_object`: a 2xx without a JSON object is Meta misbehaving, worth a retry,
        where a send's empty answer is taken as accepted (a resend would duplicate it)."""
        headers = {**self._auth_headers(), **(headers or {})}
        try:
            async with session.request(
                method, url, headers=headers, timeout=self._timeout(), **request
            ) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            self._log_failure(op, contact_id, None, None, "timeout")
            raise ChannelUnavailable(f"whatsapp_cloud {op} timed out") from None
        except aiohttp.ClientError as exc:
            self._log_failure(op, contact_id, None, None, type(exc).__name__)
            raise ChannelUnavailable(f"whatsapp_cloud {op} transport error: {type(exc).__name__}") from None

        data = json_or_none(raw)
        if not 200 <= status < 300 or (isinstance(data, dict) and isinstance(data.get("error"), dict)):
            error = self._error(op, status, raw, data)
            self._log_failure(
                op, contact_id, status, error.code, "retryable" if error.retryable else "permanent"
            )
            raise error
        if isinstance(data, dict):
            return data
        if require_object:
            raise ChannelUnavailable(f"whatsapp_cloud {op}: Meta answered without a JSON object")
        return {}

    def _error(self, op: str, status: int, raw: str, data: Any) -> MetaApiError:
        return graph_error(op, status, raw, data, self._secrets())

    @staticmethod
    def _log_failure(
        op: str, contact_id: str | None, status: int | None, code: int | None, what: str
    ) -> None:
        log.warning(
            "whatsapp_cloud_send_failed",
            op=op,
            contact=mask_phone(contact_id) if contact_id else "-",
            status=status,
            code=code,
            error=what,
        )

    # -- media ----------------------------------------------------------------------

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        """Resolve a `whatsapp-media:<id>` and download it without trusting its size.

        Two steps because Meta only hands out a short-lived (5 minutes) URL for a media
        id, and both the lookup and the download need the bearer token. The lookup names
        our phone number (`phone_number_id`), so Meta answers only for media that number
        received; the download goes only to Meta's media CDN (channels.whatsapp_cloud.media).
        """
        media_id = media_id_of(url)
        phone_number_id = self._require_config("fetch_media")
        op = f"media lookup {media_id}"
        info = await self._call(
            session,
            "GET",
            self._graph(media_id),
            op,
            None,
            params={"phone_number_id": phone_number_id},
            require_object=True,
        )
        target = download_url(info, media_id, graph_url=self._config.graph_url)
        declared = as_int(info.get("file_size"))
        if declared is not None and declared > max_bytes:
            raise MediaTooLarge(f"whatsapp_cloud media {media_id} is {declared} bytes, limit is {max_bytes}")

        async def refused(resp: aiohttp.ClientResponse) -> ProviderError:
            # Meta explains a refused download in its error JSON, like any Graph call.
            raw = await resp.text(errors="replace")
            return self._error(f"media download from {target.host}", resp.status, raw, json_or_none(raw))

        # The token goes to the origin Meta named for this file, and no further: a
        # redirect elsewhere (or back inside the network) gets neither token nor trust.
        return await MediaFetcher.from_config(self._config.media).fetch(
            target,
            max_bytes=max_bytes,
            timeout=self._timeout(),
            credentials=Credentials(headers=self._auth_headers(), origin=Origin.of(target)),
            label=f"whatsapp_cloud media {media_id}",
            prefix="whatsapp_cloud ",
            http_error=refused,
        )

    # -- doctor ---------------------------------------------------------------------

    async def probe(self, io: ProbeIO) -> ProbeResult:
        """GET /{version}/{phone-number-id}?fields=display_phone_number,verified_name
        (bearer): the WhatsApp Business phone number node, read-only.
        https://developers.facebook.com/documentation/business-messaging/whatsapp/reference/whatsapp-business-phone-number/whatsapp-business-account-phone-number-api"""
        token = self._config.access_token
        reply = await io.get(
            self._graph(self._config.phone_number_id or ""),
            params={"fields": "display_phone_number,verified_name"},
            headers={"Authorization": f"Bearer {token.get_secret_value() if token is not None else ''}"},
        )
        data = reply.data if isinstance(reply.data, dict) else {}
        if not reply.ok:
            return graph_probe_problem(
                io,
                reply,
                id_label="phone number ID",
                id_env="WHATSAPP_PHONE_NUMBER_ID",
                token_env="WHATSAPP_ACCESS_TOKEN",
                permission="whatsapp_business_messaging (and whatsapp_business_management)",
            )
        if "display_phone_number" not in data and "verified_name" not in data:
            return io.unexpected(reply)
        number = mask_phone(str(data.get("display_phone_number") or ""))
        name = data.get("verified_name")
        return ok(f"number {number}" + (f", verified name '{name}'" if name else ""))

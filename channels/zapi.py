"""Z-API channel: WhatsApp through the Brazilian Z-API gateway.

Payload shapes follow Z-API's published docs (developer.z-api.io, mirrored in the
github.com/Z-API/z-api-docs repo: docs/webhooks/on-message-received.md,
on-whatsapp-message-status-changes.md, on-message-send.md, docs/message/send-message-text.md).
The webhook body is untrusted input: every field may be missing, null or of the wrong
type, so it is validated with pydantic and anything unusable becomes a 4xx
`WebhookRejected`, never a 500 that would make Z-API retry the same poison forever.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from channels.base import ParsedWebhook, SentMessage
from channels.media_fetch import MediaFetcher
from channels.provider_http import (
    MediaTooLarge,
    error_detail,
    is_retryable_status,
    scrub,
)
from core.errors import SendError, WebhookRejected
from core.logging import get_logger
from core.models import AdReferral, IgnoredEvent, InboundMessage, MessageKind, mask_phone
from core.secret_compare import secrets_match
from core.settings import Settings

log = get_logger(__name__)

# Z-API documents delayTyping/delayMessage as "a range of 1~15 sec"; values outside it
# are refused or silently altered by the provider, so we clamp before sending.
DELAY_MIN_S = 1
DELAY_MAX_S = 15

_ERROR_DETAIL_MAX = 200

# Event types Z-API posts besides received messages; none of them is something to
# answer, but each is acknowledged (2xx) so the provider does not keep retrying.
_NON_MESSAGE_REASONS = {
    "messagestatuscallback": "status",
    "deliverycallback": "delivery",
    "presencechatcallback": "presence",
    "connectedcallback": "connection",
    "disconnectedcallback": "connection",
}


# --- webhook payload models --------------------------------------------------------
# Z-API adds fields regularly; unknown keys are ignored so a new field never breaks us,
# while a known field with the wrong type is a 422 (the body is not what Z-API sends).


class _Block(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ZText(_Block):
    message: str | None = None
    # Present on link previews and on messages that come from an ad click.
    description: str | None = None
    title: str | None = None
    url: str | None = None


class ZAudio(_Block):
    audioUrl: str | None = None
    mimeType: str | None = None
    ptt: bool | None = None
    seconds: float | None = None
    viewOnce: bool | None = None


class ZImage(_Block):
    imageUrl: str | None = None
    thumbnailUrl: str | None = None
    caption: str | None = None
    mimeType: str | None = None
    viewOnce: bool | None = None


class ZDocument(_Block):
    documentUrl: str | None = None
    fileName: str | None = None
    mimeType: str | None = None
    caption: str | None = None
    title: str | None = None
    # The docs' table says string, their example sends a number.
    pageCount: int | str | None = None


class ZVideo(_Block):
    videoUrl: str | None = None
    caption: str | None = None
    mimeType: str | None = None


class ZSticker(_Block):
    stickerUrl: str | None = None
    mimeType: str | None = None


class ZLocation(_Block):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class ZContact(_Block):
    displayName: str | None = None
    vCard: str | None = None
    phones: list[str] | None = None


class ZButtonsResponse(_Block):
    buttonId: str | None = None
    message: str | None = None


class ZListResponse(_Block):
    # `title` is the chosen row's title, `message` its description (see send-option-list).
    message: str | None = None
    title: str | None = None
    selectedRowId: str | None = None


class ZReferencedMessage(_Block):
    messageId: str | None = None
    fromMe: bool | None = None
    phone: str | None = None


class ZReaction(_Block):
    value: str | None = None
    time: int | None = None
    reactionBy: str | None = None
    referencedMessage: ZReferencedMessage | None = None


class ZExternalAdReply(_Block):
    """Click-to-WhatsApp ad context ("Exemplo de retorno de texto vindos de anúncio")."""

    title: str | None = None
    body: str | None = None
    sourceType: str | None = None
    sourceId: str | None = None
    sourceUrl: str | None = None
    thumbnailUrl: str | None = None
    # Not in Z-API's docs; kept in case their payload starts forwarding Meta's click id.
    ctwaClid: str | None = None


class ZPollOption(_Block):
    name: str | None = None


class ZPollVote(_Block):
    pollMessageId: str | None = None
    options: list[ZPollOption] | None = None


class ZReceivedCallback(_Block):
    type: str
    messageId: str | None = None
    phone: str | None = None
    connectedPhone: str | None = None
    instanceId: str | None = None
    isGroup: bool | None = None
    isNewsletter: bool | None = None
    broadcast: bool | None = None
    fromMe: bool | None = None
    fromApi: bool | None = None
    waitingMessage: bool | None = None
    isStatusReply: bool | None = None
    isEdit: bool | None = None
    # Z-API spells it "momment" (ms epoch); one doc example says "moment", other
    # integrations forward "timestamp" (seconds).
    momment: float | None = None
    moment: float | None = None
    timestamp: float | None = None
    status: str | None = None
    senderName: str | None = None
    chatName: str | None = None
    participantPhone: str | None = None
    referenceMessageId: str | None = None
    notification: str | None = None

    text: ZText | None = None
    audio: ZAudio | None = None
    image: ZImage | None = None
    document: ZDocument | None = None
    video: ZVideo | None = None
    sticker: ZSticker | None = None
    location: ZLocation | None = None
    contact: ZContact | None = None
    buttonsResponseMessage: ZButtonsResponse | None = None
    listResponseMessage: ZListResponse | None = None
    reaction: ZReaction | None = None
    pollVote: ZPollVote | None = None
    externalAdReply: ZExternalAdReply | None = None

    def has_content(self) -> bool:
        return any(
            block is not None
            for block in (
                self.text,
                self.audio,
                self.image,
                self.document,
                self.video,
                self.sticker,
                self.location,
                self.contact,
                self.buttonsResponseMessage,
                self.listResponseMessage,
                self.reaction,
                self.pollVote,
            )
        )


# --- helpers -----------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid Z-API payload: " + "; ".join(parts)


def _epoch_to_datetime(value: float | None) -> datetime | None:
    """Z-API sends ms in `momment` but seconds in a few events; tell them apart by size.

    An unusable number falls back to "now" rather than rejecting: losing a lead's
    message over a bad clock value would be worse than a slightly wrong timestamp.
    """
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    seconds = value / 1000 if value > 1e11 else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _contact_identity(raw_phone: str) -> tuple[str, str | None]:
    """Return (contact_id, phone digits) for a Z-API `phone` value.

    WhatsApp may hide the number behind a LID ("123@lid"); the LID is kept whole as the
    contact id (it is what Z-API accepts back) and there is no phone to record.
    """
    value = raw_phone.strip()
    if value.lower().endswith("@lid"):
        return value.lower(), None
    local = value.split("@", 1)[0]
    digits = re.sub(r"\D", "", local)
    if not digits:
        raise WebhookRejected(422, "invalid Z-API payload: phone has no digits")
    return digits, digits


def _format_coord(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


_VCARD_WAID = re.compile(r"waid=(\d+)")


def _contact_phones(contact: ZContact) -> list[str]:
    phones = [p for p in (contact.phones or []) if p and p.strip()]
    if not phones and contact.vCard:
        phones = _VCARD_WAID.findall(contact.vCard)
    return phones


# Z-API words its refusals as `{"error": ...}` or `{"message": ...}`.
_ERROR_PATHS = (("error",), ("message",), ("detail",))


# --- the channel -------------------------------------------------------------------


class ZapiChannel:
    name = "zapi"
    window_hours = None  # Z-API rides on a phone: no customer-service window

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.rate_per_s = settings.zapi_rate_per_s

    @property
    def configured(self) -> bool:
        return self._settings.zapi_configured

    @property
    def missing_webhook_secret(self) -> str | None:
        return "ZAPI_WEBHOOK_SECRET" if self._settings.zapi_webhook_secret is None else None

    # -- inbound --------------------------------------------------------------------

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Z-API signs nothing, so a shared secret in the webhook URL is the only proof.

        Z-API cannot add custom headers to its webhook calls, hence `?token=` is the
        practical option; the headers are accepted for proxies that inject them.
        """
        secret = self._settings.zapi_webhook_secret
        if secret is None:
            # Closed by default: an open route would let anyone make the bot message any
            # number from the company's WhatsApp, spend LLM turns and pause leads.
            raise WebhookRejected(
                403, "ZAPI_WEBHOOK_SECRET is not set: Z-API webhooks are refused until it is"
            )
        expected = secret.get_secret_value().encode()
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
        # Compare every candidate so timing does not reveal which one was tried.
        ok = False
        for candidate in candidates:
            if secrets_match(candidate, expected):
                ok = True
        if not ok:
            raise WebhookRejected(401, "invalid or missing webhook token")

    def parse(self, payload: object) -> ParsedWebhook:
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "Z-API webhook body must be a JSON object")
        event_type = payload.get("type")
        if event_type is None:
            raise WebhookRejected(422, "invalid Z-API payload: missing 'type'")
        if not isinstance(event_type, str):
            raise WebhookRejected(422, "invalid Z-API payload: 'type' must be a string")

        normalized = event_type.strip().lower()
        if normalized != "receivedcallback":
            reason = _NON_MESSAGE_REASONS.get(normalized, "not_a_message")
            return ParsedWebhook(ignored=self._non_message_events(payload, reason))

        try:
            event = ZReceivedCallback.model_validate(payload)
        except ValidationError as exc:
            raise WebhookRejected(422, _describe_validation_error(exc)) from None
        return self._parse_received(event)

    def _non_message_events(self, payload: dict[str, Any], reason: str) -> list[IgnoredEvent]:
        # Status callbacks carry a list of ids; keep them so a delivery tracker can use them.
        ids = payload.get("ids")
        if isinstance(ids, list):
            str_ids = [i for i in ids if isinstance(i, str) and i]
            if str_ids:
                return [IgnoredEvent(reason=reason, provider_message_id=i) for i in str_ids]
        message_id = payload.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            message_id = None
        return [IgnoredEvent(reason=reason, provider_message_id=message_id)]

    def _parse_received(self, event: ZReceivedCallback) -> ParsedWebhook:
        message_id = _clean(event.messageId)
        if message_id is None:
            raise WebhookRejected(422, "invalid Z-API payload: missing messageId")
        raw_phone = _clean(event.phone)
        if raw_phone is None:
            raise WebhookRejected(422, "invalid Z-API payload: missing phone")
        lowered = raw_phone.lower()

        def ignored(reason: str) -> ParsedWebhook:
            return ParsedWebhook(ignored=[IgnoredEvent(reason=reason, provider_message_id=message_id)])

        if event.isNewsletter or lowered.endswith("@newsletter"):
            return ignored("newsletter")
        if event.isGroup or lowered.endswith("-group") or lowered.endswith("@g.us"):
            return ignored("group")
        if event.broadcast or lowered.endswith("@broadcast"):
            return ignored("broadcast")
        if event.notification and not event.has_content():
            # Calls, group membership, encryption notices...: events, not words to answer.
            return ignored("notification")
        if event.waitingMessage and not event.has_content():
            # WhatsApp could not decrypt it yet ("Aguardando mensagem"); nothing to read.
            return ignored("waiting_message")

        message = self._to_inbound(event, message_id, raw_phone)
        if message.from_me:
            return ParsedWebhook(
                ignored=[IgnoredEvent(reason="from_me", provider_message_id=message_id, message=message)]
            )
        return ParsedWebhook(messages=[message])

    def _to_inbound(self, event: ZReceivedCallback, message_id: str, raw_phone: str) -> InboundMessage:
        contact_id, phone = _contact_identity(raw_phone)
        from_me = bool(event.fromMe)
        fields = self._content(event)

        sender = _clean(event.senderName)
        chat = _clean(event.chatName)
        # On our own messages senderName is the business; the chat name is the lead.
        candidates = [chat] if from_me else [sender, chat]
        name = next((n for n in candidates if n and n != phone), None)

        epoch = next((v for v in (event.momment, event.moment, event.timestamp) if v is not None), None)
        stamp = _epoch_to_datetime(epoch)
        reply_to = _clean(event.referenceMessageId)
        if reply_to is None and event.reaction and event.reaction.referencedMessage:
            reply_to = _clean(event.reaction.referencedMessage.messageId)

        if stamp is not None:
            fields["timestamp"] = stamp
        try:
            return InboundMessage(
                channel=self.name,
                contact_id=contact_id,
                phone=phone,
                name=name,
                provider_message_id=message_id,
                referral=self._referral(event),
                from_me=from_me,
                is_group=False,
                reply_to_provider_id=reply_to,
                **fields,
            )
        except ValidationError as exc:
            raise WebhookRejected(422, _describe_validation_error(exc)) from None

    @staticmethod
    def _referral(event: ZReceivedCallback) -> AdReferral | None:
        ad = event.externalAdReply
        if ad is None:
            return None
        referral = AdReferral(
            ctwa_clid=_clean(ad.ctwaClid),
            source_id=_clean(ad.sourceId),
            source_url=_clean(ad.sourceUrl),
            source_type=_clean(ad.sourceType),
            headline=_clean(ad.title),
        )
        if not any(referral.model_dump().values()):
            return None
        return referral

    @staticmethod
    def _content(event: ZReceivedCallback) -> dict[str, Any]:
        """Map the one content block Z-API sent to the channel-neutral fields."""
        if event.reaction is not None:
            return {"kind": MessageKind.REACTION, "text": _clean(event.reaction.value)}
        if event.buttonsResponseMessage is not None:
            button = event.buttonsResponseMessage
            return {
                "kind": MessageKind.BUTTON_REPLY,
                "text": _clean(button.message) or _clean(button.buttonId),
            }
        if event.listResponseMessage is not None:
            row = event.listResponseMessage
            return {
                "kind": MessageKind.LIST_REPLY,
                "text": _clean(row.title) or _clean(row.message) or _clean(row.selectedRowId),
            }
        if event.audio is not None:
            return {
                "kind": MessageKind.AUDIO,
                "media_url": _clean(event.audio.audioUrl),
                "media_mime": _clean(event.audio.mimeType),
            }
        if event.image is not None:
            return {
                "kind": MessageKind.IMAGE,
                "media_url": _clean(event.image.imageUrl),
                "media_mime": _clean(event.image.mimeType),
                "media_caption": _clean(event.image.caption),
            }
        if event.video is not None:
            return {
                "kind": MessageKind.VIDEO,
                "media_url": _clean(event.video.videoUrl),
                "media_mime": _clean(event.video.mimeType),
                "media_caption": _clean(event.video.caption),
            }
        if event.document is not None:
            doc = event.document
            return {
                "kind": MessageKind.DOCUMENT,
                "media_url": _clean(doc.documentUrl),
                "media_mime": _clean(doc.mimeType),
                "media_caption": _clean(doc.caption),
                "file_name": _clean(doc.fileName) or _clean(doc.title),
            }
        if event.sticker is not None:
            return {
                "kind": MessageKind.STICKER,
                "media_url": _clean(event.sticker.stickerUrl),
                "media_mime": _clean(event.sticker.mimeType),
            }
        if event.location is not None:
            loc = event.location
            label = " - ".join(p for p in (_clean(loc.name), _clean(loc.address)) if p)
            coords = ""
            if loc.latitude is not None and loc.longitude is not None:
                if math.isfinite(loc.latitude) and math.isfinite(loc.longitude):
                    coords = f"({_format_coord(loc.latitude)}, {_format_coord(loc.longitude)})"
            body = " ".join(p for p in (label, coords) if p) or "compartilhada"
            return {"kind": MessageKind.LOCATION, "text": f"Localização: {body}"}
        if event.contact is not None:
            contact = event.contact
            parts = [p for p in (_clean(contact.displayName), ", ".join(_contact_phones(contact))) if p]
            return {
                "kind": MessageKind.CONTACT,
                "text": "Contato compartilhado: " + (" ".join(parts) if parts else "sem dados"),
            }
        if event.pollVote is not None:
            chosen = [o.name.strip() for o in (event.pollVote.options or []) if o.name and o.name.strip()]
            return {
                "kind": MessageKind.OTHER,
                "text": ("Resposta de enquete: " + ", ".join(chosen)) if chosen else None,
            }
        if event.text is not None:
            return {"kind": MessageKind.TEXT, "text": _clean(event.text.message)}
        return {"kind": MessageKind.OTHER}

    # -- outbound -------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        s = self._settings
        values = [
            secret.get_secret_value()
            for secret in (s.zapi_instance_token, s.zapi_client_token)
            if secret is not None
        ]
        # Not a secret on its own, but with it in an error the URL could be rebuilt.
        if s.zapi_instance_id:
            values.append(s.zapi_instance_id)
        return values

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self._settings.http_timeout_s)

    async def send_text(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        text: str,
        *,
        typing_s: int,
        human_agent: bool = False,
    ) -> SentMessage:
        """One attempt only: the outbox owns retries, so errors say whether to retry."""
        s = self._settings
        if not (s.zapi_instance_id and s.zapi_instance_token):
            raise SendError("zapi is not configured", retryable=False)
        base = s.zapi_base_url.rstrip("/")
        url = (
            f"{base}/instances/{s.zapi_instance_id}"
            f"/token/{s.zapi_instance_token.get_secret_value()}/send-text"
        )
        body: dict[str, Any] = {"phone": contact_id, "message": text}
        # Z-API's default is no "typing..." at all; only a positive wish is sent, clamped
        # to the documented 1..15 s.
        if typing_s and typing_s > 0:
            body["delayTyping"] = max(DELAY_MIN_S, min(DELAY_MAX_S, int(round(typing_s))))
        headers = {"Content-Type": "application/json"}
        if s.zapi_client_token is not None:
            headers["Client-Token"] = s.zapi_client_token.get_secret_value()

        try:
            async with session.post(url, json=body, headers=headers, timeout=self._timeout()) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            self._log_send_failure(contact_id, None, "timeout")
            raise SendError("zapi send-text timed out", retryable=True) from None
        except aiohttp.ClientError as exc:
            # The exception text can carry the URL, which embeds the instance token.
            self._log_send_failure(contact_id, None, type(exc).__name__)
            raise SendError(f"zapi send-text transport error: {type(exc).__name__}", retryable=True) from None

        if not 200 <= status < 300:
            detail = scrub(error_detail(raw, _ERROR_PATHS), self._secrets())[:_ERROR_DETAIL_MAX]
            retryable = is_retryable_status(status)
            self._log_send_failure(contact_id, status, "retryable" if retryable else "permanent")
            message = f"zapi send-text failed: HTTP {status}"
            raise SendError(
                f"{message}: {detail}" if detail else message,
                status=status,
                retryable=retryable,
                auth_failed=status in (401, 403),
                # Z-API answers 400 for numbers that are not on WhatsApp.
                invalid_recipient=status in (400, 404) and "phone" in detail.lower(),
            )

        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        message_id = data.get("messageId") or data.get("id")
        if not isinstance(message_id, str) or not message_id:
            error = data.get("error")
            if isinstance(error, str) and error.strip():
                # A 2xx that still says "error" and has no id: nothing was sent.
                detail = scrub(error.strip(), self._secrets())[:_ERROR_DETAIL_MAX]
                raise SendError(f"zapi send-text refused: {detail}", status=status, retryable=False)
            # Accepted but unidentified: report success, a resend would duplicate it.
            message_id = None
        return SentMessage(provider_message_id=message_id)

    @staticmethod
    def _log_send_failure(contact_id: str, status: int | None, what: str) -> None:
        log.warning("zapi_send_failed", contact=mask_phone(contact_id), status=status, error=what)

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        """Download a Z-API media URL (public storage, kept 30 days) without trusting its
        address or its size (channels/media_fetch.py).

        No Client-Token is sent: the URL is whatever the webhook said and may point
        anywhere, and Z-API storage does not need it.
        """
        return await MediaFetcher.from_settings(self._settings).fetch(
            url, max_bytes=max_bytes, timeout=self._timeout()
        )


__all__ = ["ZapiChannel", "MediaTooLarge", "ZReceivedCallback", "DELAY_MIN_S", "DELAY_MAX_S"]

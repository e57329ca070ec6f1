"""Instagram Direct channel: Meta's Instagram Messaging API.

Payload shapes follow Meta's published docs:
- webhooks: developers.facebook.com/docs/instagram-messaging/webhooks and
  developers.facebook.com/docs/instagram-platform/webhooks/examples (messages, echoes,
  reads, reactions, postbacks, referrals, edits), .../instagram-platform/webhooks/new
  (post shares carry `share` plus `ig_post`), .../messenger-platform/instagram/features/
  story-mention;
- sending: .../instagram-platform/instagram-api-with-instagram-login/messaging-api
  (`/<IG_ID>/messages` or `/me/messages`, bearer token, `{"recipient": {"id"}, "message":
  {"text"}}`, answer `{"recipient_id", "message_id"}`) and .../messaging-api/sender-actions;
- profile: .../messenger-platform/instagram/features/user-profile (`GET /<IGSID>?fields=`);
- errors: .../messenger-platform/error-codes and .../graph-api/guides/error-handling.

Instagram arrives on the same `/webhooks/meta` as the WhatsApp Cloud API (`object:
"instagram"`), signed the same way, so authentication is `meta_common.verify_signature`.
The body is untrusted input: every field may be missing, null or of the wrong type. It is
validated with pydantic and anything unusable becomes a 4xx `WebhookRejected`, never a 500
that would make Meta redeliver the same poison for hours.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from channels import meta_common
from channels.base import DeliveryStatus, ParsedWebhook, SentMessage
from channels.media_fetch import MediaFetcher
from channels.meta_common import MetaApiError, OutsideWindow
from channels.provider_http import MediaTooLarge, is_retryable_status, scrub
from core.errors import SendError, WebhookRejected
from core.logging import get_logger
from core.models import AdReferral, IgnoredEvent, InboundMessage, MessageKind, mask_phone
from core.settings import Settings

log = get_logger(__name__)

_ERROR_DETAIL_MAX = 200
# A typing indicator is a nicety: it must not hold a send back for long, and Meta clears
# it by itself after a while, so the pause before the real message is bounded.
TYPING_MAX_S = 8
_TYPING_TIMEOUT_S = 5.0

# Meta's "outside of allowed window" refusals: 10/2534022 is the Instagram one, 10/2018278
# the Messenger Platform's, 10/2018065 the news-messaging variant (error-codes page).
WINDOW_SUBCODES = frozenset({2534022, 2018278, 2018065})
# Throttling: 4 app, 17 user, 32 page, 341 application limit, 613 custom rate limit
# (613/2534040 "Calls to this api have exceeded the rate limit").
RATE_LIMIT_CODES = frozenset({4, 17, 32, 341, 613})
# "Temporary issue due to downtime. Wait and retry" (1, 2), Send API "Temporary send
# message failure" (1200) and "unexpected internal error" (-1).
TRANSIENT_CODES = frozenset({-1, 1, 2, 1200})
# The person cannot receive from us: 551 (blocked / unavailable), 200/1545041 and
# 10/2018108 ("can't receive your messages right now"), 100/2534014 ("No matching
# Instagram user") and 100/2018001 ("No matching user found").
_RECIPIENT_SUBCODES = frozenset({1545041, 2018108, 2534014, 2018001})
# Another app (or Meta's own inbox flow) owns the thread; 2018321 says to wait for it.
_THREAD_BUSY_CODES = frozenset({2018321})
# Another app controls the thread (2018300) or we are not its owner (100/2534037): the
# handover protocol decides, not a retry, and the credentials are fine.
_THREAD_OWNED_CODES = frozenset({2018300, 2534037})


# --- webhook payload models --------------------------------------------------------
# Meta adds fields and event types regularly; unknown keys are ignored so a new field
# never breaks us, while a known field with the wrong type is a 422 (not Meta's shape).


def _id_value(value: object) -> object:
    """Ids are strings, but Meta's own samples print some unquoted (`"ad_id": AD-ID`)."""
    if isinstance(value, bool):
        return value  # let pydantic refuse it: True is not an id
    if isinstance(value, int):
        return str(value)
    return value


Id = Annotated[str, BeforeValidator(_id_value)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="ignore")


class IGParty(_Block):
    id: Id | None = None


class IGAttachmentPayload(_Block):
    url: str | None = None
    # Shares, ig_post and reels carry the post caption as `title`.
    title: str | None = None


class IGAttachment(_Block):
    type: str | None = None
    payload: IGAttachmentPayload | None = None


class IGStory(_Block):
    url: str | None = None
    id: Id | None = None


class IGReplyTo(_Block):
    mid: str | None = None
    story: IGStory | None = None


class IGAdsContext(_Block):
    ad_title: str | None = None
    photo_url: str | None = None
    video_url: str | None = None
    post_id: Id | None = None


class IGReferral(_Block):
    ref: str | None = None
    ad_id: Id | None = None
    source: str | None = None
    type: str | None = None
    ads_context_data: IGAdsContext | None = None


class IGQuickReply(_Block):
    payload: str | None = None


class IGMessage(_Block):
    mid: str | None = None
    text: str | None = None
    attachments: list[IGAttachment] | None = None
    is_echo: bool | None = None
    is_self: bool | None = None
    is_deleted: bool | None = None
    is_unsupported: bool | None = None
    quick_reply: IGQuickReply | None = None
    referral: IGReferral | None = None
    reply_to: IGReplyTo | None = None


class IGRead(_Block):
    mid: str | None = None
    # Messenger-style read receipts carry a watermark (ms) instead of one message id.
    watermark: float | None = None


class IGPostback(_Block):
    mid: str | None = None
    title: str | None = None
    payload: str | None = None
    referral: IGReferral | None = None


class IGEvent(_Block):
    sender: IGParty | None = None
    recipient: IGParty | None = None
    timestamp: float | None = None
    message: IGMessage | None = None
    read: IGRead | None = None
    postback: IGPostback | None = None
    referral: IGReferral | None = None
    reaction: dict[str, Any] | None = None
    message_edit: dict[str, Any] | None = None


class IGEntry(_Block):
    # `id` and `time` are not read: the event's own ids and timestamp say it all, and an
    # odd value in a field we do not use must not cost a lead's message.
    messaging: list[IGEvent] | None = None
    # Events for threads another app controls (handover protocol): not ours to answer.
    standby: list[dict[str, Any]] | None = None
    # Comments, mentions and other Graph fields: not conversations with a lead.
    changes: list[dict[str, Any]] | None = None


class IGWebhook(_Block):
    object: str
    entry: list[IGEntry]


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
    return "invalid Instagram payload: " + "; ".join(parts)


def _epoch_to_datetime(value: float | None) -> datetime | None:
    """Meta sends ms epochs; a seconds value is told apart by size.

    An unusable number yields None (the model's "now"): losing a lead's message over a bad
    clock value would be worse than a slightly wrong timestamp."""
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    seconds = value / 1000 if value > 1e11 else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        return int(value.strip())
    return None


def _str_or_none(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


# Attachment types in order of what says most about the message: real media first, then
# the `ig_post` that Meta now sends next to the legacy `share` for the same post.
_ATTACHMENT_PRIORITY = (
    "audio",
    "image",
    "video",
    "file",
    "ig_post",
    "share",
    "ig_reel",
    "reel",
    "story_mention",
    "ig_story",
    "story",
    "ephemeral",
)

_MEDIA_KINDS = {
    "audio": MessageKind.AUDIO,  # voice notes arrive as `audio`
    "image": MessageKind.IMAGE,  # images, gifs and stickers
    "video": MessageKind.VIDEO,
    "file": MessageKind.DOCUMENT,
}

# What the model (and the stored history) reads for Instagram-only content that has no
# channel-neutral kind; pt-BR because that is the conversation's language.
_SHARE_LABELS = {
    "ig_post": "[compartilhou uma publicação do Instagram]",
    "share": "[compartilhou uma publicação do Instagram]",
    "ig_reel": "[compartilhou um reel do Instagram]",
    "reel": "[compartilhou um reel do Instagram]",
    "story_mention": "[story mencionando a empresa]",
    "ig_story": "[compartilhou um story do Instagram]",
    "story": "[compartilhou um story do Instagram]",
    "ephemeral": "[enviou uma mídia temporária (visualização única) que não pode ser vista]",
}
STORY_REPLY_LABEL = "[respondeu a um story da empresa]"


def _pick_attachment(attachments: list[IGAttachment]) -> IGAttachment | None:
    typed = [a for a in attachments if _clean(a.type)]
    for wanted in _ATTACHMENT_PRIORITY:
        for attachment in typed:
            if (attachment.type or "").strip().lower() == wanted:
                return attachment
    return typed[0] if typed else None


# --- the channel -------------------------------------------------------------------


class InstagramChannel:
    name = "instagram"
    # Meta's standard messaging window; a human agent may answer for 7 days with the
    # HUMAN_AGENT tag (`send_text(..., human_agent=True)`).
    window_hours = 24

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self.rate_per_s = settings.instagram_rate_per_s
        # Injected so tests can observe the typing pause without waiting for it.
        self._sleep = sleep

    @property
    def configured(self) -> bool:
        return self._settings.instagram_configured

    @property
    def missing_webhook_secret(self) -> str | None:
        return "META_APP_SECRET" if self._settings.meta_app_secret is None else None

    # -- inbound --------------------------------------------------------------------

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Same app secret and header as WhatsApp Cloud: one Meta app signs both."""
        meta_common.verify_signature(self._settings, request, raw_body)

    def parse(self, payload: object) -> ParsedWebhook:
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "Instagram webhook body must be a JSON object")
        if payload.get("object") != "instagram":
            # The Meta route dispatches on `object`; anything else reaching us is a bug
            # or a forgery, not something to acknowledge.
            raise WebhookRejected(422, "invalid Instagram payload: 'object' must be 'instagram'")
        try:
            webhook = IGWebhook.model_validate(payload)
        except ValidationError as exc:
            raise WebhookRejected(422, _describe_validation_error(exc)) from None
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise WebhookRejected(422, "invalid Instagram payload") from None

        result = ParsedWebhook()
        for entry in webhook.entry:
            for event in entry.messaging or []:
                self._parse_event(event, result)
            for standby in entry.standby or []:
                message = standby.get("message") if isinstance(standby, dict) else None
                mid = message.get("mid") if isinstance(message, dict) else None
                result.ignored.append(IgnoredEvent(reason="standby", provider_message_id=_str_or_none(mid)))
            for _change in entry.changes or []:
                result.ignored.append(IgnoredEvent(reason="not_a_message"))
        return result

    def _our_account(self) -> str | None:
        return _clean(self._settings.instagram_account_id)

    def _parse_event(self, event: IGEvent, result: ParsedWebhook) -> None:
        sender = _clean(event.sender.id) if event.sender else None
        recipient = _clean(event.recipient.id) if event.recipient else None
        if sender is None:
            raise WebhookRejected(422, "invalid Instagram payload: messaging event without sender.id")
        stamp = _epoch_to_datetime(event.timestamp)
        ours = self._our_account()

        if event.message is not None:
            self._parse_message(event.message, sender, recipient, stamp, result)
            return
        if event.read is not None:
            mid = _clean(event.read.mid)
            if mid is None or sender == ours:
                # A watermark names no message, and the business reading the lead's
                # message is not a delivery report on ours.
                result.ignored.append(IgnoredEvent(reason="read", provider_message_id=mid))
            else:
                result.statuses.append(
                    DeliveryStatus(provider_message_id=mid, status="read", timestamp=stamp)
                )
            return
        if event.postback is not None:
            self._parse_postback(event.postback, sender, stamp, result)
            return
        if event.reaction is not None:
            mid = event.reaction.get("mid")
            result.ignored.append(IgnoredEvent(reason="reaction", provider_message_id=_str_or_none(mid)))
            return
        if event.message_edit is not None:
            mid = event.message_edit.get("mid")
            result.ignored.append(IgnoredEvent(reason="edit", provider_message_id=_str_or_none(mid)))
            return
        if event.referral is not None:
            # An ig.me link opened in an existing thread: no words, no message id to
            # store; ad clicks (CTD) come inside the first `message` instead.
            result.ignored.append(IgnoredEvent(reason="referral"))
            return
        result.ignored.append(IgnoredEvent(reason="not_a_message"))

    def _parse_message(
        self,
        message: IGMessage,
        sender: str,
        recipient: str | None,
        stamp: datetime | None,
        result: ParsedWebhook,
    ) -> None:
        mid = _clean(message.mid)
        if mid is None:
            raise WebhookRejected(422, "invalid Instagram payload: message without mid")
        ours = self._our_account()

        def ignored(reason: str) -> None:
            result.ignored.append(IgnoredEvent(reason=reason, provider_message_id=mid))

        if message.is_self or (recipient is not None and recipient == sender):
            ignored("self")  # a test message to our own account
            return
        if message.is_deleted:
            ignored("deleted")
            return
        if message.is_unsupported:
            ignored("unsupported")
            return
        if message.is_echo or (ours is not None and sender == ours):
            # Our own send (bot or a person in the Instagram app / another tool): the lead
            # is the recipient. Kept so the runtime can tell the bot's echoes (known mids)
            # from a human's, which pause the bot.
            if recipient is None:
                raise WebhookRejected(422, "invalid Instagram payload: echo without recipient.id")
            echo = self._to_inbound(message, mid, recipient, stamp, from_me=True)
            result.ignored.append(IgnoredEvent(reason="echo", provider_message_id=mid, message=echo))
            return
        result.messages.append(self._to_inbound(message, mid, sender, stamp, from_me=False))

    def _parse_postback(
        self, postback: IGPostback, sender: str, stamp: datetime | None, result: ParsedWebhook
    ) -> None:
        """An Icebreaker or template button tapped: the lead's words, as a button reply."""
        mid = _clean(postback.mid)
        if mid is None or sender == self._our_account():
            result.ignored.append(IgnoredEvent(reason="postback", provider_message_id=mid))
            return
        fields: dict[str, Any] = {}
        if stamp is not None:
            fields["timestamp"] = stamp
        result.messages.append(
            self._build(
                contact_id=sender,
                provider_message_id=mid,
                kind=MessageKind.BUTTON_REPLY,
                text=_clean(postback.title) or _clean(postback.payload),
                referral=self._referral(postback.referral),
                **fields,
            )
        )

    def _to_inbound(
        self,
        message: IGMessage,
        mid: str,
        contact_id: str,
        stamp: datetime | None,
        *,
        from_me: bool,
    ) -> InboundMessage:
        fields = self._content(message)
        if stamp is not None:
            fields["timestamp"] = stamp
        reply_to = _clean(message.reply_to.mid) if message.reply_to else None
        return self._build(
            contact_id=contact_id,
            provider_message_id=mid,
            referral=self._referral(message.referral),
            from_me=from_me,
            reply_to_provider_id=reply_to,
            **fields,
        )

    def _build(self, **fields: Any) -> InboundMessage:
        try:
            return InboundMessage(channel=self.name, phone=None, is_group=False, **fields)
        except ValidationError as exc:
            raise WebhookRejected(422, _describe_validation_error(exc)) from None

    @staticmethod
    def _referral(referral: IGReferral | None) -> AdReferral | None:
        """Click-to-Direct ad context; a Shop product referral has no ad and is dropped."""
        if referral is None:
            return None
        ctx = referral.ads_context_data
        source = _clean(referral.source)
        if source is not None:
            # Same vocabulary as WhatsApp's `source_type` ("ad"), so reports can group
            # leads by origin across channels.
            source = "ad" if source.upper() == "ADS" else source.lower()
        result = AdReferral(
            source_id=_clean(referral.ad_id),
            source_type=source,
            headline=_clean(ctx.ad_title) if ctx else None,
            # The creative the lead clicked (image, else video thumbnail): Meta gives no
            # ad permalink here, and these CDN URLs expire.
            source_url=(_clean(ctx.photo_url) or _clean(ctx.video_url)) if ctx else None,
        )
        if result.source_id is None and result.source_type is None:
            return None
        return result

    @staticmethod
    def _content(message: IGMessage) -> dict[str, Any]:
        """One kind and one line of text per message, because that is what the agent reads.

        Instagram-only content (shares, reels, story mentions and replies) has no neutral
        kind; it becomes OTHER with a pt-BR description the model can answer naturally.
        """
        text = _clean(message.text)
        story = message.reply_to.story if message.reply_to else None
        if story is not None:
            return {
                "kind": MessageKind.OTHER,
                "text": f"{STORY_REPLY_LABEL} {text}" if text else STORY_REPLY_LABEL,
                "media_url": _clean(story.url),
            }
        attachment = _pick_attachment(message.attachments or [])
        if attachment is not None:
            kind_name = (attachment.type or "").strip().lower()
            payload = attachment.payload
            url = _clean(payload.url) if payload else None
            if kind_name in _MEDIA_KINDS:
                return {"kind": _MEDIA_KINDS[kind_name], "media_url": url, "text": text}
            title = _clean(payload.title) if payload else None
            # The type lands in the model's prompt: only a short identifier gets through.
            shown = re.sub(r"[^a-z0-9_]", "", kind_name)[:32] or "desconhecido"
            label = _SHARE_LABELS.get(kind_name, f"[enviou um anexo do tipo {shown}]")
            body = " ".join(p for p in (label, title, text) if p)
            return {"kind": MessageKind.OTHER, "text": body, "media_url": url}
        if message.quick_reply is not None:
            return {
                "kind": MessageKind.BUTTON_REPLY,
                "text": text or _clean(message.quick_reply.payload),
            }
        if text is not None:
            return {"kind": MessageKind.TEXT, "text": text}
        return {"kind": MessageKind.OTHER}

    # -- outbound -------------------------------------------------------------------

    def _token(self) -> str | None:
        token = self._settings.instagram_access_token
        return token.get_secret_value() if token is not None else None

    def _graph(self, path: str) -> str:
        s = self._settings
        return f"{s.meta_graph_url.rstrip('/')}/{s.meta_graph_version.strip('/')}/{path}"

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
        total = self._settings.http_timeout_s
        return aiohttp.ClientTimeout(total=min(total, cap) if cap else total)

    async def send_text(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        text: str,
        *,
        typing_s: int,
        human_agent: bool = False,
    ) -> SentMessage:
        """One attempt only: the outbox owns retries, so errors say whether to retry.

        `human_agent`: a person wrote it, so it may use Meta's 7-day HUMAN_AGENT tag. The
        bot's own replies never carry it: Meta grants the tag for manual answers only.
        """
        if not self.configured or self._token() is None:
            raise SendError("instagram is not configured", retryable=False)
        recipient = (contact_id or "").strip()
        if not recipient:
            raise SendError("instagram recipient id is empty", retryable=False, invalid_recipient=True)
        url = self._messages_url()

        if typing_s and typing_s > 0 and await self._typing_on(session, url, recipient):
            await self._sleep(min(float(typing_s), TYPING_MAX_S))

        body: dict[str, Any] = {"recipient": {"id": recipient}, "message": {"text": text}}
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
            raise SendError("instagram send timed out", retryable=True) from None
        except aiohttp.ClientError as exc:
            self._log_send_failure(recipient, None, type(exc).__name__)
            raise SendError(f"instagram send transport error: {type(exc).__name__}", retryable=True) from None

        data = self._json(raw)
        if not 200 <= status < 300 or isinstance(data.get("error"), dict):
            raise self._send_error(status, data, raw, trace_header, recipient)
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

    @staticmethod
    def _json(raw: str) -> dict[str, Any]:
        try:
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}

    def _send_error(
        self, status: int, data: dict[str, Any], raw: str, trace_header: str | None, recipient: str
    ) -> MetaApiError:
        """Map Meta's error JSON onto the outbox's retry policy.

        Order matters: code 10 means both "outside the window" (a lead-level, permanent
        fact) and "permission denied" (the channel is broken), told apart by subcode.
        """
        graph = meta_common.parse_graph_error(data, as_int=_int_or_none)
        code, subcode = graph.code, graph.subcode
        meta_message = graph.message or ""
        trace = graph.fbtrace_id or _str_or_none(trace_header)
        if trace is not None:
            trace = scrub(trace, self._secrets())[:64]
        if not graph.present:
            meta_message = raw.strip()

        retryable = False
        auth_failed = False
        invalid_recipient = False
        window = False
        lowered = meta_message.lower()
        if code == 10 and (subcode in WINDOW_SUBCODES or "allowed window" in lowered):
            window = True
        elif code in (190, 102) or status == 401:
            auth_failed = True
        elif code == 551 or subcode in _RECIPIENT_SUBCODES:
            invalid_recipient = True
        elif (
            code in RATE_LIMIT_CODES
            or status == 429
            or code in _THREAD_BUSY_CODES
            or subcode in _THREAD_BUSY_CODES
        ):
            retryable = True
        elif code in _THREAD_OWNED_CODES or subcode in _THREAD_OWNED_CODES:
            pass
        elif code in TRANSIENT_CODES or graph.transient:
            retryable = True
        elif code == 10 and subcode == 1893063:
            pass  # Page temporarily restricted for policy: retries would make it worse
        elif code == 10 or (code is not None and 200 <= code <= 299) or code == 3 or status == 403:
            auth_failed = True  # permission missing or revoked: the channel is broken
        elif code is None and is_retryable_status(status) or status >= 500:
            retryable = True

        if window:
            head = "instagram send refused: outside the 24h messaging window"
        else:
            head = f"instagram send failed: HTTP {status}"
        meta = ""
        if code is not None:
            meta = f"Meta error {code}" + (f"/{subcode}" if subcode is not None else "")
        detail = scrub(meta_message, self._secrets())[:_ERROR_DETAIL_MAX]
        parts = [head]
        if meta:
            parts.append(f"({meta})")
        text = " ".join(parts)
        if detail:
            text += f": {detail}"
        if trace:
            text += f" [fbtrace_id {trace}]"

        what = "permanent"
        if window:
            what = "window"
        elif auth_failed:
            what = "auth"
        elif invalid_recipient:
            what = "recipient"
        elif retryable:
            what = "retryable"
        self._log_send_failure(recipient, status, what, code=code, subcode=subcode, fbtrace_id=trace)
        if window:
            return OutsideWindow(text, status=status, code=code, subcode=subcode, fbtrace_id=trace)
        return MetaApiError(
            text,
            status=status,
            retryable=retryable,
            auth_failed=auth_failed,
            invalid_recipient=invalid_recipient,
            code=code,
            subcode=subcode,
            fbtrace_id=trace,
        )

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
        data = self._json(raw)
        if not 200 <= status < 300 or isinstance(data.get("error"), dict):
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            log.warning(
                "instagram_profile_failed",
                contact=mask_phone(contact),
                status=status,
                code=_int_or_none(error.get("code")),
                fbtrace_id=_str_or_none(error.get("fbtrace_id")),
            )
            return None
        name = _str_or_none(data.get("name"))
        username = _str_or_none(data.get("username"))
        return name or username

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        """Download an attachment's CDN URL without trusting its size.

        Meta's attachment URLs (lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=…&signature=…)
        are pre-signed and need no credentials; the token is never sent, since the URL is
        whatever the webhook said and may point anywhere (channels/media_fetch.py decides
        which addresses it may reach).
        """
        return await MediaFetcher.from_settings(self._settings).fetch(
            url, max_bytes=max_bytes, timeout=self._timeout()
        )


__all__ = [
    "InstagramChannel",
    "MediaTooLarge",
    "MetaApiError",
    "OutsideWindow",
    "IGWebhook",
    "STORY_REPLY_LABEL",
    "TYPING_MAX_S",
    "WINDOW_SUBCODES",
]

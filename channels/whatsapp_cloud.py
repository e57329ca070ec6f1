"""WhatsApp Cloud API channel: Meta's official WhatsApp Business Platform.

Shapes follow Meta's published references (developers.facebook.com/documentation/
business-messaging/whatsapp/...): webhooks/reference/messages/{text,audio,image,document,
video,sticker,location,contacts,button,interactive,reaction,unsupported,system,status,
errors}, webhooks/reference/smb_message_echoes, business-scoped-user-ids, typing-indicators,
business-phone-numbers/media and support/error-codes.

Why this module is shaped the way it is:
- Every POST is signed by Meta (`X-Hub-Signature-256`); the check lives in
  `channels.meta_common` because Instagram shares it.
- One webhook can carry several entries/changes/messages/statuses, and a WABA can host
  several phone numbers: anything addressed to another `phone_number_id` is not ours to
  answer.
- The body is untrusted input. Unknown keys are ignored (Meta adds fields often), known
  keys with the wrong type are a 422, never a 500 that would make Meta redeliver the same
  poison for days.
- Media is not a URL in the webhook but a media id that needs our bearer token; it is
  carried as `whatsapp-media:<id>` so the rest of the bot can treat it like any media URL
  and only this module ever attaches the token.
- Users who adopt a WhatsApp username may arrive without a phone (`from` omitted) but with
  a business-scoped user id (`from_user_id`, e.g. "BR.1502576394655843"); that id becomes
  the contact id and replies go to it through `recipient` instead of `to`.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from channels import meta_common
from channels.base import DeliveryStatus, ParsedWebhook, SentMessage
from channels.media_fetch import Credentials, MediaFetcher, Origin
from channels.meta_common import MetaApiError, OutsideWindow
from channels.provider_http import MediaTooLarge, is_retryable_status, scrub
from core.errors import SendError, WebhookRejected
from core.logging import get_logger
from core.models import AdReferral, IgnoredEvent, InboundMessage, MessageKind, mask_phone
from core.settings import Settings

log = get_logger(__name__)

OBJECT = "whatsapp_business_account"
MEDIA_SCHEME = "whatsapp-media:"
# Meta's documented limit for a text message body.
TEXT_MAX_CHARS = 4096

# Media ids are numeric strings; anything else would end up in a Graph URL path.
_MEDIA_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")
# Business-scoped user id: ISO country code, a dot, up to 128 alphanumerics; the parent
# BSUID inserts "ENT." ("US.ENT.11815799212886844830").
_BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
_ERROR_DETAIL_MAX = 300
_DELIVERY_STATES = {"sent", "delivered", "read", "played", "failed"}

# --- Meta error codes (support/error-codes, Graph API error handling) ----------------
# Throttling and Meta-side trouble: the same request can succeed later.
#   1 API Unknown, 2 API Service, 4 app request limit, 17/32/613 Graph call limits,
#   80007 WABA rate limit, 130429 throughput, 131000 "something went wrong",
#   131016 service unavailable, 131056 business/consumer pair rate limit,
#   133004 server temporarily unavailable.
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131056, 133004})
# Credentials: 0 AuthException, 10 permission denied, 190 token expired/invalid,
# 200-299 API permission. The operator must act; retrying only burns attempts.
AUTH_CODES = frozenset({0, 10, 190, *range(200, 300)})
# The recipient cannot receive: 131026 undeliverable (not on WhatsApp, old client, terms
# not accepted), 131030 not in the test allow-list, 131021 recipient is the sender.
INVALID_RECIPIENT_CODES = frozenset({131021, 131026, 131030})
# Free text outside the 24-hour customer-service window.
WINDOW_CODE = 131047
# 131048 (spam rate limit) is deliberately permanent: retrying what Meta already flagged
# as spam lowers the number's quality further.


# --- webhook payload models --------------------------------------------------------


class _Block(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class WText(_Block):
    body: str | None = None


class WMedia(_Block):
    """audio / image / video / document / sticker share this shape."""

    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool | None = None
    animated: bool | None = None
    # Newer payloads add a direct URL; it still needs the token, so the id is what we use.
    url: str | None = None


class WLocation(_Block):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class WSharedName(_Block):
    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class WSharedPhone(_Block):
    phone: str | None = None
    wa_id: str | None = None
    type: str | None = None


class WSharedContact(_Block):
    name: WSharedName | None = None
    phones: list[WSharedPhone] | None = None


class WButton(_Block):
    """A quick-reply button of a template message."""

    text: str | None = None
    payload: str | None = None


class WReply(_Block):
    id: str | None = None
    title: str | None = None
    description: str | None = None


class WInteractive(_Block):
    type: str | None = None
    button_reply: WReply | None = None
    list_reply: WReply | None = None


class WReaction(_Block):
    message_id: str | None = None
    emoji: str | None = None


class WContext(_Block):
    id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    forwarded: bool | None = None
    frequently_forwarded: bool | None = None


class WReferral(_Block):
    """Click-to-WhatsApp ad context; only on the first message after the click."""

    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    ctwa_clid: str | None = None


class WErrorData(_Block):
    details: str | None = None


class WError(_Block):
    code: int | None = None
    title: str | None = None
    message: str | None = None
    error_data: WErrorData | None = None


class WMessage(_Block):
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    id: str | None = None
    # Unix seconds as a string; typed loosely and checked by hand (see _epoch).
    timestamp: Any = None
    type: str | None = None
    group_id: str | None = None
    context: WContext | None = None
    referral: WReferral | None = None
    errors: list[WError] | None = None

    text: WText | None = None
    audio: WMedia | None = None
    voice: WMedia | None = None
    image: WMedia | None = None
    video: WMedia | None = None
    document: WMedia | None = None
    sticker: WMedia | None = None
    location: WLocation | None = None
    contacts: list[WSharedContact] | None = None
    button: WButton | None = None
    interactive: WInteractive | None = None
    reaction: WReaction | None = None


class WEcho(WMessage):
    """A message the business sent from the WhatsApp Business app (coexistence)."""

    to: str | None = None
    to_user_id: str | None = None


class WProfile(_Block):
    name: str | None = None
    username: str | None = None


class WContact(_Block):
    profile: WProfile | None = None
    wa_id: str | None = None
    user_id: str | None = None


class WStatus(_Block):
    id: str | None = None
    status: str | None = None
    timestamp: Any = None
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    errors: list[WError] | None = None


class WMetadata(_Block):
    display_phone_number: str | None = None
    phone_number_id: str | None = None


class WValue(_Block):
    messaging_product: str | None = None
    metadata: WMetadata | None = None
    contacts: list[WContact] | None = None
    messages: list[WMessage] | None = None
    statuses: list[WStatus] | None = None
    errors: list[WError] | None = None
    message_echoes: list[WEcho] | None = None


# Content blocks in the order used when `type` is missing (one Meta doc example omits it).
_CONTENT_BLOCKS = (
    "text",
    "audio",
    "voice",
    "image",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "button",
    "interactive",
    "reaction",
)
_MEDIA_KINDS = {
    "audio": MessageKind.AUDIO,
    "voice": MessageKind.AUDIO,
    "image": MessageKind.IMAGE,
    "video": MessageKind.VIDEO,
    "document": MessageKind.DOCUMENT,
    "sticker": MessageKind.STICKER,
}
# Message types that are notices, not words from the lead.
_IGNORED_TYPES = {
    "unsupported": "unsupported",
    "unknown": "unsupported",
    "errors": "unsupported",
    "system": "system",
    "request_welcome": "request_welcome",
}


# --- helpers -----------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _describe_validation_error(where: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{where}.{loc}: {err.get('msg', 'invalid')}")
    return "invalid WhatsApp Cloud payload: " + "; ".join(parts)


def _reject(message: str) -> WebhookRejected:
    return WebhookRejected(422, f"invalid WhatsApp Cloud payload: {message}")


def _epoch(raw: Any, where: str) -> datetime | None:
    """Meta sends unix seconds as a string; reject garbage, tolerate absurd numbers.

    A wrong type means the body is not Meta's (422); a number that cannot be a date falls
    back to "now" (None) because losing a lead's message over a clock value is worse than
    a slightly wrong timestamp.
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise _reject(f"{where}.timestamp must be unix seconds")
    if not (
        isinstance(raw, (int, float)) or (isinstance(raw, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", raw))
    ):
        raise _reject(f"{where}.timestamp must be unix seconds")
    try:
        value = float(raw)
    except OverflowError:  # an integer with hundreds of digits: not a date
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    seconds = value / 1000 if value > 1e11 else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _is_bsuid(value: str) -> bool:
    return _BSUID.fullmatch(value) is not None


def _format_coord(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _media_url(media_id: str | None, where: str) -> str | None:
    media_id = _clean(media_id)
    if media_id is None:
        return None
    if not _MEDIA_ID.fullmatch(media_id):
        raise _reject(f"{where}.id is not a media id")
    return MEDIA_SCHEME + media_id


def _status_error(errors: list[WError] | None) -> str | None:
    """One readable line from `errors[0]`, naming the 24h window when that is the cause."""
    if not errors:
        return None
    err = errors[0]
    title = _clean(err.title) or _clean(err.message)
    details = _clean(err.error_data.details) if err.error_data else None
    head = " ".join(p for p in (str(err.code) if err.code is not None else None, title) if p)
    text = ": ".join(p for p in (head or None, details if details != title else None) if p)
    if err.code == WINDOW_CODE:
        text = f"{text} (outside the 24-hour customer-service window)"
    return text[:_ERROR_DETAIL_MAX] or None


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except (ValueError, RecursionError):
        return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


# --- the channel -------------------------------------------------------------------


class WhatsAppCloudChannel:
    name = "whatsapp_cloud"
    window_hours = 24  # Meta's customer-service window; outside it only templates go out

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.rate_per_s = settings.whatsapp_rate_per_s

    @property
    def configured(self) -> bool:
        return self._settings.whatsapp_cloud_configured

    @property
    def missing_webhook_secret(self) -> str | None:
        return "META_APP_SECRET" if self._settings.meta_app_secret is None else None

    # -- inbound --------------------------------------------------------------------

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        """Meta signs every POST with the app secret; nothing unsigned may reach the bot."""
        meta_common.verify_signature(self._settings, request, raw_body)

    def parse(self, payload: object) -> ParsedWebhook:
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "WhatsApp Cloud webhook body must be a JSON object")
        obj = payload.get("object")
        if obj != OBJECT:
            raise WebhookRejected(422, f"webhook object must be {OBJECT!r}")
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise _reject("'entry' must be a list")

        result = ParsedWebhook()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise _reject(f"entry[{i}] must be an object")
            changes = entry.get("changes", [])
            if not isinstance(changes, list):
                raise _reject(f"entry[{i}].changes must be a list")
            for j, change in enumerate(changes):
                self._parse_change(change, f"entry[{i}].changes[{j}]", result)
        return result

    def _parse_change(self, change: object, where: str, result: ParsedWebhook) -> None:
        if not isinstance(change, dict):
            raise _reject(f"{where} must be an object")
        field = change.get("field", "messages")
        if not isinstance(field, str):
            raise _reject(f"{where}.field must be a string")
        raw_value = change.get("value")
        if not isinstance(raw_value, dict):
            raise _reject(f"{where}.value must be an object")
        if field not in ("messages", "smb_message_echoes"):
            # Template reviews, account updates, history sync...: acknowledged, not answered.
            result.ignored.append(IgnoredEvent(reason="not_a_message"))
            return
        try:
            value = WValue.model_validate(raw_value)
        except ValidationError as exc:
            raise WebhookRejected(422, _describe_validation_error(f"{where}.value", exc)) from None

        has_events = bool(value.messages or value.statuses or value.message_echoes)
        phone_number_id = _clean(value.metadata.phone_number_id) if value.metadata else None
        if has_events and phone_number_id is None:
            raise _reject(f"{where}.value.metadata.phone_number_id is missing")
        ours = self._settings.whatsapp_phone_number_id
        # Without a configured id there is nothing to compare against; the number is
        # then whichever one the app is subscribed to.
        other_number = ours is not None and phone_number_id != ours.strip()

        for k, message in enumerate(value.messages or []):
            msg_where = f"{where}.value.messages[{k}]"
            message_id = self._required_id(message.id, msg_where)
            if other_number:
                result.ignored.append(IgnoredEvent(reason="other_number", provider_message_id=message_id))
                continue
            outcome = self._message(message, message_id, value.contacts or [], msg_where)
            if isinstance(outcome, IgnoredEvent):
                result.ignored.append(outcome)
            else:
                result.messages.append(outcome)

        for k, status in enumerate(value.statuses or []):
            st_where = f"{where}.value.statuses[{k}]"
            status_id = self._required_id(status.id, st_where)
            if other_number:
                result.ignored.append(IgnoredEvent(reason="other_number", provider_message_id=status_id))
                continue
            outcome_status = self._status(status, status_id, st_where)
            if isinstance(outcome_status, IgnoredEvent):
                result.ignored.append(outcome_status)
            else:
                result.statuses.append(outcome_status)

        for k, echo in enumerate(value.message_echoes or []):
            echo_where = f"{where}.value.message_echoes[{k}]"
            echo_id = self._required_id(echo.id, echo_where)
            if other_number:
                result.ignored.append(IgnoredEvent(reason="other_number", provider_message_id=echo_id))
                continue
            result.ignored.append(self._echo(echo, echo_id, echo_where))

        for err in value.errors or []:
            # App- or account-level trouble reported out of band (e.g. 130429 throughput):
            # nothing to answer, but an operator should see it.
            log.warning("whatsapp_cloud_webhook_error", code=err.code, title=_clean(err.title))
            result.ignored.append(IgnoredEvent(reason="error"))

    @staticmethod
    def _required_id(raw: str | None, where: str) -> str:
        value = _clean(raw)
        if value is None:
            raise _reject(f"{where}.id is missing")
        return value

    @staticmethod
    def _identity(raw_from: str | None, user_id: str | None, where: str) -> tuple[str, str | None]:
        """(contact_id, phone) from a phone (`from`/`to`) or, failing that, a BSUID."""
        value = _clean(raw_from)
        if value is not None:
            if _is_bsuid(value):
                return value, None
            digits = _digits(value)
            if not digits:
                raise _reject(f"{where} has no digits")
            return digits, digits
        bsuid = _clean(user_id)
        if bsuid is not None:
            if not _is_bsuid(bsuid):
                raise _reject(f"{where} user id is not a business-scoped user id")
            return bsuid, None
        raise _reject(f"{where} has no sender")

    @staticmethod
    def _profile_name(contacts: list[WContact], phone: str | None, user_id: str | None) -> str | None:
        match: WContact | None = None
        for contact in contacts:
            if phone and contact.wa_id and _digits(contact.wa_id) == phone:
                match = contact
                break
            if user_id and contact.user_id and contact.user_id.strip() == user_id:
                match = contact
                break
        if match is None and len(contacts) == 1:
            match = contacts[0]
        if match is None or match.profile is None:
            return None
        name = _clean(match.profile.name)
        return name if name and name != phone else None

    def _message(
        self, message: WMessage, message_id: str, contacts: list[WContact], where: str
    ) -> InboundMessage | IgnoredEvent:
        msg_type = (_clean(message.type) or "").lower() or self._infer_type(message)
        if msg_type in _IGNORED_TYPES:
            return IgnoredEvent(reason=_IGNORED_TYPES[msg_type], provider_message_id=message_id)
        if _clean(message.group_id):
            return IgnoredEvent(reason="group", provider_message_id=message_id)

        contact_id, phone = self._identity(message.from_, message.from_user_id, f"{where}.from")
        user_id = _clean(message.from_user_id)
        name = self._profile_name(contacts, phone, user_id)
        fields = self._content(message, msg_type, where)
        reply_to = fields.pop("reply_to", None) or (_clean(message.context.id) if message.context else None)
        stamp = _epoch(message.timestamp, where)
        if stamp is not None:
            fields["timestamp"] = stamp
        try:
            return InboundMessage(
                channel=self.name,
                contact_id=contact_id,
                phone=phone,
                name=name,
                provider_message_id=message_id,
                referral=self._referral(message.referral),
                from_me=False,
                is_group=False,
                reply_to_provider_id=reply_to,
                **fields,
            )
        except ValidationError as exc:
            raise WebhookRejected(422, _describe_validation_error(where, exc)) from None

    def _echo(self, echo: WEcho, echo_id: str, where: str) -> IgnoredEvent:
        """The business answered from its phone: recorded so the bot can step aside."""
        contact_id, phone = self._identity(echo.to, echo.to_user_id, f"{where}.to")
        msg_type = (_clean(echo.type) or "").lower() or self._infer_type(echo)
        fields = self._content(echo, msg_type, where)
        fields.pop("reply_to", None)
        stamp = _epoch(echo.timestamp, where)
        if stamp is not None:
            fields["timestamp"] = stamp
        try:
            message = InboundMessage(
                channel=self.name,
                contact_id=contact_id,
                phone=phone,
                provider_message_id=echo_id,
                from_me=True,
                **fields,
            )
        except ValidationError as exc:
            raise WebhookRejected(422, _describe_validation_error(where, exc)) from None
        return IgnoredEvent(reason="from_me", provider_message_id=echo_id, message=message)

    @staticmethod
    def _infer_type(message: WMessage) -> str:
        for block in _CONTENT_BLOCKS:
            if getattr(message, block) is not None:
                return block
        return ""

    @staticmethod
    def _referral(ref: WReferral | None) -> AdReferral | None:
        if ref is None:
            return None
        referral = AdReferral(
            ctwa_clid=_clean(ref.ctwa_clid),
            source_id=_clean(ref.source_id),
            source_url=_clean(ref.source_url),
            source_type=_clean(ref.source_type),
            headline=_clean(ref.headline),
        )
        if not any(referral.model_dump().values()):
            return None
        return referral

    @staticmethod
    def _content(message: WMessage, msg_type: str, where: str) -> dict[str, Any]:
        """Map the one content block Meta sent to the channel-neutral fields."""
        if msg_type in _MEDIA_KINDS:
            media = getattr(message, msg_type) or (message.voice if msg_type == "audio" else None)
            if media is None and msg_type == "voice":
                media = message.audio
            out: dict[str, Any] = {"kind": _MEDIA_KINDS[msg_type]}
            if media is not None:
                out["media_url"] = _media_url(media.id, f"{where}.{msg_type}")
                out["media_mime"] = _clean(media.mime_type)
                if msg_type in ("image", "video", "document"):
                    out["media_caption"] = _clean(media.caption)
                if msg_type == "document":
                    out["file_name"] = _clean(media.filename)
            return out
        if msg_type == "text":
            return {"kind": MessageKind.TEXT, "text": _clean(message.text.body) if message.text else None}
        if msg_type == "button":
            button = message.button
            text = (_clean(button.text) or _clean(button.payload)) if button else None
            return {"kind": MessageKind.BUTTON_REPLY, "text": text}
        if msg_type == "interactive":
            interactive = message.interactive
            if interactive is not None and interactive.button_reply is not None:
                reply = interactive.button_reply
                return {"kind": MessageKind.BUTTON_REPLY, "text": _clean(reply.title) or _clean(reply.id)}
            if interactive is not None and interactive.list_reply is not None:
                row = interactive.list_reply
                return {
                    "kind": MessageKind.LIST_REPLY,
                    "text": _clean(row.title) or _clean(row.description) or _clean(row.id),
                }
            # Flows (nfm_reply) and future interactive replies: kept, not interpreted.
            return {"kind": MessageKind.OTHER}
        if msg_type == "reaction":
            reaction = message.reaction
            return {
                "kind": MessageKind.REACTION,
                # An empty emoji means the reaction was removed.
                "text": _clean(reaction.emoji) if reaction else None,
                "reply_to": _clean(reaction.message_id) if reaction else None,
            }
        if msg_type == "location":
            loc = message.location
            body = "compartilhada"
            if loc is not None:
                label = " - ".join(p for p in (_clean(loc.name), _clean(loc.address)) if p)
                coords = ""
                if loc.latitude is not None and loc.longitude is not None:
                    if math.isfinite(loc.latitude) and math.isfinite(loc.longitude):
                        coords = f"({_format_coord(loc.latitude)}, {_format_coord(loc.longitude)})"
                body = " ".join(p for p in (label, coords) if p) or body
            return {"kind": MessageKind.LOCATION, "text": f"Localização: {body}"}
        if msg_type == "contacts":
            shared = []
            for contact in message.contacts or []:
                name = _clean(contact.name.formatted_name) if contact.name else None
                phones = [
                    p for p in ((_clean(ph.phone) or _clean(ph.wa_id)) for ph in contact.phones or []) if p
                ]
                part = " ".join(p for p in (name, ", ".join(phones)) if p)
                if part:
                    shared.append(part)
            return {
                "kind": MessageKind.CONTACT,
                "text": "Contato compartilhado: " + ("; ".join(shared) if shared else "sem dados"),
            }
        return {"kind": MessageKind.OTHER}

    def _status(self, status: WStatus, status_id: str, where: str) -> DeliveryStatus | IgnoredEvent:
        state = (_clean(status.status) or "").lower()
        if not state:
            raise _reject(f"{where}.status is missing")
        stamp = _epoch(status.timestamp, where)
        if state not in _DELIVERY_STATES:
            # "deleted", "warning" and whatever Meta adds next: not a delivery state of ours.
            return IgnoredEvent(reason="status", provider_message_id=status_id)
        return DeliveryStatus(
            provider_message_id=status_id,
            status=state,  # type: ignore[arg-type]  # checked against _DELIVERY_STATES
            error=_status_error(status.errors),
            timestamp=stamp,
        )

    # -- outbound -------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        s = self._settings
        return [
            secret.get_secret_value()
            for secret in (s.whatsapp_access_token, s.meta_app_secret)
            if secret is not None
        ]

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self._settings.http_timeout_s)

    def _graph(self, *parts: str) -> str:
        s = self._settings
        base = s.meta_graph_url.rstrip("/")
        version = s.meta_graph_version.strip("/")
        return "/".join([base, version, *parts])

    def _auth_headers(self) -> dict[str, str]:
        token = self._settings.whatsapp_access_token
        assert token is not None  # guarded by _require_config
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

    def _require_config(self, op: str) -> str:
        s = self._settings
        if not (s.whatsapp_phone_number_id and s.whatsapp_access_token):
            raise SendError(f"whatsapp_cloud {op}: channel is not configured", retryable=False)
        return s.whatsapp_phone_number_id.strip()

    @staticmethod
    def _recipient(contact_id: str) -> dict[str, str]:
        """Phones go in `to`; a business-scoped user id (username users) in `recipient`."""
        value = (contact_id or "").strip()
        if _is_bsuid(value):
            return {"recipient": value}
        digits = _digits(value)
        if not digits or len(digits) < 8 or len(digits) > 15:
            raise SendError(
                "whatsapp_cloud: contact id is neither a phone number nor a business-scoped user id",
                retryable=False,
                invalid_recipient=True,
            )
        return {"to": digits}

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

        `typing_s` has no equivalent here: the Cloud API shows "typing..." only through
        `mark_read(..., typing=True)` on the lead's message, and nothing here sleeps.
        `human_agent` is an Instagram tag; WhatsApp has no such concept.
        """
        phone_number_id = self._require_config("send_text")
        if not text or not text.strip():
            raise SendError("whatsapp_cloud send_text: empty text", retryable=False)
        if len(text) > TEXT_MAX_CHARS:
            raise SendError(
                f"whatsapp_cloud send_text: text has {len(text)} characters, "
                f"WhatsApp accepts at most {TEXT_MAX_CHARS}",
                retryable=False,
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
    ) -> SentMessage:
        """An approved template: the only thing Meta delivers outside the 24-hour window.

        `language` defaults to WHATSAPP_TEMPLATE_LANGUAGE; it must match a language the
        template was approved in, or Meta answers 132001 (template does not exist).
        """
        phone_number_id = self._require_config("send_template")
        template_name = (name or "").strip()
        if not template_name:
            raise SendError("whatsapp_cloud send_template: template name is empty", retryable=False)
        code = (language or self._settings.whatsapp_template_language or "").strip()
        if not code:
            raise SendError("whatsapp_cloud send_template: template language is empty", retryable=False)
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **self._recipient(contact_id),
            "type": "template",
            "template": {"name": template_name, "language": {"code": code}},
        }
        data = await self._post_messages(session, phone_number_id, body, "send_template", contact_id)
        return SentMessage(provider_message_id=self._sent_id(data))

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
            raise SendError("whatsapp_cloud mark_read: empty message id", retryable=False)
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
        headers = {**self._auth_headers(), "Content-Type": "application/json"}
        try:
            async with session.post(url, json=body, headers=headers, timeout=self._timeout()) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            self._log_failure(op, contact_id, None, None, "timeout")
            raise SendError(f"whatsapp_cloud {op} timed out", retryable=True) from None
        except aiohttp.ClientError as exc:
            self._log_failure(op, contact_id, None, None, type(exc).__name__)
            raise SendError(
                f"whatsapp_cloud {op} transport error: {type(exc).__name__}", retryable=True
            ) from None

        data = _loads(raw)
        if not 200 <= status < 300 or (isinstance(data, dict) and isinstance(data.get("error"), dict)):
            error = self._error(op, status, raw, data)
            self._log_failure(
                op, contact_id, status, error.code, "retryable" if error.retryable else "permanent"
            )
            raise error
        return data if isinstance(data, dict) else {}

    def _error(self, op: str, status: int, raw: str, data: Any) -> MetaApiError:
        """Turn Meta's Graph error JSON into the outbox's retry vocabulary.

        Codes decide before HTTP statuses: Meta answers 400 for most of its rate limits,
        and 403 for some of them.
        """
        graph = meta_common.parse_graph_error(data, as_int=_as_int)
        code, subcode, trace = graph.code, graph.subcode, graph.fbtrace_id

        parts = [p for p in (graph.message, graph.details) if p]
        if len(parts) == 2 and parts[1] in parts[0]:
            parts = parts[:1]
        detail = " - ".join(parts) if parts else (raw.strip() if not graph.present else "")
        detail = scrub(detail, self._secrets())[:_ERROR_DETAIL_MAX]
        lowered = detail.lower()

        code_text = ""
        if code is not None:
            code_text = f", code {code}" + (f"/{subcode}" if subcode is not None else "")
        trace_text = f" (fbtrace_id {trace})" if trace else ""

        def text(prefix: str) -> str:
            body = f"{prefix}: {detail}" if detail else prefix
            return body + trace_text

        head = f"whatsapp_cloud {op} failed: HTTP {status}{code_text}"

        meta: dict[str, Any] = {
            "status": status,
            "code": code,
            "subcode": subcode,
            "fbtrace_id": trace,
        }
        if code == WINDOW_CODE:
            return OutsideWindow(
                text(
                    f"whatsapp_cloud {op} refused: outside the 24-hour customer-service window "
                    f"(HTTP {status}{code_text}); send an approved template instead"
                ),
                **meta,
            )
        if code in AUTH_CODES or (
            status in (401, 403) and code not in RETRYABLE_CODES and code not in INVALID_RECIPIENT_CODES
        ):
            return MetaApiError(text(head), retryable=False, auth_failed=True, **meta)
        if code in INVALID_RECIPIENT_CODES or (
            code in (100, 131009) and any(word in lowered for word in ("phone", "recipient", "'to'", '"to"'))
        ):
            return MetaApiError(text(head), retryable=False, invalid_recipient=True, **meta)
        if code in RETRYABLE_CODES or graph.transient:
            return MetaApiError(text(head), retryable=True, **meta)
        return MetaApiError(text(head), retryable=is_retryable_status(status), **meta)

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
        id, and both the lookup and the download need the bearer token. Only our own
        pseudo-URLs are accepted: the token must never be sent to an address taken from a
        webhook.
        """
        media_id = self._media_id(url)
        self._require_config("fetch_media")
        headers = self._auth_headers()

        info = await self._media_info(session, media_id, headers)
        download_url = info.get("url")
        if not isinstance(download_url, str) or not download_url.strip():
            raise SendError(
                f"whatsapp_cloud media {media_id}: Meta returned no download url", retryable=False
            )
        try:
            parsed = URL(download_url.strip())
        except (TypeError, ValueError):
            raise SendError(
                f"whatsapp_cloud media {media_id}: invalid download url", retryable=False
            ) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise SendError(f"whatsapp_cloud media {media_id}: download url must be http(s)", retryable=False)
        declared = _as_int(info.get("file_size"))
        if declared is not None and declared > max_bytes:
            raise MediaTooLarge(f"whatsapp_cloud media {media_id} is {declared} bytes, limit is {max_bytes}")

        async def refused(resp: aiohttp.ClientResponse) -> SendError:
            # Meta explains a refused download in its error JSON, like any Graph call.
            raw = await resp.text(errors="replace")
            return self._error(f"media download from {parsed.host}", resp.status, raw, _loads(raw))

        # The token goes to the origin Meta named for this file, and no further: a
        # redirect elsewhere (or back inside the network) gets neither token nor trust.
        return await MediaFetcher.from_settings(self._settings).fetch(
            parsed,
            max_bytes=max_bytes,
            timeout=self._timeout(),
            credentials=Credentials(headers=headers, origin=Origin.of(parsed)),
            label=f"whatsapp_cloud media {media_id}",
            prefix="whatsapp_cloud ",
            http_error=refused,
        )

    @staticmethod
    def _media_id(url: str) -> str:
        if not isinstance(url, str) or not url.startswith(MEDIA_SCHEME):
            raise SendError(f"whatsapp_cloud media url must be {MEDIA_SCHEME}<id>", retryable=False)
        media_id = url[len(MEDIA_SCHEME) :]
        if not _MEDIA_ID.fullmatch(media_id):
            raise SendError("whatsapp_cloud media url carries an invalid media id", retryable=False)
        return media_id

    async def _media_info(
        self, session: aiohttp.ClientSession, media_id: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        op = f"media lookup {media_id}"
        try:
            async with session.get(self._graph(media_id), headers=headers, timeout=self._timeout()) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
        except TimeoutError:
            raise SendError(f"whatsapp_cloud {op} timed out", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise SendError(
                f"whatsapp_cloud {op} transport error: {type(exc).__name__}", retryable=True
            ) from None
        data = _loads(raw)
        if not 200 <= status < 300 or (isinstance(data, dict) and isinstance(data.get("error"), dict)):
            raise self._error(op, status, raw, data)
        if not isinstance(data, dict):
            raise SendError(f"whatsapp_cloud {op}: Meta answered without a JSON object", retryable=True)
        return data


__all__ = [
    "WhatsAppCloudChannel",
    "MediaTooLarge",
    "MetaApiError",
    "OutsideWindow",
    "MEDIA_SCHEME",
    "RETRYABLE_CODES",
    "AUTH_CODES",
    "INVALID_RECIPIENT_CODES",
    "WINDOW_CODE",
]

"""Meta Conversions API (CAPI): lead lifecycle events sent back to the ads that brought them.

Standalone building block for the "hot leads reach the CRM and the ads learn" issue: it
builds events and talks HTTP; deciding when to send, storing and retrying belong to the
caller (the outbox). One attempt per `send`; every failure is a `CapiError` whose
`retryable` tells the outbox whether to try again.

Sources (Meta's published documentation):
- request: `POST https://graph.facebook.com/{API_VERSION}/{PIXEL_ID}/events` with
  `data=[event]` and `test_event_code` (Test Events tool) -
  https://developers.facebook.com/documentation/ads-commerce/conversions-api/using-the-api
  and https://developers.facebook.com/documentation/ads-commerce/marketing-api/reference/ads-pixel/events
  (return type `{events_received: integer, messages: [string], fbtrace_id: string}`).
  The token travels in `Authorization: Bearer`, as in Meta's own JSON example for
  messaging events (https://developers.facebook.com/documentation/business-messaging/
  whatsapp/embedded-signup/automatic-events-api), so it is never part of a URL or of a
  body a caller might log or persist.
- event fields (`event_name`, `event_time` in seconds and at most 7 days old, `event_id`
  for deduplication, `action_source` incl. `business_messaging` and `system_generated`) -
  https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event/
- `user_data` normalisation and hashing, and the unhashed messaging ids (`ctwa_clid`,
  `ig_account_id`, `ig_sid`) -
  https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/customer-information-parameters
- business messaging (`action_source=business_messaging`, `messaging_channel`, the event
  names that path supports, and "Meta does not assist with deduplicating events for
  Conversions API for Business Messaging") -
  https://developers.facebook.com/documentation/ads-commerce/conversions-api/business-messaging
- custom event names: strings of at most 50 characters -
  https://developers.facebook.com/documentation/meta-pixel/implementation/conversion-tracking
- Graph error JSON and recovery per code -
  https://developers.facebook.com/docs/graph-api/guides/error-handling

Nothing here imports `channels`: integrations and channels stay independent. Personal data
never reaches logs or error texts: only hashes leave `build_event`, and only the event
name, its (hashed) id, HTTP status, Graph codes and `fbtrace_id` are logged.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import aiohttp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.logging import get_logger
from core.settings import Settings

log = get_logger(__name__)

LeadStage = Literal["lead", "qualified", "scheduled", "won", "lost"]
MessagingChannel = Literal["whatsapp", "instagram"]
ActionSource = Literal[
    "business_messaging",
    "system_generated",
    "chat",
    "phone_call",
    "email",
    "website",
    "app",
    "physical_store",
    "other",
]
QualifiedEventName = Literal["QualifiedLead", "CompleteRegistration"]

LEAD_LOST_EVENT = "lead_lost"
# The names in META_CAPI_EVENTS that switch each stage on or off.
STAGE_SETTING_NAMES: dict[str, str] = {
    "lead": "Lead",
    "qualified": "QualifiedLead",
    "scheduled": "Schedule",
    "won": "Purchase",
    "lost": LEAD_LOST_EVENT,
}
# "The Conversions API for Business Messaging now supports the following types of events"
# (business-messaging onboarding guide, FAQ). Anything else cannot ride on a click id.
BUSINESS_MESSAGING_EVENTS = frozenset(
    {
        "Purchase",
        "LeadSubmitted",
        "InitiateCheckout",
        "AddToCart",
        "ViewContent",
        "OrderCreated",
        "OrderShipped",
        "OrderDelivered",
        "OrderCanceled",
        "OrderReturned",
        "CartAbandoned",
        "QualifiedLead",
        "RatingProvided",
        "ReviewProvided",
    }
)
# The business-messaging spelling of a web standard event with the same meaning.
_BUSINESS_MESSAGING_NAMES = {"Lead": "LeadSubmitted"}
# Repo channel names (channels/*.py `name`) that are WhatsApp numbers.
_WHATSAPP_CHANNELS = frozenset({"whatsapp", "whatsapp_cloud", "zapi", "waha"})

# --- Graph error codes (graph-api/guides/error-handling) -----------------------------
# 1 API Unknown / 2 API Service: "wait and retry"; 4, 17, 32, 613: call-rate limits;
# 341 application limit reached; 368 temporarily blocked ("wait and retry");
# 80000-80014: Business Use Case rate limits.
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 341, 368, 613, *range(80000, 80015)})
# 102 session / 190 token expired or invalid / 10 and 200-299 permissions: an operator
# must act, retrying only burns attempts.
AUTH_CODES = frozenset({10, 102, 190, *range(200, 300)})
# 100 invalid parameter (CAPI subcodes 2804xxx: event too old, bad user_data...): the
# same payload will be refused again.
INVALID_PARAMETER_CODES = frozenset({100})

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CURRENCY = re.compile(r"[A-Z]{3}")
_PIXEL_ID = re.compile(r"[0-9]{1,32}")
_ERROR_DETAIL_MAX = 300
_EVENT_NAME_MAX = 50

# Brazilian states by name (accents and case stripped) -> UF, Meta's "2-character code".
_BR_STATES = {
    "acre": "ac", "alagoas": "al", "amapa": "ap", "amazonas": "am", "bahia": "ba",
    "ceara": "ce", "distrito federal": "df", "espirito santo": "es", "goias": "go",
    "maranhao": "ma", "mato grosso": "mt", "mato grosso do sul": "ms",
    "minas gerais": "mg", "para": "pa", "paraiba": "pb", "parana": "pr",
    "pernambuco": "pe", "piaui": "pi", "rio de janeiro": "rj",
    "rio grande do norte": "rn", "rio grande do sul": "rs", "rondonia": "ro",
    "roraima": "rr", "santa catarina": "sc", "sao paulo": "sp", "sergipe": "se",
    "tocantins": "to",
}  # fmt: skip
# Country names a CRM or a lead is likely to type instead of the ISO code.
_COUNTRY_NAMES = {
    "brasil": "br", "brazil": "br", "portugal": "pt", "argentina": "ar",
    "paraguai": "py", "paraguay": "py", "uruguai": "uy", "uruguay": "uy",
    "chile": "cl", "mexico": "mx", "estados unidos": "us", "eua": "us", "usa": "us",
    "united states": "us", "united states of america": "us",
}  # fmt: skip


# --- errors ----------------------------------------------------------------------------


class CapiError(Exception):
    """A CAPI call failed. `retryable`: 429/5xx/timeouts/transport/transient Graph codes.

    `auth_failed` (token expired, missing permission) means an operator must act;
    `fbtrace_id` is what Meta support asks for. The text never carries the token or
    personal data.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        auth_failed: bool = False,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.auth_failed = auth_failed
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id


# --- models ----------------------------------------------------------------------------


class CapiUserData(BaseModel):
    """Customer information parameters. Contact fields are SHA-256 hex, never clear text:
    the validators make a hand-built or replayed payload fail before it can leak PII."""

    model_config = ConfigDict(extra="forbid")

    em: list[str] | None = None
    ph: list[str] | None = None
    fn: str | None = None
    ln: str | None = None
    ct: str | None = None
    st: str | None = None
    zp: str | None = None
    country: str | None = None
    external_id: list[str] | None = None
    # Messaging ids: "Do not hash" (customer-information-parameters).
    ctwa_clid: str | None = None
    whatsapp_business_account_id: str | None = None
    ig_account_id: str | None = None
    ig_sid: str | None = None

    @field_validator("em", "ph", "external_id")
    @classmethod
    def _hashed_list(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value or not all(isinstance(v, str) and _SHA256_HEX.fullmatch(v) for v in value):
            raise ValueError("must be a non-empty list of lowercase SHA-256 hex digests")
        return value

    @field_validator("fn", "ln", "ct", "st", "zp", "country")
    @classmethod
    def _hashed(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256_HEX.fullmatch(value):
            raise ValueError("must be a lowercase SHA-256 hex digest")
        return value

    @field_validator("ctwa_clid", "whatsapp_business_account_id", "ig_account_id", "ig_sid")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _not_empty(self) -> CapiUserData:
        if not self.model_dump(exclude_none=True):
            raise ValueError("user_data needs at least one customer information parameter")
        return self


class CapiCustomData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: float | None = Field(default=None, ge=0)
    currency: str | None = None

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, value: str | None) -> str | None:
        if value is not None and not _CURRENCY.fullmatch(value):
            raise ValueError("currency must be an ISO 4217 code in uppercase, e.g. BRL")
        return value


class CapiEvent(BaseModel):
    """One server event, exactly as it goes in `data`. JSON round-trips, so the outbox
    can persist `model_dump(mode="json", exclude_none=True)` and replay it unchanged."""

    model_config = ConfigDict(extra="forbid")

    event_name: str = Field(min_length=1, max_length=_EVENT_NAME_MAX)
    event_time: int = Field(gt=0)
    event_id: str = Field(min_length=1, max_length=100)
    action_source: ActionSource
    messaging_channel: MessagingChannel | None = None
    user_data: CapiUserData
    custom_data: CapiCustomData | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CapiEvent:
        ud = self.user_data
        if self.action_source == "business_messaging":
            if self.messaging_channel is None:
                raise ValueError("business_messaging events need messaging_channel")
            if self.messaging_channel == "whatsapp" and not ud.ctwa_clid:
                raise ValueError("whatsapp business_messaging events need user_data.ctwa_clid")
            if self.messaging_channel == "instagram" and not ud.ig_sid:
                raise ValueError("instagram business_messaging events need user_data.ig_sid")
        elif self.messaging_channel is not None:
            raise ValueError("messaging_channel is only for action_source business_messaging")
        if self.event_name == "Purchase" and (
            self.custom_data is None or self.custom_data.value is None or not self.custom_data.currency
        ):
            raise ValueError("Purchase needs custom_data.value and custom_data.currency")
        return self

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class CapiRequest(BaseModel):
    """The JSON body of `POST /{pixel_id}/events` (the token goes in a header)."""

    model_config = ConfigDict(extra="forbid")

    data: list[CapiEvent] = Field(min_length=1, max_length=1000)
    test_event_code: str | None = None


class CapiResult(BaseModel):
    """Meta's answer: `{events_received, messages, fbtrace_id}`. `events_received` is None
    when a 2xx came without a readable body (accepted, not confirmed)."""

    model_config = ConfigDict(extra="ignore")

    events_received: int | None = None
    fbtrace_id: str | None = None
    messages: list[str] = Field(default_factory=list)

    @field_validator("messages", mode="before")
    @classmethod
    def _messages(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, list):
            return [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value]
        return [str(value)]

    @field_validator("events_received", mode="before")
    @classmethod
    def _count(cls, value: object) -> object:
        return _as_int(value)

    @field_validator("fbtrace_id", mode="before")
    @classmethod
    def _trace(cls, value: object) -> object:
        return _text(value)


# --- normalisation (customer-information-parameters) ---------------------------------


def sha256_hex(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def _nfc_lower(value: str | None) -> str:
    # NFC so a decomposed "e + combining acute" hashes like Meta's UTF-8 "é".
    return unicodedata.normalize("NFC", value or "").strip().lower()


def _ascii_fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _letters_only(value: str) -> str:
    return "".join(ch for ch in value if unicodedata.category(ch).startswith("L"))


def normalize_email(value: str | None) -> str | None:
    """Meta: "Trim any leading and trailing spaces. Convert all characters to lowercase."
    Anything that is not an address is dropped: a hash of garbage matches no one."""
    email = _nfc_lower(value)
    return email if _EMAIL.fullmatch(email) else None


def _is_br_national(digits: str) -> bool:
    """DDD (two digits 1-9) + a 9-digit mobile (9...) or 8 digits: a landline (2-5...)
    or a mobile still written without its ninth digit (6-9...)."""
    if len(digits) not in (10, 11) or "0" in digits[:2]:
        return False
    local = digits[2:]
    if len(local) == 9:
        return local[0] == "9"
    return local[0] in "23456789"


def _br_variants(international: str) -> list[str]:
    """A Brazilian mobile written without its ninth digit (common in WhatsApp ids) gets
    the current form first, and keeps the received form as a second candidate."""
    if len(international) == 12 and international.startswith("55") and international[4] in "6789":
        return [international[:4] + "9" + international[4:], international]
    return [international]


def normalize_phone(value: str | None, *, default_country_code: str = "55") -> list[str]:
    """Digits only, country code included, no leading zeros (Meta's `ph` rules).

    Brazilian numbers given without a country code get `default_country_code`; a number
    written with `+` or `00` is taken as already international. Returns every candidate
    worth hashing (one, or two for a nine-less Brazilian mobile); [] when unusable.
    """
    raw = unicodedata.normalize("NFKC", value or "").strip()
    digits = "".join(ch for ch in raw if ch.isdigit())
    if not digits:
        return []
    explicit = raw.startswith("+") or digits.startswith("00")
    stripped = digits.lstrip("0")
    if not explicit:
        if _is_br_national(stripped):
            return _br_variants(default_country_code + stripped)
        # Long-distance dialling: 0 + carrier code (2 digits) + DDD + number.
        if digits.startswith("0") and _is_br_national(stripped[2:]):
            return _br_variants(default_country_code + stripped[2:])
    if stripped.startswith("55") and _is_br_national(stripped[2:]):
        return _br_variants(stripped)
    # E.164 allows at most 15 digits; fewer than 8 cannot carry a country code and a number.
    return [stripped] if 8 <= len(stripped) <= 15 else []


def normalize_name(value: str | None) -> str | None:
    """Meta: "Lowercase only with no punctuation ... encoded in UTF-8". Accents stay (its
    example hashes "valéry"), punctuation and symbols go, spaces collapse."""
    text = _nfc_lower(value)
    kept = "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")
    name = " ".join(kept.split())
    return name or None


def normalize_city(value: str | None) -> str | None:
    """Meta: "Lowercase only with no punctuation, no special characters, and no spaces"."""
    return _letters_only(_nfc_lower(value)) or None


def normalize_state(value: str | None) -> str | None:
    """A 2-letter code in lowercase; Brazilian state names become their UF."""
    text = _nfc_lower(value)
    if not text:
        return None
    letters = _letters_only(text)
    if len(letters) == 2 and letters.isascii():
        return letters
    key = " ".join("".join(ch if ch.isalpha() else " " for ch in _ascii_fold(text)).split())
    return _BR_STATES.get(key) or letters or None


def normalize_zip(value: str | None, *, country: str | None = None) -> str | None:
    """Meta: "Use lowercase with no spaces and no dash. Use only the first 5 digits for U.S.
    zip codes." Only for the U.S.: a Brazilian CEP keeps its 8 digits ("01310-100" ->
    "01310100")."""
    text = "".join(ch for ch in _nfc_lower(value) if ch.isalnum())
    if country == "us":
        digits = "".join(ch for ch in text if ch.isdigit())
        return digits[:5] if len(digits) >= 5 else None
    return text or None


def normalize_country(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 in lowercase; common names ("Brasil") are mapped."""
    text = _nfc_lower(value)
    letters = "".join(ch for ch in _ascii_fold(text) if ch.isalpha() and ch.isascii())
    if len(letters) == 2:
        return letters
    key = " ".join("".join(ch if ch.isalpha() else " " for ch in _ascii_fold(text)).split())
    return _COUNTRY_NAMES.get(key)


def normalize_external_id(value: str | None) -> str | None:
    """Meta only says "hashing recommended"; trimmed and lowercased like its SDKs do, so
    the same contact always yields the same hash."""
    return _nfc_lower(value) or None


def split_name(full_name: str | None) -> tuple[str | None, str | None]:
    """First and last word of a display name: what `fn`/`ln` expect from "Maria da Silva"."""
    parts = (full_name or "").split()
    if not parts:
        return None, None
    return parts[0], (parts[-1] if len(parts) > 1 else None)


def hash_user_data(
    *,
    phone: str | None = None,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    city: str | None = None,
    state: str | None = None,
    zip_code: str | None = None,
    country: str | None = None,
    external_id: str | None = None,
) -> dict[str, Any]:
    """Normalise then hash; a field whose normalised value is empty is left out."""
    out: dict[str, Any] = {}
    phones = normalize_phone(phone)
    country_code = normalize_country(country)
    if country_code is None and phones and phones[0].startswith("55") and _is_br_national(phones[0][2:]):
        # Meta: "Always include your customers' countries"; a +55 number is Brazilian.
        country_code = "br"
    if phones:
        out["ph"] = [sha256_hex(p) for p in phones]
    if (em := normalize_email(email)) is not None:
        out["em"] = [sha256_hex(em)]
    singles = {
        "fn": normalize_name(first_name),
        "ln": normalize_name(last_name),
        "ct": normalize_city(city),
        "st": normalize_state(state),
        "zp": normalize_zip(zip_code, country=country_code),
        "country": country_code,
    }
    out.update({key: sha256_hex(v) for key, v in singles.items() if v})
    if (ext := normalize_external_id(external_id)) is not None:
        out["external_id"] = [sha256_hex(ext)]
    return out


# --- events ----------------------------------------------------------------------------


def capi_event_id(contact_key: str, stage: LeadStage, occurrence: str | None = None) -> str:
    """One id per contact and stage, whatever the attempt, process or payload.

    Meta deduplicates on (event_name, event_id); hashing keeps the contact key (a phone)
    out of a field Meta shows in Events Manager. `occurrence` separates real repeats of a
    stage (a second won deal).
    """
    key = (contact_key or "").strip()
    if not key:
        raise ValueError("contact_key is required for a deterministic event_id")
    basis = "\x1f".join(("meta-capi", "v1", key, stage, occurrence or ""))
    return "sdr-" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:40]


def messaging_channel_for(channel: str | None) -> MessagingChannel | None:
    """`whatsapp`/`instagram` for the repo's channel names (zapi, waha, whatsapp_cloud...)."""
    name = (channel or "").strip().lower()
    if name in _WHATSAPP_CHANNELS:
        return "whatsapp"
    if name == "instagram":
        return "instagram"
    return None


def stage_enabled(stage: LeadStage, enabled_events: Iterable[str]) -> bool:
    """Whether META_CAPI_EVENTS (e.g. ["Lead", "QualifiedLead", ...]) turns `stage` on."""
    return STAGE_SETTING_NAMES[stage] in set(enabled_events)


def _event_name(stage: LeadStage, qualified_event: QualifiedEventName) -> str:
    return {
        "lead": "Lead",
        "qualified": qualified_event,
        "scheduled": "Schedule",
        "won": "Purchase",
        "lost": LEAD_LOST_EVENT,
    }[stage]


def _referral_dict(referral: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
    if referral is None:
        return {}
    if isinstance(referral, BaseModel):
        return referral.model_dump()
    return dict(referral)


def _clean_id(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _epoch(event_time: datetime | int | float | None) -> int:
    if event_time is None:
        return int(datetime.now(UTC).timestamp())
    if isinstance(event_time, datetime):
        if event_time.tzinfo is None:  # naive datetimes in this codebase are UTC
            event_time = event_time.replace(tzinfo=UTC)
        return int(event_time.timestamp())
    if isinstance(event_time, bool):
        raise ValueError("event_time must be a datetime or a Unix timestamp")
    return int(event_time)


def build_event(
    stage: LeadStage,
    *,
    contact_key: str,
    channel: str,
    event_time: datetime | int | float | None = None,
    phone: str | None = None,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    city: str | None = None,
    state: str | None = None,
    zip_code: str | None = None,
    country: str | None = None,
    referral: Mapping[str, Any] | BaseModel | None = None,
    page_scoped_user_id: str | None = None,
    instagram_account_id: str | None = None,
    whatsapp_business_account_id: str | None = None,
    value: float | int | Decimal | None = None,
    currency: str = "BRL",
    qualified_event: QualifiedEventName = "QualifiedLead",
    occurrence: str | None = None,
) -> CapiEvent:
    """The CAPI event for a lead reaching `stage`, from what the store already has.

    Stages: lead (first contact) -> Lead, qualified -> QualifiedLead or
    CompleteRegistration, scheduled -> Schedule, won -> Purchase (needs `value`), lost
    -> the custom `lead_lost`.

    `action_source` is `business_messaging` only when the lead came from an ad and Meta
    can tie the event to the click: WhatsApp needs the referral's `ctwa_clid`, Instagram
    the lead's IGSID (`page_scoped_user_id`) plus an ad referral. That path accepts a
    fixed list of event names (BUSINESS_MESSAGING_EVENTS): `Lead` is spelled
    `LeadSubmitted` there, and Schedule / lead_lost / CompleteRegistration, which it
    does not accept, are sent as `system_generated` events matched on the hashed
    contact data. Without an ad, every event is `system_generated`.

    `contact_key` is our contact key: it seeds the deterministic `event_id` and is sent
    hashed as `external_id`. Raises ValueError for an unknown stage, a won deal without
    a value, or an invalid currency.
    """
    if stage not in STAGE_SETTING_NAMES:
        raise ValueError(f"unknown lead stage {stage!r}")
    base_name = _event_name(stage, qualified_event)
    ref = _referral_dict(referral)
    messaging = messaging_channel_for(channel)

    ad_ids: dict[str, str] = {}
    if messaging == "whatsapp" and (clid := _clean_id(ref.get("ctwa_clid"))):
        ad_ids["ctwa_clid"] = clid
        if waba := _clean_id(whatsapp_business_account_id):
            ad_ids["whatsapp_business_account_id"] = waba
    elif messaging == "instagram" and (igsid := _clean_id(page_scoped_user_id)):
        source_type = (_clean_id(ref.get("source_type")) or "").lower()
        from_ad = source_type == "ad" or _clean_id(ref.get("source_id")) is not None
        if from_ad:
            ad_ids["ig_sid"] = igsid
            if account := _clean_id(instagram_account_id):
                ad_ids["ig_account_id"] = account

    event_name = base_name
    action_source: ActionSource = "system_generated"
    channel_field: MessagingChannel | None = None
    if ad_ids:
        bm_name = _BUSINESS_MESSAGING_NAMES.get(base_name, base_name)
        if bm_name in BUSINESS_MESSAGING_EVENTS:
            event_name, action_source, channel_field = bm_name, "business_messaging", messaging
        else:
            ad_ids = {}  # click ids mean nothing outside business_messaging

    custom: CapiCustomData | None = None
    if stage == "won":
        if value is None:
            raise ValueError("a won deal (Purchase) needs a value")
        code = (currency or "").strip().upper()
        custom = CapiCustomData(value=round(float(value), 2), currency=code)

    user_data = hash_user_data(
        phone=phone,
        email=email,
        first_name=first_name,
        last_name=last_name,
        city=city,
        state=state,
        zip_code=zip_code,
        country=country,
        external_id=contact_key,
    )
    user_data.update(ad_ids)
    return CapiEvent(
        event_name=event_name,
        event_time=_epoch(event_time),
        event_id=capi_event_id(contact_key, stage, occurrence),
        action_source=action_source,
        messaging_channel=channel_field,
        user_data=CapiUserData(**user_data),
        custom_data=custom,
    )


# --- client ----------------------------------------------------------------------------


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None


class MetaCapiClient:
    """Sends one event per call to a pixel/dataset. No retries here: the outbox owns them."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        graph_url: str,
        version: str,
        pixel_id: str,
        access_token: str | SecretStr,
        test_event_code: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        pixel = (pixel_id or "").strip()
        if not _PIXEL_ID.fullmatch(pixel):
            # It ends up in the URL path: anything but digits could address another edge.
            raise ValueError("pixel_id must be the numeric id of the pixel/dataset")
        token = access_token if isinstance(access_token, SecretStr) else SecretStr(access_token or "")
        if not token.get_secret_value().strip():
            raise ValueError("access_token is required")
        self._session = session
        self._token = token
        self._url = "/".join([graph_url.rstrip("/"), version.strip("/"), pixel, "events"])
        self._test_event_code = (test_event_code or "").strip() or None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @classmethod
    def from_settings(
        cls, session: aiohttp.ClientSession, settings: Settings, *, timeout_s: float = 30.0
    ) -> MetaCapiClient:
        """META_PIXEL_ID / META_ACCESS_TOKEN / META_TEST_EVENT_CODE / META_GRAPH_*.

        30 s is the CAPI timeout of the CRM connections spec's retry table."""
        if not (settings.meta_pixel_id and settings.meta_access_token):
            raise ValueError("META_PIXEL_ID and META_ACCESS_TOKEN are required")
        return cls(
            session,
            graph_url=settings.meta_graph_url,
            version=settings.meta_graph_version,
            pixel_id=settings.meta_pixel_id,
            access_token=settings.meta_access_token,
            test_event_code=settings.meta_test_event_code,
            timeout_s=timeout_s,
        )

    @property
    def url(self) -> str:
        return self._url

    def request_body(self, event: CapiEvent) -> dict[str, Any]:
        return CapiRequest(data=[event], test_event_code=self._test_event_code).model_dump(
            mode="json", exclude_none=True
        )

    async def send(self, event: CapiEvent | Mapping[str, Any]) -> CapiResult:
        """POST one event; CapiResult on success, CapiError (with `retryable`) otherwise.

        Accepts the event model or its persisted JSON. A 2xx without a readable body is
        reported as success with `events_received=None`: Meta may have counted it, and
        for business messaging nobody deduplicates a resend.
        """
        ev = self._coerce(event)
        body = self.request_body(ev)
        headers = {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Content-Type": "application/json",
        }
        ctx = {
            "event_name": ev.event_name,
            "event_id": ev.event_id,
            "action_source": ev.action_source,
            "messaging_channel": ev.messaging_channel,
            "test": self._test_event_code is not None,
        }
        try:
            async with self._session.post(
                self._url, json=body, headers=headers, timeout=self._timeout
            ) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
                header_trace = _text(resp.headers.get("x-fb-trace-id"))
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            log.warning("meta_capi_failed", **ctx, status=None, error="timeout", retryable=True)
            raise CapiError(f"meta_capi {ev.event_name} timed out", retryable=True) from None
        except aiohttp.ClientError as exc:
            what = type(exc).__name__
            log.warning("meta_capi_failed", **ctx, status=None, error=what, retryable=True)
            raise CapiError(f"meta_capi {ev.event_name} transport error: {what}", retryable=True) from None

        data = _loads(raw)
        if not 200 <= status < 300 or (isinstance(data, dict) and isinstance(data.get("error"), dict)):
            error = self._error(ev.event_name, status, raw, data, header_trace)
            (log.warning if error.retryable else log.error)(
                "meta_capi_failed",
                **ctx,
                status=status,
                code=error.code,
                subcode=error.subcode,
                fbtrace_id=error.fbtrace_id,
                retryable=error.retryable,
                auth_failed=error.auth_failed,
            )
            raise error

        if not isinstance(data, dict):
            log.warning("meta_capi_unconfirmed", **ctx, status=status, fbtrace_id=header_trace)
            return CapiResult(fbtrace_id=header_trace)
        result = CapiResult.model_validate(data)
        if result.fbtrace_id is None and header_trace:
            result = result.model_copy(update={"fbtrace_id": header_trace})
        if result.events_received == 0:
            # Meta answered but took nothing: resending the same payload will not change that.
            log.error(
                "meta_capi_failed",
                **ctx,
                status=status,
                fbtrace_id=result.fbtrace_id,
                events_received=0,
                retryable=False,
            )
            raise CapiError(
                self._scrub(
                    f"meta_capi {ev.event_name}: Meta received no event"
                    + (f" ({'; '.join(result.messages)[:_ERROR_DETAIL_MAX]})" if result.messages else "")
                    + (f" (fbtrace_id {result.fbtrace_id})" if result.fbtrace_id else "")
                ),
                retryable=False,
                status=status,
                fbtrace_id=result.fbtrace_id,
            )
        log.info(
            "meta_capi_sent",
            **ctx,
            status=status,
            fbtrace_id=result.fbtrace_id,
            events_received=result.events_received,
            messages=[m[:200] for m in result.messages[:5]],
        )
        return result

    @staticmethod
    def _coerce(event: CapiEvent | Mapping[str, Any]) -> CapiEvent:
        if isinstance(event, CapiEvent):
            return event
        try:
            return CapiEvent.model_validate(dict(event))
        except (ValidationError, TypeError, ValueError) as exc:
            fields = ""
            if isinstance(exc, ValidationError):
                fields = ", ".join(".".join(str(p) for p in e["loc"]) or "event" for e in exc.errors()[:3])
            # Field names only: the values may be exactly what must not be logged.
            raise CapiError(
                f"meta_capi: invalid event ({fields or 'not an event'})", retryable=False
            ) from None

    def _scrub(self, text: str) -> str:
        token = self._token.get_secret_value()
        return text.replace(token, "[REDACTED]") if token else text

    def _error(
        self, event_name: str, status: int, raw: str, data: Any, header_trace: str | None
    ) -> CapiError:
        """Graph error JSON -> the outbox's retry vocabulary. Codes decide before HTTP
        statuses: Graph answers 400/403 for most of its rate limits."""
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict):
            err = {}
        code = _as_int(err.get("code"))
        subcode = _as_int(err.get("error_subcode"))
        trace = _text(err.get("fbtrace_id")) or header_trace
        transient = err.get("is_transient") is True

        parts = [p for p in (_text(err.get("message")), _text(err.get("error_user_title"))) if p]
        if not err:
            parts = [raw.strip()[:120]] if raw.strip() and not raw.lstrip().startswith("<") else []
        detail = self._scrub(" - ".join(dict.fromkeys(parts)))[:_ERROR_DETAIL_MAX]
        code_text = (
            f", code {code}" + (f"/{subcode}" if subcode is not None else "") if code is not None else ""
        )
        message = f"meta_capi {event_name} failed: HTTP {status}{code_text}"
        if detail:
            message += f": {detail}"
        if trace:
            message += f" (fbtrace_id {trace})"

        meta: dict[str, Any] = {"status": status, "code": code, "subcode": subcode, "fbtrace_id": trace}
        if code in AUTH_CODES or (code is None and status in (401, 403)):
            return CapiError(message, retryable=False, auth_failed=True, **meta)
        if code in RETRYABLE_CODES or transient:
            return CapiError(message, retryable=True, **meta)
        if code in INVALID_PARAMETER_CODES:
            return CapiError(message, retryable=False, **meta)
        retryable = status in (408, 425, 429) or status >= 500
        return CapiError(message, retryable=retryable, **meta)

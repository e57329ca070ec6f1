"""Typed outbox items: one frozen model per kind, so no layer reads a payload dict by hand.

The store keeps an item's payload as JSON (`OutboxItem.payload`); existing rows and the
Supabase SQL read those keys, so each model serialises to exactly the dict the old
builders wrote: fields in the same order, and only the keys that were given (a key that
was absent stays absent, an explicit None stays None). Keys the store adds at commit
(`lead_id`, `message_id` for `message_ref`) are declared where the store adds them, and
anything unknown in an old row is kept (`extra="allow"`), so a payload read and written
back (CRM progress, webhook delivery log) loses nothing.

Ground floor: no I/O, no project imports beyond core.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from core.records import ERASURE_KIND, OutboxItem, erasure_lane, lane_key

# --- claim priority -----------------------------------------------------------------
# Under a flood (10,000 form leads at once) every kind is due together, and the
# dispatcher's few workers must go first to what a lead is waiting for: the store claims
# due items priority by priority (each order key still head-first).
LEAD_PRIORITY = 0  # the lead's replies, sends, first touch
TEAM_PRIORITY = 1  # the Chatwoot mirror the sellers watch
BACK_OFFICE_PRIORITY = 2  # CRM, Conversions API, webhooks, erasure clean-up
PRIORITIES = (LEAD_PRIORITY, TEAM_PRIORITY, BACK_OFFICE_PRIORITY)


class OutboxPayload(BaseModel):
    """What every kind shares: parse from the stored dict, serialise back to it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    KIND: ClassVar[str]
    PRIORITY: ClassVar[int] = BACK_OFFICE_PRIORITY

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> Self:
        """The typed view of a stored payload; ValidationError when it cannot be one."""
        return cls.model_validate(dict(payload))

    def serialize(self) -> dict[str, Any]:
        """The dict the store keeps: only the keys that were set, in declaration order."""
        return self.model_dump(exclude_unset=True)

    def item(self, *, order_key: str, idempotency_key: str) -> OutboxItem:
        return OutboxItem(
            kind=self.KIND, order_key=order_key, idempotency_key=idempotency_key, payload=self.serialize()
        )

    def updated(self, **changes: Any) -> Self:
        """A copy with `changes` set (they are serialised from now on)."""
        return self.model_copy(update=changes)


def _given(**fields: Any) -> dict[str, Any]:
    """Keyword arguments without the None ones: optional keys the old builders left out."""
    return {key: value for key, value in fields.items() if value is not None}


# --- to the lead ----------------------------------------------------------------------
class SendText(OutboxPayload):
    """One bubble of text to the lead, on the channel they wrote on."""

    KIND: ClassVar[str] = "send_text"
    PRIORITY: ClassVar[int] = LEAD_PRIORITY

    channel: str
    contact_id: str
    contact_key: str | None = None
    text: str
    typing_s: int = 1
    # Points at the message row the store creates in the same commit; swapped for its id.
    message_ref: str | None = None
    message_id: int | None = None
    turn_id: str | None = None
    # opt_out_confirmation goes out even to a do-not-contact lead; follow_up is a nudge.
    purpose: str | None = None
    # A person's reply relayed from Chatwoot (Instagram: the HUMAN_AGENT tag).
    human_agent: bool = False
    lead_id: int | None = None
    # The lead's messages the first bubble answers, for WAHA's sendSeen (its `messageIds`).
    seen: list[str] | None = None
    # The first message to a lead who filled a form: the number is checked on WhatsApp
    # first (where the provider can tell), and one that is not goes to the sellers.
    first_touch: bool = False
    # Held until then (ISO time): a stale form's first touch waits for business hours.
    not_before: str | None = None
    # What fills template variables the lead's record cannot (a meeting reminder's time
    # and seller), should the closed window turn this text into its template.
    template_values: dict[str, str] | None = None

    @classmethod
    def bot_reply(
        cls,
        *,
        channel: str,
        contact_id: str,
        contact_key: str,
        text: str,
        typing_s: int,
        message_ref: str,
        turn_id: str,
        purpose: str | None = None,
        seen: list[str] | None = None,
    ) -> Self:
        return cls(
            channel=channel,
            contact_id=contact_id,
            contact_key=contact_key,
            text=text,
            typing_s=typing_s,
            message_ref=message_ref,
            turn_id=turn_id,
            **_given(purpose=purpose, seen=seen or None),
        )

    @classmethod
    def human_reply(
        cls, *, channel: str, contact_id: str, contact_key: str, text: str, message_id: int
    ) -> Self:
        return cls(
            channel=channel,
            contact_id=contact_id,
            contact_key=contact_key,
            text=text,
            typing_s=1,
            message_id=message_id,
            human_agent=True,
        )

    def to_item(self, idempotency_key: str) -> OutboxItem:
        """Every reply to one lead shares the lead's reply lane, so they go out in order."""
        return self.item(
            order_key=lane_key("reply", self.contact_key or f"{self.channel}:{self.contact_id}"),
            idempotency_key=idempotency_key,
        )

    @property
    def silenceable(self) -> bool:
        """False for what must go out even to a silenced lead (a person's reply, the
        opt-out confirmation)."""
        return not self.human_agent and self.purpose != "opt_out_confirmation"


class SendMedia(OutboxPayload):
    """A file a person sent the lead from Chatwoot (a proposal PDF, a catalogue, a photo).

    `url` is the Chatwoot attachment's `data_url`: fetched at delivery, from Chatwoot's
    own origin only, and handed to the channel as bytes (a link only where the provider
    takes nothing else)."""

    KIND: ClassVar[str] = "send_media"
    PRIORITY: ClassVar[int] = LEAD_PRIORITY

    channel: str
    contact_id: str
    contact_key: str
    url: str
    # Chatwoot's attachment file_type: image, audio, video, file...
    file_type: str | None = None
    file_name: str | None = None
    caption: str | None = None
    message_id: int | None = None
    human_agent: bool = True
    lead_id: int | None = None

    def to_item(self, idempotency_key: str) -> OutboxItem:
        """Same lane as the lead's text replies: a caption and its file arrive in order."""
        return self.item(order_key=lane_key("reply", self.contact_key), idempotency_key=idempotency_key)


class Reengage(OutboxPayload):
    """The closed 24-hour window: an approved template, or a person takes over.

    `purpose` picks the template (prompts/whatsapp_templates.toml): `reengage` when the
    bot's reply hit the closed window, `seller_start` when a person at the company writes
    first to a lead whose window is closed."""

    KIND: ClassVar[str] = "reengage"
    PRIORITY: ClassVar[int] = LEAD_PRIORITY

    channel: str
    contact_id: str
    contact_key: str
    purpose: str | None = None
    # As SendText's: a form lead's first touch may wait for business hours.
    not_before: str | None = None
    # As SendText's: the meeting reminder's time and seller, for its template.
    template_values: dict[str, str] | None = None

    def to_item(self, *, since: str) -> OutboxItem:
        # Once per silence of the lead and purpose: the key names when the lead last wrote.
        purpose = f"{self.purpose}:" if self.purpose else ""
        return self.item(
            order_key=lane_key("reply", self.contact_key),
            idempotency_key=f"reengage:{purpose}{self.contact_key}:{since}",
        )


# --- form leads -----------------------------------------------------------------------
class LeadAdsFetch(OutboxPayload):
    """A Meta Lead Ads lead announced by the Page webhook, to be read from the Graph API.

    Through the outbox so a Graph outage delays the lead but never loses it; `lead` keeps
    what the Graph API returned once read, so an item that cannot become a conversation
    (no phone on the form) still holds the lead's answers for the operator."""

    KIND: ClassVar[str] = "meta_lead_fetch"
    PRIORITY: ClassVar[int] = LEAD_PRIORITY

    leadgen_id: str
    page_id: str | None = None
    form_id: str | None = None
    ad_id: str | None = None
    adgroup_id: str | None = None
    created_time: int | None = None
    lead: dict[str, Any] | None = None

    def to_item(self) -> OutboxItem:
        return self.item(order_key=f"leadgen:{self.leadgen_id}", idempotency_key=f"leadgen:{self.leadgen_id}")


# --- Chatwoot -------------------------------------------------------------------------
class ChatwootMessage(OutboxPayload):
    """One message of the conversation, the lead's or the bot's, mirrored for the team."""

    KIND: ClassVar[str] = "chatwoot_message"
    PRIORITY: ClassVar[int] = TEAM_PRIORITY

    contact_key: str
    direction: str
    text: str
    message_ref: str | None = None
    purpose: str | None = None
    message_id: int | None = None
    lead_id: int | None = None
    # Media the lead sent, mirrored as a real Chatwoot attachment: the channel that
    # received it fetches it (its own credentials, the media rule) at delivery.
    channel: str | None = None
    media_url: str | None = None
    media_kind: str | None = None
    media_mime: str | None = None
    file_name: str | None = None

    @property
    def incoming(self) -> bool:
        return self.direction == "in"


class ChatwootProfile(OutboxPayload):
    """The lead card on the Chatwoot contact (custom attributes and a temperature label)."""

    KIND: ClassVar[str] = "chatwoot_profile"
    PRIORITY: ClassVar[int] = TEAM_PRIORITY

    contact_key: str
    attributes: dict[str, Any]
    temperature: str
    purpose: str | None = None
    lead_id: int | None = None


class ChatwootHandoff(OutboxPayload):
    """The private handoff note (text from prompts/handoff_card.toml); the conversation opens."""

    KIND: ClassVar[str] = "chatwoot_handoff"
    PRIORITY: ClassVar[int] = TEAM_PRIORITY

    contact_key: str
    card: str
    purpose: str | None = None
    lead_id: int | None = None
    # The lead's routed seller (prompts/sellers.toml), who gets the conversation.
    assignee_id: int | None = None


class ChatwootNote(OutboxPayload):
    """A private note for the sellers (a quote request, a technical question), with the
    labels that let them filter for it; the bot's other labels and theirs are kept."""

    KIND: ClassVar[str] = "chatwoot_note"
    PRIORITY: ClassVar[int] = TEAM_PRIORITY

    contact_key: str
    note: str
    labels: list[str] = []
    purpose: str | None = None
    # The seller the conversation is assigned to (a booked meeting's seller).
    assignee_id: int | None = None
    lead_id: int | None = None


def chatwoot_lane(contact_key: str) -> str:
    return lane_key("chatwoot", contact_key)


# --- CRM, ads, webhooks -----------------------------------------------------------------
class PipeRunSync(OutboxPayload):
    """Put the lead in PipeRun (or refresh its deal note); `link` is the progress so far."""

    KIND: ClassVar[str] = "piperun_sync"

    contact_key: str
    reason: str | None = None
    turn_id: str | None = None
    lead_id: int | None = None
    # PipeRun ids created so far (person, company, deal, note), saved after each call.
    link: dict[str, int] | None = None


class PipeRunNote(OutboxPayload):
    """A note on the lead's PipeRun deal (a quote request, a technical question).

    Waits, retrying, while the lead's first sync has not created the deal yet; a lead that
    never reaches the CRM (not hot, not handed off) has no deal, and the note is skipped."""

    KIND: ClassVar[str] = "piperun_note"

    contact_key: str
    text: str
    lead_id: int | None = None


class PipeRunActivity(OutboxPayload):
    """A booked, moved or cancelled meeting as an activity on the lead's PipeRun deal,
    owned by the seller (`owner_id`: their piperun_user_id; None: PIPERUN_OWNER_ID, and
    without either a deal note instead). In the CRM lane after the sync; no deal, nothing."""

    KIND: ClassVar[str] = "piperun_activity"

    contact_key: str
    title: str
    starts_at: str
    ends_at: str
    owner_id: int | None = None
    meet_url: str | None = None
    event_id: str
    status: str = "scheduled"
    lead_id: int | None = None


class CapiEvent(OutboxPayload):
    """One Conversions API event: the stage and when; the lead is read at delivery time."""

    KIND: ClassVar[str] = "meta_capi"

    contact_key: str
    # Checked by the handler, which names an unknown stage in the dead item's error.
    stage: str | None = None
    event_time: int | None = None
    value: float | None = None
    currency: str | None = None
    lead_id: int | None = None


class OutboundWebhook(OutboxPayload):
    """One event for one subscribed endpoint; `deliveries` logs every attempt's result."""

    KIND: ClassVar[str] = "outbound_webhook"

    # Optional where the handler copes without: a removed endpoint is skipped quietly.
    contact_key: str | None = None
    endpoint_id: str | None = None
    event: str | None = None
    delivery_id: str | None = None
    timestamp: str | None = None
    data: dict[str, Any] = {}
    lead_id: int | None = None
    deliveries: list[dict[str, Any]] = []


# --- LGPD erasure -----------------------------------------------------------------------
class LeadErasure(OutboxPayload):
    """What the erasure transaction enqueues: ids in other systems, never the lead's data."""

    KIND: ClassVar[str] = ERASURE_KIND

    erasure_id: int
    erased_at: str
    channel: str | None = None
    chatwoot_contact_id: int | None = None
    crm_person_id: int | None = None
    crm_deal_id: int | None = None

    @property
    def lane(self) -> str:
        return erasure_lane(self.erasure_id)


class ChatwootErase(OutboxPayload):
    """Delete the lead's Chatwoot contact (`erasure_id` None: created after the erasure)."""

    KIND: ClassVar[str] = "chatwoot_erase"

    erasure_id: int | None = None
    chatwoot_contact_id: int


class PipeRunErase(OutboxPayload):
    """Delete or anonymise the PipeRun person and anonymise the deal."""

    KIND: ClassVar[str] = "piperun_erase"

    erasure_id: int | None = None
    crm_person_id: int | None = None
    crm_deal_id: int | None = None


PAYLOADS: Mapping[str, type[OutboxPayload]] = {
    model.KIND: model
    for model in (
        SendText,
        SendMedia,
        Reengage,
        LeadAdsFetch,
        ChatwootMessage,
        ChatwootProfile,
        ChatwootHandoff,
        ChatwootNote,
        PipeRunSync,
        PipeRunNote,
        PipeRunActivity,
        CapiEvent,
        OutboundWebhook,
        LeadErasure,
        ChatwootErase,
        PipeRunErase,
    )
}


def claim_priority(kind: str) -> int:
    """Where `kind` waits in a flood; a kind this release does not know (a newer one's,
    a test's) waits with the back office, behind every reply to a lead."""
    model = PAYLOADS.get(kind)
    return model.PRIORITY if model is not None else BACK_OFFICE_PRIORITY


class _Envelope(BaseModel):
    """The fields log lines name, whatever the kind (and for kinds tests invent)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    contact_key: str | None = None
    channel: str | None = None
    contact_id: str | None = None
    turn_id: str | None = None


def log_fields(payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(contact key, turn id) of any item, for its log lines; never raises."""
    try:
        envelope = _Envelope.model_validate(dict(payload))
    except ValidationError:
        return None, None
    contact = envelope.contact_key
    if not contact and envelope.channel is not None and envelope.contact_id is not None:
        contact = f"{envelope.channel}:{envelope.contact_id}"
    return contact or None, envelope.turn_id


__all__ = [
    "BACK_OFFICE_PRIORITY",
    "LEAD_PRIORITY",
    "PAYLOADS",
    "PRIORITIES",
    "TEAM_PRIORITY",
    "CapiEvent",
    "ChatwootErase",
    "ChatwootHandoff",
    "ChatwootMessage",
    "ChatwootNote",
    "ChatwootProfile",
    "LeadErasure",
    "OutboundWebhook",
    "OutboxPayload",
    "PipeRunActivity",
    "PipeRunErase",
    "PipeRunNote",
    "PipeRunSync",
    "Reengage",
    "SendMedia",
    "SendText",
    "chatwoot_lane",
    "claim_priority",
    "log_fields",
]

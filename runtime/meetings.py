"""Meetings: the right seller's real free times offered to a lead, and the one the lead
chose booked on the seller's calendar before anyone says it is confirmed.

The turn still costs one model call: the times are gathered before the model is called
(only when the lead is qualified enough or asks to meet, cached briefly) and given to it
as numbered options; the model calls `book_meeting` with the option the lead chose, and
the booking happens before the turn commits. The event id is ours and deterministic
(lead + slot), so a retried or crashed turn finds its own event instead of booking twice;
a slot taken meanwhile is answered with an apology and fresh options.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, tzinfo

from pydantic import SecretStr

from agent.business_hours import BusinessHours
from core.config_files import read_toml
from core.lead import LeadProfile
from core.logging import get_logger
from core.outbox import ChatwootNote, chatwoot_lane
from core.records import LeadRecord, MeetingRecord, OutboxItem, TurnCommit
from core.timezones_br import timezone_for, zone_name
from integrations.google_calendar import (
    CalendarCredentials,
    GoogleCalendarClient,
    GoogleCalendarConfig,
    GoogleCalendarUnavailable,
    SlotTaken,
    event_id_for,
)
from runtime.meeting_rules import DEFAULT_MEETINGS_PATH, MeetingRules
from runtime.meeting_slots import Slot, free_slots, label
from runtime.seller_routing import choose_seller
from runtime.sellers import Seller, Sellers
from store.base import Store

log = get_logger(__name__)

# Words that mean "let's meet" in a lead's message, accents and case ignored.
_MEET_WORDS = re.compile(
    r"\b(reuniao|reunir|agendar|agenda|marcar|visita|call|videochamada|conversar com (um|o|a) vendedor"
    r"|falar com (um|o|a) vendedor|demonstracao|horario|remarcar|desmarcar|cancelar|adiar)\b"
)
# Free/busy is asked once per lead and this long at most: a lead choosing among the
# options in the next message sees the same numbers.
OFFER_TTL = timedelta(minutes=5)
# A booking holds its calendar across instances (a lease in the store) while Google
# checks free/busy and inserts or moves the event: up to four calls (token, event,
# free/busy, insert) of HTTP_TIMEOUT_S (15 s) each, so the lease outlasts them all; a
# crashed holder's lease expires after it.
CALENDAR_LEASE_S = 90.0
# How long a booking waits for a calendar another instance holds before the turn is
# deferred as for a calendar outage, looking again at growing intervals.
CALENDAR_WAIT_S = 10.0
CALENDAR_POLL_S = (0.05, 0.5)


class MeetingTextsError(ValueError):
    """prompts/meetings.toml lacks a [mensagens] text."""


@dataclass(frozen=True)
class MeetingTexts:
    """What the bot tells the model and the lead (pt-BR, [mensagens] in meetings.toml)."""

    options_note: str
    booking_link_note: str
    confirmed: str
    meet_link: str
    taken: str
    summary: str
    seller_note: str
    existing_note: str
    rescheduled: str
    cancelled: str

    @classmethod
    def load(cls, path: str | None = None) -> MeetingTexts:
        source = path or DEFAULT_MEETINGS_PATH
        data = read_toml(source, what="meeting texts", error=MeetingTextsError)  # type: ignore[arg-type]
        texts = data.get("mensagens")
        if not isinstance(texts, dict):
            raise MeetingTextsError(f"{source}: [mensagens] is required")
        values: dict[str, str] = {}
        for name in (f.name for f in fields(cls)):
            value = texts.get(name)
            if not isinstance(value, str) or not value.strip():
                raise MeetingTextsError(f"{source}: '[mensagens] {name}' (a text) is required")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class MeetingOffer:
    """What the model is told this turn: numbered free times of `seller` (or the seller's
    booking link when there is no calendar to read)."""

    seller: Seller
    slots: tuple[Slot, ...]
    made_at: datetime
    note: str
    # The lead's upcoming meeting: the options (if any) are for moving it.
    existing: MeetingRecord | None = None

    def slot(self, option: int) -> Slot | None:
        return self.slots[option - 1] if 1 <= option <= len(self.slots) else None


MEETING_LABEL = "reuniao-agendada"


@dataclass(frozen=True)
class Booked:
    meeting: MeetingRecord
    text: str
    note: str


@dataclass(frozen=True)
class Taken:
    offer: MeetingOffer | None
    text: str


@dataclass
class MeetingDesk:
    store: Store
    calendar: GoogleCalendarClient
    config: GoogleCalendarConfig
    sellers: Sellers
    rules: MeetingRules
    hours: BusinessHours
    texts: MeetingTexts
    clock: Callable[[], datetime]
    # Sellers who connected their own Google account: their refresh tokens, by seller key.
    refresh_tokens: Mapping[str, SecretStr] = field(default_factory=dict)
    _offers: dict[str, MeetingOffer] = field(default_factory=dict)
    # One booking at a time per calendar in this process: two leads choosing the same
    # time at once must not both pass the free/busy check before either inserts.
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def _calendar(self, calendar_id: str) -> AsyncIterator[None]:
        """This calendar to ourselves while a slot is taken on it: in this process (a lock)
        and across instances sharing the store (the turn leases' table, keyed
        "calendar:<id>"), or GoogleCalendarUnavailable (the turn waits and tries again)
        when another instance still holds it after CALENDAR_WAIT_S."""
        async with self._locks.setdefault(calendar_id, asyncio.Lock()):
            key, owner = f"calendar:{calendar_id}", uuid.uuid4().hex
            await self._claim_calendar(key, owner)
            try:
                yield
            finally:
                try:
                    await self.store.release_contact(key, owner=owner)
                except Exception:  # noqa: BLE001 - the booking is done; the lease expires by itself
                    log.warning("calendar_lease_release_failed", exc_info=True)

    async def _claim_calendar(self, key: str, owner: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CALENDAR_WAIT_S
        pause, longest = CALENDAR_POLL_S
        while not await self.store.claim_contact(key, owner=owner, lease_s=CALENDAR_LEASE_S):
            if loop.time() + pause > deadline:
                raise GoogleCalendarUnavailable(
                    "google_calendar: another instance is booking on this calendar"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)

    async def offer(
        self, contact_key: str, lead: LeadRecord | None, profile: LeadProfile, texts: list[str]
    ) -> MeetingOffer | None:
        """The options for this turn, or None (no seller, nothing wanted, a full calendar).
        A lead with a meeting ahead is reminded of it to the model, and given times to
        move it to only when the lead talks about meetings."""
        now = self.clock()
        cached = self._offers.get(contact_key)
        if cached is not None and now - cached.made_at < OFFER_TTL:
            return cached
        if not self.sellers:
            return None
        existing = await self.upcoming(contact_key)
        asked = any(_MEET_WORDS.search(_plain(text)) for text in texts)
        if existing is not None:
            return await self._existing(contact_key, lead, profile, existing, asked=asked)
        if not (asked or (lead is not None and lead.temperature in ("morno", "quente"))):
            return None
        seller = await choose_seller(self.store, self.sellers, profile, contact_key=contact_key, now=now)
        if seller is None:
            return None
        if not self.config.configured:
            if seller.booking_url is None:
                return None
            note = self.texts.booking_link_note.replace("{vendedor}", seller.name)
            offer = MeetingOffer(seller, (), now, note.replace("{link}", seller.booking_url))
        else:
            slots = await self._slots(seller, lead, profile)
            if not slots:
                return None
            note = self.texts.options_note.replace("{vendedor}", seller.name)
            offer = MeetingOffer(seller, tuple(slots), now, note.replace("{opcoes}", _numbered(slots)))
        self._offers[contact_key] = offer
        return offer

    async def upcoming(self, contact_key: str) -> MeetingRecord | None:
        now = self.clock()
        meetings = await self.store.lead_meetings(contact_key)
        return next((m for m in meetings if m.status == "scheduled" and m.starts_at > now), None)

    async def _existing(
        self,
        contact_key: str,
        lead: LeadRecord | None,
        profile: LeadProfile,
        existing: MeetingRecord,
        *,
        asked: bool,
    ) -> MeetingOffer | None:
        seller = self.sellers.get(existing.seller_key)
        if seller is None:
            return None
        now = self.clock()
        when = label(
            existing.starts_at, now=now, company_tz=self.hours.zone, lead_tz=self._lead_tz(lead, profile)
        )
        note = self.texts.existing_note.replace("{quando}", when).replace("{vendedor}", seller.name)
        slots = await self._slots(seller, lead, profile) if asked and self.config.configured else []
        listed = _numbered(slots) if slots else "-"
        offer = MeetingOffer(seller, tuple(slots), now, note.replace("{opcoes}", listed), existing=existing)
        if asked:
            self._offers[contact_key] = offer
        return offer

    async def _slots(self, seller: Seller, lead: LeadRecord | None, profile: LeadProfile) -> list[Slot]:
        now = self.clock()
        horizon = now + timedelta(days=self.rules.horizon_business_days * 7 // 5 + 4)
        busy = await self.calendar.busy(
            seller.calendar_id or seller.email, start=now, end=horizon, credentials=self._credentials(seller)
        )
        return free_slots(
            busy=list(busy),
            now=now,
            rules=self.rules,
            hours=self.hours,
            seller_hours=seller.hours,
            lead_tz=self._lead_tz(lead, profile),
        )

    @staticmethod
    def _lead_tz(lead: LeadRecord | None, profile: LeadProfile) -> tzinfo | None:
        return timezone_for(profile.state, lead.phone if lead else None)

    async def move(
        self,
        contact_key: str,
        lead: LeadRecord | None,
        profile: LeadProfile,
        offer: MeetingOffer,
        option: int,
    ) -> Booked | Taken:
        """The lead's meeting moved to the chosen option, on the calendar first."""
        slot = offer.slot(option)
        existing = offer.existing
        if slot is None or existing is None:
            return Taken(offer, self.texts.taken.replace("{opcoes}", _listed(offer.slots)))
        try:
            async with self._calendar(existing.calendar_id):
                event = await self.calendar.move_meeting(
                    existing.calendar_id,
                    existing.event_id,
                    start=slot.start,
                    end=slot.end,
                    credentials=self._credentials(offer.seller),
                )
        except SlotTaken:
            self._offers.pop(contact_key, None)
            fresh = await self.offer(contact_key, lead, profile, ["remarcar"])
            listed = _listed(fresh.slots) if fresh is not None else ""
            return Taken(fresh, self.texts.taken.replace("{opcoes}", listed))
        moved = replace(
            existing, starts_at=slot.start, ends_at=slot.end, meet_url=event.meet_url or existing.meet_url
        )
        await self.store.save_meeting(moved)
        self._offers.pop(contact_key, None)
        when = label(
            slot.start, now=self.clock(), company_tz=self.hours.zone, lead_tz=self._lead_tz(lead, profile)
        )
        text = self.texts.rescheduled.replace("{quando}", when).replace("{vendedor}", offer.seller.name)
        company_when = label(slot.start, now=self.clock(), company_tz=self.hours.zone)
        note = self.texts.seller_note.replace("{quando}", company_when).replace(
            "{vendedor}", offer.seller.name
        )
        log.info("meeting_moved", seller=offer.seller.key, event_id=existing.event_id)
        return Booked(moved, text, note.replace("{link}", event.html_link or existing.event_id))

    async def cancel(self, contact_key: str, offer: MeetingOffer) -> Booked | None:
        """The lead's meeting cancelled on the calendar (everyone told), then stored."""
        existing = offer.existing
        if existing is None:
            return None
        await self.calendar.cancel_meeting(
            existing.calendar_id, existing.event_id, credentials=self._credentials(offer.seller)
        )
        cancelled = replace(existing, status="cancelled")
        await self.store.save_meeting(cancelled)
        self._offers.pop(contact_key, None)
        log.info("meeting_cancelled", seller=offer.seller.key, event_id=existing.event_id)
        return Booked(cancelled, self.texts.cancelled, self.texts.cancelled)

    async def book(
        self,
        contact_key: str,
        lead: LeadRecord | None,
        profile: LeadProfile,
        offer: MeetingOffer,
        option: int,
    ) -> Booked | Taken:
        """The chosen option booked (and stored), or the apology with fresh options."""
        slot = offer.slot(option)
        seller = offer.seller
        if slot is None:
            return Taken(offer, self.texts.taken.replace("{opcoes}", _listed(offer.slots)))
        calendar_id = seller.calendar_id or seller.email
        event_id = event_id_for(contact_key, seller.key, slot.start.isoformat())
        name = profile.name or (lead.name if lead else None) or "lead"
        summary = self.texts.summary.replace("{lead}", name).replace("{empresa}", profile.company or "")
        lead_tz = self._lead_tz(lead, profile)
        try:
            async with self._calendar(calendar_id):
                event = await self.calendar.book_meeting(
                    calendar_id,
                    event_id=event_id,
                    start=slot.start,
                    end=slot.end,
                    summary=summary.strip(" -"),
                    attendee_email=profile.email,
                    time_zone=zone_name(lead_tz) if lead_tz is not None else None,
                    credentials=self._credentials(seller),
                )
        except SlotTaken:
            self._offers.pop(contact_key, None)
            fresh = await self.offer(contact_key, lead, profile, ["agendar"])
            listed = _listed(fresh.slots) if fresh is not None else ""
            return Taken(fresh, self.texts.taken.replace("{opcoes}", listed))
        meeting = MeetingRecord(
            event_id=event_id,
            contact_key=contact_key,
            seller_key=seller.key,
            calendar_id=calendar_id,
            starts_at=slot.start,
            ends_at=slot.end,
            meet_url=event.meet_url,
            html_link=event.html_link,
        )
        await self.store.save_meeting(meeting)
        self._offers.pop(contact_key, None)
        when = label(slot.start, now=self.clock(), company_tz=self.hours.zone, lead_tz=lead_tz)
        text = self.texts.confirmed.replace("{quando}", when).replace("{vendedor}", seller.name)
        if event.meet_url:
            text += "\n" + self.texts.meet_link.replace("{link}", event.meet_url)
        log.info("meeting_booked", seller=seller.key, event_id=event_id)
        company_when = label(slot.start, now=self.clock(), company_tz=self.hours.zone)
        note = self.texts.seller_note.replace("{quando}", company_when).replace("{vendedor}", seller.name)
        note = note.replace("{link}", event.html_link or event.meet_url or event_id)
        return Booked(meeting, text.strip(), note)

    def _credentials(self, seller: Seller) -> CalendarCredentials:
        return self.config.credentials_for(
            subject=seller.email, refresh_token=self.refresh_tokens.get(seller.key)
        )


def meeting_note(commit: TurnCommit, booked: Booked, *, assignee_id: int | None = None) -> list[OutboxItem]:
    """The team sees the meeting in the lead's Chatwoot conversation: booked or moved
    (labelled reuniao-agendada, the conversation assigned to the seller), or cancelled;
    once per state of the meeting."""
    m = booked.meeting
    scheduled = m.status == "scheduled"
    note = ChatwootNote(
        contact_key=commit.contact_key,
        note=booked.note,
        labels=[MEETING_LABEL] if scheduled else [],
        **({"assignee_id": assignee_id} if scheduled and assignee_id is not None else {}),
    )
    return [
        note.item(
            order_key=chatwoot_lane(commit.contact_key),
            idempotency_key=f"cw-meeting:{m.event_id}:{m.status}:{m.starts_at.isoformat()}",
        )
    ]


def _numbered(slots: list[Slot]) -> str:
    """The options as the model sees them: "[1] amanhã às 10h", one per line."""
    return "\n".join(f"[{n}] {slot.label}" for n, slot in enumerate(slots, 1))


def _listed(slots: tuple[Slot, ...]) -> str:
    return "\n".join(f"{n}) {slot.label}" for n, slot in enumerate(slots, 1))


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))

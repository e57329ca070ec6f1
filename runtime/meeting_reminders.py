"""Meeting reminders: 24 hours and 1 hour before a booked meeting, a short text to the
lead on the channel they wrote on, never for a cancelled meeting nor an opted-out lead.

The meetings live in the store (`due_reminders` offers only the closest due reminder of
each scheduled meeting not yet started), so reminders survive restarts; `MeetingReminders`
only looks for due ones and queues each as an ordinary `SendText` (purpose
`meeting_reminder`, one outbox item per meeting and reminder whatever the retries). The
delivery handles a closed 24-hour window: the approved [meeting_reminder] template of
prompts/whatsapp_templates.toml, or nothing (a reminder is no conversation to hand over).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.business_hours import BusinessHours
from core.config_files import read_toml
from core.lead import LeadProfile
from core.logging import get_logger
from core.models import mask_contact_key
from core.outbox import SendText
from core.records import DueReminder, LeadRecord
from core.timezones_br import timezone_for
from runtime.meeting_rules import DEFAULT_MEETINGS_PATH
from runtime.meeting_slots import label
from runtime.templates import MEETING_REMINDER
from store.base import Store

log = get_logger(__name__)

# Offset name -> hours before the start; the names are what `reminders_sent` records.
OFFSETS: Mapping[str, float] = {"24h": 24.0, "1h": 1.0}
# Offset name -> its text's key in [lembretes] of prompts/meetings.toml.
TEXT_KEYS: Mapping[str, str] = {"24h": "lembrete_24h", "1h": "lembrete_1h"}
# When the seller's key is no longer in prompts/sellers.toml.
UNKNOWN_SELLER = "nossa equipe"
# A reminder this late is not sent: a meeting booked 20 hours ahead would otherwise get
# its "24h" reminder right after the confirmation (and a bot down for a while would send
# stale ones). The "1h" one still comes.
LATE_AFTER = timedelta(minutes=30)

# The sentence that carries {link}: dropped when the meeting has no call link.
_LINK_SENTENCE = re.compile(r"[^.!?\n]*\{link\}[^.!?\n]*[.!?]?")


class ReminderTextsError(ValueError):
    """prompts/meetings.toml lacks a [lembretes] text."""


def load_reminder_texts(path: Path | str | None = None) -> dict[str, str]:
    """The reminder texts by offset name ("24h", "1h"), read once at start."""
    source = Path(path) if path is not None else DEFAULT_MEETINGS_PATH
    data = read_toml(source, what="meeting reminder texts", error=ReminderTextsError)
    table = data.get("lembretes")
    if not isinstance(table, dict):
        raise ReminderTextsError(f"{source}: [lembretes] is required")
    texts: dict[str, str] = {}
    for which, key in TEXT_KEYS.items():
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ReminderTextsError(f"{source}: '[lembretes] {key}' (a text) is required")
        texts[which] = value
    return texts


def render(text: str, *, nome: str, quando: str, vendedor: str, link: str | None) -> str:
    """The reminder as the lead reads it; without a link, the sentence naming it goes."""
    if link is None:
        text = _LINK_SENTENCE.sub("", text)
    filled = text.replace("{quando}", quando).replace("{vendedor}", vendedor).replace("{link}", link or "")
    # An unknown name: "Oi {nome}!" reads "Oi!", never "Oi !".
    if not nome:
        filled = re.sub(r"[ \t]*\{nome\}(?=[ \t]*[!?,.])", "", filled)
    filled = filled.replace("{nome}", nome)
    lines = [line.strip() for line in filled.splitlines()]
    return "\n".join(line for line in lines if line)


def reminder_key(event_id: str, starts_at: datetime, which: str) -> str:
    """The outbox idempotency key: one reminder per meeting, start and offset, ever. The
    start is in it because a moved meeting keeps its event id and is reminded again (the
    store forgets the reminders sent when the start changes)."""
    return f"reminder:{event_id}:{starts_at.astimezone(UTC):%Y%m%dT%H%MZ}:{which}"


class MeetingReminders:
    """Polls the store for due reminders and queues them; `run_due` is one pass."""

    def __init__(
        self,
        store: Store,
        *,
        texts: Mapping[str, str],
        hours: BusinessHours,
        clock: Callable[[], datetime],
        poll_s: float,
        offsets: Mapping[str, float] = OFFSETS,
        seller_names: Mapping[str, str] | None = None,
        wake: Callable[[], None] | None = None,
        late_after: timedelta = LATE_AFTER,
    ) -> None:
        missing = sorted(set(offsets) - set(texts))
        if missing:
            raise ReminderTextsError(f"no reminder text for {', '.join(missing)}")
        self.store = store
        self.texts = dict(texts)
        self.hours = hours
        self.clock = clock
        self.poll_s = poll_s
        self.offsets = dict(offsets)
        self.seller_names = dict(seller_names or {})
        self.wake = wake or (lambda: None)
        self.late_after = late_after
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @classmethod
    def from_files(
        cls, store: Store, *, clock: Callable[[], datetime], poll_s: float, wake: Callable[[], None]
    ) -> MeetingReminders:
        """Texts, business hours and sellers' names read from prompts/ (at start: a
        broken file stops the start)."""
        from agent.business_hours import load_business_hours
        from runtime.sellers import load_sellers

        return cls(
            store,
            texts=load_reminder_texts(),
            hours=load_business_hours(),
            clock=clock,
            poll_s=poll_s,
            seller_names={seller.key: seller.name for seller in load_sellers()},
            wake=wake,
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="meeting-reminders")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def run_due(self) -> list[str]:
        """One pass; per due reminder what happened: "queued", "late", "opted_out",
        "lead_gone" or "error" (left for the next pass)."""
        outcomes: list[str] = []
        for due in await self.store.due_reminders(now=self.clock(), offsets=self.offsets):
            if self._stop.is_set():
                break
            try:
                outcomes.append(await self._remind(due))
            except Exception:
                log.exception("meeting_reminder_failed", event_id=due.meeting.event_id, which=due.which)
                outcomes.append("error")
        if "queued" in outcomes:
            self.wake()
        return outcomes

    async def _remind(self, due: DueReminder) -> str:
        meeting = due.meeting
        lead = await self.store.get_lead(meeting.contact_key)
        skip = self._skip(due, lead)
        if skip is not None:
            # Marked all the same, so the reminder is not offered again every pass.
            await self.store.mark_reminder_sent(meeting.event_id, due.which)
            log.info(
                "meeting_reminder_skipped",
                reason=skip,
                which=due.which,
                contact=mask_contact_key(meeting.contact_key),
            )
            return skip
        assert lead is not None
        send = self._reminder(due, lead)
        # Queued before it is marked: a crash between the two queues nothing new (the
        # idempotency key), while the reverse order could lose the reminder.
        await self.store.enqueue(send.to_item(reminder_key(meeting.event_id, meeting.starts_at, due.which)))
        await self.store.mark_reminder_sent(meeting.event_id, due.which)
        log.info(
            "meeting_reminder_queued",
            which=due.which,
            channel=lead.channel,
            contact=mask_contact_key(meeting.contact_key),
        )
        return "queued"

    def _skip(self, due: DueReminder, lead: LeadRecord | None) -> str | None:
        """Why this reminder must not go out, or None."""
        if lead is None:
            return "lead_gone"
        if lead.opted_out:
            return "opted_out"
        due_at = due.meeting.starts_at - timedelta(hours=self.offsets[due.which])
        if self.clock() - due_at > self.late_after:
            return "late"
        return None

    def _reminder(self, due: DueReminder, lead: LeadRecord) -> SendText:
        """The reminder as text, with the values of the approved template a closed window
        turns it into: the meeting's time on the lead's clock, as they were told it ("amanhã
        às 15h"), except in the template, which may go out later: there the day is named."""
        meeting, now = due.meeting, self.clock()
        profile = LeadProfile.model_validate(lead.profile or {})
        lead_tz = timezone_for(profile.state, lead.phone)

        def when(relative: bool) -> str:
            return label(
                meeting.starts_at, now=now, company_tz=self.hours.zone, lead_tz=lead_tz, relative=relative
            )

        seller = self.seller_names.get(meeting.seller_key) or UNKNOWN_SELLER
        name = (profile.name or lead.name or "").strip()
        text = render(
            self.texts[due.which],
            nome=name.split()[0] if name else "",
            quando=when(relative=True),
            vendedor=seller,
            link=meeting.meet_url,
        )
        return SendText(
            channel=lead.channel,
            contact_id=lead.contact_id,
            contact_key=meeting.contact_key,
            text=text,
            purpose=MEETING_REMINDER,
            template_values={"quando": when(relative=False), "vendedor": seller},
        )

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_due()
            except Exception:
                log.exception("meeting_reminder_pass_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll_s)

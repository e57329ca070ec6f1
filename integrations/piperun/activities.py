"""A booked meeting as an activity on the lead's PipeRun deal, the seller as its owner.

Sources: PipeRun API v1 reference (https://developers.pipe.run/reference), OpenAPI export
in github.com/LesserWords/n8n-nodes-piperun-openapi `schemas/latest.Piperun.openapi.json`
(commit b1944e6; the request side copied in tests/fixtures/piperun/activities_openapi.json):
- [adicionar-atividade] POST /activities: `activity_type_id`, `status`, `owner_id`
  REQUIRED; deal_id, title, description, comment, appearin_link (the video call link),
  duration (minutes), start_at / end_at as "AAAA-MM-DD HH:MM:SS" (no zone: the
  account's local time), reminders, persons, companies...;
- [listar-atividades] GET /activities?deal_id=&show= (200 max) &cursor=;
- [atualizar-1] PUT /activities/{id}: the same fields, none required;
- [listar-2] GET /activityTypes?active=&name=&show=: the account's activity types
  ({id, name, active}); no type is built in, so the meeting's is looked up by name
  ("Reunião") unless PIPERUN_* configuration names one.
- Status: 0 aberta, 2 concluída, 4 no-show. There is no "cancelled": a cancelled
  meeting's activity is closed (2) with "Cancelada" in its title and the reason in the
  completion `comment`, so it leaves the seller's open agenda and the deal's history
  still says what happened.

Idempotency: the description's last line carries our reference and a hash of the
calendar event id ("Ref. SDR: <reference>/<12 hex>", like deal_notes). Every state of
the meeting (booked, moved, cancelled) first lists the deal's activities and updates the
one carrying that marker; only a booked meeting without one creates it. A retry after a
lost answer therefore finds what it created, and a move updates the same activity.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from integrations.piperun.schema import _Model
from integrations.piperun.texts import NOTE_LINE_BREAK

if TYPE_CHECKING:
    from integrations.piperun.client import PipeRunClient

log = structlog.get_logger(__name__)

ACTIVITY_OPEN = 0
ACTIVITY_DONE = 2
# PipeRun's documented date-time format for start_at / end_at.
PIPERUN_DATETIME = "%Y-%m-%d %H:%M:%S"
# Activity type names taken for a meeting, folded, in order of preference.
MEETING_TYPE_WORDS = ("reuniao", "reunião", "meeting", "videoconferencia", "videochamada")


class PipeRunActivityRecord(_Model):
    """An activity as [listar-atividades] answers it (unknown keys ignored)."""

    id: int
    deal_id: int | None = None
    owner_id: int | None = None
    status: int | None = None
    title: str | None = None
    description: str | None = None
    start_at: str | None = None
    end_at: str | None = None


class PipeRunActivityType(_Model):
    id: int
    name: str | None = None
    active: int | bool | None = None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ActivityCreate(_Body):
    """[adicionar-atividade] POST /activities: only fields of its body schema."""

    activity_type_id: int
    status: int = ACTIVITY_OPEN
    owner_id: int
    deal_id: int
    title: str = Field(min_length=1)
    description: str | None = None
    comment: str | None = None
    appearin_link: str | None = None
    duration: int | None = None
    start_at: str | None = None
    end_at: str | None = None


class ActivityUpdate(_Body):
    """[atualizar-1] PUT /activities/{id}: what a moved or cancelled meeting changes."""

    status: int | None = None
    owner_id: int | None = None
    title: str | None = Field(default=None, min_length=1)
    description: str | None = None
    comment: str | None = None
    appearin_link: str | None = None
    duration: int | None = None
    start_at: str | None = None
    end_at: str | None = None


@dataclass(frozen=True, slots=True)
class MeetingActivity:
    """The meeting as the deal shows it: what the outbox item carries, in the account's zone."""

    event_id: str
    title: str
    starts_at: datetime
    ends_at: datetime
    owner_id: int
    cancelled: bool = False
    meet_url: str | None = None


def piperun_time(at: datetime, zone: tzinfo) -> str:
    return at.astimezone(zone).strftime(PIPERUN_DATETIME)


def meeting_marker(reference: str, event_id: str) -> str:
    """One marker per calendar event, whatever its state: a move updates the same activity.
    Shaped like deal_notes.deal_note_marker (the reference, then 12 hex of a hash), so the
    erasure finds it by the reference; that module is not imported (it imports the client,
    which imports this one)."""
    digest = hashlib.sha256(f"meeting:{event_id}".encode()).hexdigest()[:12]
    return f"{reference}/{digest}"


def meeting_title(title: str, *, cancelled: bool) -> str:
    return f"Cancelada: {title}" if cancelled else title


def meeting_description(meeting: MeetingActivity, *, marker: str) -> str:
    lines = ["Reunião agendada pelo bot SDR na agenda do vendedor."]
    if meeting.meet_url:
        lines.append(f"Google Meet: {html.escape(meeting.meet_url, quote=False)}")
    if meeting.cancelled:
        lines.append("Reunião cancelada pelo lead.")
    return NOTE_LINE_BREAK.join(lines) + f"{NOTE_LINE_BREAK}{NOTE_LINE_BREAK}Ref. SDR: {marker}"


def pick_meeting_type(types: list[PipeRunActivityType]) -> int | None:
    """The account's meeting type: the first active one whose name says meeting, else none."""
    active = [t for t in types if t.active in (None, 1, True)]
    for word in MEETING_TYPE_WORDS:
        for kind in active:
            if word in (kind.name or "").casefold():
                return kind.id
    return None


async def upsert_meeting_activity(
    client: PipeRunClient,
    deal_id: int,
    meeting: MeetingActivity,
    *,
    reference: str,
    activity_type_id: int,
    zone: tzinfo,
) -> int | None:
    """The id of the deal's activity for this meeting, brought to the meeting's state:
    the one carrying our marker is updated, a booked meeting without one creates it, a
    cancelled meeting without one does nothing (None)."""
    marker = meeting_marker(reference, meeting.event_id)
    title = meeting_title(meeting.title, cancelled=meeting.cancelled)
    description = meeting_description(meeting, marker=marker)
    start_at, end_at = piperun_time(meeting.starts_at, zone), piperun_time(meeting.ends_at, zone)
    duration = max(1, int((meeting.ends_at - meeting.starts_at).total_seconds() // 60))
    existing = [a for a in await client.list_deal_activities(deal_id) if marker in (a.description or "")]
    if existing:
        activity = min(existing, key=lambda a: a.id)
        update = ActivityUpdate(
            status=ACTIVITY_DONE if meeting.cancelled else ACTIVITY_OPEN,
            owner_id=meeting.owner_id,
            title=title,
            description=description,
            comment="Reunião cancelada pelo lead." if meeting.cancelled else None,
            appearin_link=meeting.meet_url,
            duration=duration,
            start_at=start_at,
            end_at=end_at,
        )
        await client.update_activity(activity.id, update)
        log.info(
            "piperun_activity_updated", deal_id=deal_id, activity_id=activity.id, cancelled=meeting.cancelled
        )
        return activity.id
    if meeting.cancelled:
        log.info("piperun_activity_skipped", deal_id=deal_id, reason="cancelled_before_created")
        return None
    created = await client.create_activity(
        deal_id=deal_id,
        title=title,
        start_at=start_at,
        end_at=end_at,
        owner_id=meeting.owner_id,
        description=description,
        activity_type_id=activity_type_id,
        meet_url=meeting.meet_url,
        duration=duration,
    )
    log.info("piperun_activity_created", deal_id=deal_id, activity_id=created.id)
    return created.id


__all__ = [
    "ACTIVITY_DONE",
    "ACTIVITY_OPEN",
    "ActivityCreate",
    "ActivityUpdate",
    "MeetingActivity",
    "PipeRunActivityRecord",
    "PipeRunActivityType",
    "meeting_description",
    "meeting_marker",
    "meeting_title",
    "pick_meeting_type",
    "piperun_time",
    "upsert_meeting_activity",
]

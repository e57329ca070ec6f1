"""What goes to Google Calendar and what comes back, from the Calendar API v3 discovery
document (github.com/googleapis/google-api-go-client calendar/v3/calendar-api.json):
`Event`, `EventDateTime`, `ConferenceData`/`CreateConferenceRequest`, `FreeBusyRequest`/
`FreeBusyResponse`/`FreeBusyCalendar`/`TimePeriod`, `Error`.

Event ids are ours (client-supplied), so a booking retried after a timeout or a crash
addresses the same event: "characters allowed in the ID are those used in base32hex
encoding, i.e. lowercase letters a-v and digits 0-9 ... the length of the ID must be
between 5 and 1024 characters ... unique per calendar" (Event.id).
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EVENT_ID = re.compile(r"[a-v0-9]{5,1024}")
# ConferenceSolutionKey.type for Google Meet.
MEET = "hangoutsMeet"


def event_id_for(*parts: str) -> str:
    """A deterministic event id: sha256 of the parts, base32hex (a-v, 0-9), 52 characters.
    The same parts (say tenant, lead, slot start) always name the same event, so booking
    twice cannot create two."""
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise ValueError("event_id_for needs one or more non-empty strings")
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


def rfc3339(moment: datetime) -> str:
    """`moment` as Google wants it (RFC 3339 with its offset); a naive datetime is refused,
    because Google would read it in the calendar's zone, not the bot's."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("Google Calendar needs timezone-aware datetimes")
    return moment.isoformat()


def event_time(moment: datetime, time_zone: str | None) -> dict[str, str]:
    """An `EventDateTime`: the instant, plus the IANA zone the invitation is shown in."""
    body = {"dateTime": rfc3339(moment)}
    if time_zone:
        body["timeZone"] = time_zone
    return body


def insert_body(
    *,
    event_id: str,
    start: datetime,
    end: datetime,
    summary: str,
    description: str | None,
    attendee_email: str | None,
    time_zone: str | None,
) -> dict[str, Any]:
    """The `Event` for events.insert: our id, the slot, the lead as attendee when the
    e-mail is known, and a Meet conference requested with our id as `requestId` (the same
    request id asks Google for the same conference, never a second one)."""
    body: dict[str, Any] = {
        "id": event_id,
        "summary": summary,
        "start": event_time(start, time_zone),
        "end": event_time(end, time_zone),
        "conferenceData": {"createRequest": {"requestId": event_id, "conferenceSolutionKey": {"type": MEET}}},
    }
    if description:
        body["description"] = description
    if attendee_email:
        body["attendees"] = [{"email": attendee_email}]
    return body


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class EventDateTime(_Model):
    date_time: datetime | None = Field(default=None, alias="dateTime")
    date: str | None = None
    time_zone: str | None = Field(default=None, alias="timeZone")


class EntryPoint(_Model):
    entry_point_type: str | None = Field(default=None, alias="entryPointType")
    uri: str | None = None


class ConferenceRequestStatus(_Model):
    status_code: str | None = Field(default=None, alias="statusCode")


class CreateConferenceRequest(_Model):
    request_id: str | None = Field(default=None, alias="requestId")
    status: ConferenceRequestStatus | None = None


class ConferenceData(_Model):
    conference_id: str | None = Field(default=None, alias="conferenceId")
    entry_points: list[EntryPoint] = Field(default_factory=list, alias="entryPoints")
    create_request: CreateConferenceRequest | None = Field(default=None, alias="createRequest")


class Attendee(_Model):
    email: str | None = None
    response_status: str | None = Field(default=None, alias="responseStatus")


class CalendarEvent(_Model):
    """The part of Google's `Event` the bot uses. `meet_url` is the Meet link (hangoutLink,
    else the conference's video entry point); it may still be None while the conference
    is `pending` (Google creates it asynchronously: read the event again later)."""

    id: str
    status: str | None = None
    html_link: str | None = Field(default=None, alias="htmlLink")
    hangout_link: str | None = Field(default=None, alias="hangoutLink")
    summary: str | None = None
    start: EventDateTime | None = None
    end: EventDateTime | None = None
    attendees: list[Attendee] = Field(default_factory=list)
    conference_data: ConferenceData | None = Field(default=None, alias="conferenceData")

    @property
    def meet_url(self) -> str | None:
        if self.hangout_link:
            return self.hangout_link
        for entry in self.conference_data.entry_points if self.conference_data else ():
            if entry.entry_point_type == "video" and entry.uri:
                return entry.uri
        return None

    @property
    def conference_status(self) -> str | None:
        """pending / success / failure, as Google reports the Meet creation."""
        request = self.conference_data.create_request if self.conference_data else None
        if request is not None and request.status is not None and request.status.status_code:
            return request.status.status_code
        return "success" if self.meet_url else None

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def starts_at(self) -> datetime | None:
        return self.start.date_time if self.start else None

    @property
    def ends_at(self) -> datetime | None:
        return self.end.date_time if self.end else None


class ApiError(_Model):
    domain: str | None = None
    reason: str | None = None
    message: str | None = None


class TimePeriod(_Model):
    start: datetime
    end: datetime


class FreeBusyCalendar(_Model):
    busy: list[TimePeriod] = Field(default_factory=list)
    errors: list[ApiError] = Field(default_factory=list)


class FreeBusyResponse(_Model):
    calendars: dict[str, FreeBusyCalendar] = Field(default_factory=dict)


def freebusy_body(calendar_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    """A `FreeBusyRequest` for one calendar; answers come in UTC (the default timeZone)."""
    return {"timeMin": rfc3339(start), "timeMax": rfc3339(end), "items": [{"id": calendar_id}]}


def parse_event(data: Any) -> CalendarEvent | None:
    """The event in an answer, or None when it is not one."""
    try:
        return CalendarEvent.model_validate(data)
    except ValidationError:
        return None


def google_error(data: Any) -> tuple[str | None, str | None]:
    """(first `errors[].reason` or `status`, `message`) of Google's error JSON."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    reason: str | None = None
    errors = error.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and isinstance(item.get("reason"), str):
                reason = item["reason"]
                break
    if reason is None and isinstance(error.get("status"), str):
        reason = error["status"]
    details = error.get("details")
    if isinstance(details, list):  # google.rpc.ErrorInfo carries the finer reason
        for item in details:
            if isinstance(item, dict) and item.get("reason") == "ACCESS_TOKEN_SCOPE_INSUFFICIENT":
                reason = "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    return reason, message


__all__ = [
    "EVENT_ID",
    "MEET",
    "ApiError",
    "Attendee",
    "CalendarEvent",
    "ConferenceData",
    "EventDateTime",
    "FreeBusyCalendar",
    "FreeBusyResponse",
    "TimePeriod",
    "event_id_for",
    "event_time",
    "freebusy_body",
    "google_error",
    "insert_body",
    "parse_event",
    "rfc3339",
]

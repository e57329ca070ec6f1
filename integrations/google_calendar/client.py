"""The Google Calendar client: free/busy, and meetings with a Meet link booked, moved and
cancelled on a seller's calendar, over the app's aiohttp session, one attempt per call.

Requests (Calendar API v3, https://developers.google.com/workspace/calendar/api/v3/reference):
`POST {api}/freeBusy`, `POST {api}/calendars/{calendarId}/events?conferenceDataVersion=1
&sendUpdates=all`, `GET`/`PATCH`/`DELETE {api}/calendars/{calendarId}/events/{eventId}`
with `Authorization: Bearer` (tokens.TokenSource), never a token in the URL.

Never double-booked: `book_meeting` reads the event by our id first (a retry finds its own
booking), checks free/busy again, and inserts with that id; a 409 on insert means the
event already exists, so it is read back and returned. A slot taken meanwhile raises
`SlotTaken` for the bot to apologise and offer new times. Retrying belongs to the caller
(runtime/policies.py's "calendar" row): only `GoogleCalendarUnavailable` is worth it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr, ValidationError
from yarl import URL

from core.logging import get_logger
from core.probe import ProbeIO, ProbeResult, ProbeVerdict, problem
from integrations.google_calendar.errors import (
    OAUTH_CLIENT_ENV,
    SERVICE_ACCOUNT_ENV,
    CalendarNotFound,
    EventGone,
    GoogleCalendarAuthFailed,
    GoogleCalendarError,
    GoogleCalendarRejected,
    GoogleCalendarUnavailable,
    SlotTaken,
    calendar_error_for,
)
from integrations.google_calendar.probe import probe_calendar
from integrations.google_calendar.schema import (
    EVENT_ID,
    CalendarEvent,
    FreeBusyResponse,
    event_time,
    freebusy_body,
    google_error,
    insert_body,
    parse_event,
)
from integrations.google_calendar.tokens import (
    CALENDAR_SCOPE,
    DEFAULT_TOKEN_URL,
    CalendarCredentials,
    OAuthRefreshCredentials,
    ServiceAccountCredentials,
    TokenSource,
    retry_after_s,
)

log = get_logger(__name__)

DEFAULT_API_URL = "https://www.googleapis.com/calendar/v3"
_ERROR_DETAIL_MAX = 300
Busy = list[tuple[datetime, datetime]]


@dataclass(frozen=True, slots=True)
class GoogleCalendarConfig:
    """GOOGLE_CALENDAR_API_URL, GOOGLE_TOKEN_URL, GOOGLE_SERVICE_ACCOUNT_FILE/_JSON (read
    with tokens.service_account_info), GOOGLE_OAUTH_CLIENT_ID/_SECRET; built from Settings
    by the composition. Per seller: the calendar id and either the seller's e-mail (as the
    service account's subject) or the seller's refresh token (`credentials_for`)."""

    api_url: str = DEFAULT_API_URL
    token_url: str = DEFAULT_TOKEN_URL
    service_account_info: Mapping[str, Any] | None = field(default=None, repr=False)
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = field(default=None, repr=False)
    scope: str = CALENDAR_SCOPE
    timeout_s: float = 15.0

    @property
    def has_service_account(self) -> bool:
        return bool(self.service_account_info)

    @property
    def has_oauth_client(self) -> bool:
        secret = self.oauth_client_secret.get_secret_value().strip() if self.oauth_client_secret else ""
        return bool((self.oauth_client_id or "").strip() and secret)

    @property
    def configured(self) -> bool:
        return self.has_service_account or self.has_oauth_client

    def credentials_for(
        self, *, subject: str | None = None, refresh_token: SecretStr | str | None = None
    ) -> CalendarCredentials:
        """The seller's credentials: their refresh token when they connected their Google
        account, else the service account acting as `subject` (their e-mail)."""
        token = refresh_token.get_secret_value() if isinstance(refresh_token, SecretStr) else refresh_token
        if token and token.strip():
            if not self.has_oauth_client:
                raise GoogleCalendarAuthFailed(
                    f"{OAUTH_CLIENT_ENV} is not set: the seller's refresh token cannot be used without "
                    "the OAuth client that issued it"
                )
            assert self.oauth_client_secret is not None  # has_oauth_client
            return OAuthRefreshCredentials(
                client_id=(self.oauth_client_id or "").strip(),
                client_secret=self.oauth_client_secret,
                refresh_token=SecretStr(token.strip()),
                account=subject,
            )
        if self.service_account_info:
            return ServiceAccountCredentials(self.service_account_info, subject=subject or None)
        raise GoogleCalendarAuthFailed(
            f"Google Calendar is not configured: set {SERVICE_ACCOUNT_ENV} (a service account with "
            "domain-wide delegation) or connect the seller's Google account"
        )


def overlaps(busy: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime) -> Busy:
    """The busy periods that intersect [start, end) (ends are exclusive: back to back is free)."""
    return [(b0, b1) for b0, b1 in busy if b0 < end and start < b1]


def _without(busy: Busy, start: datetime | None, end: datetime | None) -> Busy:
    """`busy` minus [start, end): the event being moved does not block its own new time."""
    if start is None or end is None:
        return busy
    rest: Busy = []
    for b0, b1 in busy:
        if b0 < start:
            rest.append((b0, min(b1, start)))
        if b1 > end:
            rest.append((max(b0, end), b1))
    return [(a, b) for a, b in rest if a < b]


class GoogleCalendarClient:
    """A seller's calendar. No retries here: the caller owns them."""

    def __init__(
        self,
        config: GoogleCalendarConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._session = session
        self._base = config.api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self.tokens = TokenSource(
            session, token_url=config.token_url, scope=config.scope, timeout_s=config.timeout_s, clock=clock
        )

    @property
    def config(self) -> GoogleCalendarConfig:
        return self._config

    @property
    def configured(self) -> bool:
        return self._config.configured

    def events_url(self, calendar_id: str, event_id: str | None = None) -> URL:
        path = f"{self._base}/calendars/{quote(calendar_id, safe='@')}/events"
        if event_id is not None:
            path += f"/{quote(event_id, safe='')}"
        return URL(path, encoded=True)

    # -- free/busy --------------------------------------------------------------------

    async def busy(
        self, calendar_id: str, *, start: datetime, end: datetime, credentials: CalendarCredentials
    ) -> Busy:
        """The calendar's busy periods over [start, end), in UTC, as Google merges them.
        A calendar-level error (notFound: not shared or no such calendar) raises."""
        body = freebusy_body(calendar_id, start, end)
        _, data = await self._call(
            "freebusy",
            "POST",
            URL(f"{self._base}/freeBusy"),
            credentials=credentials,
            body=body,
            calendar_id=calendar_id,
        )
        try:
            answer = FreeBusyResponse.model_validate(data)
        except ValidationError:
            raise self._logged(
                "freebusy",
                GoogleCalendarUnavailable("google_calendar: freeBusy answered without calendars"),
                calendar_id=calendar_id,
            ) from None
        found = answer.calendars.get(calendar_id)
        if found is None:
            raise self._logged(
                "freebusy",
                CalendarNotFound(f"google_calendar: freeBusy did not answer for calendar {calendar_id!r}"),
                calendar_id=calendar_id,
            )
        if found.errors:
            reason = found.errors[0].reason or "unknown"
            message = f"google_calendar: freeBusy for calendar {calendar_id!r} failed ({reason})"
            status = (
                404 if reason == "notFound" else 500 if reason in ("internalError", "backendError") else 400
            )
            raise self._logged(
                "freebusy",
                calendar_error_for(message, status=status, reason=reason, calendar_id=calendar_id),
                calendar_id=calendar_id,
            )
        return sorted((period.start, period.end) for period in found.busy)

    # -- events -----------------------------------------------------------------------

    async def get_event(
        self, calendar_id: str, event_id: str, *, credentials: CalendarCredentials
    ) -> CalendarEvent | None:
        """The event (cancelled ones included), or None when Google has no such event."""
        status, data = await self._call(
            "get",
            "GET",
            self.events_url(calendar_id, _checked_id(event_id)),
            credentials=credentials,
            accept=(404, 410),
            event_id=event_id,
        )
        if status in (404, 410):
            return None
        return self._event("get", data, event_id)

    async def book_meeting(
        self,
        calendar_id: str,
        *,
        event_id: str,
        start: datetime,
        end: datetime,
        summary: str,
        description: str | None = None,
        attendee_email: str | None = None,
        time_zone: str | None = None,
        credentials: CalendarCredentials,
    ) -> CalendarEvent:
        """Book the slot once: our own event when it already exists (a retry), else
        free/busy checked again and the event inserted. Raises `SlotTaken` when another
        event took the slot since it was offered."""
        existing = await self.get_event(calendar_id, event_id, credentials=credentials)
        if existing is not None and not existing.cancelled:
            log.info("google_calendar_booked", calendar_id=calendar_id, event_id=event_id, already=True)
            return existing
        taken = overlaps(
            await self.busy(calendar_id, start=start, end=end, credentials=credentials), start, end
        )
        if taken:
            raise self._logged(
                "book",
                SlotTaken(
                    f"google_calendar: the slot {start.isoformat()} - {end.isoformat()} is busy on "
                    f"calendar {calendar_id!r} now",
                    busy=taken,
                ),
                calendar_id=calendar_id,
                event_id=event_id,
            )
        return await self.insert_meeting(
            calendar_id,
            event_id=event_id,
            start=start,
            end=end,
            summary=summary,
            description=description,
            attendee_email=attendee_email,
            time_zone=time_zone,
            credentials=credentials,
        )

    async def insert_meeting(
        self,
        calendar_id: str,
        *,
        event_id: str,
        start: datetime,
        end: datetime,
        summary: str,
        description: str | None = None,
        attendee_email: str | None = None,
        time_zone: str | None = None,
        credentials: CalendarCredentials,
    ) -> CalendarEvent:
        """events.insert with our id and a Meet conference; invitations go to everyone
        (sendUpdates=all). A 409 (our id exists) reads the event back: a retry or a crash
        between insert and its record never makes two events."""
        if not start < end:
            raise GoogleCalendarRejected(f"google_calendar: a meeting must end after it starts ({event_id})")
        body = insert_body(
            event_id=_checked_id(event_id),
            start=start,
            end=end,
            summary=summary,
            description=description,
            attendee_email=attendee_email,
            time_zone=time_zone,
        )
        status, data = await self._call(
            "insert",
            "POST",
            self.events_url(calendar_id),
            credentials=credentials,
            params={"conferenceDataVersion": "1", "sendUpdates": "all"},
            body=body,
            accept=(409,),
            calendar_id=calendar_id,
            event_id=event_id,
            scrub=(attendee_email,),
        )
        if status == 409:
            existing = await self.get_event(calendar_id, event_id, credentials=credentials)
            if existing is None or existing.cancelled:
                # The id belongs to a deleted event: Google keeps it, so this booking needs another id.
                raise self._logged(
                    "insert",
                    GoogleCalendarRejected(
                        f"google_calendar: event id {event_id} was used by an event since cancelled: "
                        "book with a new id",
                        status=409,
                        reason="duplicate",
                    ),
                    calendar_id=calendar_id,
                    event_id=event_id,
                )
            log.info("google_calendar_booked", calendar_id=calendar_id, event_id=event_id, already=True)
            return existing
        event = self._event("insert", data, event_id)
        log.info(
            "google_calendar_booked",
            calendar_id=calendar_id,
            event_id=event.id,
            already=False,
            conference=event.conference_status,
            attendee=attendee_email is not None,
        )
        return event

    async def move_meeting(
        self,
        calendar_id: str,
        event_id: str,
        *,
        start: datetime,
        end: datetime,
        time_zone: str | None = None,
        check_free: bool = True,
        credentials: CalendarCredentials,
    ) -> CalendarEvent:
        """Reschedule (events.patch of start/end, sendUpdates=all: the lead is told). With
        `check_free`, the new slot is checked first, the event's own current time aside;
        `SlotTaken` when someone else holds it, `EventGone` when the event was deleted."""
        if not start < end:
            raise GoogleCalendarRejected(f"google_calendar: a meeting must end after it starts ({event_id})")
        if check_free:
            current = await self.get_event(calendar_id, event_id, credentials=credentials)
            if current is None or current.cancelled:
                raise self._logged(
                    "move",
                    EventGone(f"google_calendar: event {event_id} no longer exists", status=404),
                    calendar_id=calendar_id,
                    event_id=event_id,
                )
            if time_zone is None and current.start is not None:
                time_zone = current.start.time_zone
            busy = await self.busy(calendar_id, start=start, end=end, credentials=credentials)
            taken = overlaps(_without(busy, current.starts_at, current.ends_at), start, end)
            if taken:
                raise self._logged(
                    "move",
                    SlotTaken(
                        f"google_calendar: the slot {start.isoformat()} - {end.isoformat()} is busy on "
                        f"calendar {calendar_id!r} now",
                        busy=taken,
                    ),
                    calendar_id=calendar_id,
                    event_id=event_id,
                )
        _, data = await self._call(
            "move",
            "PATCH",
            self.events_url(calendar_id, _checked_id(event_id)),
            credentials=credentials,
            params={"sendUpdates": "all"},
            body={"start": event_time(start, time_zone), "end": event_time(end, time_zone)},
            event_id=event_id,
        )
        event = self._event("move", data, event_id)
        log.info("google_calendar_moved", calendar_id=calendar_id, event_id=event_id)
        return event

    async def cancel_meeting(
        self, calendar_id: str, event_id: str, *, credentials: CalendarCredentials
    ) -> bool:
        """events.delete with sendUpdates=all (the lead is told). True when deleted now,
        False when it was already gone (404/410): either way it is cancelled."""
        status, _ = await self._call(
            "cancel",
            "DELETE",
            self.events_url(calendar_id, _checked_id(event_id)),
            credentials=credentials,
            params={"sendUpdates": "all"},
            accept=(404, 410),
            event_id=event_id,
        )
        gone = status in (404, 410)
        log.info("google_calendar_cancelled", calendar_id=calendar_id, event_id=event_id, already=gone)
        return not gone

    # -- transport --------------------------------------------------------------------

    async def _call(
        self,
        op: str,
        method: str,
        url: URL,
        *,
        credentials: CalendarCredentials,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        accept: tuple[int, ...] = (),
        calendar_id: str | None = None,
        event_id: str | None = None,
        scrub: tuple[str | None, ...] = (),
    ) -> tuple[int, Any]:
        """One request (a second only when Google refused a cached token: a 401 mints a
        fresh one, once). 2xx and the `accept`ed statuses are returned, the rest raised."""
        for attempt in (1, 2):
            token = await self.tokens.token(credentials)
            status, raw, retry_after = await self._send(
                op, method, url, token=token, params=params, body=body, event_id=event_id
            )
            if status == 401 and attempt == 1:
                log.info("google_calendar_token_refused", op=op, who=credentials.who)
                self.tokens.invalidate(credentials)
                continue
            data = _loads(raw)
            if 200 <= status < 300 or status in accept:
                return status, data
            reason, message = google_error(data)
            detail = _scrub(message or raw[:200] or "no body", (token, *scrub))[:_ERROR_DETAIL_MAX]
            error = calendar_error_for(
                f"google_calendar: {op} failed (HTTP {status}{f', {reason}' if reason else ''}: {detail})",
                status=status,
                reason=reason,
                retry_after=retry_after,
                calendar_id=calendar_id,
            )
            raise self._logged(op, error, calendar_id=calendar_id, event_id=event_id)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        op: str,
        method: str,
        url: URL,
        *,
        token: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
        event_id: str | None,
    ) -> tuple[int, str, float | None]:
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=self._timeout,
            ) as resp:
                return (
                    resp.status,
                    await resp.text(errors="replace"),
                    retry_after_s(resp.headers.get("Retry-After")),
                )
        except TimeoutError:
            error: GoogleCalendarError = GoogleCalendarUnavailable(
                f"google_calendar: {op} timed out after {self._config.timeout_s:g} s"
            )
        except aiohttp.ClientError as exc:
            error = GoogleCalendarUnavailable(f"google_calendar: {op} failed: {type(exc).__name__}")
        raise self._logged(op, error, event_id=event_id)

    def _event(self, op: str, data: Any, event_id: str) -> CalendarEvent:
        event = parse_event(data)
        if event is None:
            # A 2xx that is not an event is a proxy or an outage page, not Google's answer.
            raise self._logged(
                op,
                GoogleCalendarUnavailable(
                    f"google_calendar: {op} of event {event_id} answered without the event"
                ),
                event_id=event_id,
            )
        return event

    @staticmethod
    def _logged(
        op: str, error: GoogleCalendarError, *, calendar_id: str | None = None, event_id: str | None = None
    ) -> GoogleCalendarError:
        (log.warning if error.retryable or isinstance(error, SlotTaken) else log.error)(
            "google_calendar_failed",
            op=op,
            calendar_id=calendar_id,
            event_id=event_id,
            status=error.status,
            reason=error.reason,
            retryable=error.retryable,
            auth_failed=error.auth_failed,
        )
        return error

    # -- doctor -----------------------------------------------------------------------

    async def probe(self, io: ProbeIO, *, calendar_id: str, credentials: CalendarCredentials) -> ProbeResult:
        """Mint the seller's token, then read the calendar's metadata."""
        try:
            token = await self.tokens.token(credentials)
        except GoogleCalendarUnavailable as exc:
            if "timed out" in str(exc):
                raise ProbeVerdict(io.timed_out()) from None
            return problem(
                io.scrub(str(exc)), "try again later; check that the bot reaches oauth2.googleapis.com"
            )
        except GoogleCalendarError as exc:
            detail, _, hint = io.scrub(str(exc)).partition(". ")
            return problem(detail, hint)
        return await probe_calendar(io, api_url=self._base, token=token, calendar_id=calendar_id)


def _checked_id(event_id: str) -> str:
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise GoogleCalendarRejected(
            f"google_calendar: {event_id!r:.60} is not an event id Google accepts "
            "(base32hex a-v0-9, 5-1024 characters): make it with event_id_for()"
        )
    return event_id


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


__all__ = [
    "DEFAULT_API_URL",
    "Busy",
    "GoogleCalendarClient",
    "GoogleCalendarConfig",
    "overlaps",
]

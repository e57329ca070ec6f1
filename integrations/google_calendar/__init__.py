"""Google Calendar: a seller's availability (free/busy) and meetings with a Google Meet
link booked, moved and cancelled through the REST API over the app's aiohttp session.

Tokens come from a service account with domain-wide delegation (acting as the seller) or
from the seller's OAuth refresh token (`tokens`); the service account's JWT is signed by
google-auth. Bookings are idempotent (`event_id_for` makes the event's id from what
identifies the booking) and never double-book (`GoogleCalendarClient.book_meeting`
checks free/busy again; `SlotTaken` when the slot went meanwhile). Deciding when to book,
storing and retrying belong to the caller. Nothing here imports `channels` or another
integration.
"""

from integrations.google_calendar.client import (
    DEFAULT_API_URL,
    Busy,
    GoogleCalendarClient,
    GoogleCalendarConfig,
    overlaps,
)
from integrations.google_calendar.errors import (
    CalendarNotFound,
    EventGone,
    GoogleCalendarAuthFailed,
    GoogleCalendarError,
    GoogleCalendarRejected,
    GoogleCalendarUnavailable,
    SlotTaken,
)
from integrations.google_calendar.probe import probe_calendar
from integrations.google_calendar.schema import CalendarEvent, event_id_for
from integrations.google_calendar.tokens import (
    CALENDAR_SCOPE,
    DEFAULT_TOKEN_URL,
    CalendarCredentials,
    OAuthRefreshCredentials,
    ServiceAccountCredentials,
    TokenSource,
    service_account_info,
)

__all__ = [
    "CALENDAR_SCOPE",
    "DEFAULT_API_URL",
    "DEFAULT_TOKEN_URL",
    "Busy",
    "CalendarCredentials",
    "CalendarEvent",
    "CalendarNotFound",
    "EventGone",
    "GoogleCalendarAuthFailed",
    "GoogleCalendarClient",
    "GoogleCalendarConfig",
    "GoogleCalendarError",
    "GoogleCalendarRejected",
    "GoogleCalendarUnavailable",
    "OAuthRefreshCredentials",
    "ServiceAccountCredentials",
    "SlotTaken",
    "TokenSource",
    "event_id_for",
    "overlaps",
    "probe_calendar",
    "service_account_info",
]

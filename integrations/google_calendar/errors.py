"""Google Calendar's errors, typed: the caller retries `GoogleCalendarUnavailable` and
nothing else; `SlotTaken` is what the bot apologises for before offering new times.

Google's error JSON `{"error": {"code", "message", "errors": [{"domain", "reason",
"message"}], "status"}}` and the action per reason:
https://developers.google.com/workspace/calendar/api/guides/errors. Google answers
throttling with a 403 as often as with a 429 (`usageLimits`: rateLimitExceeded,
userRateLimitExceeded, quotaExceeded), so the reason decides before the HTTP status.
The token endpoint speaks OAuth 2.0 instead (RFC 6749 section 5.2: `{"error":
"invalid_grant", "error_description": ...}`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from core.errors import AuthFailed, ProviderRejected, ProviderUnavailable, is_retryable_status
from integrations.errors import IntegrationError

SERVICE_ACCOUNT_ENV = "GOOGLE_SERVICE_ACCOUNT_FILE (or GOOGLE_SERVICE_ACCOUNT_JSON)"
OAUTH_CLIENT_ENV = "GOOGLE_OAUTH_CLIENT_ID / GOOGLE_OAUTH_CLIENT_SECRET"

# usageLimits: per-user/per-calendar request rate, and the Calendar usage limits (quotaExceeded);
# backendError: Google's own trouble. All pass with time.
RETRYABLE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "backendError"})
# A service account may not invite attendees unless it acts as the seller (domain-wide delegation).
DELEGATION_REASONS = frozenset({"forbiddenForServiceAccounts"})
# The identity may not write to (or read) this calendar, or the token lacks the scope.
PERMISSION_REASONS = frozenset(
    {"forbidden", "insufficientPermissions", "requiredAccessLevel", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}
)


class GoogleCalendarError(IntegrationError):
    """A Google Calendar call failed; catch this for "anything Google Calendar", raise a leaf.

    `retryable` and `auth_failed` are read from the type; `reason` is Google's first
    `errors[].reason` (or the OAuth `error` of the token endpoint). The text never carries
    a token, a key nor the lead's e-mail.
    """

    def __init__(self, message: str, *, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


class GoogleCalendarUnavailable(GoogleCalendarError, ProviderUnavailable):
    """Not now: 429, 5xx, a usage-limit 403, a timeout or a broken connection.
    `retry_after` (seconds) when Google said how long to wait. The booking is safe to
    retry: the event's id is ours, so a second insert finds the first."""


class GoogleCalendarRejected(GoogleCalendarError, ProviderRejected):
    """Google refused, or its answer is not what was asked for: asking again will not help."""


class GoogleCalendarAuthFailed(GoogleCalendarRejected, AuthFailed):
    """No credentials, Google refused them (revoked refresh token, deleted key, no
    domain-wide delegation) or the identity may not use this calendar: an operator must act."""


class CalendarNotFound(GoogleCalendarRejected):
    """The calendar id does not exist, or the identity used cannot see it."""


class EventGone(GoogleCalendarRejected):
    """The event does not exist or was deleted (404/410); cancelling it is already done."""


class SlotTaken(GoogleCalendarRejected):
    """The slot was free when offered but is busy now: apologise and offer new times.
    `busy` is the seller's busy periods over the slot, so new offers can avoid them."""

    def __init__(self, message: str, *, busy: Iterable[tuple[datetime, datetime]] = ()) -> None:
        super().__init__(message, reason="slotTaken")
        self.busy = list(busy)


def calendar_error_for(
    message: str,
    *,
    status: int,
    reason: str | None,
    retry_after: float | None = None,
    calendar_id: str | None = None,
) -> GoogleCalendarError:
    """The leaf for a refused Calendar API call; `message` says what happened, this adds
    what the operator must do."""
    meta: dict[str, Any] = {"status": status, "reason": reason}
    where = f"calendar {calendar_id!r}" if calendar_id else "the calendar"
    if reason in RETRYABLE_REASONS or is_retryable_status(status):
        return GoogleCalendarUnavailable(message, retry_after=retry_after, **meta)
    if reason in DELEGATION_REASONS:
        return GoogleCalendarAuthFailed(
            f"{message}. A service account cannot invite the lead by itself: grant it "
            "domain-wide delegation for the calendar scope in the Google Workspace Admin "
            "console (Security > API controls) and book with the seller's e-mail as subject, "
            "or connect the seller's Google account with an OAuth refresh token",
            **meta,
        )
    if status == 401:
        return GoogleCalendarAuthFailed(
            f"{message}. Google refused the access token twice in a row: check the "
            f"credentials in {SERVICE_ACCOUNT_ENV} or the seller's refresh token",
            **meta,
        )
    if reason in PERMISSION_REASONS or status == 403:
        return GoogleCalendarAuthFailed(
            f"{message}. The identity used may not change {where}: share it with the "
            "service account (or the seller) with 'Make changes to events', or authorize "
            "the https://www.googleapis.com/auth/calendar scope for the domain-wide delegation",
            **meta,
        )
    if status == 404 and calendar_id is not None:
        return CalendarNotFound(
            f"{message}. {where.capitalize()} does not exist or is not shared with the identity "
            "used: check the seller's calendar id (Google Calendar > Settings > Integrate "
            "calendar > Calendar ID) and that the calendar is shared with it",
            **meta,
        )
    if status in (404, 410):
        return EventGone(message, **meta)
    return GoogleCalendarRejected(message, **meta)


def token_error_for(
    message: str, *, status: int, error: str | None, service_account: bool, retry_after: float | None = None
) -> GoogleCalendarError:
    """The leaf for a refused token request (RFC 6749 section 5.2 error codes)."""
    meta: dict[str, Any] = {"status": status, "reason": error}
    if is_retryable_status(status) or error == "temporarily_unavailable":
        return GoogleCalendarUnavailable(message, retry_after=retry_after, **meta)
    if service_account and error == "unauthorized_client":
        return GoogleCalendarAuthFailed(
            f"{message}. The service account may not act as this seller: in the Google "
            "Workspace Admin console (Security > API controls > Domain-wide delegation) "
            "authorize its client ID for https://www.googleapis.com/auth/calendar, and check "
            "that the seller's e-mail belongs to the domain",
            **meta,
        )
    if service_account:
        return GoogleCalendarAuthFailed(
            f"{message}. Google refused the service account's signed assertion (a deleted or "
            f"disabled key, or a clock far off): create a new JSON key and put it in "
            f"{SERVICE_ACCOUNT_ENV}",
            **meta,
        )
    if error == "invalid_client":
        return GoogleCalendarAuthFailed(
            f"{message}. Google does not know this OAuth client: check {OAUTH_CLIENT_ENV}", **meta
        )
    return GoogleCalendarAuthFailed(
        f"{message}. The seller's Google authorization was revoked or expired: the seller must "
        "connect the Google account again to get a new refresh token",
        **meta,
    )


__all__ = [
    "DELEGATION_REASONS",
    "OAUTH_CLIENT_ENV",
    "PERMISSION_REASONS",
    "RETRYABLE_REASONS",
    "SERVICE_ACCOUNT_ENV",
    "CalendarNotFound",
    "EventGone",
    "GoogleCalendarAuthFailed",
    "GoogleCalendarError",
    "GoogleCalendarRejected",
    "GoogleCalendarUnavailable",
    "SlotTaken",
    "calendar_error_for",
    "token_error_for",
]

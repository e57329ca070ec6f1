"""What the doctor says about a seller's Google Calendar, from Google's own answers.

A token is minted for the seller (the doctor's one write: the token endpoint's POST
changes nothing), then `GET {api}/calendars/{calendarId}` (calendar.calendars.get) shows
that the identity reaches the calendar; its `summary` and `timeZone` are reported. Whether
it may also write events shows only at the first booking (a 403 then names the fix).
"""

from __future__ import annotations

from urllib.parse import quote

from core.probe import ProbeIO, ProbeResult, ok, problem
from integrations.google_calendar.errors import SERVICE_ACCOUNT_ENV


async def probe_calendar(io: ProbeIO, *, api_url: str, token: str, calendar_id: str) -> ProbeResult:
    reply = await io.get(
        f"{api_url.rstrip('/')}/calendars/{quote(calendar_id, safe='@')}",
        headers={"Authorization": f"Bearer {token}"},
    )
    data = reply.data if isinstance(reply.data, dict) else {}
    if reply.status == 401:
        return problem(
            "Google refused a freshly minted access token",
            f"check the service account key in {SERVICE_ACCOUNT_ENV} or reconnect the seller's Google account",
        )
    if reply.status == 403:
        return problem(
            f"the identity used may not read calendar '{calendar_id}': "
            + io.provider_words(reply, ("error", "message")),
            "share the calendar with the service account (or use the seller's e-mail as subject with "
            "domain-wide delegation for https://www.googleapis.com/auth/calendar)",
        )
    if reply.status == 404:
        return problem(
            f"calendar '{calendar_id}' does not exist or is not shared with the identity used",
            "check the seller's calendar id (Google Calendar > Settings > Integrate calendar > Calendar ID)",
        )
    if not reply.ok or "id" not in data:
        return io.unexpected(reply, ("error", "message"))
    zone = data.get("timeZone")
    return ok(
        f"calendar '{data.get('summary') or data.get('id')}'"
        + (f" ({zone})" if zone else "")
        + " reachable (writing events is checked at the first booking)"
    )


__all__ = ["probe_calendar"]

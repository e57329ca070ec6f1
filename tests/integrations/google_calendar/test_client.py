"""The Calendar client against Google's answers (tests/fixtures/google_calendar/, built
from the v3 discovery document and the error guide): the exact requests, free/busy read,
a booking that a retry or a crash can never make twice, reschedule and cancel, and every
failure typed so the caller retries what may pass and tells the operator what won't."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import aiohttp
import pytest
from aioresponses import aioresponses
from structlog.testing import capture_logs
from yarl import URL

from core.errors import AuthFailed, Permanent, Retryable
from integrations.google_calendar import (
    CalendarEvent,
    CalendarNotFound,
    EventGone,
    GoogleCalendarAuthFailed,
    GoogleCalendarClient,
    GoogleCalendarError,
    GoogleCalendarRejected,
    GoogleCalendarUnavailable,
    ServiceAccountCredentials,
    SlotTaken,
    event_id_for,
)
from tests.integrations.google_calendar.conftest import (
    ACCESS_TOKEN,
    API,
    CALENDAR,
    EVENT_ID,
    LEAD_EMAIL,
    TOKEN_URL,
    error_fixture,
    fixture,
    make_client,
    requests_of,
    token_ok,
)

BRT = timezone(timedelta(hours=-3))
START = datetime(2026, 12, 7, 10, 0, tzinfo=BRT)
END = START + timedelta(minutes=30)
FREEBUSY = f"{API}/freeBusy"
EVENTS = f"{API}/calendars/{CALENDAR}/events"
INSERT = f"{EVENTS}?conferenceDataVersion=1&sendUpdates=all"
EVENT = f"{EVENTS}/{EVENT_ID}"
SUMMARY = "Demonstração Acme — Joana"


async def insert(client: GoogleCalendarClient, credentials: ServiceAccountCredentials) -> CalendarEvent:
    return await client.insert_meeting(
        CALENDAR,
        event_id=EVENT_ID,
        start=START,
        end=END,
        summary=SUMMARY,
        description="Agendado pelo SDR.",
        attendee_email=LEAD_EMAIL,
        time_zone="America/Sao_Paulo",
        credentials=credentials,
    )


def api_calls(mock: aioresponses, method: str | None = None) -> list[tuple[str, str, dict[str, object]]]:
    return [c for c in requests_of(mock, method) if not c[1].startswith(TOKEN_URL)]


def test_event_ids_are_deterministic_base32hex() -> None:
    first = event_id_for("acme", "lead-42", "2026-12-07T10:00:00-03:00")
    assert first == event_id_for("acme", "lead-42", "2026-12-07T10:00:00-03:00")
    assert first != event_id_for("acme", "lead-42", "2026-12-07T10:30:00-03:00")
    assert first != event_id_for("acme", "lead-4", "2")  # the parts are separated, not glued
    assert re.fullmatch(r"[a-v0-9]{52}", first)
    with pytest.raises(ValueError):
        event_id_for()


async def test_busy_posts_freebusy_and_reads_the_periods(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    mock.post(FREEBUSY, payload=fixture("freebusy_response.json"))
    busy = await client.busy(
        CALENDAR, start=START.replace(hour=9), end=START.replace(hour=18), credentials=credentials
    )

    assert busy == [
        (datetime(2026, 12, 7, 13, 0, tzinfo=UTC), datetime(2026, 12, 7, 14, 0, tzinfo=UTC)),
        (datetime(2026, 12, 7, 17, 30, tzinfo=UTC), datetime(2026, 12, 7, 18, 0, tzinfo=UTC)),
    ]
    [(_, url, call)] = api_calls(mock)
    assert url == FREEBUSY
    assert call["json"] == fixture("freebusy_request.json")
    assert call["headers"] == {"Authorization": f"Bearer {ACCESS_TOKEN}", "Accept": "application/json"}


@pytest.mark.parametrize(
    ("name", "leaf", "retryable"),
    [
        ("freebusy_response_not_found.json", CalendarNotFound, False),
        ("freebusy_response_internal_error.json", GoogleCalendarUnavailable, True),
    ],
)
async def test_a_calendar_level_freebusy_error_raises(
    client: GoogleCalendarClient,
    credentials: ServiceAccountCredentials,
    mock: aioresponses,
    name: str,
    leaf: type[GoogleCalendarError],
    retryable: bool,
) -> None:
    token_ok(mock)
    mock.post(FREEBUSY, payload=fixture(name))
    with pytest.raises(leaf) as info:
        await client.busy(CALENDAR, start=START, end=END, credentials=credentials)
    assert info.value.retryable is retryable
    if leaf is CalendarNotFound:
        assert "Calendar ID" in str(info.value)


async def test_a_freebusy_404_is_calendar_not_found(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    status, body = error_fixture("error_404_not_found.json")
    mock.post(FREEBUSY, status=status, payload=body)
    with pytest.raises(CalendarNotFound):
        await client.busy(CALENDAR, start=START, end=END, credentials=credentials)


async def test_insert_sends_our_id_the_meet_request_the_lead_and_notifies_everyone(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    mock.post(INSERT, payload=fixture("event_meet.json"))
    with capture_logs() as logs:
        event = await insert(client, credentials)

    [(method, url, call)] = api_calls(mock)
    assert method == "POST"
    assert URL(url).with_query(None) == URL(EVENTS)
    assert call["params"] == {"conferenceDataVersion": "1", "sendUpdates": "all"}
    assert call["json"] == fixture("events_insert_request.json")
    assert call["json"]["conferenceData"]["createRequest"]["requestId"] == EVENT_ID
    assert event.id == EVENT_ID
    assert event.meet_url == "https://meet.google.com/abc-defg-hij"
    assert event.html_link.startswith("https://www.google.com/calendar/event")
    assert event.conference_status == "success"
    assert event.starts_at == START and event.ends_at == END
    text = json.dumps(logs, default=str)
    assert LEAD_EMAIL not in text and ACCESS_TOKEN not in text and SUMMARY not in text
    assert ACCESS_TOKEN not in url


async def test_without_the_leads_email_there_is_no_attendee(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    mock.post(INSERT, payload=fixture("event_meet_pending.json"))
    event = await client.insert_meeting(
        CALENDAR, event_id=EVENT_ID, start=START, end=END, summary=SUMMARY, credentials=credentials
    )
    [(_, _, call)] = api_calls(mock)
    assert "attendees" not in call["json"] and "description" not in call["json"]
    assert call["json"]["start"] == {"dateTime": "2026-12-07T10:00:00-03:00"}
    assert event.meet_url is None and event.conference_status == "pending"


async def test_a_retry_after_a_lost_answer_finds_the_event_and_never_makes_two(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    # Google made the event but the answer was lost: the caller retries the same booking.
    mock.post(INSERT, exception=TimeoutError())
    status, body = error_fixture("error_409_duplicate.json")
    mock.post(INSERT, status=status, payload=body)
    mock.get(EVENT, payload=fixture("event_meet.json"))

    with pytest.raises(GoogleCalendarUnavailable):
        await insert(client, credentials)
    event = await insert(client, credentials)

    assert event.id == EVENT_ID
    assert [(m, URL(u).path) for m, u, _ in api_calls(mock)] == [
        ("POST", URL(EVENTS).path),
        ("POST", URL(EVENTS).path),
        ("GET", URL(EVENT).path),
    ]


async def test_a_409_for_an_id_of_a_cancelled_event_is_refused(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    status, body = error_fixture("error_409_duplicate.json")
    mock.post(INSERT, status=status, payload=body)
    mock.get(EVENT, payload=fixture("event_cancelled.json"))
    with pytest.raises(GoogleCalendarRejected, match="new id"):
        await insert(client, credentials)


async def test_book_meeting_checks_free_busy_again_and_then_inserts(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    status, body = error_fixture("error_404_not_found.json")
    mock.get(EVENT, status=status, payload=body)
    mock.post(FREEBUSY, payload={"calendars": {CALENDAR: {"busy": []}}})
    mock.post(INSERT, payload=fixture("event_meet.json"))

    event = await client.book_meeting(
        CALENDAR, event_id=EVENT_ID, start=START, end=END, summary=SUMMARY, credentials=credentials
    )
    assert event.id == EVENT_ID
    assert [m for m, _, _ in api_calls(mock)] == ["GET", "POST", "POST"]


async def test_book_meeting_returns_its_own_booking_without_booking_again(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    mock.get(EVENT, payload=fixture("event_meet.json"))
    event = await client.book_meeting(
        CALENDAR, event_id=EVENT_ID, start=START, end=END, summary=SUMMARY, credentials=credentials
    )
    assert event.meet_url == "https://meet.google.com/abc-defg-hij"
    assert [m for m, _, _ in api_calls(mock)] == ["GET"]  # its own event is not "busy"


async def test_a_slot_taken_meanwhile_raises_slot_taken_and_inserts_nothing(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    mock.get(EVENT, status=404, payload=error_fixture("error_404_not_found.json")[1])
    mock.post(
        FREEBUSY,
        payload={
            "calendars": {
                CALENDAR: {"busy": [{"start": "2026-12-07T13:15:00Z", "end": "2026-12-07T14:00:00Z"}]}
            }
        },
    )
    with pytest.raises(SlotTaken) as info:
        await client.book_meeting(
            CALENDAR, event_id=EVENT_ID, start=START, end=END, summary=SUMMARY, credentials=credentials
        )
    assert isinstance(info.value, Permanent) and not info.value.auth_failed
    assert info.value.busy == [
        (datetime(2026, 12, 7, 13, 15, tzinfo=UTC), datetime(2026, 12, 7, 14, 0, tzinfo=UTC))
    ]
    assert "POST" not in [m for m, u, _ in api_calls(mock) if u.startswith(EVENTS)]


async def test_back_to_back_is_free(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    mock.get(EVENT, status=410, payload=error_fixture("error_410_deleted.json")[1])
    mock.post(
        FREEBUSY,
        payload={
            "calendars": {
                CALENDAR: {"busy": [{"start": "2026-12-07T12:00:00Z", "end": "2026-12-07T13:00:00Z"}]}
            }
        },
    )
    mock.post(INSERT, payload=fixture("event_meet.json"))
    await client.book_meeting(
        CALENDAR, event_id=EVENT_ID, start=START, end=END, summary=SUMMARY, credentials=credentials
    )


async def test_move_patches_start_and_end_and_notifies(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    new_start, new_end = START + timedelta(minutes=15), END + timedelta(minutes=15)
    mock.get(EVENT, payload=fixture("event_meet.json"))
    # Busy shows the event itself (10:00-10:30): moving it 15 minutes later is still free.
    mock.post(
        FREEBUSY,
        payload={
            "calendars": {
                CALENDAR: {"busy": [{"start": "2026-12-07T13:00:00Z", "end": "2026-12-07T13:30:00Z"}]}
            }
        },
    )
    moved = fixture("event_meet.json")
    moved["start"]["dateTime"], moved["end"]["dateTime"] = new_start.isoformat(), new_end.isoformat()
    mock.patch(f"{EVENT}?sendUpdates=all", payload=moved)

    event = await client.move_meeting(
        CALENDAR, EVENT_ID, start=new_start, end=new_end, credentials=credentials
    )

    assert event.starts_at == new_start
    [(_, url, call)] = api_calls(mock, "PATCH")
    assert URL(url).with_query(None) == URL(EVENT)
    assert call["params"] == {"sendUpdates": "all"}
    assert call["json"] == {
        "start": {"dateTime": "2026-12-07T10:15:00-03:00", "timeZone": "America/Sao_Paulo"},
        "end": {"dateTime": "2026-12-07T10:45:00-03:00", "timeZone": "America/Sao_Paulo"},
    }


async def test_move_onto_someone_elses_meeting_raises_slot_taken(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    mock.get(EVENT, payload=fixture("event_meet.json"))
    mock.post(
        FREEBUSY,
        payload={
            "calendars": {
                CALENDAR: {"busy": [{"start": "2026-12-07T13:00:00Z", "end": "2026-12-07T14:00:00Z"}]}
            }
        },
    )
    with pytest.raises(SlotTaken):
        await client.move_meeting(
            CALENDAR,
            EVENT_ID,
            start=START + timedelta(minutes=20),
            end=END + timedelta(minutes=20),
            credentials=credentials,
        )
    assert not api_calls(mock, "PATCH")


async def test_move_of_a_deleted_event_is_event_gone(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    mock.get(EVENT, payload=fixture("event_cancelled.json"))
    with pytest.raises(EventGone):
        await client.move_meeting(CALENDAR, EVENT_ID, start=START, end=END, credentials=credentials)


@pytest.mark.parametrize(("status", "deleted_now"), [(204, True), (404, False), (410, False)])
async def test_cancel_deletes_with_notifications_and_gone_is_done(
    client: GoogleCalendarClient,
    credentials: ServiceAccountCredentials,
    mock: aioresponses,
    status: int,
    deleted_now: bool,
) -> None:
    token_ok(mock)
    mock.delete(f"{EVENT}?sendUpdates=all", status=status)
    assert await client.cancel_meeting(CALENDAR, EVENT_ID, credentials=credentials) is deleted_now
    [(_, _, call)] = api_calls(mock, "DELETE")
    assert call["params"] == {"sendUpdates": "all"}


@pytest.mark.parametrize(
    ("name", "retry_after", "headers"),
    [
        ("error_429_rate_limit.json", 12.0, {"Retry-After": "12"}),
        ("error_403_rate_limit.json", None, {}),
        ("error_403_user_rate_limit.json", None, {}),
        ("error_500_backend.json", None, {}),
    ],
)
async def test_throttling_and_server_trouble_are_worth_retrying(
    client: GoogleCalendarClient,
    credentials: ServiceAccountCredentials,
    mock: aioresponses,
    name: str,
    retry_after: float | None,
    headers: dict[str, str],
) -> None:
    token_ok(mock)
    status, body = error_fixture(name)
    mock.post(INSERT, status=status, payload=body, headers=headers)
    with pytest.raises(GoogleCalendarUnavailable) as info:
        await insert(client, credentials)
    assert isinstance(info.value, Retryable)
    assert info.value.retry_after == retry_after
    assert info.value.status == status


@pytest.mark.parametrize("exception", [TimeoutError(), aiohttp.ServerDisconnectedError()])
async def test_timeouts_and_broken_connections_are_worth_retrying(
    client: GoogleCalendarClient,
    credentials: ServiceAccountCredentials,
    mock: aioresponses,
    exception: Exception,
) -> None:
    token_ok(mock)
    mock.post(FREEBUSY, exception=exception)
    with pytest.raises(GoogleCalendarUnavailable):
        await client.busy(CALENDAR, start=START, end=END, credentials=credentials)


@pytest.mark.parametrize(
    ("name", "leaf", "words"),
    [
        ("error_403_forbidden_for_service_accounts.json", GoogleCalendarAuthFailed, "domain-wide delegation"),
        ("error_403_required_access_level.json", GoogleCalendarAuthFailed, "Make changes to events"),
        ("error_404_not_found.json", CalendarNotFound, "calendar id"),
    ],
)
async def test_refusals_are_permanent_with_the_operators_next_step(
    client: GoogleCalendarClient,
    credentials: ServiceAccountCredentials,
    mock: aioresponses,
    name: str,
    leaf: type[GoogleCalendarError],
    words: str,
) -> None:
    token_ok(mock)
    status, body = error_fixture(name)
    mock.post(INSERT, status=status, payload=body)
    with capture_logs() as logs, pytest.raises(leaf) as info:
        await insert(client, credentials)
    assert isinstance(info.value, Permanent)
    assert words in str(info.value)
    assert info.value.auth_failed is isinstance(info.value, AuthFailed)
    assert LEAD_EMAIL not in str(info.value) and LEAD_EMAIL not in json.dumps(logs, default=str)


async def test_a_401_mints_a_fresh_token_once_then_succeeds(
    session: aiohttp.ClientSession, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    client = make_client(session)
    token_ok(mock, token="ya29.first", repeat=False)
    token_ok(mock, token="ya29.second", repeat=False)
    status, body = error_fixture("error_401_auth.json")
    mock.post(FREEBUSY, status=status, payload=body)
    mock.post(FREEBUSY, payload=fixture("freebusy_response.json"))

    assert len(await client.busy(CALENDAR, start=START, end=END, credentials=credentials)) == 2

    sent = [call["headers"]["Authorization"] for _, _, call in api_calls(mock)]  # type: ignore[index]
    assert sent == ["Bearer ya29.first", "Bearer ya29.second"]


async def test_a_second_401_is_an_auth_failure(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    status, body = error_fixture("error_401_auth.json")
    mock.post(FREEBUSY, status=status, payload=body, repeat=True)
    with pytest.raises(GoogleCalendarAuthFailed) as info:
        await client.busy(CALENDAR, start=START, end=END, credentials=credentials)
    assert len(api_calls(mock)) == 2
    assert ACCESS_TOKEN not in str(info.value)


async def test_ids_and_times_google_would_refuse_are_refused_before_any_request(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    for bad in ("abc", "UPPERCASE-ID", "xyz12", "../../calendars"):
        with pytest.raises(GoogleCalendarRejected):
            await client.cancel_meeting(CALENDAR, bad, credentials=credentials)
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.busy(
            CALENDAR, start=datetime(2026, 12, 7, 10), end=datetime(2026, 12, 7, 11), credentials=credentials
        )
    with pytest.raises(GoogleCalendarRejected):
        await client.insert_meeting(
            CALENDAR, event_id=EVENT_ID, start=END, end=START, summary="x", credentials=credentials
        )
    assert not mock.requests


async def test_calendar_ids_are_escaped_in_the_path(
    client: GoogleCalendarClient, credentials: ServiceAccountCredentials, mock: aioresponses
) -> None:
    token_ok(mock)
    odd = "c_1a2b#team@group.calendar.google.com"
    mock.delete(
        re.compile(
            r"^http://calendar\.test/calendar/v3/calendars/c_1a2b%23team@group\.calendar\.google\.com/events/"
        ),
        status=204,
    )
    assert await client.cancel_meeting(odd, EVENT_ID, credentials=credentials)

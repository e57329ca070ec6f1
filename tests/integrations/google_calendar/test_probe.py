"""The doctor's look at a seller's calendar: a token is minted, then the calendar's
metadata read (calendar.calendars.get); every refusal worded with the operator's next step."""

from __future__ import annotations

import aiohttp
import pytest
from aioresponses import aioresponses

from integrations.google_calendar import GoogleCalendarClient, ServiceAccountCredentials
from tests.integrations.google_calendar.conftest import (
    ACCESS_TOKEN,
    API,
    CALENDAR,
    TOKEN_URL,
    error_fixture,
    fixture,
    token_ok,
)
from tests.integrations.probe_io import FakeProbeIO

CALENDAR_URL = f"{API}/calendars/{CALENDAR}"


async def test_a_reachable_calendar_is_reported_with_its_zone(
    session: aiohttp.ClientSession,
    client: GoogleCalendarClient,
    credentials: ServiceAccountCredentials,
    mock: aioresponses,
) -> None:
    token_ok(mock)
    mock.get(CALENDAR_URL, payload=fixture("calendar_get.json"))
    io = FakeProbeIO(session, secrets=(ACCESS_TOKEN,))
    result = await client.probe(io, calendar_id=CALENDAR, credentials=credentials)
    assert result.ok, result
    assert "Ana (Acme)" in result.detail and "America/Sao_Paulo" in result.detail
    [(url, headers, _)] = io.calls
    assert url == CALENDAR_URL and headers == {"Authorization": f"Bearer {ACCESS_TOKEN}"}


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("error_404_not_found.json", "Calendar ID"),
        ("error_403_required_access_level.json", "share the calendar"),
    ],
)
async def test_a_calendar_out_of_reach_says_what_to_fix(
    session: aiohttp.ClientSession,
    client: GoogleCalendarClient,
    credentials: ServiceAccountCredentials,
    mock: aioresponses,
    name: str,
    words: str,
) -> None:
    token_ok(mock)
    status, body = error_fixture(name)
    mock.get(CALENDAR_URL, status=status, payload=body)
    result = await client.probe(FakeProbeIO(session), calendar_id=CALENDAR, credentials=credentials)
    assert not result.ok and words in result.hint


async def test_a_refused_token_is_the_probes_verdict_without_calling_the_api(
    session: aiohttp.ClientSession,
    client: GoogleCalendarClient,
    credentials: ServiceAccountCredentials,
    mock: aioresponses,
) -> None:
    status, body = error_fixture("token_error_unauthorized_client.json")
    mock.post(TOKEN_URL, status=status, payload=body)
    io = FakeProbeIO(session)
    result = await client.probe(io, calendar_id=CALENDAR, credentials=credentials)
    assert not result.ok and "Domain-wide delegation" in result.hint
    assert io.calls == []


async def test_an_unexpected_answer_goes_back_to_the_doctor(
    session: aiohttp.ClientSession,
    client: GoogleCalendarClient,
    credentials: ServiceAccountCredentials,
    mock: aioresponses,
) -> None:
    token_ok(mock)
    mock.get(CALENDAR_URL, status=503, body="unavailable")
    result = await client.probe(FakeProbeIO(session), calendar_id=CALENDAR, credentials=credentials)
    assert result.detail == "UNEXPECTED 503"

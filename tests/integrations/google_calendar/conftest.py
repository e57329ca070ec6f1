"""Shared pieces of the Google Calendar tests: a throwaway service account key (made
here with `cryptography`, never a real one), the app-shaped client and the fixtures of
tests/fixtures/google_calendar/ (built from the Calendar API v3 discovery document and
Google's error guide; each names its source in `_source`)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.google_calendar import (
    GoogleCalendarClient,
    GoogleCalendarConfig,
    ServiceAccountCredentials,
    event_id_for,
)
from tests.helpers.fakes import load_fixture

API = "http://calendar.test/calendar/v3"
TOKEN_URL = "http://oauth.test/token"
CALENDAR = "ana@acme.com.br"
SELLER = "ana@acme.com.br"
LEAD_EMAIL = "joana.lead@example.com"
SA_EMAIL = "sdr-bot@acme-sdr.iam.gserviceaccount.com"
ACCESS_TOKEN = "ya29.a0AfB_byC-test-access-token-0001"
EVENT_ID = event_id_for("acme", "lead-42", "2026-12-07T10:00:00-03:00")


@functools.cache
def rsa_key_pems() -> tuple[str, str]:
    """(private PKCS#8 PEM, public PEM) of a key made for this test run only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def sa_info() -> dict[str, str]:
    """A service account JSON key in Google's format, with the throwaway key."""
    return {
        "type": "service_account",
        "project_id": "acme-sdr",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": rsa_key_pems()[0],
        "client_email": SA_EMAIL,
        "client_id": "104857600000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def fixture(name: str) -> dict[str, Any]:
    """A fixture with EVENT_ID in place of its placeholder, without `_http_status`."""
    body = load_fixture(f"google_calendar/{name}")
    body.pop("_http_status", None)
    return _replace(body)


def error_fixture(name: str) -> tuple[int, dict[str, Any]]:
    """(`_http_status`, body) of an error fixture."""
    body = load_fixture(f"google_calendar/{name}")
    return int(body.pop("_http_status")), _replace(body)


def _replace(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("EVENT_ID", EVENT_ID)
    if isinstance(value, list):
        return [_replace(v) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v) for k, v in value.items()}
    return value


def requests_of(mock: aioresponses, method: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, url, kwargs) of every request aioresponses saw, in order."""
    seen = [(m, str(url), call.kwargs) for (m, url), calls in mock.requests.items() for call in calls]
    return [s for s in seen if method is None or s[0] == method]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
def credentials() -> ServiceAccountCredentials:
    return ServiceAccountCredentials(sa_info(), subject=SELLER)


def make_client(session: aiohttp.ClientSession, **overrides: Any) -> GoogleCalendarClient:
    values: dict[str, Any] = {"api_url": API, "token_url": TOKEN_URL, "service_account_info": sa_info()}
    values.update(overrides)
    clock = values.pop("clock", None)
    config = GoogleCalendarConfig(**values)
    return (
        GoogleCalendarClient(config, session)
        if clock is None
        else GoogleCalendarClient(config, session, clock=clock)
    )


@pytest.fixture
def client(session: aiohttp.ClientSession) -> GoogleCalendarClient:
    return make_client(session)


def token_ok(mock: aioresponses, *, token: str = ACCESS_TOKEN, repeat: bool = True) -> None:
    body = fixture("token_response.json")
    body["access_token"] = token
    mock.post(TOKEN_URL, payload=body, repeat=repeat)

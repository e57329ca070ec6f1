"""Access tokens: the service account's JWT (signed by google-auth, checked here against
the throwaway key's public half) and the seller's refresh token, both POSTed over the
app's session; cached until shortly before expiry; refusals typed with the operator's
next step; no secret in a log line or an error."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses
from google.auth import jwt
from pydantic import SecretStr
from structlog.testing import capture_logs

from core.errors import AuthFailed, Retryable
from integrations.google_calendar import (
    CALENDAR_SCOPE,
    GoogleCalendarAuthFailed,
    GoogleCalendarConfig,
    GoogleCalendarUnavailable,
    OAuthRefreshCredentials,
    ServiceAccountCredentials,
    TokenSource,
    service_account_info,
)
from integrations.google_calendar.tokens import EXPIRY_MARGIN_S, JWT_BEARER
from tests.integrations.google_calendar.conftest import (
    ACCESS_TOKEN,
    SA_EMAIL,
    SELLER,
    TOKEN_URL,
    error_fixture,
    fixture,
    requests_of,
    rsa_key_pems,
    sa_info,
    token_ok,
)

REFRESH = "1//0g-refresh-SECRET-token"
CLIENT_SECRET = "GOCSPX-client-SECRET"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def oauth() -> OAuthRefreshCredentials:
    return OAuthRefreshCredentials(
        client_id="1234-abc.apps.googleusercontent.com",
        client_secret=SecretStr(CLIENT_SECRET),
        refresh_token=SecretStr(REFRESH),
        account=SELLER,
    )


async def test_the_service_account_jwt_carries_iss_sub_scope_aud_and_is_signed_by_the_key(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    token_ok(mock)
    tokens = TokenSource(session, token_url=TOKEN_URL)

    assert await tokens.token(ServiceAccountCredentials(sa_info(), subject=SELLER)) == ACCESS_TOKEN

    [(method, url, call)] = requests_of(mock)
    assert (method, url) == ("POST", TOKEN_URL)
    assert set(call["data"]) == {"grant_type", "assertion"}
    assert call["data"]["grant_type"] == JWT_BEARER == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    # The signature verifies with the public half of the key: google-auth signed it, RS256.
    claims = jwt.decode(call["data"]["assertion"], certs=rsa_key_pems()[1], audience=TOKEN_URL)
    assert claims["iss"] == SA_EMAIL
    assert claims["sub"] == SELLER
    assert claims["scope"] == CALENDAR_SCOPE == "https://www.googleapis.com/auth/calendar"
    assert claims["aud"] == TOKEN_URL
    assert claims["exp"] - claims["iat"] == 3600
    segment = call["data"]["assertion"].split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert header["alg"] == "RS256" and header["kid"] == sa_info()["private_key_id"]


async def test_without_a_subject_the_service_account_acts_as_itself(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    token_ok(mock)
    await TokenSource(session, token_url=TOKEN_URL).token(ServiceAccountCredentials(sa_info()))
    [(_, _, call)] = requests_of(mock)
    assert "sub" not in jwt.decode(call["data"]["assertion"], verify=False)


async def test_a_token_is_cached_per_identity_until_shortly_before_it_expires(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    clock = Clock()
    token_ok(mock)
    tokens = TokenSource(session, token_url=TOKEN_URL, clock=clock)
    ana = ServiceAccountCredentials(sa_info(), subject=SELLER)

    await asyncio.gather(*(tokens.token(ana) for _ in range(5)))  # concurrent turns: one mint
    assert len(requests_of(mock)) == 1
    clock.now += 3599 - EXPIRY_MARGIN_S - 1
    await tokens.token(ana)
    assert len(requests_of(mock)) == 1
    clock.now += 2  # inside the margin: renewed before Google would refuse it
    await tokens.token(ana)
    assert len(requests_of(mock)) == 2
    # Another seller is another identity, with its own token.
    await tokens.token(ServiceAccountCredentials(sa_info(), subject="bruno@acme.com.br"))
    assert len(requests_of(mock)) == 3
    tokens.invalidate(ana)
    await tokens.token(ana)
    assert len(requests_of(mock)) == 4


async def test_the_refresh_token_flow_posts_the_client_and_the_token(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    token_ok(mock)
    tokens = TokenSource(session, token_url=TOKEN_URL)
    with capture_logs() as logs:
        assert await tokens.token(oauth()) == ACCESS_TOKEN
        assert await tokens.token(oauth()) == ACCESS_TOKEN
    [(_, _, call)] = requests_of(mock)
    assert call["data"] == {
        "grant_type": "refresh_token",
        "client_id": "1234-abc.apps.googleusercontent.com",
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH,
    }
    text = json.dumps(logs, default=str)
    for secret in (REFRESH, CLIENT_SECRET, ACCESS_TOKEN):
        assert secret not in text
    assert REFRESH not in repr(oauth()) and CLIENT_SECRET not in repr(oauth())


async def test_a_revoked_refresh_token_asks_the_seller_to_reconnect(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    status, body = error_fixture("token_error_invalid_grant.json")
    mock.post(TOKEN_URL, status=status, payload=body)
    with pytest.raises(GoogleCalendarAuthFailed) as info:
        await TokenSource(session, token_url=TOKEN_URL).token(oauth())
    assert isinstance(info.value, AuthFailed)
    assert info.value.reason == "invalid_grant"
    assert "connect the Google account again" in str(info.value)
    assert REFRESH not in str(info.value)


async def test_a_service_account_without_delegation_names_the_admin_console_step(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    status, body = error_fixture("token_error_unauthorized_client.json")
    mock.post(TOKEN_URL, status=status, payload=body)
    with pytest.raises(GoogleCalendarAuthFailed) as info:
        await TokenSource(session, token_url=TOKEN_URL).token(
            ServiceAccountCredentials(sa_info(), subject=SELLER)
        )
    assert "Domain-wide delegation" in str(info.value)
    assert "BEGIN PRIVATE KEY" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "retry_after"),
    [
        ({"status": 503, "body": "<html>busy</html>", "headers": {"Retry-After": "7"}}, 7.0),
        ({"status": 429, "payload": {"error": "rate_limit"}}, None),
        ({"exception": TimeoutError()}, None),
        ({"exception": aiohttp.ClientConnectionError("refused")}, None),
        ({"status": 200, "body": "<html>captive portal</html>"}, None),
    ],
)
async def test_token_endpoint_trouble_is_worth_retrying(
    session: aiohttp.ClientSession, mock: aioresponses, kwargs: dict[str, object], retry_after: float | None
) -> None:
    mock.post(TOKEN_URL, **kwargs)
    with pytest.raises(GoogleCalendarUnavailable) as info:
        await TokenSource(session, token_url=TOKEN_URL).token(oauth())
    assert isinstance(info.value, Retryable)
    assert info.value.retry_after == retry_after


async def test_an_unreadable_private_key_is_an_operator_problem(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    broken = {**sa_info(), "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"}
    with pytest.raises(GoogleCalendarAuthFailed) as info:
        await TokenSource(session, token_url=TOKEN_URL).token(
            ServiceAccountCredentials(broken, subject=SELLER)
        )
    assert "GOOGLE_SERVICE_ACCOUNT" in str(info.value)
    assert not mock.requests


def test_service_account_info_reads_the_json_or_the_file(tmp_path: Path) -> None:
    text = json.dumps(sa_info())
    assert service_account_info(json_text=text)["client_email"] == SA_EMAIL
    key_file = tmp_path / "key.json"
    key_file.write_text(text, encoding="utf-8")
    assert service_account_info(json_text="  ", file=key_file)["client_email"] == SA_EMAIL
    for bad in (
        {"json_text": "{not json"},
        {"json_text": '{"type": "authorized_user"}'},
        {"file": tmp_path / "none"},
        {},
    ):
        with pytest.raises(GoogleCalendarAuthFailed) as info:
            service_account_info(**bad)
        assert "PRIVATE KEY" not in str(info.value)


def test_the_config_picks_the_sellers_credentials() -> None:
    both = GoogleCalendarConfig(
        service_account_info=sa_info(), oauth_client_id="cid", oauth_client_secret=SecretStr("csecret")
    )
    assert both.credentials_for(subject=SELLER) == ServiceAccountCredentials(sa_info(), subject=SELLER)
    chosen = both.credentials_for(subject=SELLER, refresh_token=SecretStr(REFRESH))
    assert isinstance(chosen, OAuthRefreshCredentials) and chosen.refresh_token.get_secret_value() == REFRESH
    assert "PRIVATE KEY" not in repr(both) and "csecret" not in repr(both)
    with pytest.raises(GoogleCalendarAuthFailed, match="GOOGLE_OAUTH_CLIENT_ID"):
        GoogleCalendarConfig(service_account_info=sa_info()).credentials_for(refresh_token=REFRESH)
    with pytest.raises(GoogleCalendarAuthFailed, match="not configured"):
        GoogleCalendarConfig().credentials_for(subject=SELLER)
    assert not GoogleCalendarConfig().configured and both.configured


def test_the_token_fixture_is_googles_shape() -> None:
    assert set(fixture("token_response.json")) == {"access_token", "expires_in", "token_type"}

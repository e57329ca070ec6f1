"""Reading a lead from the Graph API: the exact request, and every failure typed so the
outbox retries what may pass and dead-letters, with the operator's next step, what won't.

Error bodies under tests/fixtures/meta_leads/ cite Meta's error-handling and
rate-limiting pages in `_source`; `_http_status` is the status Graph answers with.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr
from structlog.testing import capture_logs
from yarl import URL

from core.errors import AuthFailed, Permanent, Retryable
from integrations.meta_leads import (
    MetaLeadNotFound,
    MetaLeadsAuthFailed,
    MetaLeadsClient,
    MetaLeadsConfig,
    MetaLeadsError,
    MetaLeadsRejected,
    MetaLeadsUnavailable,
)
from tests.helpers.fakes import load_fixture

GRAPH = "https://graph.facebook.com"
VERSION = "v21.0"
TOKEN = "EAAGm0PX4ZCpsBO-page-SECRET-token-91c2d7e4"
LEAD_ID = "123123123123"
LEAD_URL = f"{GRAPH}/{VERSION}/{LEAD_ID}"
ANY_LEAD_URL = re.compile(rf"^{re.escape(GRAPH)}/{VERSION}/\d+(\?.*)?$")


def error_fixture(name: str) -> tuple[int, dict[str, Any]]:
    body = load_fixture(f"meta_leads/{name}")
    return body.pop("_http_status"), body


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


def make_client(
    session: aiohttp.ClientSession, token: str | None = TOKEN, **overrides: Any
) -> MetaLeadsClient:
    values: dict[str, Any] = {"graph_version": VERSION, **overrides}
    config = MetaLeadsConfig(page_access_token=SecretStr(token) if token is not None else None, **values)
    return MetaLeadsClient(config, session)


def only_call(mock: aioresponses) -> tuple[str, Any]:
    calls = [(key, call) for key, calls in mock.requests.items() for call in calls]
    assert len(calls) == 1, f"expected one request, made: {list(mock.requests)}"
    (method, url), call = calls[0]
    assert method == "GET"
    return str(url), call


async def fetch_error(client: MetaLeadsClient) -> MetaLeadsError:
    with pytest.raises(MetaLeadsError) as info:
        await client.fetch_lead(LEAD_ID)
    return info.value


async def test_fetch_reads_the_lead_node_with_the_token_in_the_header_only(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(ANY_LEAD_URL, payload=load_fixture("meta_leads/retrieving_leads_lead.json"))
    with capture_logs() as logs:
        lead = await make_client(session).fetch_lead(LEAD_ID)

    assert lead.id == LEAD_ID
    assert ("full_name", "Joe Example") in lead.answers()
    url, call = only_call(mock)
    sent = URL(url)
    assert sent.with_query(None) == URL(LEAD_URL)
    assert set(sent.query) == {"fields"}  # nothing else, the token least of all
    assert set(sent.query["fields"].split(",")) >= {
        "id",
        "created_time",
        "field_data",
        "form_id",
        "ad_id",
        "ad_name",
        "adset_id",
        "campaign_id",
        "campaign_name",
        "platform",
        "is_organic",
    }
    assert call.kwargs["headers"] == {"Authorization": f"Bearer {TOKEN}"}
    assert TOKEN not in url
    assert TOKEN not in json.dumps(logs, default=str)
    assert "Joe Example" not in json.dumps(logs, default=str)  # answers are never logged


async def test_graph_url_and_version_come_from_the_config(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(
        re.compile(r"^http://graph\.local/v19\.0/123123123123\?"),
        payload=load_fixture("meta_leads/retrieving_leads_lead.json"),
    )
    client = make_client(session, graph_url="http://graph.local/", graph_version="v19.0")
    assert (await client.fetch_lead(LEAD_ID)).id == LEAD_ID


async def test_unconfigured_client_refuses_without_calling_meta(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    for token in (None, "  "):
        client = make_client(session, token=token)
        assert not client.configured
        error = await fetch_error(client)
        assert isinstance(error, MetaLeadsAuthFailed) and isinstance(error, Permanent)
        assert "META_PAGE_ACCESS_TOKEN is not set" in str(error)
    assert not mock.requests


async def test_a_lead_id_that_is_not_digits_is_refused_before_any_request(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    for bad in ("me/accounts", "123?fields=access_token", ""):
        with pytest.raises(MetaLeadsRejected):
            await make_client(session).fetch_lead(bad)
    assert not mock.requests


async def test_429_with_retry_after_is_transient_and_says_how_long(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(ANY_LEAD_URL, status=429, headers={"Retry-After": "120"}, body="")
    error = await fetch_error(make_client(session))
    assert isinstance(error, MetaLeadsUnavailable) and isinstance(error, Retryable)
    assert error.retry_after == 120.0
    assert error.status == 429


async def test_429_without_retry_after_is_transient_left_to_the_backoff(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(ANY_LEAD_URL, status=429, body="Too Many Requests")
    error = await fetch_error(make_client(session))
    assert isinstance(error, MetaLeadsUnavailable)
    assert error.retry_after is None


async def test_500_is_transient(session: aiohttp.ClientSession, mock: aioresponses) -> None:
    mock.get(ANY_LEAD_URL, status=500, body="<html>oops</html>")
    error = await fetch_error(make_client(session))
    assert isinstance(error, MetaLeadsUnavailable)
    assert "HTTP 500" in str(error)


async def test_timeout_and_broken_connection_are_transient(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(ANY_LEAD_URL, exception=TimeoutError())
    timed_out = await fetch_error(make_client(session, timeout_s=7.0))
    assert isinstance(timed_out, MetaLeadsUnavailable)
    assert "timed out after 7 s" in str(timed_out)

    mock.get(ANY_LEAD_URL, exception=aiohttp.ClientConnectionError("reset"))
    broken = await fetch_error(make_client(session))
    assert isinstance(broken, MetaLeadsUnavailable)


async def test_a_2xx_that_is_not_json_is_transient(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(ANY_LEAD_URL, status=200, body="<html>maintenance</html>")
    assert isinstance(await fetch_error(make_client(session)), MetaLeadsUnavailable)


async def test_a_json_answer_that_is_not_a_lead_is_permanent(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(ANY_LEAD_URL, payload={"id": LEAD_ID})  # no created_time
    error = await fetch_error(make_client(session))
    assert type(error) is MetaLeadsRejected
    assert "created_time" in str(error)


@pytest.mark.parametrize(
    "fixture",
    [
        "graph_error_4_app_limit.json",
        "graph_error_17_user_limit.json",
        "graph_error_32_page_limit.json",
        "graph_error_80001_page_buc_limit.json",
    ],
)
async def test_graph_throttling_codes_are_transient_whatever_the_status(
    session: aiohttp.ClientSession, mock: aioresponses, fixture: str
) -> None:
    status, body = error_fixture(fixture)
    assert 400 <= status < 500
    mock.get(ANY_LEAD_URL, status=status, payload=body)
    error = await fetch_error(make_client(session))
    assert isinstance(error, MetaLeadsUnavailable)
    assert error.code == body["error"]["code"]
    assert body["error"]["fbtrace_id"] in str(error)


async def test_business_use_case_header_gives_the_wait(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    status, body = error_fixture("graph_error_80001_page_buc_limit.json")
    usage = {
        "153125381133": [
            {
                "type": "pages",
                "call_count": 100,
                "total_cputime": 45,
                "total_time": 60,
                "estimated_time_to_regain_access": 5,
            }
        ]
    }
    mock.get(
        ANY_LEAD_URL, status=status, payload=body, headers={"X-Business-Use-Case-Usage": json.dumps(usage)}
    )
    error = await fetch_error(make_client(session))
    assert isinstance(error, MetaLeadsUnavailable)
    assert error.retry_after == 300.0


async def test_expired_token_is_permanent_and_says_to_generate_a_new_one(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    status, body = error_fixture("graph_error_190_token_expired.json")
    mock.get(ANY_LEAD_URL, status=status, payload=body)
    error = await fetch_error(make_client(session))
    assert (
        isinstance(error, MetaLeadsAuthFailed)
        and isinstance(error, AuthFailed)
        and isinstance(error, Permanent)
    )
    assert (error.code, error.subcode) == (190, 463)
    text = str(error)
    assert "Session has expired" in text
    assert "new Page access token" in text and "META_PAGE_ACCESS_TOKEN" in text


async def test_401_without_a_body_is_an_auth_failure(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(ANY_LEAD_URL, status=401, body="")
    assert isinstance(await fetch_error(make_client(session)), MetaLeadsAuthFailed)


@pytest.mark.parametrize(
    "fixture", ["graph_error_10_permission_denied.json", "graph_error_200_permission.json"]
)
async def test_missing_permission_is_permanent_and_names_leads_retrieval(
    session: aiohttp.ClientSession, mock: aioresponses, fixture: str
) -> None:
    status, body = error_fixture(fixture)
    mock.get(ANY_LEAD_URL, status=status, payload=body)
    error = await fetch_error(make_client(session))
    assert isinstance(error, MetaLeadsAuthFailed) and not error.retryable
    assert "leads_retrieval" in str(error) and "Leads Access Manager" in str(error)


async def test_unknown_or_expired_lead_is_permanent_and_explains_the_90_days(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    status, body = error_fixture("graph_error_100_33_unsupported_get.json")
    mock.get(ANY_LEAD_URL, status=status, payload=body)
    error = await fetch_error(make_client(session))
    assert isinstance(error, MetaLeadNotFound) and isinstance(error, Permanent)
    assert not error.auth_failed
    assert "90 days" in str(error) and "cannot be fetched" in str(error)


async def test_other_invalid_parameter_is_permanent(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(
        ANY_LEAD_URL,
        status=400,
        payload={
            "error": {
                "message": "(#100) Tried accessing nonexisting field (foo)",
                "type": "OAuthException",
                "code": 100,
            }
        },
    )
    error = await fetch_error(make_client(session))
    assert type(error) is MetaLeadsRejected


async def test_token_echoed_by_meta_never_reaches_the_error_text(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(
        ANY_LEAD_URL,
        status=400,
        payload={
            "error": {"message": f"Malformed access token {TOKEN}", "type": "OAuthException", "code": 190}
        },
    )
    with capture_logs() as logs:
        error = await fetch_error(make_client(session))
    assert TOKEN not in str(error)
    assert "[REDACTED]" in str(error)
    assert TOKEN not in json.dumps(logs, default=str)

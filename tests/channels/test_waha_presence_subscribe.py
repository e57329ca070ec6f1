"""WAHA's presence subscription from the channel's side: the documented request
(tests/fixtures/waha/presence_subscribe_openapi.json), the TTL that keeps it to one call
per lead, and every failure logged once and never raised. WAHA is faked at the HTTP
boundary (aioresponses); the TTL runs on a hand-moved clock, never on sleeps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr
from structlog.testing import capture_logs
from yarl import URL

from channels.base import presence_subscriber
from channels.media_fetch import MediaConfig
from channels.waha import WahaChannel, WahaConfig
from channels.waha.presence import RETRY_AFTER_S, SUBSCRIBE_TTL_S, PresenceSubscriptions
from tests.helpers.fakes import load_fixture

WAHA = "http://waha.local:3000"
API_KEY = "waha-presence-key-3c9d1e"
LEAD = "5511999999999"
SPEC = load_fixture("waha/presence_subscribe_openapi.json")
SUBSCRIBE = f"{WAHA}{SPEC['request']['path']}"  # the documented path, session "default"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def waha(clock: Clock | None = None, **overrides: Any) -> WahaChannel:
    values: dict[str, Any] = {
        "url": WAHA,
        "api_key": SecretStr(API_KEY),
        "session": "default",
        "webhook_hmac_key": SecretStr("hmac-key-1f2e"),
        "webhook_secret": None,
        "rate_per_s": 10.0,
        "http_timeout_s": 10.0,
        "media": MediaConfig(waha_url=WAHA, zapi_base_url=None, meta_graph_url=None),
    }
    channel = WahaChannel(WahaConfig(**(values | overrides)))
    if clock is not None:  # the same book, on a clock the test moves
        enabled = channel._presence.enabled
        channel._presence = PresenceSubscriptions(enabled=enabled, now=clock)
    return channel


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def mock() -> Any:
    with aioresponses() as m:
        yield m


def calls(mock: aioresponses, url: str = SUBSCRIBE) -> list[Any]:
    return mock.requests.get(("POST", URL(url)), [])


async def subscribe(channel: WahaChannel, session: aiohttp.ClientSession, contact: str = LEAD) -> bool:
    """What the webhook layer does: claim, then call (here awaited, there a tracked task)."""
    if not channel.presence_due(contact):
        return False
    await channel.subscribe_presence(session, contact)
    return True


def test_the_waha_channel_subscribes_presence_and_the_others_do_not() -> None:
    assert presence_subscriber(waha()) is not None
    assert presence_subscriber(object()) is None


async def test_the_documented_request_once_per_lead(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.post(SUBSCRIBE, status=SPEC["response"]["status"], body=SPEC["response"]["body"], repeat=True)
    clock = Clock()
    channel = waha(clock)
    with capture_logs() as logs:
        assert await subscribe(channel, session) is True
        # The same lead again within the TTL, under any spelling of its id: no second call.
        assert await subscribe(channel, session) is False
        assert await subscribe(channel, session, f"{LEAD}@c.us") is False
    [call] = calls(mock)
    assert SPEC["request"]["method"] == "POST" and SPEC["request"]["body"] is None
    assert call.kwargs["headers"]["X-Api-Key"] == API_KEY
    assert "json" not in call.kwargs and call.kwargs.get("data") is None  # "no body required"
    assert call.kwargs["allow_redirects"] is False  # the key never follows a redirect elsewhere
    assert call.kwargs["timeout"].total == 3.0  # short, whatever HTTP_TIMEOUT_S is
    assert [e for e in logs if e["log_level"] != "debug"] == []
    clock.now += SUBSCRIBE_TTL_S + 1
    assert await subscribe(channel, session) is True
    assert len(calls(mock)) == 2


async def test_a_lid_lead_is_subscribed_by_its_lid(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    url = f"{WAHA}/api/vendas/presence/81896604192873@lid/subscribe"
    mock.post(url, status=201)
    assert await subscribe(waha(session="vendas"), session, "81896604192873@lid") is True
    assert len(calls(mock, url)) == 1


def test_a_group_or_an_unconfigured_waha_is_never_due() -> None:
    assert waha().presence_due("120363025555555555@g.us") is False
    assert waha(url=None).presence_due(LEAD) is False


def test_the_setting_off_means_no_call() -> None:
    assert waha(presence_subscribe=False).presence_due(LEAD) is False


def not_implemented() -> dict[str, Any]:
    answer = SPEC["not_implemented"]
    return {"status": answer["status"], "body": json.dumps(answer["body"])}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(not_implemented(), id="422-not-implemented-by-the-engine"),
        pytest.param({"status": 501, "body": "Not Implemented"}, id="501"),
        pytest.param(
            {"status": 404, "body": json.dumps({"message": f"Cannot POST {SPEC['request']['path']}"})},
            id="404-waha-without-the-route",
        ),
    ],
)
async def test_an_engine_without_it_turns_the_feature_off_once(
    session: aiohttp.ClientSession, mock: aioresponses, answer: dict[str, Any]
) -> None:
    mock.post(SUBSCRIBE, **answer)
    channel = waha()
    with capture_logs() as logs:
        await subscribe(channel, session)
        # Nobody else is asked, ever, in this process.
        assert channel.presence_due("5511988887777") is False
    assert len(calls(mock)) == 1
    [event] = [e for e in logs if e["log_level"] != "debug"]
    assert event["event"] == "waha_presence_subscribe_unsupported" and event["log_level"] == "warning"
    assert event["status"] == answer["status"]


@pytest.mark.parametrize(
    ("answer", "passing"),
    [
        pytest.param({"status": 500, "body": "{}"}, True, id="500"),
        pytest.param({"status": 503, "body": "down"}, True, id="503"),
        pytest.param({"exception": TimeoutError()}, True, id="timeout"),
        pytest.param({"exception": aiohttp.ClientConnectionError("refused")}, True, id="refused"),
        pytest.param(
            {"status": 422, "body": json.dumps({"error": "Session status is not as expected."})},
            True,
            id="422-session-not-ready",
        ),
        pytest.param(
            {"status": 404, "body": json.dumps({"message": "We didn't find a session with name 'default'"})},
            False,
            id="404-no-such-session",
        ),
        pytest.param({"status": 400, "body": "{}"}, False, id="400"),
    ],
)
async def test_a_failure_is_logged_once_and_tried_again_only_with_a_later_message(
    session: aiohttp.ClientSession, mock: aioresponses, answer: dict[str, Any], passing: bool
) -> None:
    mock.post(SUBSCRIBE, **answer)
    mock.post(SUBSCRIBE, status=201)
    clock = Clock()
    channel = waha(clock)
    with capture_logs() as logs:
        await subscribe(channel, session)  # never raises
    [event] = [e for e in logs if e["log_level"] != "debug"]
    assert event["event"] == "waha_presence_subscribe_failed" and event["log_level"] == "info"
    assert event["contact"] == "5511***99"
    # Not in a loop: the same lead's next message right away asks nothing...
    assert await subscribe(channel, session) is False
    # ...one after a while does (sooner for what may pass), and the feature stays on.
    clock.now += RETRY_AFTER_S + 1
    assert await subscribe(channel, session) is passing
    clock.now += SUBSCRIBE_TTL_S
    assert await subscribe(channel, session) is True
    assert channel.presence_due("5511988887777") is True


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_is_a_warning_and_the_key_is_never_logged(
    session: aiohttp.ClientSession, mock: aioresponses, status: int
) -> None:
    # WAHA (or a proxy in front of it) echoing the request's key in its error.
    mock.post(SUBSCRIBE, status=status, body=json.dumps({"message": f"bad X-Api-Key: {API_KEY}"}))
    with capture_logs() as logs:
        await subscribe(waha(), session)
    [event] = logs
    assert event["log_level"] == "warning" and event["auth_failed"] is True
    assert API_KEY not in repr(logs) and LEAD not in repr(logs)
    assert "[REDACTED]" in event["detail"]


def test_a_working_session_makes_every_lead_due_again() -> None:
    channel = waha()
    assert channel.presence_due(LEAD) is True and channel.presence_due(LEAD) is False
    channel.parse(load_fixture("waha/session_status_scan_qr.json"))
    assert channel.presence_due(LEAD) is False  # only WORKING says the session (re)started
    assert channel.parse(load_fixture("waha/session_status_working.json")).connection == "WORKING"
    assert channel.presence_due(LEAD) is True


def test_the_book_is_bounded() -> None:
    book = PresenceSubscriptions(enabled=True, max_chats=3, now=Clock())
    for n in range(5):
        assert book.due(f"55119000000{n}@c.us") is True
    assert len(book) == 3
    assert book.due("551190000004@c.us") is False  # the newest are kept
    assert book.due("551190000000@c.us") is True  # the oldest were forgotten, so asked again

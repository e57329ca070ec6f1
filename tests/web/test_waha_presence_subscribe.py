"""A WAHA lead's first message subscribes the bot to their chat presence: in the
background (never on the webhook's ack path, never holding the turn), once per lead, and
then their presence.update reaches the scheduler. WAHA and OpenAI are faked at the HTTP
boundary; the tests wait on the app's tracked call, never on sleeps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aioresponses import CallbackResult, aioresponses
from structlog.testing import capture_logs
from yarl import URL

from core.models import contact_key_for
from tests.conftest import fast_settings
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, load_fixture
from tests.helpers.loopback import waha_signature
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import RUNNER
from web.webhooks import BACKGROUND_CALLS

WAHA = "http://waha.local:3000"
API_KEY = "waha-key-presence-8d2a61"
HMAC_KEY = "waha-hmac-presence-4b7c"
LEAD = "5511999999999"  # the lead of tests/fixtures/waha/message_text.json
SPEC = load_fixture("waha/presence_subscribe_openapi.json")
SUBSCRIBE = URL(f"{WAHA}{SPEC['request']['path']}")
REPLY = "Oi! Sou da Seleto. Qual é o seu nome?"


def signed(fixture: str, **changes: Any) -> dict[str, Any]:
    payload = load_fixture(f"waha/{fixture}")
    if changes:
        payload["payload"] = payload["payload"] | changes
    body = json.dumps(payload).encode()
    return {"data": body, "headers": waha_signature(HMAC_KEY, body) | {"Content-Type": "application/json"}}


def message(n: int = 1) -> dict[str, Any]:
    return signed("message_text.json", id=f"false_{LEAD}@c.us_3EB0PRESENCESUB{n:04d}")


def waha_answers(http_mock: aioresponses, openai_fake: FakeOpenAI) -> None:
    http_mock.post(f"{WAHA}/api/sendSeen", payload={}, repeat=True)
    http_mock.post(f"{WAHA}/api/startTyping", payload={}, repeat=True)
    http_mock.post(
        f"{WAHA}/api/sendText",
        status=201,
        payload=load_fixture("waha/send_text_response_gows.json"),
        repeat=True,
    )
    openai_fake.then(reply=REPLY)


def subscribes(http_mock: aioresponses) -> list[Any]:
    return http_mock.requests.get(("POST", SUBSCRIBE), [])


def texts(http_mock: aioresponses) -> list[str]:
    return [
        call.kwargs["json"]["text"]
        for call in http_mock.requests.get(("POST", URL(f"{WAHA}/api/sendText")), [])
    ]


@pytest.fixture
def make_bot(aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock) -> Callable[..., Any]:
    async def make(**overrides: Any) -> TestClient:
        settings = fast_settings(
            tmp_path,
            waha_url=WAHA,
            waha_api_key=API_KEY,
            waha_webhook_hmac_key=HMAC_KEY,
            typing_chars_per_s=10_000,
            **overrides,
        )
        return await aiohttp_client(create_app(settings, clock=clock))

    return make


async def background(bot: TestClient) -> None:
    await bot.app[BACKGROUND_CALLS].settled()


async def test_a_leads_first_message_subscribes_once(
    make_bot: Callable[..., Any], http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    waha_answers(http_mock, openai_fake)
    http_mock.post(
        str(SUBSCRIBE), status=SPEC["response"]["status"], body=SPEC["response"]["body"], repeat=True
    )
    bot = await make_bot()
    response = await bot.post("/webhooks/waha", **message(1))
    assert response.status == 200 and (await response.json())["accepted"] == 1
    await background(bot)
    [call] = subscribes(http_mock)
    assert call.kwargs["headers"]["X-Api-Key"] == API_KEY
    await settled(bot)
    assert texts(http_mock) == [REPLY]
    # The lead writes again (and WAHA retries a webhook): no second subscription.
    openai_fake.then(reply=REPLY)
    assert (await bot.post("/webhooks/waha", **message(2))).status == 200
    assert (await (await bot.post("/webhooks/waha", **message(2))).json())["duplicates"] == 1
    await background(bot)
    await settled(bot)
    assert len(subscribes(http_mock)) == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            {"status": 404, "body": json.dumps({"message": "Cannot POST /api/default/presence"})}, id="404"
        ),
        pytest.param({"status": 501, "body": "Not Implemented"}, id="501"),
        pytest.param({"status": 500, "body": json.dumps({"exception": {"message": "boom"}})}, id="500"),
        pytest.param({"exception": TimeoutError()}, id="timeout"),
    ],
)
async def test_a_failed_subscription_changes_nothing_for_the_lead(
    make_bot: Callable[..., Any], http_mock: aioresponses, openai_fake: FakeOpenAI, answer: dict[str, Any]
) -> None:
    waha_answers(http_mock, openai_fake)
    http_mock.post(str(SUBSCRIBE), **answer)
    bot = await make_bot()
    with capture_logs() as logs:
        response = await bot.post("/webhooks/waha", **message(1))
        assert response.status == 200 and (await response.json())["accepted"] == 1
        await background(bot)
        await settled(bot)
    assert texts(http_mock) == [REPLY]  # the turn went on as if nothing happened
    failures = [e for e in logs if str(e["event"]).startswith("waha_presence_subscribe")]
    assert len(failures) == 1 and failures[0]["log_level"] in ("info", "warning")
    assert API_KEY not in repr(logs) and LEAD not in repr(failures)


async def test_the_setting_off_means_no_subscription(
    make_bot: Callable[..., Any], http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    waha_answers(http_mock, openai_fake)
    bot = await make_bot(waha_presence_subscribe=False)
    assert (await bot.post("/webhooks/waha", **message(1))).status == 200
    await background(bot)
    await settled(bot)
    assert subscribes(http_mock) == [] and texts(http_mock) == [REPLY]


async def test_the_api_key_never_reaches_the_logs(
    make_bot: Callable[..., Any], http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    waha_answers(http_mock, openai_fake)
    echo = json.dumps({"message": f"invalid api key {API_KEY}", "headers": {"X-Api-Key": API_KEY}})
    http_mock.post(str(SUBSCRIBE), status=401, body=echo)
    bot = await make_bot()
    with capture_logs() as logs:
        assert (await bot.post("/webhooks/waha", **message(1))).status == 200
        await background(bot)
        await settled(bot)
    [refused] = [e for e in logs if e["event"] == "waha_presence_subscribe_failed"]
    assert refused["auth_failed"] is True and refused["log_level"] == "warning"
    assert API_KEY not in repr(logs)


async def test_after_subscribing_the_leads_presence_reaches_the_scheduler(
    make_bot: Callable[..., Any], http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    waha_answers(http_mock, openai_fake)
    http_mock.post(str(SUBSCRIBE), status=201, body="")
    bot = await make_bot()
    assert (await bot.post("/webhooks/waha", **message(1))).status == 200
    await background(bot)
    await settled(bot)
    assert len(subscribes(http_mock)) == 1
    # What WAHA now sends for this chat (the docs' direct-chat example).
    response = await bot.post("/webhooks/waha", **signed("presence_update_typing.json"))
    assert response.status == 200 and (await response.json())["presences"] == 1
    board = bot.app[RUNNER].scheduler.presence_board
    assert board.get(contact_key_for("waha", LEAD), asyncio.get_running_loop().time()) is not None
    assert len(subscribes(http_mock)) == 1  # a presence is no message: it subscribes nothing


async def test_shutdown_cancels_a_subscription_still_waiting(
    make_bot: Callable[..., Any], http_mock: aioresponses, openai_fake: FakeOpenAI
) -> None:
    waha_answers(http_mock, openai_fake)
    asked = asyncio.Event()

    async def hang(_url: Any, **_kwargs: Any) -> CallbackResult:
        asked.set()
        await asyncio.Event().wait()  # a WAHA that never answers
        return CallbackResult(status=201)

    http_mock.post(str(SUBSCRIBE), callback=hang)
    bot = await make_bot()
    calls = bot.app[BACKGROUND_CALLS]
    assert (await bot.post("/webhooks/waha", **message(1))).status == 200  # answered meanwhile
    await asyncio.wait_for(asked.wait(), timeout=5)
    assert len(calls) == 1
    await bot.close()  # the app's shutdown
    assert len(calls) == 0

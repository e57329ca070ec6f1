"""Presence webhooks at the door: the same authentication as the provider's messages,
nothing stored, and the hint reaching the turn runner (where it holds a pending burst)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.models import contact_key_for
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, load_fixture
from tests.helpers.loopback import waha_signature
from tests.helpers.settle import settled
from tests.web.support import LEAD_PHONE, WEBHOOK_SECRET, error_body, inbound_count
from web.app import create_app
from web.keys import RUNNER

HMAC_KEY = "waha-hmac-presence-7f3e"
KEY = contact_key_for("zapi", LEAD_PHONE)


def presence(status: str = "COMPOSING") -> dict[str, Any]:
    payload = dict(load_fixture("zapi/presence_chat.json"))
    payload.pop("_source", None)
    return payload | {"status": status}


def waha_presence() -> bytes:
    payload = dict(load_fixture("waha/presence_update_typing.json"))
    payload.pop("_source", None)
    return json.dumps(payload).encode()


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> TestClient:
    # Z-API's secret is not the token the test client sends by default: each request
    # below proves itself (or not) on its own.
    settings = fast_settings(
        tmp_path,
        zapi_webhook_secret=WEBHOOK_SECRET,
        waha_webhook_hmac_key=HMAC_KEY,
        debounce_quiet_s=0.05,
        debounce_max_s=5.0,
    )
    return await aiohttp_client(create_app(settings, clock=clock))


def board_has(bot: TestClient, key: str) -> bool:
    scheduler = bot.app[RUNNER].scheduler
    return scheduler.presence_board.get(key, asyncio.get_running_loop().time()) is not None


@pytest.mark.parametrize(
    "credentials",
    [{}, {"params": {"token": "wrong"}}, {"headers": {"Authorization": "Bearer nope"}}],
)
async def test_a_zapi_presence_without_the_token_is_refused(
    bot: TestClient, credentials: dict[str, Any]
) -> None:
    response = await bot.post("/webhooks/zapi", json=presence(), **credentials)
    assert response.status == 401
    await error_body(response)
    assert not board_has(bot, KEY)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Webhook-Hmac": "0" * 128, "X-Webhook-Hmac-Algorithm": "sha512"},
        waha_signature("forged", b"{}"),
    ],
)
async def test_a_forged_waha_presence_is_refused(bot: TestClient, headers: dict[str, str]) -> None:
    response = await bot.post("/webhooks/waha", data=waha_presence(), headers=headers)
    assert response.status in (401, 403)
    await error_body(response)
    assert not board_has(bot, contact_key_for("waha", "5511999999999"))


async def test_an_authentic_presence_is_a_hint_not_a_message(
    bot: TestClient, openai_fake: FakeOpenAI
) -> None:
    response = await bot.post("/webhooks/zapi", json=presence(), params={"token": WEBHOOK_SECRET})
    assert response.status == 200
    assert (await response.json())["presences"] == 1
    body = waha_presence()
    response = await bot.post("/webhooks/waha", data=body, headers=waha_signature(HMAC_KEY, body))
    assert response.status == 200 and (await response.json())["presences"] == 1
    await settled(bot)
    assert board_has(bot, KEY) and board_has(bot, contact_key_for("waha", "5511999999999"))
    # Never stored, never a turn on its own.
    assert inbound_count(bot) == 0 and openai_fake.calls_started == 0


async def test_typing_holds_the_leads_turn_until_paused(bot: TestClient, zapi_fake: FakeZapi) -> None:
    token = {"params": {"token": WEBHOOK_SECRET}}
    message = zapi_message(message_id="3EB0PRESENCE0001", text="Quanto custa o plano anual?")
    assert (await bot.post("/webhooks/zapi", json=message, **token)).status == 200
    assert (await bot.post("/webhooks/zapi", json=presence("COMPOSING"), **token)).status == 200
    # Far past the 0.05 s window: the lead is still typing (the hold lasts up to the 5 s cap).
    await asyncio.sleep(0.4)
    assert zapi_fake.sent == []
    assert (await bot.post("/webhooks/zapi", json=presence("PAUSED"), **token)).status == 200
    await settled(bot)
    assert [sent["phone"] for sent in zapi_fake.sent] == [LEAD_PHONE]

"""POST /webhooks/crm: a CRM reports a won deal, a lost one or a booked meeting, and the
ads hear about it once; forged or malformed calls change nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.clock import utc_now
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually
from web.app import create_app
from web.keys import STORE

SECRET = "crm-hook-secret-5b1e9a"
LEAD = "5511987654321"


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> TestClient:
    settings = fast_settings(
        tmp_path,
        crm_webhook_secret=SECRET,
        meta_pixel_id="123456789012345",
        meta_access_token="EAAB-capi-token-0001",
        # Keep the dispatcher from trying to reach Meta during these tests.
        outbox_poll_s=60.0,
    )
    return await aiohttp_client(create_app(settings, clock=clock))


async def known_lead(bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi) -> None:
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0CRM000000001", phone=LEAD))
    assert response.status == 200
    # Meta is not faked here, so the CAPI "Lead" event stays pending on purpose and the bot
    # never settles: wait for the reply's own outbox item to reach its terminal status.
    await eventually(lambda: send_text_statuses(bot), timeout=5)
    assert await send_text_statuses(bot) == ["done"]
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]


async def send_text_statuses(bot: TestClient) -> list[str]:
    """The reply's outbox statuses once none is pending or in flight; [] until then."""
    items = await bot.app[STORE].list_outbox(kind="send_text", limit=100)
    statuses = [i.status for i in items]
    return [] if not statuses or {"pending", "inflight"} & set(statuses) else statuses


async def capi_stages(bot: TestClient) -> list[str]:
    items = await bot.app[STORE].list_outbox(kind="meta_capi", limit=100)
    return sorted(i.payload["stage"] for i in items)


async def test_a_won_deal_becomes_one_purchase_with_its_value(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await known_lead(bot, openai_fake, zapi_fake)
    body = {"event": "deal.won", "phone": "+55 (11) 98765-4321", "value": 15990.5, "currency": "BRL"}
    for _ in range(2):  # the CRM retries: still one conversion
        response = await bot.post("/webhooks/crm", json=body, headers={"X-Webhook-Secret": SECRET})
        assert response.status == 200
    assert await capi_stages(bot) == ["Lead", "Purchase"]
    [purchase] = await bot.app[STORE].list_outbox(kind="meta_capi", limit=1)
    assert (purchase.payload["value"], purchase.payload["currency"]) == (15990.5, "BRL")
    # ...and the funnel's last stage: one sale, however often the CRM retried.
    funnel = await bot.app[STORE].funnel(
        utc_now() - timedelta(days=1),
        utc_now() + timedelta(days=1),
        timezone="America/Sao_Paulo",
        brl_per_usd=5.0,
    )
    assert funnel.total.stage("won") == 1


async def test_a_lost_deal_and_a_meeting_are_found_by_the_stored_deal_id(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await known_lead(bot, openai_fake, zapi_fake)
    await bot.app[STORE].save_crm_link(f"whatsapp:{LEAD}", person_id=1, company_id=None, deal_id=4242)
    for event in ("meeting.scheduled", "deal.lost"):
        response = await bot.post(f"/webhooks/crm?token={SECRET}", json={"event": event, "deal_id": 4242})
        assert response.status == 200
    assert await capi_stages(bot) == ["Lead", "Schedule", "lead_lost"]


async def test_forged_or_malformed_calls_are_refused_and_change_nothing(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await known_lead(bot, openai_fake, zapi_fake)
    won = {"event": "deal.won", "phone": LEAD, "value": 1}
    assert (await bot.post("/webhooks/crm", json=won)).status == 401
    assert (await bot.post("/webhooks/crm", json=won, headers={"X-Webhook-Secret": "guess"})).status == 401
    bad = await bot.post("/webhooks/crm", data=b"{not json", headers={"X-Webhook-Secret": SECRET})
    assert bad.status == 422
    unknown_event = await bot.post(
        "/webhooks/crm", json={"event": "deal.exploded", "phone": LEAD}, headers={"X-Webhook-Secret": SECRET}
    )
    assert unknown_event.status == 422 and "event" in (await unknown_event.json())["error"]
    nobody = await bot.post("/webhooks/crm", json={"event": "deal.won"}, headers={"X-Webhook-Secret": SECRET})
    assert nobody.status == 422
    assert await capi_stages(bot) == ["Lead"]


async def test_a_phone_the_lead_only_typed_does_not_credit_the_sale_to_that_lead(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    # The lead writes from LEAD and types a customer's number; the CRM reports that customer's sale.
    openai_fake.then(reply="Anotado!", lead={"name": "Carlos", "phone": "(21) 97777-6666"})
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0CRM000000009", phone=LEAD))
    assert response.status == 200
    await eventually(lambda: send_text_statuses(bot), timeout=5)
    lead = await bot.app[STORE].get_lead(f"whatsapp:{LEAD}")
    assert lead is not None and lead.profile.get("phone")
    body = {"event": "deal.won", "phone": "+55 (21) 97777-6666", "value": 250000}
    response = await bot.post("/webhooks/crm", json=body, headers={"X-Webhook-Secret": SECRET})
    assert response.status == 200 and (await response.json())["reason"] == "unknown_lead"
    assert await capi_stages(bot) == ["Lead"]


async def test_an_unknown_lead_is_acknowledged_not_retried_forever(bot: TestClient) -> None:
    response = await bot.post(
        "/webhooks/crm",
        json={"event": "deal.won", "phone": "5521900000000"},
        headers={"X-Webhook-Secret": SECRET},
    )
    assert response.status == 200 and (await response.json())["reason"] == "unknown_lead"


async def test_without_a_configured_secret_the_route_is_closed(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    client = await aiohttp_client(create_app(fast_settings(tmp_path), clock=clock))
    response = await client.post("/webhooks/crm", json={"event": "deal.won", "phone": LEAD})
    assert response.status == 403

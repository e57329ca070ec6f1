"""Meta Lead Ads end to end: the signed `leadgen` Page webhook (Meta's published sample),
the lead read from the Graph API through the outbox, the first touch on Z-API."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aioresponses import CallbackResult, aioresponses

from tests.conftest import ZAPI_INSTANCE, ZAPI_TOKEN, fast_settings
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, load_fixture
from tests.helpers.loopback import meta_signature
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import STORE

APP_SECRET = "meta-app-secret-for-tests"
PAGE_TOKEN = "EAAPageTokenForTests"
GRAPH = re.compile(r"https://graph\.facebook\.com/v21\.0/(\d+)\?.*")
SAMPLE = load_fixture("meta_leads/webhooks_for_leadgen_sample.json")
LEAD = load_fixture("meta_leads/retrieving_leads_lead_all_fields_br.json")
PHONE = "5511987654321"


class FakeGraph:
    """GET /{leadgen_id}: scripted statuses, then the lead."""

    def __init__(self, mock: aioresponses, lead: dict[str, Any]) -> None:
        self.lead = lead
        self.script: list[int] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        mock.get(GRAPH, callback=self._get, repeat=True)

    async def _get(self, url: Any, **kwargs: Any) -> CallbackResult:
        self.requests.append((str(url), dict(kwargs.get("headers") or {})))
        status = self.script.pop(0) if self.script else 200
        if status != 200:
            return CallbackResult(
                status=status, payload=load_fixture("meta_leads/graph_error_4_app_limit.json")
            )
        return CallbackResult(status=200, payload=self.lead)


@pytest.fixture
def graph(http_mock: aioresponses) -> FakeGraph:
    lead = {k: v for k, v in LEAD.items() if not k.startswith("_")}
    return FakeGraph(http_mock, lead)


@pytest.fixture
def exists(http_mock: aioresponses) -> None:
    http_mock.get(
        re.compile(rf"https://api\.z-api\.io/instances/{ZAPI_INSTANCE}/token/{ZAPI_TOKEN}/phone-exists/\d+"),
        payload={"exists": True},
        repeat=True,
    )


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Any,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> TestClient:
    settings = fast_settings(tmp_path, meta_app_secret=APP_SECRET, meta_page_access_token=PAGE_TOKEN)
    client: TestClient = await aiohttp_client(create_app(settings, clock=clock))
    return client


async def post(bot: TestClient, payload: dict[str, Any], *, secret: str = APP_SECRET) -> Any:
    body = json.dumps({k: v for k, v in payload.items() if not k.startswith("_")}).encode()
    headers = {"Content-Type": "application/json", **meta_signature(secret, body)}
    return await bot.post("/webhooks/meta", data=body, headers=headers)


@pytest.mark.usefixtures("exists")
async def test_a_lead_ads_form_becomes_a_whatsapp_first_touch(
    bot: TestClient, graph: FakeGraph, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Oi Maria! Recebi seu cadastro sobre moedor e serra fita.")
    response = await post(bot, SAMPLE)
    assert response.status == 200
    assert (await response.json())["accepted"] == 1
    await settled(bot)

    [(url, headers)] = graph.requests
    assert "/v21.0/123123123123?" in url and "field_data" in url
    assert PAGE_TOKEN not in url and headers["Authorization"] == f"Bearer {PAGE_TOKEN}"
    assert zapi_fake.texts_to(PHONE) == ["Oi Maria! Recebi seu cadastro sobre moedor e serra fita."]
    lead = await bot.app[STORE].get_lead(f"whatsapp:{PHONE}")
    assert lead is not None
    assert lead.profile["company"] == "Agro Souza" and lead.profile["name"] == "Maria Souza"
    # The Conversions API for CRM matches later stages on this id.
    assert lead.referral is not None and lead.referral["leadgen_id"] == "920184736501234"


@pytest.mark.usefixtures("exists")
async def test_meta_retrying_the_webhook_is_one_lead_and_one_message(
    bot: TestClient, graph: FakeGraph, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    first = await post(bot, SAMPLE)
    await settled(bot)
    again = await post(bot, SAMPLE)
    await settled(bot)

    assert (await first.json())["accepted"] == 1
    assert (await again.json()) | {} == {"status": "ok", "accepted": 0, "duplicates": 1, "ignored": 0}
    assert len(graph.requests) == 1 and openai_fake.chat_calls == 1
    assert len(zapi_fake.texts_to(PHONE)) == 1


@pytest.mark.usefixtures("exists")
async def test_a_graph_outage_delays_the_lead_and_loses_nothing(
    bot: TestClient, graph: FakeGraph, zapi_fake: FakeZapi
) -> None:
    graph.script = [500, 503]
    response = await post(bot, SAMPLE)
    assert response.status == 200  # stored before the answer; the Graph API is read later
    await settled(bot)

    assert len(graph.requests) == 3
    assert len(zapi_fake.texts_to(PHONE)) == 1


async def test_a_forged_signature_is_refused_and_nothing_is_fetched(
    bot: TestClient, graph: FakeGraph
) -> None:
    response = await post(bot, SAMPLE, secret="not-the-app-secret")
    assert response.status == 403
    assert graph.requests == []
    assert await bot.app[STORE].list_outbox() == []


async def test_a_form_without_a_phone_is_kept_for_the_operator_not_lost(
    bot: TestClient, graph: FakeGraph, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    graph.lead = copy.deepcopy(graph.lead)
    graph.lead["field_data"] = [f for f in graph.lead["field_data"] if f["name"] != "phone_number"]
    await post(bot, SAMPLE)
    await settled(bot)

    [dead] = await bot.app[STORE].list_outbox(status="dead")
    assert dead.kind == "meta_lead_fetch"
    assert "no phone number" in (dead.last_error or "")
    # The answers Meta returned are in the item, for `python main.py outbox show`.
    assert dead.payload["lead"]["field_data"][0] == {"name": "full_name", "values": ["Maria Souza"]}
    assert openai_fake.chat_calls == 0 and zapi_fake.attempts == 0


async def test_a_malformed_leadgen_body_is_a_clear_422(bot: TestClient) -> None:
    payload = {
        "object": "page",
        "entry": [{"id": "1", "time": 1, "changes": [{"field": "leadgen", "value": {}}]}],
    }
    response = await post(bot, payload)
    assert response.status == 422
    assert "leadgen_id" in (await response.json())["error"]

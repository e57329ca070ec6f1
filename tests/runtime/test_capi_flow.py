"""The ads learn from the conversation: a first message is one `Lead` event, a lead
turning hot one `QualifiedLead`, each sent to Meta once even when Meta fails for a
while, with the lead's data hashed the way Meta specifies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aioresponses import CallbackResult, aioresponses

from agent.prompts import load_prompt_bundle
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, load_fixture
from tests.helpers.leads import HOT_LEAD
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import STORE

PIXEL = "123456789012345"
CAPI_URL = f"https://graph.facebook.com/v21.0/{PIXEL}/events"
LEAD = "5544999999999"

HOT = {**HOT_LEAD, "email": "Maria@BoiBom.com.br"}
HANDOFF_NOW = load_prompt_bundle().message("handoff_now")


class FakeMeta:
    def __init__(self, mock: aioresponses) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail_next = 0
        self.attempts = 0
        mock.post(CAPI_URL, callback=self._post, repeat=True)

    async def _post(self, url: Any, **kwargs: Any) -> CallbackResult:
        self.attempts += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return CallbackResult(
                status=500,
                payload={
                    "error": {
                        "message": "Service temporarily unavailable",
                        "code": 2,
                        "is_transient": True,
                        "fbtrace_id": "AxyzTRANSIENT",
                    }
                },
            )
        body = kwargs["json"] if kwargs.get("json") is not None else json.loads(kwargs["data"])
        self.events.extend(body["data"])
        return CallbackResult(status=200, payload=load_fixture("meta_capi/success.json"))

    def names(self) -> list[str]:
        return [e["event_name"] for e in self.events]


@pytest.fixture
def meta(http_mock: aioresponses) -> FakeMeta:
    return FakeMeta(http_mock)


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    meta: FakeMeta,
    clock: TestClock,
) -> TestClient:
    settings = fast_settings(tmp_path, meta_pixel_id=PIXEL, meta_access_token="EAAB-capi-token-0001")
    return await aiohttp_client(create_app(settings, clock=clock))


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def test_first_contact_and_turning_hot_are_one_event_each_with_hashed_data(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, meta: FakeMeta
) -> None:
    openai_fake.then(reply="Olá! Como posso ajudar?")
    await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0CAPI00000001", phone=LEAD, text="Oi"))
    await settled(bot)
    assert meta.names() == ["Lead"] and meta.attempts == 1

    openai_fake.then(reply="Perfeito, Maria! Vou chamar nosso time.", lead=HOT)
    await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id="3EB0CAPI00000002", phone=LEAD, text="Sou a Maria...")
    )
    await settled(bot)
    assert meta.names() == ["Lead", "QualifiedLead"] and meta.attempts == 2

    openai_fake.then(reply="Certo!", lead=HOT)
    await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id="3EB0CAPI00000003", phone=LEAD, text="Obrigada")
    )
    await settled(bot)
    # The third turn did run (the hot lead was handed off on the second).
    assert zapi_fake.texts_to(LEAD) == [
        "Olá! Como posso ajudar?",
        "Perfeito, Maria! Vou chamar nosso time.",
        HANDOFF_NOW,
        "Certo!",
    ]
    assert meta.attempts == 2  # still hot: not sent again
    assert meta.names() == ["Lead", "QualifiedLead"]
    assert [i.status for i in await bot.app[STORE].list_outbox(kind="meta_capi")] == ["done", "done"]

    qualified = meta.events[1]
    assert qualified["action_source"] == "system_generated"
    user = qualified["user_data"]
    assert sha(LEAD) in user["ph"]
    assert user["em"] == [sha("maria@boibom.com.br")]
    assert user["fn"] == sha("maria") and user["ct"] == sha("londrina") and user["st"] == sha("pr")
    assert LEAD not in json.dumps(meta.events) and "Maria" not in json.dumps(meta.events)
    assert meta.events[0]["event_id"] != qualified["event_id"]


async def test_meta_failing_for_a_while_still_gets_each_event_exactly_once(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, meta: FakeMeta
) -> None:
    meta.fail_next = 3
    await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0CAPI00000011", phone=LEAD, text="Oi"))
    await settled(bot, timeout=5)
    assert meta.names() == ["Lead"]
    assert meta.attempts == 4
    [item] = await bot.app[STORE].list_outbox(kind="meta_capi")
    assert item.status == "done"


async def test_an_ad_lead_with_a_click_id_is_a_business_messaging_event(
    bot: TestClient, openai_fake: FakeOpenAI, meta: FakeMeta
) -> None:
    payload = zapi_message("received_text_from_ad.json", message_id="3EB0CAPI00000021", phone=LEAD)
    clid = "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0"
    payload["externalAdReply"]["ctwaClid"] = clid
    await bot.post("/webhooks/zapi", json=payload)
    await settled(bot)
    [event] = meta.events
    assert event["action_source"] == "business_messaging" and event["messaging_channel"] == "whatsapp"
    assert event["event_name"] == "LeadSubmitted"  # Meta's name for a lead on that path
    assert event["user_data"]["ctwa_clid"] == clid
    # WHATSAPP_BUSINESS_ACCOUNT_ID is not set: nothing stands in for it.
    assert "whatsapp_business_account_id" not in event["user_data"]


WABA = "102290129340398"


async def test_the_whatsapp_business_account_goes_beside_the_click_id(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    meta: FakeMeta,
    clock: TestClock,
) -> None:
    """Meta's business-messaging sample (fixture bm_whatsapp_purchase_example.json) puts
    `whatsapp_business_account_id` next to `ctwa_clid` in user_data."""
    settings = fast_settings(
        tmp_path,
        meta_pixel_id=PIXEL,
        meta_access_token="EAAB-capi-token-0001",
        whatsapp_business_account_id=WABA,
    )
    bot = await aiohttp_client(create_app(settings, clock=clock))
    payload = zapi_message("received_text_from_ad.json", message_id="3EB0CAPI00000023", phone=LEAD)
    clid = "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0"
    payload["externalAdReply"]["ctwaClid"] = clid
    await bot.post("/webhooks/zapi", json=payload)
    await settled(bot)

    [event] = meta.events
    sample = load_fixture("meta_capi/bm_whatsapp_purchase_example.json")["data"][0]
    ids = {k: v for k, v in event["user_data"].items() if k in sample["user_data"]}
    assert ids == {"whatsapp_business_account_id": WABA, "ctwa_clid": clid}
    assert (event["action_source"], event["messaging_channel"]) == (
        sample["action_source"],
        sample["messaging_channel"],
    )


async def test_an_ad_lead_without_a_click_id_is_matched_on_hashed_data_only(
    bot: TestClient, openai_fake: FakeOpenAI, meta: FakeMeta
) -> None:
    # Z-API's documented externalAdReply carries no ctwaClid: Meta cannot tie it to the click.
    payload = zapi_message("received_text_from_ad.json", message_id="3EB0CAPI00000022", phone=LEAD)
    await bot.post("/webhooks/zapi", json=payload)
    await settled(bot)
    [event] = meta.events
    assert event["action_source"] == "system_generated" and event["event_name"] == "Lead"
    assert "ctwa_clid" not in event["user_data"]

"""The whole bot on the Supabase store (PostgREST faked over the real Postgres): a
conversation end to end, an outage answered with 503 so providers retry (and health
says `supabase: error`), and two instances sharing one database answering each burst
once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient

from core.settings import Settings
from store.base import Store
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import all_settled, settled
from web.app import create_app
from web.keys import STORE

URL = "https://sdr-runtime.supabase.co"
KEY = "runtime-service-role-key-6b1d"
LEAD = "5511987654321"


class Outage:
    """Between the store and the (fake) Supabase: when down, every call gets the 503
    PostgREST answers when it cannot reach the database."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.down = False

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            body = {
                "code": "PGRST001",
                "details": None,
                "hint": None,
                "message": "Database client error. Retrying the connection.",
            }
            return httpx.Response(503, json=body, request=request)
        return await self.bridge.handle(request)


@pytest.fixture
def supabase() -> Iterator[tuple[Outage, Callable[[Settings], Store]]]:
    pg = pytest.importorskip("tests.store.pg_support")
    from store.supabase import SupabaseStore
    from tests.helpers.postgrest_bridge import PostgrestBridge

    with pg.fresh_schema() as schema:
        bridge = PostgrestBridge(schema, api_key=KEY)
        outage = Outage(bridge)

        def factory(settings: Settings) -> Store:
            return SupabaseStore(
                URL,
                KEY,
                timeout_s=2.0,
                max_attempts=2,
                transport=httpx.MockTransport(outage.handle),
                instance_id=settings.instance_id,
            )

        yield outage, factory
        bridge.close()


async def start(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    factory: Any,
    name: str,
    clock: TestClock,
    **overrides: Any,
) -> TestClient:
    settings = fast_settings(
        tmp_path, instance_id=name, debounce_quiet_s=0.3, debounce_max_s=2.0, pending_poll_s=0.05, **overrides
    )
    return await aiohttp_client(create_app(settings, store_factory=factory, clock=clock))


async def test_a_conversation_on_supabase_end_to_end(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    supabase: Any,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    _, factory = supabase
    bot = await start(aiohttp_client, tmp_path, factory, "bot-1", clock)
    openai_fake.then(reply="Olá! Qual é o seu nome?", lead={"name": "Maria"})
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0SUPA00000001", phone=LEAD))
    assert response.status == 200
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Olá! Qual é o seu nome?"]
    assert openai_fake.chat_calls == 1
    lead = await bot.app[STORE].get_lead(f"whatsapp:{LEAD}")
    assert lead is not None and lead.profile["name"] == "Maria"
    health = await (await bot.get("/api/health")).json()
    assert health["services"]["supabase"] == "connected"


async def test_a_supabase_outage_is_a_503_the_provider_retries_and_nothing_is_lost(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    supabase: Any,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    outage, factory = supabase
    bot = await start(aiohttp_client, tmp_path, factory, "bot-1", clock)
    outage.down = True
    payload = zapi_message(message_id="3EB0SUPA00000002", phone=LEAD, text="Oi, tem alguém?")
    refused = await bot.post("/webhooks/zapi", json=payload)
    assert refused.status == 503
    health = await bot.get("/api/health")
    assert health.status == 503 and (await health.json())["services"]["supabase"] == "error"

    outage.down = False  # Supabase is back; Z-API retries the same webhook
    assert (await bot.post("/webhooks/zapi", json=payload)).status == 200
    assert (await bot.post("/webhooks/zapi", json=payload)).status == 200  # and once more: a duplicate
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]
    assert len(zapi_fake.sent) == 1 and openai_fake.chat_calls == 1
    assert (await bot.get("/api/health")).status == 200


async def test_two_instances_on_one_supabase_answer_a_split_burst_once(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    supabase: Any,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    _, factory = supabase
    a = await start(aiohttp_client, tmp_path, factory, "bot-a", clock)
    b = await start(aiohttp_client, tmp_path, factory, "bot-b", clock)
    await a.post(
        "/webhooks/zapi", json=zapi_message(message_id="3EB0SUPA00000011", phone=LEAD, text="Bom dia")
    )
    # At once, inside a's quiet window: a sleep here could land past it on a busy machine.
    await b.post(
        "/webhooks/zapi",
        json=zapi_message(message_id="3EB0SUPA00000012", phone=LEAD, text="Quero um orçamento"),
    )
    await all_settled(a, b)
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]
    assert len(zapi_fake.sent) == 1 and openai_fake.chat_calls == 1
    prompt = "\n".join(openai_fake.user_contents(0))
    assert "Bom dia" in prompt and "Quero um orçamento" in prompt

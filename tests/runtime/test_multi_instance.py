"""Several bot instances behind one load balancer, sharing one store.

Two full apps (webhooks, turns, dispatcher) run on one database with turn leases on,
the way two Supabase-backed instances do: a lead whose messages land on different
instances still gets one answer per burst, and a dead instance's lead is taken over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.models import contact_key_for
from store.sqlite import SqliteStore
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import all_settled
from tests.store.test_store_contract import inbound
from web.app import create_app
from web.keys import RUNNER, SETTINGS, STORE

LEAD = "5511987654321"


class SharedSqliteStore(SqliteStore):
    """The embedded store, declared shared so the runtime uses leases and the poller."""

    backend_name = "sqlite-shared"


Instances = Callable[..., Any]


@pytest.fixture
async def instances(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> AsyncIterator[Instances]:
    async def start(name: str, **overrides: Any) -> TestClient:
        settings = fast_settings(
            tmp_path,
            instance_id=name,
            debounce_quiet_s=0.3,
            debounce_max_s=2.0,
            pending_poll_s=0.05,
            turn_lease_s=5.0,
            **overrides,
        )
        return await aiohttp_client(
            create_app(settings, store_factory=lambda s: SharedSqliteStore(s.sqlite_path), clock=clock)
        )

    yield start


async def post(bot: TestClient, payload: dict) -> None:
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200, await response.text()


async def test_a_burst_split_across_two_instances_gets_one_answer(
    instances: Instances, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    a, b = await instances("bot-a"), await instances("bot-b")
    await post(a, zapi_message(message_id="3EB0SPLIT0000001", phone=LEAD, text="Oi, bom dia"))
    # ...at once, inside a's quiet window (no sleep: a late timer must not split the burst)...
    await post(b, zapi_message(message_id="3EB0SPLIT0000002", phone=LEAD, text="Quero um orçamento"))

    await all_settled(a, b)  # both messages read, nothing left for a second turn
    assert openai_fake.chat_calls == 1
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]
    assert len(zapi_fake.sent) == 1
    # ...and that one turn read both messages, from both instances.
    prompt = "\n".join(openai_fake.user_contents(0))
    assert "Oi, bom dia" in prompt and "Quero um orçamento" in prompt


async def test_the_same_message_delivered_to_both_instances_is_answered_once(
    instances: Instances, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    a, b = await instances("bot-a"), await instances("bot-b")
    payload = zapi_message(message_id="3EB0TWICE0000001", phone=LEAD, text="Oi")
    await asyncio.gather(post(a, payload), post(b, payload))
    await all_settled(a, b)
    assert openai_fake.chat_calls == 1
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]
    assert len(zapi_fake.sent) == 1


async def test_messages_stored_by_an_instance_that_died_are_answered_by_another(
    instances: Instances, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    a = await instances("bot-a")
    store = a.app[STORE]
    key = contact_key_for("zapi", LEAD)
    # bot-dead stored the message, took the lead's lease and died before answering.
    assert await store.claim_contact(key, owner="bot-dead", lease_s=60.0)
    await store.add_inbound(inbound("3EB0DEAD00000001", contact=LEAD, text="Alguém aí?"))
    # Past the burst's quiet window (a lower bound: sleep never returns early), the
    # burst is ready, but the lease is still bot-dead's: the ready poller leaves it.
    await asyncio.sleep(a.app[SETTINGS].debounce_quiet_s + 0.1)
    assert await a.app[RUNNER].poll_ready_once() == []
    assert a.app[RUNNER].idle.is_set()
    assert zapi_fake.sent == [] and openai_fake.chat_calls == 0

    # Time passes and bot-dead's lease runs out (made to run out now, not waited for).
    assert await store.claim_contact(key, owner="bot-dead", lease_s=0.001)
    await all_settled(a)  # taken over by bot-a's ready poller, answered once
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]
    assert len(zapi_fake.sent) == 1 and openai_fake.chat_calls == 1


async def test_many_leads_spread_over_two_instances_are_each_answered_exactly_once(
    instances: Instances, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    a, b = await instances("bot-a"), await instances("bot-b")
    leads = [f"55119876500{n:02d}" for n in range(12)]
    posts = []
    for n, phone in enumerate(leads):
        for m in range(2):  # each lead's two messages land on different instances
            target = (a, b)[(n + m) % 2]
            posts.append(
                post(target, zapi_message(message_id=f"3EB0MANY{n:02d}{m:06d}", phone=phone, text=f"msg {m}"))
            )
    await asyncio.gather(*posts)

    await all_settled(a, b)
    assert len(zapi_fake.sent) == len(leads)
    per_lead = {phone: len(zapi_fake.texts_to(phone)) for phone in leads}
    assert per_lead == dict.fromkeys(leads, 1)
    assert a.app[RUNNER].turns_completed + b.app[RUNNER].turns_completed == len(leads)

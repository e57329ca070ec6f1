"""Another CRM subscribed to the bot's events receives them signed, once per event,
even when it is down for a while; a receiver verifies them with the README's snippet."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import STORE

SECRET = "whsec-outbound-3f9c1a7e5b2d"
LEAD = "5544999999999"
RECEIVER = (
    Path(__file__).resolve().parents[1] / "fixtures" / "outbound_webhooks" / "receiver.py"
).read_text()


class Receiver:
    """A receiving CRM on loopback: verifies like the README tells receivers to."""

    def __init__(self) -> None:
        scope: dict[str, Any] = {}
        exec(RECEIVER, scope)  # the snippet we publish, not a re-implementation
        self.verify = scope["verify_webhook"]
        self.deliveries: list[dict[str, Any]] = []
        self.fail_next = 0
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        if not self.verify(raw, request.headers.get("X-Webhook-Signature"), SECRET):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.deliveries.append(
            {
                "id": request.headers["X-Webhook-Id"],
                "header_event": request.headers["X-Webhook-Event"],
                **json.loads(raw),
            }
        )
        return web.Response(status=204)

    def events(self) -> list[str]:
        return [d["event"] for d in self.deliveries]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/sdr", rec.handle)
    server = TestServer(app)
    await server.start_server()
    yield rec, str(server.make_url("/hooks/sdr"))
    await server.close()


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    receiver: tuple[Receiver, str],
    clock: TestClock,
) -> TestClient:
    _, url = receiver
    endpoints = [{"url": url, "secret": SECRET, "events": ["lead.created", "lead.hot", "message.received"]}]
    settings = fast_settings(tmp_path, outbound_webhooks=json.dumps(endpoints))
    return await aiohttp_client(create_app(settings, clock=clock))


async def test_subscribed_events_arrive_signed_and_once(
    bot: TestClient, openai_fake: FakeOpenAI, receiver: tuple[Receiver, str]
) -> None:
    rec, _ = receiver
    openai_fake.then(reply="Olá! Como posso ajudar?")
    await bot.post(
        "/webhooks/zapi",
        json=zapi_message(message_id="3EB0HOOK00000001", phone=LEAD, text="Oi, quero orçamento"),
    )
    await settled(bot)
    assert sorted(rec.events()) == ["lead.created", "message.received"]
    assert rec.bad_signatures == 0
    created = next(d for d in rec.deliveries if d["event"] == "lead.created")
    assert created["header_event"] == "lead.created"
    assert created["data"]["lead"]["phone"] == LEAD and created["timestamp"]
    received = next(d for d in rec.deliveries if d["event"] == "message.received")
    assert received["data"]["message"]["text"] == "Oi, quero orçamento"
    # message.sent was not subscribed: nothing queued for it at all.
    items = await bot.app[STORE].list_outbox(kind="outbound_webhook")
    assert sorted(i.payload["event"] for i in items) == ["lead.created", "message.received"]


async def test_a_receiver_down_for_a_while_gets_each_event_once_with_the_same_id(
    bot: TestClient, openai_fake: FakeOpenAI, receiver: tuple[Receiver, str]
) -> None:
    rec, _ = receiver
    rec.fail_next = 4
    await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0HOOK00000011", phone=LEAD, text="Oi"))
    await settled(bot, timeout=8)
    assert sorted(rec.events()) == ["lead.created", "message.received"]
    assert len({d["id"] for d in rec.deliveries}) == 2
    assert rec.fail_next == 0 and rec.bad_signatures == 0
    items = await bot.app[STORE].list_outbox(kind="outbound_webhook")
    assert all(i.status == "done" for i in items)
    # The delivery log: every attempt of every event, with its outcome.
    logged = [entry for i in items for entry in i.payload["deliveries"]]
    assert sum(1 for e in logged if e["status"] == 503) == 4
    assert sum(1 for e in logged if e["ok"]) == 2
    assert all(SECRET not in json.dumps(e) for e in logged)

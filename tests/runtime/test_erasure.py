"""`python main.py forget` beside a running bot: the lead goes from Chatwoot (contact and
conversations deleted), from PipeRun (person anonymised or deleted, the deal's title and
our note blanked), every webhook subscriber hears `lead.erased` once and without personal
data, and nothing that arrives afterwards (a replayed webhook, a sync already in flight)
brings the lead back. A provider down for longer than its retry budget delays the
erasure; it still lands.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aioresponses import CallbackResult, aioresponses
from yarl import URL

import main
from core.models import InboundMessage, MessageKind
from core.outbox import ChatwootMessage, LeadErasure, OutboundWebhook
from core.records import OutboxItem
from core.settings import Settings
from integrations.chatwoot import ChatwootClient
from integrations.outbound_webhooks import Endpoint
from runtime.channel_health import ChannelHealth
from runtime.chatwoot_mirror import ChatwootMirror
from runtime.erasure import ANONYMOUS_DEAL_TITLE, ANONYMOUS_NOTE, ANONYMOUS_PERSON, ErasureFanout
from runtime.lifecycle import Subscription
from runtime.webhook_delivery import WebhookDelivery
from store.sqlite import SqliteStore
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fake_piperun import FakePipeRun, load
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually
from tests.helpers.leads import HOT_LEAD
from tests.helpers.settle import settled
from tests.integrations.test_chatwoot_flow import CW, FakeChatwoot
from web.app import create_app
from web.configs.integrations import chatwoot_config
from web.configs.runtime import erasure_config, mirror_config
from web.keys import STORE

LEAD = "5544999999999"
KEY = f"whatsapp:{LEAD}"
NAME = "Maria Souza"
EMAIL = "maria@boibom.com.br"
TOKEN = "pr-tok-erasure-5d1e2"
HOOK_SECRET = "whsec-erasure-9b8a7c6d5e4f"


class ErasablePipeRun(FakePipeRun):
    """The fake account, plus the calls an erasure makes: [deletar-pessoa] (204/404),
    [atualizar-pessoa] and [atualizar-oportunidade] (PUT)."""

    def __init__(self, mocked: aioresponses, **kwargs: Any) -> None:
        super().__init__(mocked, **kwargs)
        mocked.delete(
            re.compile(r"^https://api\.pipe\.run/v1/.*$"),
            callback=partial(self._handle, "DELETE"),
            repeat=True,
        )
        self.deleted_persons: list[int] = []
        # Awaited before a call is served: what happens elsewhere while it is in flight.
        self.before: Callable[[str, str], Awaitable[None]] | None = None

    async def _handle(self, method: str, url: URL, **kwargs: Any) -> CallbackResult:  # type: ignore[override]
        if self.before is not None:
            await self.before(method, url.path.removeprefix("/v1"))
        return super()._handle(method, url, **kwargs)

    def _person(self, path: str) -> dict[str, Any] | None:
        person_id = int(path.rsplit("/", 1)[1])
        return next((p for p in self.persons if p["id"] == person_id), None)

    def _delete_persons(self, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        person = self._person(path)
        if person is None:
            return 404, load("error_404.json")
        self.persons.remove(person)
        self.deleted_persons.append(person["id"])
        return 204, {}

    def _put_persons(self, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        person = self._person(path)
        if person is None:
            return 404, load("error_404.json")
        person["name"] = body["name"]
        person["_phones"], person["_emails"] = list(body["contactPhones"]), list(body["contactEmails"])
        person["observation"] = body.get("observation", person.get("observation"))
        return 200, {"success": True, "message": "OK", "data": self._render_person(person, "")}

    def _put_deals(self, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        deal_id = int(path.rsplit("/", 1)[1])
        deal = next((d for d in self.deals if d["id"] == deal_id), None)
        if deal is None:
            return 404, load("error_404.json")
        deal.update(body)
        return 200, {"success": True, "message": "OK", "data": dict(deal)}


class ErasableChatwoot(FakeChatwoot):
    def __init__(self, mock: aioresponses) -> None:
        super().__init__(mock)
        self.deleted: list[str] = []
        mock.add(f"{CW}/contacts/1042", method="DELETE", callback=self._delete, repeat=True)

    async def _delete(self, url: Any, **kw: Any) -> CallbackResult:
        if (gate := await self._gate("delete_contact", kw)) is not None:
            return gate
        if self.deleted:
            return CallbackResult(status=404, payload={"error": "Resource could not be found"})
        self.deleted.append(str(url))
        return CallbackResult(status=200, body="")


class Receiver:
    """A subscribed CRM on loopback that keeps every delivery it accepted."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.raw: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.raw.append(raw)
        self.deliveries.append({"id": request.headers["X-Webhook-Id"], **json.loads(raw)})
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
def piperun(http_mock: aioresponses) -> ErasablePipeRun:
    return ErasablePipeRun(http_mock, token=TOKEN)


@pytest.fixture
def chatwoot(http_mock: aioresponses) -> ErasableChatwoot:
    return ErasableChatwoot(http_mock)


def erasure_settings(tmp_path: Path, url: str, **overrides: Any) -> Settings:
    # Subscribed to lead.hot only: lead.erased still goes to it (it received the card).
    endpoints = [{"id": "crm-b", "url": url, "secret": HOOK_SECRET, "events": ["lead.created", "lead.hot"]}]
    return fast_settings(
        tmp_path,
        chatwoot_api_url="https://chatwoot.example.com",
        chatwoot_api_token="cw-api-token-1f2e3d4c",
        chatwoot_account_id="7",
        chatwoot_inbox_id="3",
        piperun_api_token=TOKEN,
        piperun_pipeline_id=26447,
        piperun_stage_id=141473,
        outbound_webhooks=json.dumps(endpoints),
        **overrides,
    )


BotFactory = Callable[..., Any]


@pytest.fixture
def make_bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    piperun: ErasablePipeRun,
    chatwoot: ErasableChatwoot,
    receiver: tuple[Receiver, str],
    clock: TestClock,
) -> BotFactory:
    async def build(**overrides: Any) -> TestClient:
        settings = erasure_settings(tmp_path, receiver[1], **overrides)
        return await aiohttp_client(create_app(settings, clock=clock))

    return build


async def hot_lead(bot: TestClient, openai_fake: FakeOpenAI) -> dict[str, Any]:
    openai_fake.then(reply="Perfeito, Maria! Vou chamar nosso time.", lead={**HOT_LEAD, "email": EMAIL})
    first = zapi_message(
        message_id="3EB0ERASE00000001", phone=LEAD, text=f"Sou a {NAME}, {EMAIL}, quero a FB300"
    )
    assert (await bot.post("/webhooks/zapi", json=first)).status == 200
    await settled(bot)
    return first


async def forget(bot: TestClient, **settings: Any) -> None:
    """The operator's command, in its own process's connection, beside the running bot."""
    path = Path(bot.app[STORE].path)  # type: ignore[attr-defined]
    assert await main._forget(Settings(_env_file=None, sqlite_path=path, **settings), LEAD, "whatsapp") == 0
    await settled(bot)


async def test_forget_erases_the_lead_in_chatwoot_piperun_and_tells_subscribers_once(
    make_bot: BotFactory,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    piperun: ErasablePipeRun,
    chatwoot: ErasableChatwoot,
    receiver: tuple[Receiver, str],
) -> None:
    bot = await make_bot()
    first = await hot_lead(bot, openai_fake)
    [person], [deal], [note] = piperun.persons, piperun.deals, piperun.notes
    assert NAME in deal["title"] and EMAIL in note["text"]
    assert chatwoot.contacts_created == 1
    rec, _ = receiver
    assert sorted(rec.events()) == ["lead.created", "lead.hot"]
    calls_before = len(piperun.calls)

    await forget(bot)

    assert chatwoot.deleted == [f"{CW}/contacts/1042"]
    # PIPERUN_FORGET=anonymize (the default): the person stays, without who it was.
    assert (person["name"], person["_phones"], person["_emails"]) == (ANONYMOUS_PERSON, [], [])
    assert "Ref. SDR" not in (person["observation"] or "")
    assert deal["title"] == ANONYMOUS_DEAL_TITLE and note["text"] == ANONYMOUS_NOTE
    assert piperun.deleted_persons == []
    [erased] = [d for d in rec.deliveries if d["event"] == "lead.erased"]
    assert set(erased["data"]) == {"erasure_id", "erased_at", "channel"}
    raw = rec.raw[rec.deliveries.index(erased)]
    for personal in (LEAD, NAME, "Maria", EMAIL, "Boi Bom", KEY):
        assert personal.encode() not in raw
    items = await bot.app[STORE].list_outbox()
    assert {i.kind for i in items} == {"lead_erasure", "chatwoot_erase", "piperun_erase", "outbound_webhook"}
    assert all(i.status == "done" for i in items)

    # Z-API replays the lead's first message: acknowledged, and nothing comes back.
    replay = await bot.post("/webhooks/zapi", json=first)
    assert replay.status == 200
    await settled(bot)
    assert chatwoot.contacts_created == 1 and len(chatwoot.deleted) == 1
    assert [c for c in piperun.calls[calls_before:] if c[0] == "POST"] == []
    assert [d["event"] for d in rec.deliveries].count("lead.erased") == 1
    assert len(rec.deliveries) == 3
    assert len(zapi_fake.texts_to(LEAD)) == 2  # the answer and the handoff, from before
    assert await bot.app[STORE].get_lead(KEY) is None


async def test_piperun_forget_delete_removes_the_person(
    make_bot: BotFactory, openai_fake: FakeOpenAI, piperun: ErasablePipeRun
) -> None:
    bot = await make_bot(piperun_forget="delete")
    await hot_lead(bot, openai_fake)
    [person], [deal] = piperun.persons, piperun.deals

    await forget(bot)

    assert piperun.deleted_persons == [person["id"]] and piperun.persons == []
    assert deal["title"] == ANONYMOUS_DEAL_TITLE


async def test_a_person_piperun_refuses_to_delete_is_anonymised_instead(
    make_bot: BotFactory, openai_fake: FakeOpenAI, piperun: ErasablePipeRun
) -> None:
    bot = await make_bot(piperun_forget="delete")
    await hot_lead(bot, openai_fake)
    [person] = piperun.persons
    piperun.fail_next(
        "DELETE", "/persons/", status=422, payload={"success": False, "message": "Pessoa com oportunidades"}
    )

    await forget(bot)

    assert piperun.deleted_persons == []
    assert (person["name"], person["_phones"]) == (ANONYMOUS_PERSON, [])


async def test_chatwoot_down_longer_than_its_retry_budget_delays_the_erasure_but_never_loses_it(
    make_bot: BotFactory, openai_fake: FakeOpenAI, chatwoot: ErasableChatwoot
) -> None:
    """With OUTBOX_MAX_ATTEMPTS=2 any other Chatwoot item would be dead after two 503s;
    the erasure waits the outage out (the breaker spares its attempts) and lands once."""
    bot = await make_bot(outbox_max_attempts=2)
    await hot_lead(bot, openai_fake)
    chatwoot.down = True
    path = Path(bot.app[STORE].path)  # type: ignore[attr-defined]
    assert await main._forget(Settings(_env_file=None, sqlite_path=path), LEAD, "whatsapp") == 0

    store = bot.app[STORE]

    async def refused_enough() -> bool:
        return chatwoot.refused >= 6

    await eventually(refused_enough, timeout=10)
    [item] = await store.list_outbox(kind="chatwoot_erase")
    assert item.status != "dead"
    chatwoot.down = False
    await settled(bot, timeout=10)
    assert chatwoot.deleted == [f"{CW}/contacts/1042"]
    [item] = await store.list_outbox(kind="chatwoot_erase")
    assert item.status == "done"


async def test_records_created_by_a_sync_already_in_flight_are_erased_too(
    make_bot: BotFactory, openai_fake: FakeOpenAI, piperun: ErasablePipeRun
) -> None:
    """The operator's forget lands while the CRM sync is creating the deal (the person is
    already made and linked): the deal is not left behind with the lead's name, and the
    sync writes no note."""
    bot = await make_bot()

    async def forget_while_the_deal_is_created(method: str, path: str) -> None:
        if (method, path) == ("POST", "/deals"):
            db = Path(bot.app[STORE].path)  # type: ignore[attr-defined]
            assert await main._forget(Settings(_env_file=None, sqlite_path=db), LEAD, "whatsapp") == 0

    piperun.before = forget_while_the_deal_is_created
    await hot_lead(bot, openai_fake)

    [person], [deal] = piperun.persons, piperun.deals
    assert person["name"] == ANONYMOUS_PERSON and person["_phones"] == []
    assert deal["title"] == ANONYMOUS_DEAL_TITLE
    assert piperun.notes == []  # the sync stopped at the erasure
    assert await bot.app[STORE].get_lead(KEY) is None


# --- what is already in flight when the erasure lands ------------------------------------


@pytest.fixture
async def erased_store(tmp_path: Path) -> AsyncIterator[Any]:
    store = SqliteStore(tmp_path / "sdr.sqlite3")
    await store.open()
    message = InboundMessage(
        channel="zapi",
        contact_id=LEAD,
        provider_message_id="3EB0ERASE0000000X",
        kind=MessageKind.TEXT,
        text="Oi",
    )
    await store.add_inbound(message)
    assert await store.forget_lead(KEY) is True
    yield store
    await store.close()


class RecordingWebhookClient:
    """Stands in for OutboundWebhookClient: what would have been POSTed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def deliver(
        self, endpoint: Any, event: str, delivery_id: str, data: Any, timestamp: Any, **_: Any
    ) -> None:
        self.sent.append((event, dict(data)))


async def test_an_event_claimed_before_the_erasure_is_not_sent_but_lead_erased_is(erased_store: Any) -> None:
    client = RecordingWebhookClient()
    endpoint = Endpoint(id="crm-b", url="https://crm.example.com/hooks", secret=HOOK_SECRET, events=("*",))
    hooks = WebhookDelivery(client, [endpoint], erased_store)  # type: ignore[arg-type]
    card = {"lead": {"contact_key": KEY, "phone": LEAD, "name": NAME}}
    stale = OutboxItem(
        kind="outbound_webhook",
        order_key=f"hooks:{KEY}#crm-b",
        idempotency_key="hook:crm-b:lead.hot:t1:0",
        payload={
            "contact_key": KEY,
            "endpoint_id": "crm-b",
            "event": "lead.hot",
            "timestamp": "2026-12-02T10:00:00+00:00",
            "data": card,
        },
        id=1,
    )
    await hooks.deliver(stale, OutboundWebhook.parse(stale.payload))
    assert client.sent == []
    [fanout] = await erased_store.list_outbox(kind="lead_erasure")
    subscribed = [Subscription("crm-b", frozenset({"lead.hot"}))]  # not to lead.erased: it gets it anyway
    [erased] = ErasureFanout(erased_store, erasure_config(Settings(_env_file=None)), subscribed).items(
        LeadErasure.parse(fanout.payload)
    )
    await hooks.deliver(erased, OutboundWebhook.parse(erased.payload))
    assert [event for event, _ in client.sent] == ["lead.erased"]
    assert client.sent[0][1] == {
        "erasure_id": fanout.payload["erasure_id"],
        "erased_at": fanout.payload["erased_at"],
        "channel": "zapi",
    }


async def test_a_mirror_item_of_an_erased_lead_does_nothing(
    erased_store: Any, http_mock: aioresponses, tmp_path: Path
) -> None:
    """No Chatwoot route is mocked: any call would fail the item; none is made, and the
    item ends quietly instead of dead with the lead's message text in it."""
    settings = erasure_settings(tmp_path, "https://crm.example.com/hooks")
    async with aiohttp.ClientSession() as session:
        mirror = ChatwootMirror(
            ChatwootClient(chatwoot_config(settings), session),
            erased_store,
            mirror_config(settings),
            ChannelHealth(),
        )
        item = OutboxItem(
            kind="chatwoot_message",
            order_key=f"chatwoot:{KEY}",
            idempotency_key="cw:1",
            payload={"contact_key": KEY, "direction": "in", "text": "Oi"},
            id=7,
            attempts=1,
        )
        await mirror.message(item, ChatwootMessage.parse(item.payload))
    assert http_mock.requests == {}

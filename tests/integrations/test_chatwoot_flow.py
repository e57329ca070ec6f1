"""Chatwoot as the team's cockpit: every message mirrored in order, the lead card, the
handoff, and an agent's reply relayed to the lead while the bot stays out of the way.

Chatwoot is faked at the HTTP boundary with the recorded payloads in
tests/fixtures/chatwoot/ (sources cited in each file)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import CallbackResult, aioresponses

from core.settings import Settings
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually, load_fixture
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import RUNNER, STORE

CW = "https://chatwoot.example.com/api/v1/accounts/7"
SECRET = "cw-webhook-secret-6c5b4a39"
LEAD = "5544999999999"


def chatwoot_settings(tmp_path: Path) -> Settings:
    """Chatwoot account 7, API inbox 3, as the fake below answers for (shared with the
    other files that drive the cockpit through the app)."""
    return fast_settings(
        tmp_path,
        chatwoot_api_url="https://chatwoot.example.com",
        chatwoot_api_token="cw-api-token-1f2e3d4c",
        chatwoot_account_id="7",
        chatwoot_inbox_id="3",
        chatwoot_webhook_secret=SECRET,
        chatwoot_handoff_team_id=4,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return chatwoot_settings(tmp_path)


class FakeChatwoot:
    def __init__(self, mock: aioresponses) -> None:
        self.down = False
        self.refused = 0  # calls answered 503 while down
        self.lose_next_answer = False
        self.calls: list[tuple[str, str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.next_message_id = 90300
        self.conversations_created = 0
        self.contacts_created = 0
        self.labels: list[str] = []  # the conversation's, as Chatwoot keeps them
        routes = [
            ("GET", re.compile(rf"^{re.escape(CW)}/contacts/search\?.*$"), self._search),
            ("POST", f"{CW}/contacts", self._create_contact),
            ("GET", f"{CW}/contacts/1042/conversations", self._conversations),
            ("POST", f"{CW}/conversations", self._create_conversation),
            ("POST", f"{CW}/conversations/318/messages", self._message),
            ("GET", f"{CW}/conversations/318/messages", self._list_messages),
            ("POST", f"{CW}/conversations/318/toggle_status", self._toggle),
            ("POST", f"{CW}/conversations/318/labels", self._labels),
            ("GET", f"{CW}/conversations/318/labels", self._list_labels),
            ("POST", f"{CW}/conversations/318/assignments", self._assign),
            ("PUT", f"{CW}/contacts/1042", self._update_contact),
        ]
        for method, url, handler in routes:
            mock.add(url, method=method, callback=handler, repeat=True)

    def _body(self, kwargs: dict[str, Any]) -> Any:
        if kwargs.get("json") is not None:
            return kwargs["json"]
        data = kwargs.get("data")
        if isinstance(data, aiohttp.FormData):  # multipart: a message with attachments[]
            return multipart_fields(data)
        return json.loads(data) if isinstance(data, (bytes, str)) else data

    async def _gate(self, name: str, kwargs: dict[str, Any]) -> CallbackResult | None:
        if self.down:
            self.refused += 1
            return CallbackResult(status=503, payload={"error": "Service Unavailable"})
        self.calls.append((name, kwargs.get("headers", {}).get("api_access_token", ""), self._body(kwargs)))
        return None

    async def _search(self, url: Any, **kw: Any) -> CallbackResult:
        return await self._gate("search", kw) or CallbackResult(
            payload=load_fixture("chatwoot/contact_search_empty.json")
        )

    async def _create_contact(self, url: Any, **kw: Any) -> CallbackResult:
        if (gate := await self._gate("create_contact", kw)) is not None:
            return gate
        self.contacts_created += 1
        return CallbackResult(payload=load_fixture("chatwoot/contact_create_response.json"))

    async def _conversations(self, url: Any, **kw: Any) -> CallbackResult:
        return await self._gate("conversations", kw) or CallbackResult(payload={"payload": []})

    async def _create_conversation(self, url: Any, **kw: Any) -> CallbackResult:
        if (gate := await self._gate("create_conversation", kw)) is not None:
            return gate
        self.conversations_created += 1
        return CallbackResult(payload=load_fixture("chatwoot/conversation_create_response.json"))

    async def _message(self, url: Any, **kw: Any) -> CallbackResult:
        if (gate := await self._gate("message", kw)) is not None:
            return gate
        body = self._body(kw)
        self.next_message_id += 1
        self.messages.append({**body, "id": self.next_message_id})
        if self.lose_next_answer:  # created, but the answer never reaches the bot
            self.lose_next_answer = False
            return CallbackResult(status=504, payload={"error": "Gateway Timeout"})
        response = copy.deepcopy(load_fixture("chatwoot/message_create_response.json"))
        response.update(id=self.next_message_id, content=body.get("content"))
        return CallbackResult(payload=response)

    async def _list_messages(self, url: Any, **kw: Any) -> CallbackResult:
        if (gate := await self._gate("list_messages", kw)) is not None:
            return gate
        kinds = {"incoming": 0, "outgoing": 1}
        payload = [
            {
                "id": m["id"],
                "content": m["content"],
                "message_type": kinds[m["message_type"]],
                "private": m.get("private", False),
                "conversation_id": 318,
            }
            for m in self.messages
        ]
        return CallbackResult(payload={"meta": {}, "payload": payload})

    async def _toggle(self, url: Any, **kw: Any) -> CallbackResult:
        return await self._gate("toggle_status", kw) or CallbackResult(
            payload=load_fixture("chatwoot/toggle_status_response.json")
        )

    async def _labels(self, url: Any, **kw: Any) -> CallbackResult:
        if (gate := await self._gate("labels", kw)) is not None:
            return gate
        self.labels = list(self._body(kw)["labels"])  # the documented REPLACE
        response = load_fixture("chatwoot/labels_response.json")
        return CallbackResult(payload={**response, "payload": self.labels})

    async def _list_labels(self, url: Any, **kw: Any) -> CallbackResult:
        if (gate := await self._gate("list_labels", kw)) is not None:
            return gate
        response = load_fixture("chatwoot/labels_list_response.json")
        return CallbackResult(payload={**response, "payload": self.labels})

    async def _assign(self, url: Any, **kw: Any) -> CallbackResult:
        return await self._gate("assign", kw) or CallbackResult(
            payload=load_fixture("chatwoot/assignment_team_response.json")
        )

    async def _update_contact(self, url: Any, **kw: Any) -> CallbackResult:
        return await self._gate("update_contact", kw) or CallbackResult(
            payload=load_fixture("chatwoot/contact_update_response.json")
        )

    def public(self) -> list[tuple[str, str]]:
        return [(m["message_type"], m["content"]) for m in self.messages if not m.get("private")]

    def names(self) -> list[str]:
        return [name for name, _token, _body in self.calls]


@pytest.fixture
def chatwoot(http_mock: aioresponses) -> FakeChatwoot:
    return FakeChatwoot(http_mock)


def multipart_fields(form: aiohttp.FormData) -> dict[str, Any]:
    """The fields of a multipart body as Chatwoot reads them; files as (name, bytes, type)."""
    out: dict[str, Any] = {}
    for options, headers, value in form._fields:
        name = options["name"]
        if "filename" in options:
            out.setdefault(name, []).append((options["filename"], value, headers.get("Content-Type")))
        else:
            out[name] = {"true": True, "false": False}.get(value, value) if name == "private" else value
    return out


def rows(bot: TestClient, sql: str) -> list[tuple]:
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        return db.execute(sql).fetchall()


def signed(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Chatwoot-Signature": f"sha256={digest}",
        "X-Chatwoot-Timestamp": ts,
        "Content-Type": "application/json",
    }


async def lead_says(bot: TestClient, text: str, n: int) -> None:
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id=f"3EB0CW{n:010d}", text=text))
    assert response.status == 200


async def replies_delivered(bot: TestClient) -> bool:
    """The lead's side is settled: no turn under way or pending and every reply to the lead
    delivered (or dead). For a Chatwoot outage, where the mirror stays pending on purpose
    and `settled` cannot be used; a terminal state, so it cannot be overshot."""
    store = bot.app[STORE]
    if not bot.app[RUNNER].idle.is_set() or await store.pending_contacts():
        return False
    return all(item.status in ("done", "dead") for item in await store.list_outbox(kind="send_text"))


async def chatwoot_event(bot: TestClient, fixture: str, **changes: Any) -> dict:
    payload = copy.deepcopy(load_fixture(f"chatwoot/{fixture}"))
    payload.update(changes)
    body = json.dumps(payload).encode()
    response = await bot.post("/webhooks/chatwoot", data=body, headers=signed(body))
    assert response.status == 200, await response.text()
    return await response.json()


async def test_contact_and_conversation_are_created_once_and_every_message_is_mirrored_in_order(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    for n in range(5):
        openai_fake.then(reply=f"resposta {n}")
    for n in range(5):
        await lead_says(bot, f"mensagem {n}", n)
        await settled(bot)
        assert zapi_fake.texts_to(LEAD) == [f"resposta {i}" for i in range(n + 1)]
    assert chatwoot.contacts_created == 1
    assert chatwoot.conversations_created == 1
    expected = []
    for n in range(5):
        expected += [("incoming", f"mensagem {n}"), ("outgoing", f"resposta {n}")]
    assert chatwoot.public() == expected
    assert all(token == "cw-api-token-1f2e3d4c" for _name, token, _body in chatwoot.calls)
    # The conversation opens as pending: the bot owns it.
    create = [body for name, _t, body in chatwoot.calls if name == "create_conversation"][0]
    assert create["status"] == "pending" and create["inbox_id"] == 3
    # The lead card travels as contact attributes and the temperature as a label.
    assert "update_contact" in chatwoot.names() and "labels" in chatwoot.names()


async def test_a_chatwoot_outage_never_delays_the_lead_and_nothing_is_lost_or_doubled(
    aiohttp_client: Any,
    settings: Settings,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    chatwoot: FakeChatwoot,
    clock: TestClock,
) -> None:
    # Backoff scaled down like everything else in tests (production: 2 s doubling to 5 min,
    # 12 attempts, i.e. outages of half an hour are ridden out).
    bot = await aiohttp_client(
        create_app(
            settings.model_copy(update={"outbox_backoff_base_s": 0.1, "outbox_backoff_max_s": 0.4}),
            clock=clock,
        )
    )
    chatwoot.down = True
    openai_fake.then(reply="Oi! Tudo bem?").then(reply="Perfeito.")
    await lead_says(bot, "Oi", 1)
    # The mirror stays pending during the outage (settled would wait it out): wait for the
    # lead's side only.
    await eventually(lambda: replies_delivered(bot))
    assert zapi_fake.texts_to(LEAD) == ["Oi! Tudo bem?"]  # the lead is answered during the outage
    await lead_says(bot, "Quero a FB300", 2)
    await eventually(lambda: replies_delivered(bot))
    assert zapi_fake.texts_to(LEAD) == ["Oi! Tudo bem?", "Perfeito."]
    # The outage lasts: the mirror is refused and retried until Chatwoot's breaker opens
    # (3 failures; a count that only grows).
    await eventually(lambda: chatwoot.refused >= 3, timeout=5)
    assert chatwoot.public() == []
    chatwoot.down = False
    await settled(bot, timeout=15)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Tudo bem?", "Perfeito."]
    assert chatwoot.public() == [
        ("incoming", "Oi"),
        ("outgoing", "Oi! Tudo bem?"),
        ("incoming", "Quero a FB300"),
        ("outgoing", "Perfeito."),
    ]
    assert chatwoot.contacts_created == 1 and chatwoot.conversations_created == 1


async def test_handoff_posts_the_lead_card_as_a_private_note_and_opens_the_conversation(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    openai_fake.then(
        reply="Claro! Vou chamar um especialista.",
        lead={"name": "Maria", "city": "Maringá", "state": "PR"},
        tools=[
            {
                "tool": "handoff_to_human",
                "reason": "pediu_humano",
                "summary": "Maria quer falar com um vendedor.",
            }
        ],
    )
    await lead_says(bot, "Quero falar com um vendedor", 1)
    await settled(bot)
    # In business hours (the clock fixture) the model's own handoff reply says it all.
    assert zapi_fake.texts_to(LEAD) == ["Claro! Vou chamar um especialista."]
    notes = [m for m in chatwoot.messages if m.get("private")]
    assert len(notes) == 1 and "Maria" in notes[0]["content"] and "pediu_humano" in notes[0]["content"]
    toggles = [body for name, _t, body in chatwoot.calls if name == "toggle_status"]
    assert toggles == [{"status": "open"}]
    assert chatwoot.names().count("assign") == 1


async def test_an_agents_reply_reaches_the_lead_and_the_bot_steps_aside_until_resolved(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    openai_fake.then(reply="Oi! Como posso ajudar?")
    await lead_says(bot, "Oi", 1)
    await settled(bot)
    assert chatwoot.public() == [("incoming", "Oi"), ("outgoing", "Oi! Como posso ajudar?")]

    # Private note: stays in Chatwoot.
    outcome = await chatwoot_event(bot, "webhook_message_created_private_note.json")
    assert outcome["outcome"] == "not_an_agent_reply"
    # The bot's own mirrored message coming back: never echoed.
    own = chatwoot.messages[-1]
    outcome = await chatwoot_event(
        bot, "webhook_message_created_account.json", id=own["id"], content=own["content"]
    )
    assert outcome["outcome"] == "own_message"
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?"]

    # An agent's public reply: relayed to the lead on WhatsApp.
    outcome = await chatwoot_event(bot, "webhook_message_created_account.json")
    assert outcome["outcome"] == "relayed"
    agent_text = load_fixture("chatwoot/webhook_message_created_account.json")["content"]
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?", agent_text]
    assert zapi_fake.sent[1] == {"phone": LEAD, "message": agent_text, "delayTyping": 1}
    # The same webhook delivered twice is relayed once.
    assert (await chatwoot_event(bot, "webhook_message_created_account.json"))["outcome"] == "duplicate"

    # While the human owns it, the lead's messages are mirrored but the bot is silent.
    await lead_says(bot, "Pode ligar sim", 2)
    await settled(bot)
    assert chatwoot.public()[-1] == ("incoming", "Pode ligar sim")
    assert openai_fake.chat_calls == 1 and zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?", agent_text]

    # Resolved: the bot is back.
    await chatwoot_event(bot, "webhook_conversation_status_changed.json", status="resolved")
    openai_fake.then(reply="Oi de novo! Em que posso ajudar?")
    await lead_says(bot, "Oi, voltei", 3)
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [
        "Oi! Como posso ajudar?",
        agent_text,
        "Oi de novo! Em que posso ajudar?",
    ]
    assert openai_fake.chat_calls == 2


async def test_forged_or_unsigned_chatwoot_webhooks_are_refused(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    body = json.dumps(load_fixture("chatwoot/webhook_message_created_account.json")).encode()
    for headers in (
        {},
        {"X-Chatwoot-Signature": "sha256=" + "0" * 64, "X-Chatwoot-Timestamp": str(int(time.time()))},
    ):
        response = await bot.post("/webhooks/chatwoot", data=body, headers=headers)
        assert response.status == 401
    stale_ts = str(int(time.time()) - 3600)
    digest = hmac.new(SECRET.encode(), f"{stale_ts}.".encode() + body, hashlib.sha256).hexdigest()
    response = await bot.post(
        "/webhooks/chatwoot",
        data=body,
        headers={"X-Chatwoot-Signature": f"sha256={digest}", "X-Chatwoot-Timestamp": stale_ts},
    )
    assert response.status == 401
    await settled(bot)
    assert zapi_fake.sent == [] and chatwoot.calls == []


async def test_an_open_conversation_belongs_to_humans_and_pending_gives_it_back(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    openai_fake.then(reply="Oi! Como posso ajudar?")
    await lead_says(bot, "Oi", 1)
    await settled(bot)
    assert chatwoot.public() == [("incoming", "Oi"), ("outgoing", "Oi! Como posso ajudar?")]
    await chatwoot_event(bot, "webhook_conversation_status_changed.json", status="open")
    await lead_says(bot, "Alguém aí?", 2)
    await settled(bot)
    assert chatwoot.public()[-1] == ("incoming", "Alguém aí?")
    assert zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?"] and openai_fake.chat_calls == 1
    await chatwoot_event(bot, "webhook_conversation_status_changed.json", status="pending")
    openai_fake.then(reply="Estou aqui! Em que posso ajudar?")
    await lead_says(bot, "Oi?", 3)
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?", "Estou aqui! Em que posso ajudar?"]


async def test_a_voice_note_is_mirrored_with_its_transcript(
    bot: TestClient,
    http_mock: aioresponses,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    chatwoot: FakeChatwoot,
) -> None:
    payload = zapi_message("received_audio_ptt.json", phone=LEAD)
    # Fetched twice: once to transcribe, once to mirror the recording to Chatwoot.
    http_mock.get(payload["audio"]["audioUrl"], body=b"OggS-fake", content_type="audio/ogg", repeat=True)
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200
    await settled(bot)
    assert len(chatwoot.public()) == 2
    incoming = chatwoot.public()[0]
    assert incoming[0] == "incoming" and "quinhentos por dia" in incoming[1]
    # The recording itself, as a Chatwoot attachment the seller can play (not a link).
    assert chatwoot.messages[0].get("attachments[]") == [
        ("3EB0A1B2C3D4E5F60002.ogg", b"OggS-fake", "audio/ogg")
    ]
    assert payload["audio"]["audioUrl"] not in incoming[1]


async def test_a_conversation_update_that_does_not_change_the_status_keeps_the_bot_paused(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    openai_fake.then(reply="Oi! Como posso ajudar?")
    await lead_says(bot, "Oi", 1)
    await settled(bot)
    assert chatwoot.public() == [("incoming", "Oi"), ("outgoing", "Oi! Como posso ajudar?")]
    assert (await chatwoot_event(bot, "webhook_message_created_account.json"))["outcome"] == "relayed"
    # Labels/assignee/timers changed: Chatwoot sends conversation_updated with status pending.
    await chatwoot_event(
        bot, "webhook_conversation_status_changed.json", event="conversation_updated", status="pending"
    )
    await lead_says(bot, "Pode ligar", 2)
    await settled(bot)
    assert chatwoot.public()[-1] == ("incoming", "Pode ligar")
    assert openai_fake.chat_calls == 1  # still the human's conversation
    agent_text = load_fixture("chatwoot/webhook_message_created_account.json")["content"]
    assert zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?", agent_text]


async def test_after_an_outage_the_bots_late_mirrored_messages_are_not_taken_for_an_agent(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    openai_fake.then(reply="Oi! Tudo bem?").then(reply="Claro, a FB300 atende.")
    await lead_says(bot, "Oi", 1)
    await settled(bot)
    assert chatwoot.public() == [("incoming", "Oi"), ("outgoing", "Oi! Tudo bem?")]
    chatwoot.down = True
    await lead_says(bot, "Tem a FB300?", 2)
    # The mirror stays pending while Chatwoot is down: wait for the lead's side only.
    await eventually(lambda: replies_delivered(bot))
    assert zapi_fake.texts_to(LEAD) == ["Oi! Tudo bem?", "Claro, a FB300 atende."]
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        db.execute("UPDATE messages SET created_at = '2020-01-01T00:00:00+00:00'")  # "long ago"
    # Chatwoot comes back; its webhook for the bot's message arrives before we link its id.
    outcome = await chatwoot_event(
        bot, "webhook_message_created_account.json", id=999001, content="Claro, a FB300 atende."
    )
    assert outcome["outcome"] == "own_message"
    chatwoot.down = False
    await settled(bot, timeout=10)
    assert chatwoot.public() == [
        ("incoming", "Oi"),
        ("outgoing", "Oi! Tudo bem?"),
        ("incoming", "Tem a FB300?"),
        ("outgoing", "Claro, a FB300 atende."),
    ]
    assert zapi_fake.texts_to(LEAD) == ["Oi! Tudo bem?", "Claro, a FB300 atende."]


async def test_an_agent_writing_after_resolving_still_reaches_the_lead(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    openai_fake.then(reply="Oi! Como posso ajudar?")
    await lead_says(bot, "Oi", 1)
    await settled(bot)
    assert chatwoot.public() == [("incoming", "Oi"), ("outgoing", "Oi! Como posso ajudar?")]
    await chatwoot_event(bot, "webhook_conversation_status_changed.json", status="resolved")
    assert (await chatwoot_event(bot, "webhook_message_created_account.json"))["outcome"] == "relayed"
    await settled(bot)
    agent_text = load_fixture("chatwoot/webhook_message_created_account.json")["content"]
    assert zapi_fake.texts_to(LEAD) == ["Oi! Como posso ajudar?", agent_text]


async def test_a_message_created_before_its_answer_was_lost_is_not_mirrored_twice(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, chatwoot: FakeChatwoot
) -> None:
    openai_fake.then(reply="Oi! Como posso ajudar?")
    chatwoot.lose_next_answer = True
    await lead_says(bot, "Oi", 1)
    await settled(bot)
    assert chatwoot.public() == [("incoming", "Oi"), ("outgoing", "Oi! Como posso ajudar?")]
    assert "list_messages" in chatwoot.names()

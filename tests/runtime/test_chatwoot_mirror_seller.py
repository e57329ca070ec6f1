"""The Chatwoot mirror, what the sellers see: their labels kept, quote and question notes
once each, and the lead's files as real attachments.

Chatwoot is faked at the HTTP boundary (aioresponses) with the recorded answers in
tests/fixtures/chatwoot/ (sources in each file); the lead is already linked to
contact 1042 / conversation 318, so every call is the one under test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from channels.errors import ChannelRejected, ChannelUnavailable, MediaRefused, MediaTooLarge
from core.errors import ProviderError
from core.outbox import ChatwootMessage, ChatwootNote, ChatwootProfile, chatwoot_lane
from core.records import LeadRecord, OutboxItem
from integrations.chatwoot import ChatwootClient
from runtime.channel_health import ChannelHealth
from runtime.chatwoot_mirror import ChatwootMirror, MirrorConfig
from tests.helpers.fakes import load_fixture
from tests.integrations.test_chatwoot_client import BASE, make_config

KEY = "whatsapp:5544999887766"
CONV = f"{BASE}/conversations/318"
MEDIA_URL = "https://example.com/zapi-media/3EB0A1B2C3D4E5F60009.pdf"
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


class LinkedLead:
    """The store as the mirror reads it: one lead, already linked in Chatwoot."""

    def __init__(self) -> None:
        self.linked: dict[int, int] = {}

    async def get_lead(self, contact_key: str) -> LeadRecord | None:
        return LeadRecord(
            id=1, contact_key=KEY, channel="zapi", contact_id="5544999887766", phone="5544999887766",
            name="Mariana", profile={}, score=0, temperature="morno", score_reasons=[],
            lead_message_count=1, opted_out=False, created_at=NOW, updated_at=NOW,
            chatwoot_contact_id=1042, chatwoot_source_id="src", chatwoot_conversation_id=318,
        )  # fmt: skip

    async def is_erased(self, contact_key: str) -> bool:
        return False

    async def set_chatwoot_message_id(self, message_id: int, chatwoot_message_id: int) -> None:
        self.linked[message_id] = chatwoot_message_id


class FakeMedia:
    """A channel's media source: the bytes, or the refusal it was told to raise."""

    def __init__(self, data: bytes = b"%PDF-1.7 catalogo", error: ProviderError | None = None) -> None:
        self.data, self.error = data, error
        self.asked: list[tuple[str, int]] = []

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        self.asked.append((url, max_bytes))
        if self.error is not None:
            raise self.error
        return self.data


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mock() -> Any:
    with aioresponses() as m:
        yield m


def mirror(
    session: aiohttp.ClientSession, store: LinkedLead, media: FakeMedia | None = None
) -> ChatwootMirror:
    return ChatwootMirror(
        ChatwootClient(make_config(), session),
        store,  # type: ignore[arg-type]
        MirrorConfig(media_max_bytes=4096),
        ChannelHealth(),
        media={"zapi": media} if media is not None else None,
        session=session,
    )


def item(payload: Any, attempts: int = 1) -> OutboxItem:
    out: OutboxItem = payload.item(order_key=chatwoot_lane(KEY), idempotency_key="k")
    out.attempts = attempts
    return out


def posted(mock: aioresponses, method: str, url: str) -> list[Any]:
    return list(mock.requests.get((method, URL(url)), []))


def form_fields(call: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for options, headers, value in call.kwargs["data"]._fields:
        if "filename" in options:
            out.setdefault(options["name"], []).append((options["filename"], value, headers["Content-Type"]))
        else:
            out[options["name"]] = value
    return out


def message_created(url: Any, **kwargs: Any) -> CallbackResult:
    return CallbackResult(payload=load_fixture("chatwoot/message_create_response.json"))


# --- labels -----------------------------------------------------------------------------


async def test_the_lead_card_swaps_the_temperature_and_keeps_the_sellers_labels(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.put(f"{BASE}/contacts/1042", payload=load_fixture("chatwoot/contact_update_response.json"))
    mock.get(f"{CONV}/labels", payload={"payload": ["proposta-enviada", "morno", "vip"]})
    mock.post(f"{CONV}/labels", payload=load_fixture("chatwoot/labels_response.json"))
    card = ChatwootProfile(contact_key=KEY, attributes={"empresa": "Agro Souza"}, temperature="quente")
    await mirror(session, LinkedLead()).profile(item(card), card)
    (write,) = posted(mock, "POST", f"{CONV}/labels")
    assert write.kwargs["json"] == {"labels": ["proposta-enviada", "vip", "quente"]}


# --- notes --------------------------------------------------------------------------------


async def test_a_quote_request_is_a_private_note_and_its_label_joins_the_others(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.post(f"{CONV}/messages", callback=message_created)
    mock.get(f"{CONV}/labels", payload={"payload": ["quente", "vip"]})
    mock.post(f"{CONV}/labels", payload={"payload": ["quente", "vip", "orcamento"]})
    note = ChatwootNote(contact_key=KEY, note="Pedido de orçamento: FB300, 3.000/dia", labels=["orcamento"])
    await mirror(session, LinkedLead()).note(item(note), note)
    (created,) = posted(mock, "POST", f"{CONV}/messages")
    assert created.kwargs["json"] == {
        "content": "Pedido de orçamento: FB300, 3.000/dia",
        "message_type": "outgoing",
        "private": True,
    }
    (write,) = posted(mock, "POST", f"{CONV}/labels")
    assert write.kwargs["json"] == {"labels": ["quente", "vip", "orcamento"]}


async def test_a_retried_note_already_in_chatwoot_is_not_posted_twice(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    text = "Dúvida técnica: a FB300 trabalha com carne de frango?"
    mock.get(
        f"{CONV}/messages",
        payload={"meta": {}, "payload": [{"id": 90501, "content": text, "message_type": 1, "private": True}]},
    )
    mock.get(f"{CONV}/labels", payload={"payload": ["duvida-tecnica"]})
    note = ChatwootNote(contact_key=KEY, note=text, labels=["duvida-tecnica"])
    await mirror(session, LinkedLead()).note(item(note, attempts=2), note)
    assert posted(mock, "POST", f"{CONV}/messages") == []
    assert posted(mock, "POST", f"{CONV}/labels") == []  # the label is there already


async def test_a_public_message_with_the_same_words_does_not_count_as_the_note(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    text = "Pedido de orçamento: FB300"
    mock.get(
        f"{CONV}/messages",
        payload={
            "meta": {},
            "payload": [{"id": 90502, "content": text, "message_type": 1, "private": False}],
        },
    )
    mock.post(f"{CONV}/messages", callback=message_created)
    note = ChatwootNote(contact_key=KEY, note=text)
    await mirror(session, LinkedLead()).note(item(note, attempts=2), note)
    assert len(posted(mock, "POST", f"{CONV}/messages")) == 1


# --- the lead's files ------------------------------------------------------------------------


def lead_file(**changes: Any) -> ChatwootMessage:
    fields: dict[str, Any] = {
        "contact_key": KEY,
        "direction": "in",
        "text": "Segue o catálogo que recebi",
        "message_id": 77,
        "channel": "zapi",
        "media_url": MEDIA_URL,
        "media_kind": "document",
        "media_mime": "application/pdf",
        "file_name": "catalogo.pdf",
    }
    fields.update(changes)
    return ChatwootMessage(**fields)


async def test_the_leads_file_is_a_real_attachment_fetched_by_its_channel(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    media, store = FakeMedia(), LinkedLead()
    mock.post(f"{CONV}/messages", payload=load_fixture("chatwoot/message_create_attachment_response.json"))
    message = lead_file()
    await mirror(session, store, media).message(item(message), message)
    assert media.asked == [(MEDIA_URL, 4096)]
    (created,) = posted(mock, "POST", f"{CONV}/messages")
    assert form_fields(created) == {
        "content": "Segue o catálogo que recebi",
        "message_type": "incoming",
        "private": "false",
        "attachments[]": [("catalogo.pdf", b"%PDF-1.7 catalogo", "application/pdf")],
    }
    assert store.linked == {77: 90212}  # its webhook will not be taken for an agent


@pytest.mark.parametrize(
    ("error", "note"),
    [
        (MediaTooLarge("media is 90000000 bytes"), "grande demais"),
        (MediaRefused("media url points at a non-public address"), "Não foi possível copiar"),
        (ChannelRejected("media download failed: HTTP 404", status=404), "Não foi possível copiar"),
    ],
)
async def test_a_file_that_cannot_be_had_still_mirrors_the_words_with_a_note(
    session: aiohttp.ClientSession, mock: aioresponses, error: ProviderError, note: str
) -> None:
    mock.post(f"{CONV}/messages", callback=message_created)
    message = lead_file()
    await mirror(session, LinkedLead(), FakeMedia(error=error)).message(item(message), message)
    (created,) = posted(mock, "POST", f"{CONV}/messages")
    body = created.kwargs["json"]
    assert body["content"].startswith("Segue o catálogo que recebi\n\n[") and note in body["content"]
    assert body["message_type"] == "incoming" and created.kwargs.get("data") is None


async def test_a_file_the_channel_cannot_give_now_is_retried_and_nothing_is_posted(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    message = lead_file()
    media = FakeMedia(error=ChannelUnavailable("media download timed out"))
    with pytest.raises(ProviderError) as err:
        await mirror(session, LinkedLead(), media).message(item(message), message)
    assert err.value.retryable
    assert posted(mock, "POST", f"{CONV}/messages") == []


async def test_a_retry_finds_the_message_posted_with_its_note_and_fetches_nothing(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    text = "Segue o catálogo que recebi\n\n[O arquivo enviado pelo lead é grande demais e não foi copiado para o Chatwoot.]"
    mock.get(
        f"{CONV}/messages",
        payload={
            "meta": {},
            "payload": [{"id": 90503, "content": text, "message_type": 0, "private": False}],
        },
    )
    media, store = FakeMedia(), LinkedLead()
    message = lead_file()
    await mirror(session, store, media).message(item(message, attempts=2), message)
    assert media.asked == [] and posted(mock, "POST", f"{CONV}/messages") == []
    assert store.linked == {77: 90503}


async def test_without_the_channels_media_the_file_stays_a_link(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.post(f"{CONV}/messages", callback=message_created)
    message = lead_file()
    await mirror(session, LinkedLead()).message(item(message), message)
    (created,) = posted(mock, "POST", f"{CONV}/messages")
    assert created.kwargs["json"]["content"] == f"Segue o catálogo que recebi\n{MEDIA_URL}"


async def test_a_file_without_a_name_is_named_from_its_url(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.post(f"{CONV}/messages", callback=message_created)
    message = ChatwootMessage(**{**lead_file().serialize(), "file_name": None, "text": ""})
    await mirror(session, LinkedLead(), FakeMedia()).message(item(message), message)
    (created,) = posted(mock, "POST", f"{CONV}/messages")
    fields = form_fields(created)
    assert fields["attachments[]"][0][0] == "3EB0A1B2C3D4E5F60009.pdf" and fields["content"] == ""

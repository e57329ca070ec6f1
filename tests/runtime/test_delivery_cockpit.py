"""What a seller's reply from Chatwoot does to the lead's channel: a file goes out as a
file, a closed 24-hour window gets the seller_start template with the lead's name and
product, and without a template the seller is told instead of the lead being handed off
to the person who is already talking to them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from channels.base import OutgoingMedia, SentMessage
from core.outbox import PAYLOADS, Reengage, SendMedia, SendText
from core.records import OutboxItem, TurnCommit
from runtime.channel_health import ChannelHealth
from runtime.delivery import Delivery, DeliveryConfig, media_kind
from runtime.handoff_card import load_handoff_card
from runtime.policies import PermanentDeliveryError
from runtime.seller_notes import load_seller_notes
from runtime.templates import Template, TemplateBook
from store.sqlite import SqliteStore
from tests.helpers.leads import HOT_LEAD

LEAD = "5511987650001"
KEY = f"whatsapp:{LEAD}"
WROTE_AT = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


class FakeCloud:
    """A 24-hour-window channel that records what it was asked to send."""

    name = "whatsapp_cloud"
    window_hours: int | None = 24
    rate_per_s = 1000.0
    configured = True
    missing_webhook_secret = None

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.media: list[tuple[OutgoingMedia, bool]] = []
        self.templates: list[dict[str, Any]] = []

    async def send_text(self, session: Any, contact_id: str, text: str, **_: Any) -> SentMessage:
        self.texts.append(text)
        return SentMessage("wamid.text")

    async def send_media(
        self, session: Any, contact_id: str, media: OutgoingMedia, *, human_agent: bool = False
    ) -> SentMessage:
        self.media.append((media, human_agent))
        return SentMessage("wamid.media")

    async def send_template(
        self,
        session: Any,
        contact_id: str,
        *,
        name: str,
        language: str | None = None,
        parameters: Sequence[str] = (),
    ) -> SentMessage:
        self.templates.append({"name": name, "language": language, "parameters": list(parameters)})
        return SentMessage("wamid.template")

    async def fetch_media(self, session: Any, url: str, *, max_bytes: int) -> bytes:
        raise AssertionError("not used")


class TextOnly(FakeCloud):
    send_media = None  # type: ignore[assignment]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "delivery.sqlite3")
    await store.open()
    await store.commit_turn(
        TurnCommit(
            turn_id="t1",
            contact_key=KEY,
            channel="whatsapp_cloud",
            contact_id=LEAD,
            phone=LEAD,
            name="Maria Souza",
            inbound_ids=[],
            messages=[],
            profile=dict(HOT_LEAD),
            score=80,
            temperature="quente",
            score_reasons=[],
            lead_messages_added=1,
            at=WROTE_AT,
        )
    )
    yield store
    await store.close()


def delivery(store: SqliteStore, channel: FakeCloud, clock: Clock, **kwargs: Any) -> Delivery:
    fetched: list[tuple[str, int]] = kwargs.pop("fetched", [])

    async def attachments(url: str, max_bytes: int) -> tuple[bytes, str, str]:
        fetched.append((url, max_bytes))
        return b"%PDF-1.7 proposta", "application/pdf", "proposta.pdf"

    return Delivery(
        channels={channel.name: channel},  # type: ignore[dict-item]
        session=cast(aiohttp.ClientSession, None),  # the fake channel never uses it
        store=store,
        config=kwargs.pop("config", DeliveryConfig(chatwoot=True)),
        health=ChannelHealth(),
        card=load_handoff_card(),
        clock=clock,
        attachments=attachments,
        notes=load_seller_notes(),
        max_media_bytes=1_000_000,
        **kwargs,
    )


def item(model: Any, key: str = "k1") -> OutboxItem:
    return model.item(order_key="reply:x", idempotency_key=key)


def queued(store: SqliteStore, kind: str) -> list[dict[str, Any]]:
    import json

    rows = store.db.execute("SELECT payload FROM outbox WHERE kind = ?", (kind,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def a_file(**overrides: Any) -> SendMedia:
    values: dict[str, Any] = {
        "channel": "whatsapp_cloud",
        "contact_id": LEAD,
        "contact_key": KEY,
        "url": "https://chatwoot.example.com/rails/active_storage/blobs/redirect/abc/proposta.pdf",
        "file_type": "file",
        "caption": "Segue a proposta, Maria",
    }
    values.update(overrides)
    return SendMedia(**values)


async def test_a_sellers_file_reaches_the_lead_as_a_document_with_its_caption(store: SqliteStore) -> None:
    channel, fetched = FakeCloud(), []
    sender = delivery(store, channel, Clock(WROTE_AT + timedelta(hours=1)), fetched=fetched)
    payload = a_file()
    await sender.send_media(item(payload), payload)
    assert fetched == [(payload.url, 1_000_000)]
    [(media, human)] = channel.media
    assert (media.kind, media.mime, media.file_name, media.caption) == (
        "document",
        "application/pdf",
        "proposta.pdf",
        "Segue a proposta, Maria",
    )
    assert media.data.startswith(b"%PDF") and media.url == payload.url and human is True


async def test_a_channel_that_cannot_send_files_fails_the_item_for_good(store: SqliteStore) -> None:
    sender = delivery(store, TextOnly(), Clock(WROTE_AT + timedelta(hours=1)))
    payload = a_file()
    with pytest.raises(PermanentDeliveryError, match="cannot send files"):
        await sender.send_media(item(payload), payload)


async def test_a_seller_writing_after_24_hours_sends_the_seller_start_template_with_name_and_product(
    store: SqliteStore,
) -> None:
    channel = FakeCloud()
    book = TemplateBook(
        templates={
            "reengage": Template("retomar_conversa", "pt_BR", ("primeiro_nome",)),
            "seller_start": Template("vendedor_retoma", "pt_BR", ("primeiro_nome", "produto")),
        },
        defaults={"primeiro_nome": "cliente", "produto": "nossos produtos"},
    )
    sender = delivery(store, channel, Clock(WROTE_AT + timedelta(hours=30)), templates=book)
    reply = SendText.human_reply(
        channel="whatsapp_cloud", contact_id=LEAD, contact_key=KEY, text="Oi Maria, tudo bem?", message_id=1
    )
    await sender.send_text(item(reply), reply)
    assert channel.texts == []
    [reengage] = queued(store, "reengage")
    assert reengage["purpose"] == "seller_start"
    payload = Reengage.parse(reengage)
    await sender.reengage(item(payload), payload)
    assert channel.templates == [
        {"name": "vendedor_retoma", "language": "pt_BR", "parameters": ["Maria", "FB300"]}
    ]


async def test_the_bots_reply_after_24_hours_uses_the_reengage_template_and_defaults_for_what_is_unknown(
    store: SqliteStore,
) -> None:
    channel = FakeCloud()
    book = TemplateBook(
        templates={"reengage": Template("retomar_conversa", "pt_BR", ("empresa", "primeiro_nome"))},
        defaults={"empresa": "sua empresa"},
    )
    with store.db:
        store.db.execute("UPDATE leads SET profile = '{}', name = NULL")
    sender = delivery(store, channel, Clock(WROTE_AT + timedelta(hours=30)), templates=book)
    payload = Reengage(channel="whatsapp_cloud", contact_id=LEAD, contact_key=KEY)
    await sender.reengage(item(payload), payload)
    assert channel.templates == [
        {"name": "retomar_conversa", "language": "pt_BR", "parameters": ["sua empresa", "primeiro_nome"]}
    ]


async def test_without_a_template_the_seller_is_told_and_no_handoff_is_requested(store: SqliteStore) -> None:
    channel = FakeCloud()
    sender = delivery(store, channel, Clock(WROTE_AT + timedelta(hours=30)))
    payload = Reengage(channel="whatsapp_cloud", contact_id=LEAD, contact_key=KEY, purpose="seller_start")
    await sender.reengage(item(payload), payload)
    assert channel.templates == []
    [note] = queued(store, "chatwoot_note")
    assert "não entregue" in note["note"]
    lead = await store.get_lead(KEY)
    assert lead is not None and lead.handoff_state is None
    assert queued(store, "chatwoot_handoff") == []


async def test_a_file_after_24_hours_is_held_and_the_template_queued(store: SqliteStore) -> None:
    channel, fetched = FakeCloud(), []
    sender = delivery(store, channel, Clock(WROTE_AT + timedelta(hours=30)), fetched=fetched)
    payload = a_file()
    await sender.send_media(item(payload), payload)
    assert channel.media == [] and fetched == []
    assert [r["purpose"] for r in queued(store, "reengage")] == ["seller_start"]


def test_reengage_and_seller_start_of_one_silence_are_separate_items() -> None:
    plain = Reengage(channel="whatsapp_cloud", contact_id=LEAD, contact_key=KEY).to_item(since="x")
    seller = Reengage(
        channel="whatsapp_cloud", contact_id=LEAD, contact_key=KEY, purpose="seller_start"
    ).to_item(since="x")
    assert plain.idempotency_key == f"reengage:{KEY}:x"  # unchanged for items already queued
    assert seller.idempotency_key != plain.idempotency_key
    assert PAYLOADS["send_media"] is SendMedia


@pytest.mark.parametrize(
    ("file_type", "mime", "kind"),
    [
        ("image", "image/jpeg", "image"),
        ("file", "application/pdf", "document"),
        ("file", "image/png", "image"),
        ("audio", "audio/ogg", "audio"),
        ("video", "video/mp4", "video"),
        (None, "video/mp4", "video"),
        ("file", "text/csv", "document"),
    ],
)
def test_chatwoot_file_types_map_to_what_the_channel_sends(
    file_type: str | None, mime: str, kind: str
) -> None:
    assert media_kind(file_type, mime) == kind

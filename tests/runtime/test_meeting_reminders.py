"""Meeting reminders: 24 hours and 1 hour before a booked meeting, one short text to the
lead on their channel, with the time in the lead's own zone; never twice, never for a
cancelled meeting or an opted-out lead; on WhatsApp Cloud with the 24-hour window closed,
the approved meeting_reminder template, or nothing (never a handoff) without one.

The app runs on the test clock (tests/helpers/clock.py); a reminder pass is run by hand
with `MEETING_REMINDERS.run_due()`, as the follow-ups are.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses
from structlog.testing import capture_logs

from channels.base import SentMessage
from core.outbox import Reengage, SendText
from core.records import MeetingRecord, OutboxItem, TurnCommit
from runtime.channel_health import ChannelHealth
from runtime.delivery import Delivery, DeliveryConfig
from runtime.handoff_card import load_handoff_card
from runtime.meeting_reminders import MeetingReminders, load_reminder_texts, render
from runtime.meeting_rules import load_meeting_rules
from runtime.seller_notes import load_seller_notes
from runtime.templates import Template, TemplateBook
from store.sqlite import SqliteStore
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock, sp
from tests.helpers.fake_calendar import FakeGoogleCalendar, service_account_json
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import MEETING_REMINDERS, STORE

# A lead from Manaus (DDD 92): an hour behind Brasília.
LEAD = "5592987654321"
KEY = f"whatsapp:{LEAD}"
FIRST_REPLY = "Oi Maria! Como posso ajudar?"
# Thursday 15:00 in São Paulo; the test clock starts on Wednesday 10:30.
STARTS = sp(2026, 12, 3, 15, 0)
MEET = "https://meet.google.com/abc-defg-hij"


def meeting(**changes: Any) -> MeetingRecord:
    values: dict[str, Any] = {
        "event_id": "reuniao0001",
        "contact_key": KEY,
        "seller_key": "exemplo-ana",
        "calendar_id": "ana@exemplo.com.br",
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(minutes=30),
        "meet_url": MEET,
    }
    values.update(changes)
    return MeetingRecord(**values)


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Any,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    http_mock: aioresponses,
) -> TestClient:
    FakeGoogleCalendar(http_mock)
    settings = fast_settings(
        tmp_path,
        meetings_enabled=True,
        google_service_account_json=service_account_json(),
        follow_up_poll_s=3600.0,  # passes are run by hand
    )
    client: TestClient = await aiohttp_client(create_app(settings, clock=clock))
    return client


async def say(bot: TestClient, message_id: str, text: str) -> None:
    response = await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id=message_id, phone=LEAD, text=text)
    )
    assert response.status == 200
    await settled(bot)


async def run_due(bot: TestClient) -> list[str]:
    outcomes = await bot.app[MEETING_REMINDERS].run_due()
    await settled(bot)
    return outcomes


async def booked(bot: TestClient, openai_fake: FakeOpenAI, **changes: Any) -> None:
    """Maria writes once (the lead exists), then a meeting is on the seller's calendar."""
    openai_fake.then(reply=FIRST_REPLY)
    await say(bot, "3EB0REMIND0001", "Oi, quero saber da moedora")
    assert await bot.app[STORE].save_meeting(meeting(**changes))


async def test_the_lead_is_reminded_a_day_and_an_hour_before_in_their_own_time_and_never_twice(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await booked(bot, openai_fake)
    assert await run_due(bot) == []  # 28 h before: nothing yet

    clock.advance(hours=4, minutes=30)  # Wednesday 15:00: a day before
    assert await run_due(bot) == ["queued"]
    assert zapi_fake.texts_to(LEAD)[1:] == [
        "Oi Maria! Passando para lembrar da nossa reunião amanhã às 14h (15h de Brasília),"
        f" com Ana Ribeiro (exemplo).\nLink da chamada: {MEET}"
    ]
    assert await run_due(bot) == []
    clock.advance(hours=2)
    assert await run_due(bot) == []

    clock.advance(hours=21)  # Thursday 14:00: an hour before
    assert await run_due(bot) == ["queued"]
    assert zapi_fake.texts_to(LEAD)[2:] == [
        "Oi Maria! Nossa reunião com Ana Ribeiro (exemplo) começa daqui a pouco, hoje às 14h"
        f" (15h de Brasília).\nLink da chamada: {MEET}"
    ]
    clock.advance(minutes=59)
    assert await run_due(bot) == []
    assert len(zapi_fake.texts_to(LEAD)) == 3
    [stored] = await bot.app[STORE].lead_meetings(KEY)
    assert set(stored.reminders_sent) == {"24h", "1h"}


async def test_a_cancelled_meeting_gets_no_reminder(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await booked(bot, openai_fake)
    assert await bot.app[STORE].save_meeting(meeting(status="cancelled"))

    for hours in (4.5, 23):
        clock.advance(hours=hours)
        assert await run_due(bot) == []
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY]


async def test_an_opted_out_lead_gets_no_reminder_and_it_does_not_come_back(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await booked(bot, openai_fake)
    await say(bot, "3EB0REMIND0002", "SAIR")
    sent_before = zapi_fake.texts_to(LEAD)

    clock.advance(hours=4, minutes=30)
    assert await run_due(bot) == ["opted_out"]
    assert await run_due(bot) == []
    clock.advance(hours=23)
    assert await run_due(bot) == ["opted_out"]
    assert zapi_fake.texts_to(LEAD) == sent_before


async def test_a_meeting_booked_less_than_a_day_ahead_gets_only_the_hour_reminder_without_a_link(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    # Wednesday 16:00: booked five and a half hours ahead, no Meet link.
    soon = sp(2026, 12, 2, 16, 0)
    await booked(bot, openai_fake, starts_at=soon, ends_at=soon + timedelta(minutes=30), meet_url=None)
    # The "24h" reminder is long past: not sent right after the confirmation.
    assert await run_due(bot) == ["late"]
    assert zapi_fake.texts_to(LEAD) == [FIRST_REPLY]

    clock.advance(hours=4, minutes=30)  # 15:00
    assert await run_due(bot) == ["queued"]
    assert zapi_fake.texts_to(LEAD)[1:] == [
        "Oi Maria! Nossa reunião com Ana Ribeiro (exemplo) começa daqui a pouco, hoje às 15h"
        " (16h de Brasília)."
    ]


# --- WhatsApp Cloud: the 24-hour window ------------------------------------------------
CLOUD_LEAD = "5511987650001"
CLOUD_KEY = f"whatsapp_cloud:{CLOUD_LEAD}"
WROTE_AT = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
CLOUD_STARTS = WROTE_AT + timedelta(days=3)
TEMPLATE = Template("lembrete_reuniao", "pt_BR", ("primeiro_nome",))


class FakeCloud:
    """A 24-hour-window channel that records what it was asked to send."""

    name = "whatsapp_cloud"
    window_hours: int | None = 24
    rate_per_s = 1000.0
    configured = True
    missing_webhook_secret = None

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.templates: list[dict[str, Any]] = []

    async def send_text(self, session: Any, contact_id: str, text: str, **_: Any) -> SentMessage:
        self.texts.append(text)
        return SentMessage("wamid.text")

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


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "reminders.sqlite3")
    await store.open()
    await store.commit_turn(
        TurnCommit(
            turn_id="t1",
            contact_key=CLOUD_KEY,
            channel="whatsapp_cloud",
            contact_id=CLOUD_LEAD,
            phone=CLOUD_LEAD,
            name="Maria Souza",
            inbound_ids=[],
            messages=[],
            profile={"name": "Maria Souza"},
            score=40,
            temperature="morno",
            score_reasons=[],
            lead_messages_added=1,
            at=WROTE_AT,
        )
    )
    cloud_meeting = meeting(
        contact_key=CLOUD_KEY, starts_at=CLOUD_STARTS, ends_at=CLOUD_STARTS + timedelta(minutes=30)
    )
    assert await store.save_meeting(cloud_meeting)
    yield store
    await store.close()


def outbox(store: SqliteStore, kind: str) -> list[OutboxItem]:
    rows = store.db.execute(
        "SELECT kind, order_key, idempotency_key, payload FROM outbox WHERE kind = ? ORDER BY id", (kind,)
    ).fetchall()
    return [OutboxItem(kind=k, order_key=o, idempotency_key=i, payload=json.loads(p)) for k, o, i, p in rows]


def delivery(store: SqliteStore, channel: FakeCloud, clock: Clock, book: TemplateBook) -> Delivery:
    return Delivery(
        channels={channel.name: channel},  # type: ignore[dict-item]
        session=cast(aiohttp.ClientSession, None),  # the fake channel never uses it
        store=store,
        config=DeliveryConfig(chatwoot=True),
        health=ChannelHealth(),
        card=load_handoff_card(),
        clock=clock,
        templates=book,
        notes=load_seller_notes(),
    )


def reminders(store: SqliteStore, clock: Clock) -> MeetingReminders:
    from agent.business_hours import load_business_hours

    return MeetingReminders(
        store,
        texts=load_reminder_texts(),
        hours=load_business_hours(),
        clock=clock,
        poll_s=3600,
        seller_names={"exemplo-ana": "Ana"},
    )


async def deliver_reminders(store: SqliteStore, channel: FakeCloud, clock: Clock, book: TemplateBook) -> None:
    """Every queued reminder through the delivery, then the re-engagements it queued."""
    sender = delivery(store, channel, clock, book)
    for item in outbox(store, "send_text"):
        await sender.send_text(item, SendText.parse(item.payload))
    for item in outbox(store, "reengage"):
        await sender.reengage(item, Reengage.parse(item.payload))


async def test_on_whatsapp_cloud_with_the_window_closed_each_reminder_is_the_approved_template(
    store: SqliteStore,
) -> None:
    channel = FakeCloud()
    clock = Clock(CLOUD_STARTS - timedelta(hours=24))  # two days after she last wrote
    book = TemplateBook(
        templates={"reengage": Template("retomar_conversa", "pt_BR"), "meeting_reminder": TEMPLATE},
        defaults={"primeiro_nome": "cliente"},
    )
    assert await reminders(store, clock).run_due() == ["queued"]
    clock.now = CLOUD_STARTS - timedelta(hours=1)
    assert await reminders(store, clock).run_due() == ["queued"]
    [first, second] = outbox(store, "send_text")
    assert SendText.parse(first.payload).purpose == "meeting_reminder"
    assert (first.idempotency_key, second.idempotency_key) == (
        f"reminder:reuniao0001:{CLOUD_STARTS:%Y%m%dT%H%MZ}:24h",
        f"reminder:reuniao0001:{CLOUD_STARTS:%Y%m%dT%H%MZ}:1h",
    )

    await deliver_reminders(store, channel, clock, book)

    assert channel.texts == []
    # One template per reminder, though both fell in one silence of the lead.
    assert [Reengage.parse(i.payload).purpose for i in outbox(store, "reengage")] == ["meeting_reminder"] * 2
    assert (
        channel.templates == [{"name": "lembrete_reuniao", "language": "pt_BR", "parameters": ["Maria"]}] * 2
    )
    lead = await store.get_lead(CLOUD_KEY)
    assert lead is not None and not lead.handoff_state


async def test_a_reminder_template_can_say_when_and_with_whom(store: SqliteStore) -> None:
    # Approved as "Oi {{1}}, lembrando da nossa reunião {{2}} com {{3}}."
    template = Template("lembrete_reuniao_horario", "pt_BR", ("primeiro_nome", "quando", "vendedor"))
    channel = FakeCloud()
    clock = Clock(CLOUD_STARTS - timedelta(hours=24))
    assert await reminders(store, clock).run_due() == ["queued"]

    await deliver_reminders(store, channel, clock, TemplateBook(templates={"meeting_reminder": template}))

    [sent] = channel.templates
    name, when, seller = sent["parameters"]
    assert (name, seller) == ("Maria", "Ana")
    # The time on the lead's clock (São Paulo here) with its day named, not "amanhã": a
    # template may go out later than the text would have.
    assert when == "sexta-feira (04/12) às 11h"


async def test_without_a_meeting_reminder_template_nothing_is_sent_and_nobody_is_handed_the_lead(
    store: SqliteStore,
) -> None:
    channel = FakeCloud()
    clock = Clock(CLOUD_STARTS - timedelta(hours=24))
    # [reengage]'s "can I still help?" is no reminder: it is not borrowed.
    book = TemplateBook(templates={"reengage": Template("retomar_conversa", "pt_BR")})
    assert await reminders(store, clock).run_due() == ["queued"]

    with capture_logs() as logs:
        await deliver_reminders(store, channel, clock, book)

    assert channel.texts == [] and channel.templates == []
    lead = await store.get_lead(CLOUD_KEY)
    assert lead is not None and not lead.handoff_state
    assert outbox(store, "chatwoot_handoff") == []
    [dropped] = [e for e in logs if e["event"] == "reply_outside_window"]
    assert "no meeting_reminder template: reminder dropped" in dropped["outcome"]


async def test_on_whatsapp_cloud_within_the_window_the_reminder_is_plain_text(store: SqliteStore) -> None:
    channel = FakeCloud()
    clock = Clock(CLOUD_STARTS - timedelta(hours=24))
    await store.commit_turn(
        TurnCommit(
            turn_id="t2",
            contact_key=CLOUD_KEY,
            channel="whatsapp_cloud",
            contact_id=CLOUD_LEAD,
            phone=CLOUD_LEAD,
            name="Maria Souza",
            inbound_ids=[],
            messages=[],
            profile={"name": "Maria Souza"},
            score=40,
            temperature="morno",
            score_reasons=[],
            lead_messages_added=1,
            at=clock.now - timedelta(hours=2),
        )
    )
    assert await reminders(store, clock).run_due() == ["queued"]

    await deliver_reminders(store, channel, clock, TemplateBook(templates={"meeting_reminder": TEMPLATE}))

    assert channel.templates == []
    [text] = channel.texts
    assert text.startswith("Oi Maria! Passando para lembrar da nossa reunião amanhã às 11h, com Ana.")


def test_the_texts_ship_in_meetings_toml_and_the_rules_ignore_them() -> None:
    texts = load_reminder_texts()
    assert set(texts) == {"24h", "1h"}
    load_meeting_rules()  # [lembretes] is no rule: the shipped file still loads


def test_an_unknown_name_and_a_missing_link_leave_no_gaps() -> None:
    inline = "Oi {nome}! Lembrete da reunião {quando} com {vendedor}. Link: {link}"
    assert render(inline, nome="", quando="amanhã às 9h", vendedor="Ana", link=None) == (
        "Oi! Lembrete da reunião amanhã às 9h com Ana."
    )
    own_line = "Oi {nome}! Reunião {quando}.\nLink: {link}\nAté lá!"
    assert render(own_line, nome="", quando="hoje às 9h", vendedor="Ana", link=None) == (
        "Oi! Reunião hoje às 9h.\nAté lá!"
    )
    assert render(own_line, nome="Maria", quando="hoje às 9h", vendedor="Ana", link="https://x.y/z") == (
        "Oi Maria! Reunião hoje às 9h.\nLink: https://x.y/z\nAté lá!"
    )


async def test_a_moved_meeting_is_reminded_again_at_its_new_time(store: SqliteStore) -> None:
    clock = Clock(CLOUD_STARTS - timedelta(hours=24))
    assert await reminders(store, clock).run_due() == ["queued"]
    # The lead moves it two days on: same event, new start; the store forgets the reminders.
    later = CLOUD_STARTS + timedelta(days=2)
    moved = meeting(contact_key=CLOUD_KEY, starts_at=later, ends_at=later + timedelta(minutes=30))
    assert await store.save_meeting(moved)
    clock.now = later - timedelta(hours=24)
    assert await reminders(store, clock).run_due() == ["queued"]

    # Before, both reminders had one key and the second was silently taken for the first.
    first, second = outbox(store, "send_text")
    assert first.idempotency_key != second.idempotency_key

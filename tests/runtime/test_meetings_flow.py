"""A lead books a meeting with the right seller, on a Google Calendar faked at the HTTP
boundary: offered real free times, booked before anyone says "confirmed", never twice."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses
from pydantic import SecretStr

from agent.business_hours import load_business_hours
from core.errors import StoreUnavailable
from core.lead import LeadProfile
from integrations.google_calendar import GoogleCalendarClient, GoogleCalendarConfig, GoogleCalendarUnavailable
from runtime.meeting_rules import load_meeting_rules
from runtime.meetings import MeetingDesk, MeetingTexts
from runtime.sellers import Sellers, load_sellers
from store.sqlite import SqliteStore
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fake_calendar import FakeGoogleCalendar, service_account_json
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import STORE

LEAD = "5511987654321"
KEY = f"whatsapp:{LEAD}"
BOOK_2 = [{"tool": "book_meeting", "option": 2}]
SELLERS = {s.key: s.name for s in load_sellers()}


@pytest.fixture
def calendar(http_mock: aioresponses) -> FakeGoogleCalendar:
    return FakeGoogleCalendar(http_mock)


@pytest.fixture
async def bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Any,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    calendar: FakeGoogleCalendar,
) -> TestClient:
    settings = fast_settings(
        tmp_path, meetings_enabled=True, google_service_account_json=service_account_json()
    )
    client: TestClient = await aiohttp_client(create_app(settings, clock=clock))
    return client


async def say(bot: TestClient, message_id: str, text: str) -> None:
    response = await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id=message_id, phone=LEAD, text=text)
    )
    assert response.status == 200
    await settled(bot)


def offered(openai_fake: FakeOpenAI, call: int) -> list[str]:
    """The options the model was given in that call (the system note before the lead's words)."""
    notes = [m["content"] for m in openai_fake.chat_requests[call]["messages"] if m["role"] == "system"]
    return re.findall(r"^\[\d\] (.+)$", "\n".join(notes), flags=re.MULTILINE)


async def test_a_lead_who_asks_to_meet_is_offered_free_times_and_booked_on_the_one_chosen(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, calendar: FakeGoogleCalendar
) -> None:
    openai_fake.then(reply="Claro! Tenho estes horários: ...").then(reply="Perfeito!", tools=BOOK_2)
    await say(bot, "3EB0MEET0001", "Oi, quero agendar uma reunião para ver a moedora")
    options = offered(openai_fake, 0)
    assert len(options) == 3 and calendar.inserts == []

    await say(bot, "3EB0MEET0002", "Pode ser a segunda opção")

    [event] = calendar.inserts
    assert offered(openai_fake, 1) == options  # the same numbers the lead chose from
    replies = zapi_fake.texts_to(LEAD)
    assert replies[-1].startswith(f"Reunião confirmada: {options[1]}")
    assert "meet.google.com" in replies[-1]
    [meeting] = await bot.app[STORE].lead_meetings(KEY)
    assert meeting.event_id == event["id"] and meeting.status == "scheduled"


async def test_a_slot_taken_meanwhile_gets_an_apology_and_fresh_times_never_a_confirmation(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, calendar: FakeGoogleCalendar
) -> None:
    openai_fake.then(reply="Tenho estes horários.").then(reply="Perfeito, agendado!", tools=BOOK_2)
    await say(bot, "3EB0MEET0011", "Quero marcar uma reunião")
    options = offered(openai_fake, 0)

    # Someone books the chosen time on the seller's calendar before the lead answers.
    calendar.taken_next = [(s, e) for s, e in _slot_span(bot, options[1])]
    await say(bot, "3EB0MEET0012", "A 2")

    assert calendar.inserts == []
    last = zapi_fake.texts_to(LEAD)[-1]
    assert last.startswith("Poxa, esse horário acabou de ser ocupado.")
    assert "agendado" not in last and options[1] not in last
    assert await bot.app[STORE].lead_meetings(KEY) == []


async def test_a_calendar_outage_mid_booking_waits_and_then_confirms_once(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, calendar: FakeGoogleCalendar
) -> None:
    openai_fake.then(reply="Tenho estes horários.")
    openai_fake.then(reply="Perfeito!", tools=BOOK_2).then(reply="Perfeito!", tools=BOOK_2)
    await say(bot, "3EB0MEET0021", "Vamos agendar uma reunião?")
    calendar.insert_script.extend([503])

    await say(bot, "3EB0MEET0022", "A segunda")

    assert len(calendar.inserts) == 1
    confirmations = [t for t in zapi_fake.texts_to(LEAD) if t.startswith("Reunião confirmada")]
    assert len(confirmations) == 1


async def test_a_crash_between_the_booking_and_the_commit_never_books_twice(
    bot: TestClient,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    calendar: FakeGoogleCalendar,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    openai_fake.then(reply="Tenho estes horários.")
    openai_fake.then(reply="Perfeito!", tools=BOOK_2).then(reply="Perfeito!", tools=BOOK_2)
    await say(bot, "3EB0MEET0031", "Quero agendar uma reunião")
    store = bot.app[STORE]
    real_save = store.save_meeting
    failures = [StoreUnavailable("disk I/O error")]

    async def save_once_failing(meeting: Any) -> bool:
        if failures:
            raise failures.pop()
        return await real_save(meeting)

    monkeypatch.setattr(store, "save_meeting", save_once_failing)
    await say(bot, "3EB0MEET0032", "A 2")

    assert len(calendar.inserts) == 1  # the retried turn found its own event
    assert len(await store.lead_meetings(KEY)) == 1
    confirmations = [t for t in zapi_fake.texts_to(LEAD) if t.startswith("Reunião confirmada")]
    assert len(confirmations) == 1


async def book_option_2(bot: TestClient, openai_fake: FakeOpenAI, prefix: str) -> list[str]:
    openai_fake.then(reply="Tenho estes horários.").then(reply="Perfeito!", tools=BOOK_2)
    await say(bot, f"{prefix}1", "Quero agendar uma reunião")
    options = offered(openai_fake, len(openai_fake.chat_requests) - 1)
    await say(bot, f"{prefix}2", "A 2")
    return options


async def test_the_lead_moves_the_meeting_by_conversation_and_the_calendar_moves_first(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, calendar: FakeGoogleCalendar
) -> None:
    await book_option_2(bot, openai_fake, "3EB0MOVE000")
    [before] = await bot.app[STORE].lead_meetings(KEY)

    openai_fake.then(reply="Claro, posso remarcar. Tenho estes horários.")
    await say(bot, "3EB0MOVE0003", "Preciso remarcar, pode ser outro dia?")
    system = "\n".join(
        m["content"] for m in openai_fake.chat_requests[-1]["messages"] if m["role"] == "system"
    )
    assert "O lead já tem reunião marcada" in system
    new_options = offered(openai_fake, len(openai_fake.chat_requests) - 1)
    assert new_options

    openai_fake.then(reply="Combinado!", tools=[{"tool": "reschedule_meeting", "option": 1}])
    await say(bot, "3EB0MOVE0004", "Pode ser a 1")

    [patch] = calendar.patches
    [after] = await bot.app[STORE].lead_meetings(KEY)
    assert after.event_id == before.event_id and after.starts_at != before.starts_at
    assert datetime.fromisoformat(patch["start"]["dateTime"]) == after.starts_at
    seller = SELLERS[after.seller_key]
    assert zapi_fake.texts_to(LEAD)[-1].endswith(
        f"Pronto, reunião remarcada para {new_options[0]}, com {seller}. O convite foi atualizado."
    )
    assert len(calendar.inserts) == 1  # moved, never booked a second time


async def test_the_lead_cancels_the_meeting_by_conversation(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, calendar: FakeGoogleCalendar
) -> None:
    await book_option_2(bot, openai_fake, "3EB0CANC000")
    [booked] = await bot.app[STORE].lead_meetings(KEY)

    openai_fake.then(reply="Sem problemas.", tools=[{"tool": "cancel_meeting", "confirmed": True}])
    await say(bot, "3EB0CANC0003", "Preciso desmarcar a reunião")

    assert calendar.deleted == [booked.event_id]
    [after] = await bot.app[STORE].lead_meetings(KEY)
    assert after.status == "cancelled"
    assert zapi_fake.texts_to(LEAD)[-1].endswith(
        "Reunião desmarcada. Quando quiser marcar de novo, é só me chamar por aqui."
    )


def _slot_span(bot: TestClient, label: str) -> list[tuple[Any, Any]]:
    """The offered slot with that label, from the runner's meeting desk cache."""
    from web.keys import RUNNER

    desk = bot.app[RUNNER].turn.meetings
    assert desk is not None
    offer = desk._offers[KEY]
    [slot] = [s for s in offer.slots if s.label == label]
    return [(slot.start, slot.end)]


def one_seller_desk(store: SqliteStore, session: aiohttp.ClientSession, clock: TestClock) -> MeetingDesk:
    """A bot instance's meeting desk, with the first example seller only."""
    config = GoogleCalendarConfig(service_account_info=json.loads(service_account_json()))
    return MeetingDesk(
        store=store,
        calendar=GoogleCalendarClient(config, session),
        config=config,
        sellers=Sellers([next(iter(load_sellers()))]),
        rules=load_meeting_rules(),
        hours=load_business_hours(),
        texts=MeetingTexts.load(),
        clock=clock,
    )


TWO_LEADS = ("whatsapp:5511900000001", "whatsapp:5511900000002")


@pytest.mark.parametrize("instances", [1, 2], ids=["one-instance", "two-instances"])
async def test_two_leads_choosing_the_same_time_at_once_book_it_once(
    tmp_path: Any, clock: TestClock, calendar: FakeGoogleCalendar, instances: int
) -> None:
    # Two instances share the store (Supabase, or the web and worker processes): each
    # has its own desk, so only the lease in the store keeps them from both booking.
    store = SqliteStore(tmp_path / "race.sqlite3")
    await store.open()
    async with aiohttp.ClientSession() as session:
        desks = [one_seller_desk(store, session, clock) for _ in range(instances)] * (3 - instances)
        profile = LeadProfile(name="Joana")
        offers = [
            await desk.offer(key, None, profile, ["quero agendar uma reunião"])
            for desk, key in zip(desks, TWO_LEADS, strict=True)
        ]
        assert offers[0] is not None and offers[1] is not None
        assert offers[0].slots[1] == offers[1].slots[1]  # both were offered the same time

        outcomes = await asyncio.gather(
            *(
                desk.book(key, None, profile, offer, 2)
                for desk, key, offer in zip(desks, TWO_LEADS, offers, strict=True)
            )
        )
    await store.close()

    assert sorted(type(o).__name__ for o in outcomes) == ["Booked", "Taken"]
    assert len(calendar.inserts) == 1


async def test_a_calendar_another_instance_keeps_defers_the_booking_and_takes_nothing(
    tmp_path: Any, clock: TestClock, calendar: FakeGoogleCalendar, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime import meetings

    monkeypatch.setattr(meetings, "CALENDAR_WAIT_S", 0.2)
    store = SqliteStore(tmp_path / "held.sqlite3")
    await store.open()
    async with aiohttp.ClientSession() as session:
        desk = one_seller_desk(store, session, clock)
        profile = LeadProfile(name="Joana")
        offer = await desk.offer(TWO_LEADS[0], None, profile, ["quero agendar uma reunião"])
        assert offer is not None
        calendar_id = offer.seller.calendar_id or offer.seller.email
        # Another instance holds the calendar (and does not let go within the looks).
        assert await store.claim_contact(f"calendar:{calendar_id}", owner="other-instance", lease_s=60)
        with pytest.raises(GoogleCalendarUnavailable):
            await desk.book(TWO_LEADS[0], None, profile, offer, 2)
        assert calendar.inserts == []
        # Once it lets go, the same booking goes through.
        await store.release_contact(f"calendar:{calendar_id}", owner="other-instance")
        booked = await desk.book(TWO_LEADS[0], None, profile, offer, 2)
        assert type(booked).__name__ == "Booked" and len(calendar.inserts) == 1
        # Moving the meeting takes a slot too: the same rule.
        moving = await desk.offer(TWO_LEADS[0], None, profile, ["quero remarcar"])
        assert moving is not None and moving.existing is not None
        assert await store.claim_contact(f"calendar:{calendar_id}", owner="other-instance", lease_s=60)
        with pytest.raises(GoogleCalendarUnavailable):
            await desk.move(TWO_LEADS[0], None, profile, moving, 1)
        assert calendar.patches == []
    await store.close()


def test_the_meeting_note_assigns_the_seller_and_a_cancellation_does_not() -> None:
    from types import SimpleNamespace

    from core.records import MeetingRecord
    from runtime.meetings import Booked, meeting_note

    start = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    meeting = MeetingRecord(
        event_id="abc123def456",
        contact_key=KEY,
        seller_key="exemplo-ana",
        calendar_id="ana@x",
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
    )
    commit = SimpleNamespace(contact_key=KEY)
    [booked] = meeting_note(commit, Booked(meeting, "ok", "📅 nota"), assignee_id=12)  # type: ignore[arg-type]
    assert booked.payload["assignee_id"] == 12 and booked.payload["labels"] == ["reuniao-agendada"]
    cancelled = replace(meeting, status="cancelled")
    [note] = meeting_note(commit, Booked(cancelled, "ok", "desmarcada"), assignee_id=12)  # type: ignore[arg-type]
    assert "assignee_id" not in note.payload and note.payload["labels"] == []
    assert note.idempotency_key != booked.idempotency_key


async def test_without_calendar_access_the_sellers_booking_link_is_given_to_the_model(
    tmp_path: Any, clock: TestClock, calendar: FakeGoogleCalendar
) -> None:
    store = SqliteStore(tmp_path / "link.sqlite3")
    await store.open()
    seller = next(iter(load_sellers())).model_copy(update={"booking_url": "https://cal.exemplo.com.br/ana"})
    config = GoogleCalendarConfig()  # no service account: the calendar cannot be read
    async with aiohttp.ClientSession() as session:
        desk = MeetingDesk(
            store=store,
            calendar=GoogleCalendarClient(config, session),
            config=config,
            sellers=Sellers([seller]),
            rules=load_meeting_rules(),
            hours=load_business_hours(),
            texts=MeetingTexts.load(),
            clock=clock,
        )
        offer = await desk.offer(KEY, None, LeadProfile(), ["dá para marcar uma reunião?"])
    await store.close()

    assert offer is not None and offer.slots == ()
    assert "https://cal.exemplo.com.br/ana" in offer.note and seller.name in offer.note
    assert calendar.freebusy_calls == 0


async def test_a_handed_off_lead_goes_to_the_routed_seller_in_chatwoot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Any,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    calendar: FakeGoogleCalendar,
) -> None:
    settings = fast_settings(
        tmp_path,
        meetings_enabled=True,
        google_service_account_json=service_account_json(),
        chatwoot_api_url="https://chat.example.com",
        chatwoot_api_token="cw-token",
        chatwoot_account_id="7",
        chatwoot_inbox_id="5",
    )
    bot: TestClient = await aiohttp_client(create_app(settings, clock=clock))
    await bot.app[STORE].assign_seller(KEY, ["exemplo-carlos"])
    handoff = [{"tool": "handoff_to_human", "reason": "pediu_humano", "summary": "Quer falar com alguém."}]
    openai_fake.then(reply="Vou chamar nosso time.", tools=handoff)

    response = await bot.post(
        "/webhooks/zapi",
        json=zapi_message(message_id="3EB0HAND0001", phone=LEAD, text="Quero falar com um vendedor"),
    )
    assert response.status == 200

    async def handoff_queued() -> bool:
        return bool(await bot.app[STORE].list_outbox(kind="chatwoot_handoff"))

    await eventually(handoff_queued)
    [item] = await bot.app[STORE].list_outbox(kind="chatwoot_handoff")
    carlos = next(s for s in load_sellers() if s.key == "exemplo-carlos")
    assert item.payload["assignee_id"] == carlos.chatwoot_agent_id


async def test_a_seller_who_connected_their_google_account_is_read_with_their_refresh_token(
    tmp_path: Any, clock: TestClock, calendar: FakeGoogleCalendar
) -> None:
    store = SqliteStore(tmp_path / "oauth.sqlite3")
    await store.open()
    seller = next(iter(load_sellers()))
    config = GoogleCalendarConfig(
        oauth_client_id="123.apps.googleusercontent.com", oauth_client_secret=SecretStr("cs")
    )
    async with aiohttp.ClientSession() as session:
        desk = MeetingDesk(
            store=store,
            calendar=GoogleCalendarClient(config, session),
            config=config,
            sellers=Sellers([seller]),
            rules=load_meeting_rules(),
            hours=load_business_hours(),
            texts=MeetingTexts.load(),
            clock=clock,
            refresh_tokens={seller.key: SecretStr("1//seller-refresh-token")},
        )
        offer = await desk.offer(KEY, None, LeadProfile(), ["quero marcar uma reunião"])
    await store.close()

    assert offer is not None and offer.slots
    [token] = calendar.token_requests
    assert token["grant_type"] == "refresh_token" and token["refresh_token"] == "1//seller-refresh-token"


async def test_a_booking_done_on_the_calendar_stands_when_letting_go_of_the_calendar_fails(
    tmp_path: Any, clock: TestClock, calendar: FakeGoogleCalendar, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The invitation went out: a store hiccup while releasing the lease (it expires by
    # itself) must not turn the booking into a failed turn and a second booking.
    store = SqliteStore(tmp_path / "release.sqlite3")
    await store.open()

    async def store_down(*_: Any, **__: Any) -> None:
        raise StoreUnavailable("sqlite busy: database is locked")

    async with aiohttp.ClientSession() as session:
        desk = one_seller_desk(store, session, clock)
        profile = LeadProfile(name="Joana")
        offer = await desk.offer(TWO_LEADS[0], None, profile, ["quero agendar uma reunião"])
        assert offer is not None
        monkeypatch.setattr(store, "release_contact", store_down)
        booked = await desk.book(TWO_LEADS[0], None, profile, offer, 2)
    await store.close()

    assert type(booked).__name__ == "Booked" and len(calendar.inserts) == 1

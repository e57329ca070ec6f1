"""A lead who filled a form hears from the bot once, on WhatsApp, already known.

The form enters as the edges store it (web/form_intake.py); the app runs on the test
clock with Z-API and OpenAI faked at the HTTP boundary.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses

from core.clock import utc_now
from core.form_inbound import form_inbound
from core.forms import FormAnswer, FormAttribution, FormSource, FormSubmission
from core.records import InboundRecord
from core.settings import Settings
from runtime.commit import CommitBuilder, CommitConfig
from runtime.handoff_card import load_handoff_card
from runtime.seller_notes import load_seller_notes
from store.timestamps import iso
from tests.conftest import ZAPI_INSTANCE, ZAPI_TOKEN, fast_settings, zapi_message
from tests.helpers.clock import WEEKDAY_3AM, TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually, load_fixture
from tests.helpers.settle import settled
from web.app import create_app
from web.form_intake import store_form_lead
from web.keys import DISPATCHER, RUNNER, STORE

PHONE = "5511987654321"
KEY = f"whatsapp:{PHONE}"
EXISTS_URL = re.compile(
    rf"https://api\.z-api\.io/instances/{ZAPI_INSTANCE}/token/{ZAPI_TOKEN}/phone-exists/\d+"
)


def a_form(clock: TestClock, *, ident: str = "lead-1", age: timedelta = timedelta(0)) -> FormSubmission:
    return FormSubmission(
        source=FormSource.META_LEAD_ADS,
        external_id=ident,
        submitted_at=clock() - age,
        phone="+55 (11) 98765-4321",
        profile={
            "name": "Joana Prado",
            "company": "Frigorífico Serra Azul",
            "city": "Campinas",
            "state": "SP",
        },
        answers=[FormAnswer(question="Qual equipamento procura?", answer="Moedor industrial")],
        attribution=FormAttribution(
            leadgen_id="444444444444", form_id="1234567890", ad_id="6789", campaign_name="Black Friday"
        ),
    )


def on_whatsapp(mock: aioresponses, exists: bool) -> list[str]:
    asked: list[str] = []

    def answer(url: Any, **_kwargs: Any) -> Any:
        from aioresponses import CallbackResult

        asked.append(str(url))
        return CallbackResult(status=200, payload={"exists": exists})

    mock.get(EXISTS_URL, callback=answer, repeat=True)
    return asked


@pytest.fixture
def make_bot(
    aiohttp_client: Callable[..., Any], tmp_path: Any, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> Callable[..., Any]:
    async def make(clock: TestClock, **overrides: Any) -> TestClient:
        settings: Settings = fast_settings(tmp_path, **overrides)
        return await aiohttp_client(create_app(settings, clock=clock))

    return make


@pytest.fixture
async def bot(make_bot: Callable[..., Any], clock: TestClock) -> AsyncIterator[TestClient]:
    yield await make_bot(clock)


async def test_a_fresh_form_gets_one_first_message_written_from_its_answers(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, http_mock: aioresponses
) -> None:
    asked = on_whatsapp(http_mock, True)
    openai_fake.then(reply="Oi Joana! Recebi seu cadastro sobre o moedor industrial. Quantos kg por dia?")

    stored = await store_form_lead(bot.app, a_form(clock))
    await settled(bot)

    assert stored.lead_id == KEY and not stored.duplicate
    assert zapi_fake.texts_to(PHONE) == [
        "Oi Joana! Recebi seu cadastro sobre o moedor industrial. Quantos kg por dia?"
    ]
    assert len(asked) == 1  # the number was checked before the first message
    request = openai_fake.chat_requests[0]["messages"]
    form_text = "\n".join(m["content"] for m in request if m["role"] == "user")
    assert "Qual equipamento procura?: Moedor industrial" in form_text
    instruction = request[-1]
    assert instruction["role"] == "system" and "PRIMEIRA mensagem" in instruction["content"]
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None
    assert lead.profile["company"] == "Frigorífico Serra Azul" and lead.profile["state"] == "SP"
    # The source of each answer is the form, so a seller can see where it came from.
    assert lead.profile["provenance"]["company"]["message_id"] == "form:meta_lead_ads:lead-1"
    # The form is not the lead writing: no 24-hour window opened, no message counted.
    assert lead.last_inbound_at is None and lead.lead_message_count == 0
    assert lead.referral is not None and lead.referral["leadgen_id"] == "444444444444"


async def test_the_same_form_twice_is_one_lead_and_one_message(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, http_mock: aioresponses
) -> None:
    on_whatsapp(http_mock, True)
    await store_form_lead(bot.app, a_form(clock))
    await settled(bot)
    again = await store_form_lead(bot.app, a_form(clock))
    await settled(bot)

    assert again.duplicate and again.lead_id == KEY
    assert openai_fake.chat_calls == 1
    assert len(zapi_fake.texts_to(PHONE)) == 1


async def test_the_model_sees_the_form_answers_as_known_data(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, http_mock: aioresponses
) -> None:
    on_whatsapp(http_mock, True)
    await store_form_lead(bot.app, a_form(clock))
    await settled(bot)

    system = "\n".join(
        m["content"] for m in openai_fake.chat_requests[0]["messages"] if m["role"] == "system"
    )
    # Known data in the prompt's lead card, so the model does not ask for it again.
    assert "Frigorífico Serra Azul" in system and "Campinas" in system


async def test_an_opted_out_number_is_never_contacted(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, http_mock: aioresponses
) -> None:
    on_whatsapp(http_mock, True)
    response = await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id="3EB0OPT0001", phone=PHONE, text="SAIR")
    )
    assert response.status == 200
    await settled(bot)
    sent_before = list(zapi_fake.texts_to(PHONE))
    calls_before = openai_fake.chat_calls

    clock.advance(days=3)
    await store_form_lead(bot.app, a_form(clock))
    await settled(bot)

    assert zapi_fake.texts_to(PHONE) == sent_before
    assert openai_fake.chat_calls == calls_before


async def test_a_lead_already_talking_is_merged_not_greeted_again(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, http_mock: aioresponses
) -> None:
    on_whatsapp(http_mock, True)
    openai_fake.then(reply="Olá! Como posso ajudar?")
    response = await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id="3EB0TALK0001", phone=PHONE, text="Oi, bom dia")
    )
    assert response.status == 200
    await settled(bot)

    clock.advance(hours=1)
    await store_form_lead(bot.app, a_form(clock))
    await settled(bot)

    assert zapi_fake.texts_to(PHONE) == ["Olá! Como posso ajudar?"]
    assert openai_fake.chat_calls == 1
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None and lead.profile["company"] == "Frigorífico Serra Azul"


async def test_a_number_without_whatsapp_goes_to_the_sellers_instead_of_being_retried(
    bot: TestClient, clock: TestClock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, http_mock: aioresponses
) -> None:
    asked = on_whatsapp(http_mock, False)
    openai_fake.then(reply="Oi Joana! Tudo bem?\n\nQuantos kg por dia vocês processam?")

    await store_form_lead(bot.app, a_form(clock))
    await settled(bot)

    assert zapi_fake.texts_to(PHONE) == []
    assert zapi_fake.attempts == 0
    assert len(asked) == 1  # asked once; the second bubble followed the answer
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None
    assert lead.handoff_state == "requested" and lead.handoff_reason == "numero_sem_whatsapp"
    dead = await bot.app[STORE].list_outbox(status="dead")
    assert dead == []  # recorded and handed off, not a failure to retry


async def test_a_stale_form_at_night_waits_for_business_hours(
    make_bot: Callable[..., Any], openai_fake: FakeOpenAI, zapi_fake: FakeZapi, http_mock: aioresponses
) -> None:
    on_whatsapp(http_mock, True)
    clock = TestClock(WEEKDAY_3AM)
    bot = await make_bot(clock)
    openai_fake.then(reply="Oi Joana! Recebemos seu cadastro.")

    await store_form_lead(bot.app, a_form(clock, age=timedelta(hours=5)))

    async def held_for_the_morning() -> bool:
        # A settled state, not a count: the dispatcher tried the item once and put it back.
        items = await bot.app[STORE].list_outbox(kind="send_text")
        return len(items) == 1 and items[0].last_error == "first touch waits for business hours"

    await asyncio.wait_for(bot.app[RUNNER].idle.wait(), timeout=10)
    await eventually(held_for_the_morning)
    [held] = await bot.app[STORE].list_outbox(kind="send_text")
    assert held.status == "pending" and held.attempts == 0 and zapi_fake.attempts == 0
    # 03:00 -> 08:00 on the bot's clock: due five hours after it was held (less the
    # seconds the test took), on the outbox's own clock.
    assert held.next_attempt_at is not None and held.updated_at is not None
    wait = held.next_attempt_at - held.updated_at
    assert timedelta(hours=4, minutes=59) < wait <= timedelta(hours=5)

    # Morning comes on both clocks: the bot's (business hours) and the outbox's (the
    # store's wall clock, which a test cannot move: the wait is cut short instead).
    clock.advance(hours=5, minutes=1)
    store = bot.app[STORE]
    store.db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", (iso(utc_now()), held.id))
    bot.app[DISPATCHER].wake()
    await settled(bot)
    assert zapi_fake.texts_to(PHONE) == ["Oi Joana! Recebemos seu cadastro."]


async def test_a_fresh_form_at_night_is_answered_at_once(
    make_bot: Callable[..., Any], openai_fake: FakeOpenAI, zapi_fake: FakeZapi, http_mock: aioresponses
) -> None:
    on_whatsapp(http_mock, True)
    clock = TestClock(WEEKDAY_3AM)
    bot = await make_bot(clock)
    openai_fake.then(reply="Oi Joana!")

    await store_form_lead(bot.app, a_form(clock, age=timedelta(minutes=2)))
    await settled(bot)

    assert zapi_fake.texts_to(PHONE) == ["Oi Joana!"]


# --- WhatsApp Cloud API: the lead never wrote, only a template reaches them ------------

CLOUD_ID = "106540352242922"
CLOUD_MESSAGES = f"https://graph.facebook.com/v21.0/{CLOUD_ID}/messages"


def cloud(**overrides: Any) -> dict[str, Any]:
    return {
        "lead_first_touch_channel": "whatsapp_cloud",
        "whatsapp_phone_number_id": CLOUD_ID,
        "whatsapp_access_token": "EAAGwhatsapp-token-1234567890",
        "meta_app_secret": "meta-app-secret-1a2b3c4d5e6f7a8b",
        **overrides,
    }


def cloud_sends(mock: aioresponses, *, status: int = 200, payload: dict[str, Any] | None = None) -> list[Any]:
    from aioresponses import CallbackResult

    sent: list[Any] = []

    async def answer(url: Any, **kwargs: Any) -> Any:
        sent.append(kwargs.get("json"))
        if status != 200:
            return CallbackResult(status=status, payload=payload)
        return CallbackResult(
            status=200,
            payload={
                "messaging_product": "whatsapp",
                "contacts": [{"input": PHONE, "wa_id": PHONE}],
                "messages": [{"id": "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjQ0"}],
            },
        )

    mock.post(CLOUD_MESSAGES, callback=answer, repeat=True)
    return sent


async def test_on_the_cloud_api_the_first_touch_is_the_approved_template_with_the_leads_name(
    make_bot: Callable[..., Any], clock: TestClock, openai_fake: FakeOpenAI, http_mock: aioresponses
) -> None:
    sent = cloud_sends(http_mock)
    bot = await make_bot(clock, **cloud(whatsapp_first_touch_template="boas_vindas_cadastro"))

    await store_form_lead(bot.app, a_form(clock))
    await settled(bot)

    assert openai_fake.chat_calls == 0  # a template, not a model-written text
    [body] = sent
    assert body["type"] == "template" and body["to"] == PHONE
    assert body["template"]["name"] == "boas_vindas_cadastro"
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None and lead.profile["company"] == "Frigorífico Serra Azul"
    assert lead.score > 0  # scored from the answers, without a model call


async def test_on_the_cloud_api_without_a_template_the_sellers_get_the_lead(
    make_bot: Callable[..., Any], clock: TestClock, openai_fake: FakeOpenAI, http_mock: aioresponses
) -> None:
    sent = cloud_sends(http_mock)
    bot = await make_bot(clock, **cloud())

    await store_form_lead(bot.app, a_form(clock))
    await settled(bot)

    assert sent == [] and openai_fake.chat_calls == 0
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None and lead.handoff_reason == "primeiro_contato_sem_template"


async def test_on_the_cloud_api_error_131026_hands_the_lead_to_the_sellers_once(
    make_bot: Callable[..., Any], clock: TestClock, http_mock: aioresponses
) -> None:
    error = load_fixture("whatsapp_cloud/error_131026.json")
    sent = cloud_sends(
        http_mock, status=400, payload={k: v for k, v in error.items() if not k.startswith("_")}
    )
    bot = await make_bot(clock, **cloud(whatsapp_first_touch_template="boas_vindas_cadastro"))

    await store_form_lead(bot.app, a_form(clock))
    await settled(bot)

    assert len(sent) == 1  # not retried: WhatsApp cannot reach this number
    lead = await bot.app[STORE].get_lead(KEY)
    assert lead is not None and lead.handoff_reason == "numero_sem_whatsapp"
    assert await bot.app[STORE].list_outbox(status="dead") == []


def test_the_sellers_see_the_form_its_ad_and_campaign_as_a_private_note(clock: TestClock) -> None:
    notes = load_seller_notes()
    builder = CommitBuilder(
        CommitConfig(
            reply_max_parts=3, typing_chars_per_s=30, typing_max_s=8, chatwoot=True, follow_up_delays_h=()
        ),
        load_handoff_card(),
        notes,
    )
    message = form_inbound(a_form(clock), channel="zapi")
    commit = builder.build("t1", KEY, [InboundRecord(1, message, 0, clock())], None, reply="", at=clock())

    [note] = [item for item in commit.outbox if item.kind == "chatwoot_note"]
    assert note.payload["labels"] == ["formulario"]
    text = note.payload["note"]
    assert text.splitlines()[0] == "📝 Formulário preenchido: anúncio de cadastro (Facebook/Instagram)"
    assert "Empresa: Frigorífico Serra Azul" in text
    assert "Qual equipamento procura?: Moedor industrial" in text
    assert "Anúncio: 6789" in text and "Campanha: Black Friday" in text
    # Not mirrored as if the lead had typed it.
    assert [item for item in commit.outbox if item.kind == "chatwoot_message"] == []


async def test_in_the_worker_a_form_never_waits_for_the_quiet_window(
    aiohttp_client: Callable[..., Any],
    tmp_path: Any,
    clock: TestClock,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    http_mock: aioresponses,
) -> None:
    # The worker re-checks the burst's quiet window (its arrivals may come through the
    # store, not its debounce); a form is complete as stored and must not wait 30 s.
    on_whatsapp(http_mock, True)
    settings = fast_settings(tmp_path, debounce_quiet_s=30.0, debounce_max_s=60.0)
    bot: TestClient = await aiohttp_client(create_app(settings, clock=clock, role="worker"))

    await store_form_lead(bot.app, a_form(clock))
    await settled(bot, timeout=10.0)

    assert len(zapi_fake.texts_to(PHONE)) == 1

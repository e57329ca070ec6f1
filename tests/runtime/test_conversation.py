"""A lead writes on WhatsApp (Z-API) and the bot answers: the whole pipeline, faked
only at the HTTP boundary (OpenAI and Z-API via aioresponses)."""

from __future__ import annotations

import sqlite3

from aiohttp.test_utils import TestClient

from tests.conftest import ZAPI_CLIENT_TOKEN, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually
from tests.helpers.settle import settled
from web.keys import RUNNER, SETTINGS, STORE

LEAD = "5544999999999"


async def post(bot: TestClient, payload: object, path: str = "/webhooks/zapi") -> dict:
    response = await bot.post(path, json=payload)
    assert response.status == 200, await response.text()
    return await response.json()


def db_rows(bot: TestClient, sql: str) -> list[tuple]:
    path = bot.app[STORE].path  # type: ignore[attr-defined]
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


async def test_lead_text_gets_the_models_reply_on_the_right_phone(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Oi, Maria! Que bom falar com você. Qual produto te interessa?")
    ack = await post(bot, zapi_message(text="Oi, quero saber das formadoras de hambúrguer"))
    assert ack["accepted"] == 1

    await settled(bot)
    assert zapi_fake.sent == [
        {
            "phone": LEAD,
            "message": "Oi, Maria! Que bom falar com você. Qual produto te interessa?",
            "delayTyping": 1,
        }
    ]
    assert zapi_fake.headers[0]["Client-Token"] == ZAPI_CLIENT_TOKEN
    assert openai_fake.chat_calls == 1
    assert "formadoras de hambúrguer" in openai_fake.user_contents()[-1]
    request = openai_fake.chat_requests[0]
    assert request["model"] == "gpt-4o"
    assert request["response_format"]["type"] == "json_schema"


async def test_provider_retries_of_one_message_make_one_turn(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    payload = zapi_message(message_id="3EB0DUPL1CATE0001", text="Oi")
    acks = [await post(bot, payload) for _ in range(4)]
    assert [a["accepted"] for a in acks] == [1, 0, 0, 0]
    assert [a["duplicates"] for a in acks] == [0, 1, 1, 1]

    await settled(bot)
    assert openai_fake.chat_calls == 1
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]


async def test_a_burst_of_messages_becomes_one_turn_that_sees_all_of_them(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    burst = ["Oi", "sou o João do Frigorífico Boi Bom", "de Londrina/PR", "preciso de uma formadora"]
    for index, text in enumerate(burst):
        await post(bot, zapi_message(message_id=f"3EB0BURST000{index}", text=text))

    await settled(bot)
    assert openai_fake.chat_calls == 1
    last_user = openai_fake.user_contents()[-1]
    for text in burst:
        assert text in last_user
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]


async def test_the_bot_remembers_the_conversation_across_turns(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Prazer, João! De qual cidade você fala?", lead={"name": "João"})
    openai_fake.then(reply="Ótimo! Quantos hambúrgueres por dia?", lead={"city": "Londrina", "state": "PR"})
    await post(bot, zapi_message(message_id="3EB0MEM000000001", text="Sou o João"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Prazer, João! De qual cidade você fala?"]
    await post(bot, zapi_message(message_id="3EB0MEM000000002", text="Londrina, PR"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [
        "Prazer, João! De qual cidade você fala?",
        "Ótimo! Quantos hambúrgueres por dia?",
    ]

    second = openai_fake.chat_requests[1]["messages"]
    assert second[1:3] == [
        {"role": "user", "content": "Sou o João"},
        {"role": "assistant", "content": "Prazer, João! De qual cidade você fala?"},
    ]
    # The profile extracted in turn 1 is in the system context of turn 2 (after the history).
    assert "João" in second[-2]["content"]
    lead = db_rows(bot, "SELECT name, profile FROM leads")
    assert lead[0][0] == "João"
    assert "Londrina" in lead[0][1]


async def test_voice_note_is_transcribed_and_answered(
    bot: TestClient, http_mock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    payload = zapi_message("received_audio_ptt.json")
    http_mock.get(payload["audio"]["audioUrl"], body=b"OggS\x00fake-opus-bytes", content_type="audio/ogg")
    openai_fake.then(reply="Entendi, 500 por dia em Campinas! A FBM100 atende bem.")

    await post(bot, payload)
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Entendi, 500 por dia em Campinas! A FBM100 atende bem."]
    assert openai_fake.transcription_requests == 1
    assert "quinhentos por dia" in openai_fake.user_contents()[-1]
    stored = db_rows(bot, "SELECT kind, text FROM messages WHERE direction = 'in'")
    assert stored[0][0] == "audio" and "quinhentos por dia" in stored[0][1]


async def test_from_me_group_and_status_events_are_never_answered(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    for fixture in (
        "received_from_me.json",
        "received_group.json",
        "received_newsletter.json",
        "received_status_broadcast.json",
        "delivery_callback.json",
    ):
        ack = await post(bot, zapi_message(fixture))
        assert ack["accepted"] == 0, fixture
        assert ack["ignored"] == 1, fixture
    # A read receipt is recorded as a delivery status, never answered.
    ack = await post(bot, zapi_message("message_status_read.json"))
    assert (ack["accepted"], ack["statuses"]) == (0, 1)
    await settled(bot)
    assert openai_fake.calls_started == 0
    assert zapi_fake.attempts == 0
    # The business's own message from the phone is recorded (a later issue pauses the bot on it).
    recorded = db_rows(bot, "SELECT status, reason FROM inbound")
    assert recorded == [("ignored", "from_me")]


async def test_openai_500_then_ok_answers_once(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(status=500).then(reply="Olá! Como posso ajudar?")
    await post(bot, zapi_message(text="Oi"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Olá! Como posso ajudar?"]
    assert openai_fake.calls_started == 2


async def test_llm_down_keeps_the_message_pending_until_it_is_back(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    # 4 attempts per turn (policy) x 2 turns all fail; the third turn succeeds.
    for _ in range(8):
        openai_fake.then(status=503)
    openai_fake.then(reply="Voltei! Em que posso ajudar?")
    await post(bot, zapi_message(text="Oi, alguém aí?"))

    # A count that only grows: the first failed turn is recorded, and (read in the same
    # query) the message stays pending.
    seen: list[tuple] = []

    def failed_once() -> bool:
        seen[:] = db_rows(bot, "SELECT status, attempts FROM inbound")
        return seen[0][1] >= 1

    await eventually(failed_once)
    assert seen[0][0] == "pending"
    await settled(bot, timeout=10)
    assert zapi_fake.texts_to(LEAD) == ["Voltei! Em que posso ajudar?"]
    assert openai_fake.calls_started == 9
    assert db_rows(bot, "SELECT status FROM inbound") == [("done",)]


async def test_zapi_500_twice_then_ok_delivers_once(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    zapi_fake.then(status=500).then(status=500)
    openai_fake.then(reply="Olá!")
    await post(bot, zapi_message(text="Oi"))
    await settled(bot)
    assert zapi_fake.attempts == 3
    assert zapi_fake.texts_to(LEAD) == ["Olá!"]
    assert db_rows(bot, "SELECT status, attempts FROM outbox") == [("done", 3)]
    assert db_rows(bot, "SELECT status FROM messages WHERE direction = 'out'") == [("sent",)]


async def test_zapi_rejecting_the_request_is_not_retried_and_is_kept_as_dead(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    zapi_fake.then(status=400)
    await post(bot, zapi_message(text="Oi"))
    await settled(bot)
    assert db_rows(bot, "SELECT status FROM outbox") == [("dead",)]
    assert zapi_fake.attempts == 1
    assert zapi_fake.sent == []
    error = db_rows(bot, "SELECT last_error FROM outbox")[0][0]
    assert "400" in error


async def test_a_long_reply_goes_out_as_a_few_messages_in_order(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    zapi_fake.then(status=500)  # the first bubble must still arrive before the second
    paragraphs = [
        "Oi, Maria! Que bom ter você por aqui.",
        "A FB300 é semiautomática e faz de 300 a 350 hambúrgueres por hora.",
        "Ela vem com um molde personalizado.",
        "Me conta: quantos hambúrgueres vocês fazem por dia hoje?",
    ]
    openai_fake.then(reply="\n\n".join(paragraphs))
    await post(bot, zapi_message(text="Quero saber da FB300"))
    await settled(bot)
    texts = zapi_fake.texts_to(LEAD)
    assert len(texts) == 3
    assert texts[0].startswith(paragraphs[0])
    assert "\n\n".join(texts) == "\n\n".join(paragraphs)
    assert all(1 <= s["delayTyping"] <= 15 for s in zapi_fake.sent)


async def test_legacy_seleto_webhook_paths_still_work(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await post(bot, zapi_message(message_id="3EB0LEGACY000001", text="Oi"), path="/webhook/text")
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == [openai_fake.default_reply]


async def test_a_turn_the_model_keeps_rejecting_ends_in_the_fixed_apology_not_silence(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    # 400 is not retried by the policy; the turn fails TURN_MAX_FAILURES (3) times.
    for _ in range(3):
        openai_fake.then(status=400)
    await post(bot, zapi_message(text="Oi, vocês fazem máquina de espetinho?"))
    await settled(bot, timeout=10)
    apology = bot.app[RUNNER].agent.deps.prompts.turn_failed_reply
    assert zapi_fake.texts_to(LEAD) == [apology]
    assert openai_fake.chat_calls == 3
    assert db_rows(bot, "SELECT status, attempts FROM inbound") == [("done", 3)]
    # The lead's message is kept in the conversation for the human who follows up.
    assert db_rows(bot, "SELECT text FROM messages WHERE direction = 'in'") == [
        ("Oi, vocês fazem máquina de espetinho?",)
    ]


async def test_a_person_writing_from_the_phone_pauses_the_bot_for_that_lead(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, clock: TestClock
) -> None:
    openai_fake.then(reply="Oi! Qual o seu nome?")
    await post(bot, zapi_message(message_id="3EB0PAUSE0000001", text="Oi"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Qual o seu nome?"]

    # Z-API echoes the bot's own send as fromMe: that must not pause anything.
    echo = zapi_message("received_from_me.json", message_id="3EB0PAUSE0000002", phone=LEAD)
    echo["text"] = {"message": "Oi! Qual o seu nome?"}
    await post(bot, echo)
    # A seller answers from the phone: the bot steps aside.
    human = zapi_message("received_from_me.json", message_id="3EB0PAUSE0000003", phone=LEAD)
    human["text"] = {"message": "Oi, aqui é o Pedro, do comercial. Te ligo em 5 minutos!"}
    await post(bot, human)

    await post(bot, zapi_message(message_id="3EB0PAUSE0000004", text="Combinado, Pedro"))
    await settled(bot)
    assert db_rows(bot, "SELECT status FROM inbound WHERE provider_message_id = '3EB0PAUSE0000004'") == [
        ("done",)
    ]
    assert zapi_fake.texts_to(LEAD) == ["Oi! Qual o seu nome?"]  # silence while the person talks
    assert openai_fake.chat_calls == 1
    assert ("Combinado, Pedro",) in db_rows(bot, "SELECT text FROM messages WHERE direction = 'in'")

    # After BOT_PAUSE_HOURS the bot answers again.
    clock.advance(hours=bot.app[SETTINGS].bot_pause_hours + 1)
    openai_fake.then(reply="Oi de novo! Posso ajudar em algo mais?")
    await post(bot, zapi_message(message_id="3EB0PAUSE0000005", text="Oi, alguém aí?"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Qual o seu nome?", "Oi de novo! Posso ajudar em algo mais?"]
    assert openai_fake.chat_calls == 2


async def test_the_bots_own_echo_does_not_pause_it(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Oi! Qual o seu nome?").then(reply="Prazer, Ana!")
    await post(bot, zapi_message(message_id="3EB0ECHO00000001", text="Oi"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Qual o seu nome?"]
    echo = zapi_message("received_from_me.json", message_id="3EB0ECHO00000002", phone=LEAD)
    echo["text"] = {"message": "Oi! Qual o seu nome?"}
    await post(bot, echo)
    await post(bot, zapi_message(message_id="3EB0ECHO00000003", text="Ana"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Oi! Qual o seu nome?", "Prazer, Ana!"]
    assert db_rows(bot, "SELECT paused_until FROM leads") == [(None,)]

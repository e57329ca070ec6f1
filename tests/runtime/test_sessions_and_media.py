"""Sessions that expire after a quiet period, and what the bot does with images and
documents a lead sends: the whole app (`bot` fixture), providers faked at the HTTP
boundary, time moved through the app's business clock (`clock` fixture).
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from aioresponses import aioresponses

from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from web.app import create_app
from web.keys import SETTINGS, STORE

LEAD = "5544999999999"
# A real (tiny) JPEG: SOI, JFIF APP0, EOI.
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")


async def post(bot: TestClient, payload: object) -> None:
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200, await response.text()


def db_rows(bot: TestClient, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        return db.execute(sql, args).fetchall()


async def say(bot: TestClient, zapi_fake: FakeZapi, message_id: str, text: str) -> None:
    """The lead writes; returns once the bot's turn over it has committed and its reply
    has gone out (outbox due times stay on the real clock, so a business clock moved
    forward does not hold the delivery back)."""
    before = len(zapi_fake.sent)
    await post(bot, zapi_message(message_id=message_id, text=text))
    await settled(bot)
    assert db_rows(bot, "SELECT status FROM inbound WHERE provider_message_id = ?", (message_id,)) == [
        ("done",)
    ]
    assert [sent["phone"] for sent in zapi_fake.sent[before:]] == [LEAD]  # one reply to this message


# --- sessions --------------------------------------------------------------------------------


async def _first_conversation(bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi) -> None:
    openai_fake.then(
        reply="Prazer, Maria! Para qual produção seria a formadora?",
        lead={"name": "Maria", "city": "Londrina", "state": "PR"},
        summary="Maria, de Londrina/PR, quer uma formadora de hambúrguer.",
    )
    await say(bot, zapi_fake, "3EB0SESSION000001", "Sou a Maria, de Londrina, quero uma formadora")


async def test_after_the_idle_period_the_next_message_starts_a_fresh_conversation_that_knows_the_lead(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, clock: TestClock
) -> None:
    await _first_conversation(bot, openai_fake, zapi_fake)
    idle_h = bot.app[SETTINGS].session_idle_hours

    clock.advance(hours=idle_h, minutes=5)
    openai_fake.then(reply="Oi de novo, Maria! Em que posso ajudar hoje?")
    await say(bot, zapi_fake, "3EB0SESSION000002", "Bom dia, voltei")

    messages = openai_fake.chat_requests[1]["messages"]
    # No old turns in the request: the system prompt and this turn's context, then only
    # today's message.
    assert [m["role"] for m in messages] == ["system", "system", "user"]
    assert messages[2]["content"] == "Bom dia, voltei"
    assert all("quero uma formadora" not in str(m["content"]) for m in messages)
    assert all("Para qual produção" not in str(m["content"]) for m in messages)
    # ...but the lead's profile is still known.
    assert "Maria" in messages[1]["content"]
    assert "Londrina" in messages[1]["content"]

    conversations = db_rows(bot, "SELECT id FROM conversations ORDER BY id")
    assert len(conversations) == 2
    latest = conversations[-1][0]
    assert db_rows(
        bot, "SELECT direction, text FROM messages WHERE conversation_id = ? ORDER BY id", (latest,)
    ) == [
        ("in", "Bom dia, voltei"),
        ("out", "Oi de novo, Maria! Em que posso ajudar hoje?"),
    ]
    assert db_rows(bot, "SELECT name FROM leads") == [("Maria",)]
    assert db_rows(bot, "SELECT lead_message_count FROM leads") == [(2,)]


async def test_within_the_idle_period_the_history_is_kept(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, clock: TestClock
) -> None:
    await _first_conversation(bot, openai_fake, zapi_fake)
    idle_h = bot.app[SETTINGS].session_idle_hours

    clock.advance(hours=idle_h - 1)
    openai_fake.then(reply="Certo! E quantos por dia?")
    await say(bot, zapi_fake, "3EB0SESSION000003", "para o meu açougue")

    messages = openai_fake.chat_requests[1]["messages"]
    assert messages[1:3] + messages[4:] == [
        {"role": "user", "content": "Sou a Maria, de Londrina, quero uma formadora"},
        {"role": "assistant", "content": "Prazer, Maria! Para qual produção seria a formadora?"},
        {"role": "user", "content": "para o meu açougue"},
    ]
    # The rolling summary, in the turn's context after the history.
    assert messages[3]["role"] == "system"
    assert "Maria, de Londrina/PR, quer uma formadora" in messages[3]["content"]
    assert len(db_rows(bot, "SELECT id FROM conversations")) == 1


async def test_the_idle_period_is_configurable(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> None:
    client = await aiohttp_client(create_app(fast_settings(tmp_path, session_idle_hours=2), clock=clock))
    await _first_conversation(client, openai_fake, zapi_fake)

    clock.advance(hours=1)
    await say(client, zapi_fake, "3EB0SESSION000004", "ainda estou vendo")
    assert len(db_rows(client, "SELECT id FROM conversations")) == 1

    clock.advance(hours=3)
    await say(client, zapi_fake, "3EB0SESSION000005", "voltei")
    assert len(db_rows(client, "SELECT id FROM conversations")) == 2
    assert [m["role"] for m in openai_fake.chat_requests[-1]["messages"]] == ["system", "system", "user"]


# --- images --------------------------------------------------------------------------------------


def image_message(**overrides: Any) -> dict[str, Any]:
    return zapi_message("received_image.json", **overrides)


async def test_an_image_is_shown_to_the_model_and_its_description_is_stored(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    payload = image_message()
    http_mock.get(payload["image"]["imageUrl"], body=JPEG, content_type="image/jpeg")
    openai_fake.then(
        reply="Que bela fachada! É um açougue? Quantos hambúrgueres vocês fazem por dia?",
        image_description="Fachada de um açougue com letreiro vermelho.",
    )
    await post(bot, payload)
    await settled(bot)

    assert openai_fake.chat_calls == 1
    [content] = openai_fake.user_contents()
    assert isinstance(content, list)
    text_parts = [p for p in content if p["type"] == "text"]
    image_parts = [p for p in content if p["type"] == "image_url"]
    assert len(text_parts) == 1 and "Essa é a fachada da loja" in text_parts[0]["text"]
    assert image_parts == [
        {
            "type": "image_url",
            "image_url": {
                "url": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode(),
                "detail": "low",
            },
        }
    ]
    assert zapi_fake.texts_to(LEAD) == [
        "Que bela fachada! É um açougue? Quantos hambúrgueres vocês fazem por dia?"
    ]

    [(kind, text)] = db_rows(bot, "SELECT kind, text FROM messages WHERE direction = 'in'")
    assert kind == "image"
    assert "Essa é a fachada da loja" in text
    assert "Fachada de um açougue com letreiro vermelho." in text


async def test_the_next_turn_remembers_the_image_by_its_description_without_sending_it_again(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    payload = image_message()
    http_mock.get(payload["image"]["imageUrl"], body=JPEG, content_type="image/jpeg")
    openai_fake.then(reply="Bela loja!", image_description="Fachada de um açougue com letreiro vermelho.")
    await post(bot, payload)
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Bela loja!"]
    openai_fake.then(reply="Ótimo!")
    await say(bot, zapi_fake, "3EB0IMGNEXT000001", "e então, serve?")
    assert zapi_fake.texts_to(LEAD) == ["Bela loja!", "Ótimo!"]

    messages = openai_fake.chat_requests[1]["messages"]
    assert all(isinstance(m["content"], str) for m in messages)  # no image part any more
    assert any("letreiro vermelho" in m["content"] for m in messages if m["role"] == "user")


async def test_an_image_too_big_to_show_still_gets_a_turn(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    from agent.graph import MAX_IMAGE_BYTES

    payload = image_message()
    http_mock.get(
        payload["image"]["imageUrl"], body=b"\xff\xd8" + b"\x00" * MAX_IMAGE_BYTES, content_type="image/jpeg"
    )
    openai_fake.then(reply="Recebi sua imagem! Me conta o que você precisa?")
    await post(bot, payload)
    await settled(bot)

    [content] = openai_fake.user_contents()
    assert isinstance(content, str)
    assert "imagem" in content and "Essa é a fachada da loja" in content
    assert zapi_fake.texts_to(LEAD) == ["Recebi sua imagem! Me conta o que você precisa?"]


async def test_an_image_over_the_download_limit_still_gets_a_turn(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    http_mock: aioresponses,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> None:
    client = await aiohttp_client(create_app(fast_settings(tmp_path, media_max_bytes=1024), clock=clock))
    payload = image_message()
    http_mock.get(payload["image"]["imageUrl"], body=b"\xff\xd8" + b"\x00" * 4096, content_type="image/jpeg")
    openai_fake.then(reply="Recebi sua imagem!")
    await post(client, payload)
    await settled(client)

    [content] = openai_fake.user_contents()
    assert isinstance(content, str) and "imagem" in content
    assert zapi_fake.texts_to(LEAD) == ["Recebi sua imagem!"]
    assert db_rows(client, "SELECT status FROM inbound") == [("done",)]


async def test_an_image_that_is_gone_still_gets_a_turn(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    payload = image_message()
    http_mock.get(payload["image"]["imageUrl"], status=404)
    openai_fake.then(reply="Não consegui abrir a imagem, pode me contar o que ela mostra?")
    await post(bot, payload)
    await settled(bot)

    assert openai_fake.chat_calls == 1
    [content] = openai_fake.user_contents()
    assert isinstance(content, str)
    assert zapi_fake.texts_to(LEAD) == ["Não consegui abrir a imagem, pode me contar o que ela mostra?"]
    [(kind, text)] = db_rows(bot, "SELECT kind, text FROM messages WHERE direction = 'in'")
    assert kind == "image" and "Essa é a fachada da loja" in text


# --- documents ------------------------------------------------------------------------------------


async def test_a_document_is_acknowledged_and_stored_with_its_file_name(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    payload = zapi_message("received_document.json")
    openai_fake.then(reply="Recebi o orcamento.pdf! Vou passar para o nosso time analisar.")
    await post(bot, payload)
    await settled(bot)

    [content] = openai_fake.user_contents()
    assert isinstance(content, str)
    assert "documento" in content and "orcamento.pdf" in content
    assert zapi_fake.texts_to(LEAD) == ["Recebi o orcamento.pdf! Vou passar para o nosso time analisar."]

    [(kind, text, media_url)] = db_rows(
        bot, "SELECT kind, text, media_url FROM messages WHERE direction = 'in'"
    )
    assert kind == "document"
    assert "orcamento.pdf" in text
    # The team can open it later: the link is kept with the message.
    assert media_url == payload["document"]["documentUrl"]

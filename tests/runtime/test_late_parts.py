"""The lead writes again while the model is answering (issue 18, "bursts as one turn"):
the whole bot, faked at the HTTP boundary. The fake model holds its answer until the test
says so, so "during the model call" is a fact of the test, not a race."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from core.records import TurnUsage
from runtime.late_parts import Carried
from tests.channels.test_channel_pipelines import GRAPH, channel_settings, meta_signed
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi, eventually, load_fixture
from tests.helpers.settle import settled
from tests.runtime.test_turn_usage import opus_note
from web.app import create_app
from web.keys import RUNNER, SETTINGS, STORE
from web.middlewares import METRICS

LEAD = "5544999999999"
# tests/fixtures/openai/chat_completion_structured.json's usage, per call.
PROMPT, COMPLETION = 1117, 46


@pytest.fixture
def make_bot(aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock) -> Callable[..., Any]:
    """The bot with the test's knobs; the cap far away unless a test says otherwise (a
    burst younger than it may wait)."""

    async def make(**knobs: Any) -> TestClient:
        values = {"debounce_max_s": 30.0, **knobs}
        return await aiohttp_client(create_app(fast_settings(tmp_path, **values), clock=clock))

    return make


async def post(bot: TestClient, payload: dict[str, Any]) -> None:
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200, await response.text()


def presence(status: str) -> dict[str, Any]:
    payload = dict(load_fixture("zapi/presence_chat.json"))
    payload.pop("_source", None)
    return payload | {"status": status, "phone": LEAD}


def rows(bot: TestClient, sql: str) -> list[tuple]:
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        return db.execute(sql).fetchall()


def yielded(bot: TestClient) -> float | None:
    return bot.app[METRICS].registry.get_sample_value("sdr_turns_total", {"kind": "yielded"})


class HeldModel:
    """The fake model's first answer waits for `release()`, so whatever the test posts
    after `ask()` reached the bot while the model was answering."""

    def __init__(self, openai_fake: FakeOpenAI, first_reply: str, *later_replies: str) -> None:
        self.openai = openai_fake
        self.gate = asyncio.Event()
        openai_fake.then(reply=first_reply, hold=self.gate)
        for reply in later_replies:
            openai_fake.then(reply=reply)

    async def ask(self, bot: TestClient, payload: dict[str, Any]) -> None:
        """The lead's first message, and the turn's model call under way."""
        await post(bot, payload)
        await eventually(lambda: self.openai.calls_started == 1)

    def release(self) -> None:
        self.gate.set()


async def test_a_message_during_the_model_call_gets_one_reply_to_the_whole_burst(
    make_bot: Callable[..., Any],
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    bot = await make_bot()
    model = HeldModel(
        openai_fake,
        "Olá! Que bom que viu o anúncio.",
        "A FB300 forma até 300 hambúrgueres por hora; de qual cidade você fala?",
    )
    await model.ask(bot, zapi_message(message_id="3EB0LATE00000001", text="Vi o anúncio de vocês."))
    await post(bot, zapi_message(message_id="3EB0LATE00000002", text="quanto custa a FB300?"))
    model.release()
    await settled(bot)

    # One answer, to everything the lead said; the first answer was never sent.
    assert zapi_fake.texts_to(LEAD) == [
        "A FB300 forma até 300 hambúrgueres por hora; de qual cidade você fala?"
    ]
    assert openai_fake.chat_calls == 2
    said = " ".join(openai_fake.user_contents(1))
    assert "Vi o anúncio de vocês." in said and "quanto custa a FB300?" in said
    assert rows(bot, "SELECT direction, COUNT(*) FROM messages GROUP BY direction ORDER BY 1") == [
        ("in", 2),
        ("out", 1),
    ]
    # The call nobody read is still a cost: on the dashboard's turn and on /metrics.
    assert rows(bot, "SELECT prompt_tokens, completion_tokens FROM turn_usage") == [
        (2 * PROMPT, 2 * COMPLETION)
    ]
    assert yielded(bot) == 1
    assert bot.app[RUNNER].turns_completed == 1


async def test_a_lead_still_typing_when_the_answer_is_ready_is_waited_for(
    make_bot: Callable[..., Any],
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    bot = await make_bot()
    model = HeldModel(
        openai_fake, "Olá! Como posso ajudar?", "Atendemos Curitiba, sim! Quantas unidades por dia?"
    )
    await model.ask(bot, zapi_message(message_id="3EB0TYPE00000001", text="Boa tarde."))
    await post(bot, presence("COMPOSING"))
    model.release()
    # The answer is back from the model and held: nothing sent while the lead types.
    await eventually(lambda: openai_fake.chat_calls == 1)
    await post(bot, zapi_message(message_id="3EB0TYPE00000002", text="vocês atendem em Curitiba?"))
    await settled(bot)

    assert zapi_fake.texts_to(LEAD) == ["Atendemos Curitiba, sim! Quantas unidades por dia?"]
    assert openai_fake.chat_calls == 2


async def test_a_lead_who_types_and_gives_up_gets_the_ready_answer_without_a_new_model_call(
    make_bot: Callable[..., Any],
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    bot = await make_bot(debounce_typing_s=0.2)
    model = HeldModel(openai_fake, "Olá! Como posso ajudar?")
    await model.ask(bot, zapi_message(message_id="3EB0GIVE00000001", text="Boa tarde."))
    await post(bot, presence("COMPOSING"))
    model.release()
    await settled(bot)  # the hold ends with DEBOUNCE_TYPING_S

    assert zapi_fake.texts_to(LEAD) == ["Olá! Como posso ajudar?"]
    assert openai_fake.chat_calls == 1
    assert yielded(bot) is None


async def test_past_the_cap_a_late_message_gets_its_own_answer(
    make_bot: Callable[..., Any],
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    # A lead who keeps writing is answered DEBOUNCE_MAX_S after their first message at the
    # latest: an answer ready past it is sent, and what came meanwhile gets the next turn.
    bot = await make_bot(debounce_max_s=0.2)
    model = HeldModel(openai_fake, "Primeira resposta", "Segunda resposta")
    await model.ask(bot, zapi_message(message_id="3EB0SLOW00000001", text="Oi"))
    await post(bot, zapi_message(message_id="3EB0SLOW00000002", text="tem a FB300?"))
    await asyncio.sleep(0.25)  # the burst is now older than DEBOUNCE_MAX_S (time only moves on)
    model.release()
    await settled(bot)

    assert zapi_fake.texts_to(LEAD) == ["Primeira resposta", "Segunda resposta"]
    # The second call saw the first exchange as history and only the new message as this turn.
    second = openai_fake.chat_requests[1]["messages"]
    assert {"role": "assistant", "content": "Primeira resposta"} in second
    assert openai_fake.user_contents(1)[-1] == "tem a FB300?"


async def test_a_voice_note_is_transcribed_once_when_its_run_yields(
    make_bot: Callable[..., Any],
    http_mock: Any,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
) -> None:
    bot = await make_bot()
    note = zapi_message("received_audio_ptt.json")
    http_mock.get(note["audio"]["audioUrl"], body=opus_note(7.5), content_type="audio/ogg", repeat=True)
    model = HeldModel(openai_fake, "Entendi o áudio.", "Entendi tudo!")
    await model.ask(bot, note)
    await post(bot, zapi_message(message_id="3EB0AFTERAUDIO01", text="e o frete?"))
    model.release()
    await settled(bot)

    assert zapi_fake.texts_to(LEAD) == ["Entendi tudo!"]
    assert openai_fake.transcription_requests == 1
    # Both runs heard the note (the second from the first's transcript); billed once.
    transcript = load_fixture("openai/transcription.json")["text"]
    assert all(any(transcript in c for c in openai_fake.user_contents(i)) for i in (0, 1))
    assert rows(bot, "SELECT prompt_tokens, transcription_seconds FROM turn_usage") == [(2 * PROMPT, 7.5)]


@pytest.mark.parametrize("late", ["SAIR", "não quero mais receber mensagens, SAIR"])
async def test_an_opt_out_during_the_model_call_is_the_only_answer(
    make_bot: Callable[..., Any],
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    late: str,
) -> None:
    bot = await make_bot()
    model = HeldModel(openai_fake, "Olá! Que bom que viu o anúncio.")
    await model.ask(bot, zapi_message(message_id="3EB0OPTLATE00001", text="Vi o anúncio."))
    await post(bot, zapi_message(message_id="3EB0OPTLATE00002", text=late))
    model.release()
    await settled(bot)

    # The sales answer is dropped; the lead only gets the opt-out confirmation.
    texts = zapi_fake.texts_to(LEAD)
    assert len(texts) == 1 and "Olá! Que bom" not in texts[0]
    assert rows(bot, "SELECT opted_out FROM leads") == [(1,)]
    # The model call that was dropped is on the opt-out turn's cost.
    assert rows(bot, "SELECT prompt_tokens FROM turn_usage") == [(PROMPT,)]


async def test_a_voice_note_transcribed_by_a_deferred_turn_is_billed_on_the_turn_that_commits(
    make_bot: Callable[..., Any], http_mock: Any, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    # The model is down for the whole first turn (every attempt of OPENAI_MAX_ATTEMPTS):
    # the turn is deferred, the retry reuses the transcript and must still count it.
    bot = await make_bot()
    note = zapi_message("received_audio_ptt.json")
    http_mock.get(note["audio"]["audioUrl"], body=opus_note(7.5), content_type="audio/ogg", repeat=True)
    for _ in range(bot.app[SETTINGS].openai_max_attempts):
        openai_fake.then(status=500)
    openai_fake.then(reply="Entendi o áudio!")
    await post(bot, note)
    await settled(bot)

    assert zapi_fake.texts_to(LEAD) == ["Entendi o áudio!"]
    assert openai_fake.transcription_requests == 1
    assert rows(bot, "SELECT transcription_seconds FROM turn_usage") == [(7.5,)]


async def test_an_instagram_lead_s_name_is_asked_for_once_when_the_first_run_yields(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
    http_mock: Any,
    openai_fake: FakeOpenAI,
) -> None:
    settings = channel_settings(tmp_path, debounce_max_s=30.0)
    bot = await aiohttp_client(create_app(settings, clock=clock))
    http_mock.post(
        f"{GRAPH}/me/messages", payload=load_fixture("instagram/send_text_response.json"), repeat=True
    )
    profile_url = f"{GRAPH}/1254459154682919?fields=name,username"
    http_mock.get(profile_url, payload=load_fixture("instagram/user_profile.json"), repeat=True)
    first = load_fixture("instagram/message_text.json")
    later = copy.deepcopy(first)
    later["entry"][0]["messaging"][0]["message"] = {"mid": first_mid(first) + "2", "text": "e o frete?"}

    model = HeldModel(openai_fake, "Olá!", "Entregamos em Curitiba, sim!")
    for index, payload in enumerate((first, later)):
        body = json.dumps(payload).encode()
        response = await bot.post("/webhooks/meta", data=body, headers=meta_signed(body))
        assert response.status == 200, await response.text()
        if index == 0:
            await eventually(lambda: openai_fake.calls_started == 1)
    model.release()
    await settled(bot)

    assert openai_fake.chat_calls == 2 and yielded(bot) == 1
    assert len(http_mock.requests[("GET", URL(profile_url))]) == 1
    assert rows(bot, "SELECT name FROM leads") == [("Maria Souza",)]


def first_mid(payload: dict[str, Any]) -> str:
    return payload["entry"][0]["messaging"][0]["message"]["mid"]


def test_the_cost_of_runs_that_did_not_commit_goes_only_to_the_turn_that_answers_them() -> None:
    carried = Carried()
    carried.add("gpt-4o-2024-08-06", (1000, 40, 800), inbound_ids=[7, 8])
    carried.heard_in([3.0, None], inbound_ids=[7])
    own = TurnUsage(model="gpt-4o-2024-08-06", prompt_tokens=1100, cached_tokens=900, completion_tokens=50)

    assert carried.answered_by([7, 8, 9]) and not carried.answered_by([9])
    assert carried.onto(own) == TurnUsage(
        model="gpt-4o-2024-08-06",
        prompt_tokens=2100,
        cached_tokens=1700,
        completion_tokens=90,
        transcription_seconds=3.0,
    )
    # A silent commit (an opt-out after the yield) gets the carried figures alone.
    assert carried.onto(None) == TurnUsage(
        model="gpt-4o-2024-08-06",
        prompt_tokens=1000,
        cached_tokens=800,
        completion_tokens=40,
        transcription_seconds=3.0,
    )

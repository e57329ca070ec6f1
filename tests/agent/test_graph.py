"""The SDR turn graph end to end: `SdrAgent` with a real `LLMClient` on a real aiohttp
session, OpenAI faked at the HTTP boundary (`FakeOpenAI`, aioresponses).

Budget checked here (DESIGN.md, issue 2): one chat completion per text turn, and a
prompt that stays bounded as the conversation grows (window + lead profile).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.graph import AgentDeps, MediaUnusable, SdrAgent, TurnInput, TurnResult
from agent.llm import LLMClient
from agent.prompts import MAX_PROFILE_VALUE_CHARS, load_prompt_bundle
from agent.scoring import load_scoring_rules, score_lead
from core.errors import LLMUnavailable
from core.lead import LeadProfile, LeadUpdate, merge_lead
from core.models import InboundMessage, MessageKind
from core.records import NewMessage, StoredMessage, TurnCommit
from core.settings import Settings
from store.sqlite import SqliteStore
from tests.helpers.errors import SendError
from tests.helpers.fakes import FakeOpenAI, FakeZapi, Step, load_fixture
from web.configs.agent import llm_config

LEAD = "5544999999999"
KEY = f"whatsapp:{LEAD}"
NOW = datetime(2025, 3, 10, 17, 0, tzinfo=UTC)  # a Monday, 14:00 in Brasília
TRANSCRIPT = load_fixture("openai/transcription.json")["text"]
AUDIO_URL = "https://example.com/zapi-media/3EB0A1B2C3D4E5F60002.ogg"

# Bound on what the lead profile may add to the system prompt: one line per profile
# field, each value compacted to MAX_PROFILE_VALUE_CHARS, plus the label ("Produto de
# interesse: ", "Papel na decisão de compra: " ...) and the "- " bullet. 16 fields x
# (120 + 40) = 2,560 characters, ~640 tokens at ~4 characters a token, however much the
# lead tells us and however long the extracted values are.
PROFILE_FIELDS_IN_PROMPT = 16
PROFILE_PROMPT_BUDGET_CHARS = PROFILE_FIELDS_IN_PROMPT * (MAX_PROFILE_VALUE_CHARS + 40)


class FakeMedia:
    """`fetch_media` double: records what was fetched, answers bytes or raises."""

    def __init__(self, result: bytes | BaseException = b"OggS\x00fake-opus-bytes") -> None:
        self.result = result
        self.fetched: list[str | None] = []

    async def __call__(self, message: InboundMessage) -> bytes:
        self.fetched.append(message.media_url)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def media() -> FakeMedia:
    return FakeMedia()


AgentFactory = Callable[..., SdrAgent]


@pytest.fixture
def make_agent(settings: Settings, session: aiohttp.ClientSession, media: FakeMedia) -> AgentFactory:
    def make(*, fetch_media: Callable[[InboundMessage], Awaitable[bytes]] | None = None) -> SdrAgent:
        return SdrAgent(
            AgentDeps(
                llm=LLMClient(llm_config(settings), session),
                fetch_media=fetch_media or media,
                prompts=load_prompt_bundle(),
                rules=load_scoring_rules(),
            )
        )

    return make


@pytest.fixture
def agent(make_agent: AgentFactory) -> SdrAgent:
    return make_agent()


def text(body: str, *, mid: str = "3EB0TEXT00000001") -> InboundMessage:
    return InboundMessage(
        channel="zapi",
        contact_id=LEAD,
        provider_message_id=mid,
        kind=MessageKind.TEXT,
        text=body,
        phone=LEAD,
        name="Maria Souza",
    )


def audio(*, url: str | None = AUDIO_URL, mid: str = "3EB0A1B2C3D4E5F60002") -> InboundMessage:
    return InboundMessage(
        channel="zapi",
        contact_id=LEAD,
        provider_message_id=mid,
        kind=MessageKind.AUDIO,
        media_url=url,
        media_mime="audio/ogg; codecs=opus",
        phone=LEAD,
    )


def history(count: int, *, chars: int = 80) -> list[StoredMessage]:
    """`count` alternating lead/bot messages of equal length, oldest first."""
    out: list[StoredMessage] = []
    for index in range(count):
        direction = "in" if index % 2 == 0 else "out"
        prefix = f"{'lead' if direction == 'in' else 'bot'} {index:03d} "
        out.append(
            StoredMessage(
                id=index + 1,
                direction=direction,  # type: ignore[arg-type]
                kind="text",
                text=(prefix + "x" * chars)[:chars],
                created_at=NOW - timedelta(minutes=count - index),
            )
        )
    return out


def turn(
    *inbound: InboundMessage,
    past: list[StoredMessage] | None = None,
    profile: LeadProfile | None = None,
    lead_message_count: int = 0,
) -> TurnInput:
    return TurnInput(
        contact_key=KEY,
        inbound=list(inbound) or [text("Oi, quero saber da formadora de hambúrguer")],
        profile=profile or LeadProfile(),
        history=past or [],
        lead_message_count=lead_message_count,
        now=NOW,
    )


def request_chars(request: dict[str, Any]) -> int:
    return len(json.dumps(request["messages"], ensure_ascii=False))


def context_of(request: dict[str, Any]) -> str:
    """This turn's context: the system message after the history (agent/request.py)."""
    return next(m["content"] for m in request["messages"][1:] if m["role"] == "system")


# --- one call per turn -------------------------------------------------------------------


async def test_a_text_turn_costs_exactly_one_chat_completion(
    agent: SdrAgent, openai_fake: FakeOpenAI
) -> None:
    openai_fake.then(reply="Oi, Maria! Qual produto te interessa?")
    result = await agent.run(turn(text("Oi, quero saber da formadora")))

    assert isinstance(result, TurnResult)
    assert openai_fake.calls_started == 1
    assert openai_fake.chat_calls == 1
    assert openai_fake.transcription_requests == 0
    assert result.reply == "Oi, Maria! Qual produto te interessa?"
    assert result.lead_texts == ["Oi, quero saber da formadora"]
    assert result.usage.prompt_tokens > 0
    assert result.llm_seconds >= 0


async def test_a_burst_is_one_call_that_sees_every_message(agent: SdrAgent, openai_fake: FakeOpenAI) -> None:
    burst = [
        text("Oi", mid="m1"),
        text("sou o João do Frigorífico Boi Bom", mid="m2"),
        text("de Londrina/PR", mid="m3"),
    ]
    result = await agent.run(turn(*burst))
    assert openai_fake.chat_calls == 1
    assert openai_fake.user_contents()[-1] == "Oi\nsou o João do Frigorífico Boi Bom\nde Londrina/PR"
    assert result.lead_texts == ["Oi", "sou o João do Frigorífico Boi Bom", "de Londrina/PR"]


async def test_the_reply_is_trimmed(agent: SdrAgent, openai_fake: FakeOpenAI) -> None:
    openai_fake.then(reply="\n  Olá!\n\nTudo bem?  \n")
    result = await agent.run(turn())
    assert result.reply == "Olá!\n\nTudo bem?"


async def test_the_request_asks_for_the_structured_reply_and_lead(
    agent: SdrAgent, openai_fake: FakeOpenAI, settings: Settings
) -> None:
    await agent.run(turn())
    [request] = openai_fake.chat_requests
    assert request["model"] == settings.openai_model
    schema = request["response_format"]
    assert schema["type"] == "json_schema"
    properties = schema["json_schema"]["schema"]["properties"]
    assert set(properties) == {"reply", "lead", "tool_calls", "summary", "image_description"}


# --- what the model sees -----------------------------------------------------------------


async def test_the_request_is_system_prompt_then_history_then_this_turn(
    agent: SdrAgent, openai_fake: FakeOpenAI
) -> None:
    past = history(6)
    past.insert(3, StoredMessage(id=99, direction="in", kind="image", text=None, created_at=NOW))
    await agent.run(turn(text("E quanto custa?"), past=past))

    messages = openai_fake.chat_requests[0]["messages"]
    assert messages[0]["role"] == "system"
    assert "Seleto Industrial" in messages[0]["content"]
    assert "FB300" in messages[0]["content"]  # the company knowledge
    # The window as given, oldest first; a stored message without text is skipped.
    expected_history = [
        {"role": "user" if m.direction == "in" else "assistant", "content": m.text} for m in past if m.text
    ]
    assert messages[1:-2] == expected_history
    # This turn's context after the history, so the history stays in the cached prefix.
    assert messages[-2]["role"] == "system"
    assert "segunda-feira, 10/03/2025 14:00" in messages[-2]["content"]
    assert "14:00" not in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "E quanto custa?"}
    assert len(messages) == 1 + 6 + 1 + 1


async def test_the_known_profile_and_missing_fields_are_in_the_system_prompt(
    agent: SdrAgent, openai_fake: FakeOpenAI
) -> None:
    profile = LeadProfile(name="João", city="Londrina", state="PR")
    await agent.run(turn(profile=profile))
    system = context_of(openai_fake.chat_requests[0])
    known = system.split("# O que já sabemos do lead", 1)[1]
    assert "João" in known and "Londrina" in known
    missing = known.split("# Dados que faltam", 1)[1]
    assert "Produto de interesse" in missing
    assert "Nome" not in missing


async def test_the_graph_uses_exactly_the_history_it_is_given(
    agent: SdrAgent, openai_fake: FakeOpenAI
) -> None:
    # Windowing is the runtime's job (TurnRunner asks the store for `history_window`
    # messages); within the token budget the graph adds none, and drops none from a
    # short window. A long one starts at its first anchor (a stored id divisible by 8,
    # agent/budget.py), where it will start again next turn: ids 1-40 start at id 8.
    for count in (1, 10, 40):
        await agent.run(turn(past=history(count)))
    sizes = [len(r["messages"]) for r in openai_fake.chat_requests]
    assert sizes == [1 + 1 + 1 + 1, 1 + 10 + 1 + 1, 1 + 33 + 1 + 1]
    assert openai_fake.chat_requests[2]["messages"][1]["content"].startswith("bot 007 ")


async def test_prompt_size_is_bounded_by_the_window_as_the_conversation_grows(
    agent: SdrAgent, openai_fake: FakeOpenAI, settings: Settings
) -> None:
    window = settings.history_window
    assert window == 16
    sizes: dict[int, int] = {}
    counts: dict[int, int] = {}
    for length in (1, 10, 20, 40, 100):
        conversation = history(length)
        await agent.run(turn(past=conversation[-window:]))  # what the runtime passes
        request = openai_fake.chat_requests[-1]
        sizes[length] = request_chars(request)
        counts[length] = len(request["messages"])

    # Static system + history + this turn's context + the lead's words. A window of 16
    # starts at its first anchor (ids 8, 32 and 88: 13, 9 and 13 messages kept).
    assert counts == {1: 4, 10: 13, 20: 16, 40: 12, 100: 16}
    assert sizes[1] < sizes[40] < sizes[10]
    # 16 recent messages, or the same 16 with older ones before them: the same bound.
    assert sizes[100] == sizes[20]
    assert sizes[20] <= sizes[10] + 3 * (80 + 40)  # at most 3 more messages of 80 characters


async def test_the_runtime_window_from_the_store_keeps_the_last_history_window(
    tmp_path: Path, agent: SdrAgent, openai_fake: FakeOpenAI, settings: Settings
) -> None:
    """The same path TurnRunner takes: recent_messages(contact, history_window) -> graph."""
    store = SqliteStore(tmp_path / "window.sqlite3")
    await store.open()
    try:
        for index in range(20):  # 40 stored messages
            await store.commit_turn(
                TurnCommit(
                    turn_id=f"t{index}",
                    contact_key=KEY,
                    channel="zapi",
                    contact_id=LEAD,
                    phone=LEAD,
                    name=None,
                    inbound_ids=[],
                    messages=[
                        NewMessage("in", "text", f"pergunta {index:02d}"),
                        NewMessage("out", "text", f"resposta {index:02d}"),
                    ],
                    profile={},
                    score=0,
                    temperature="frio",
                    score_reasons=[],
                    lead_messages_added=1,
                )
            )
        window = await store.recent_messages(KEY, settings.history_window)
    finally:
        await store.close()

    await agent.run(turn(text("e a FB700?"), past=window))
    messages = openai_fake.chat_requests[0]["messages"]
    # Ids 25-40 (pergunta 12 .. resposta 19): the window starts at its anchor, id 32.
    assert len(messages) == 1 + 9 + 1 + 1
    assert messages[1] == {"role": "assistant", "content": "resposta 15"}
    assert messages[-3] == {"role": "assistant", "content": "resposta 19"}
    assert not any(m["content"] == "pergunta 09" for m in messages)


def full_profile(chars: int = 400) -> LeadProfile:
    """Every field the lead can tell us, each as long as extraction lets it be."""
    update = LeadUpdate.model_validate(
        {
            "name": "Nome " * chars,
            "company": "Empresa " * chars,
            "cnpj": "11.222.333/0001-81",
            "city": "Cidade " * chars,
            "state": "SP",
            "segment": "Segmento " * chars,
            "product_interest": "Produto " * chars,
            "volume": "Volume " * chars,
            "volume_per_day": 5000,
            "urgency": "imediata",
            "timeline": "Prazo " * chars,
            "budget_signal": "Verba " * chars,
            "decision_role": "decisor",
            "knows_company": True,
            "email": "comprador@" + "dominio" * 20 + ".com.br",
            "phone": "11987654321",
        }
    )
    profile, changed = merge_lead(LeadProfile(), update, message_id="m1", at=NOW)
    assert len(changed) >= 15
    return profile


async def test_a_large_profile_adds_a_bounded_amount_to_the_system_prompt(
    agent: SdrAgent, openai_fake: FakeOpenAI
) -> None:
    await agent.run(turn(profile=LeadProfile()))
    await agent.run(turn(profile=full_profile()))
    empty_system = context_of(openai_fake.chat_requests[0])
    full_system = context_of(openai_fake.chat_requests[1])

    assert len(full_system) - len(empty_system) <= PROFILE_PROMPT_BUDGET_CHARS
    # And it stays bounded however long the values are (provenance is never sent).
    await agent.run(turn(profile=full_profile(chars=4000)))
    huge_system = context_of(openai_fake.chat_requests[2])
    assert len(huge_system) == len(full_system)
    assert "provenance" not in huge_system


async def test_a_turn_at_message_40_costs_no_more_than_at_message_20(
    agent: SdrAgent, openai_fake: FakeOpenAI, settings: Settings
) -> None:
    """The whole request (system + window + turn) for a long conversation with a
    complete profile stays within the empty-profile request + the profile budget."""
    conversation = history(40, chars=200)
    await agent.run(turn(past=conversation[20 - settings.history_window : 20]))
    await agent.run(turn(past=conversation[-settings.history_window :], profile=full_profile()))
    at_20, at_40 = (request_chars(r) for r in openai_fake.chat_requests)
    assert at_40 <= at_20 + PROFILE_PROMPT_BUDGET_CHARS


# --- voice notes ---------------------------------------------------------------------------


async def test_a_voice_note_is_fetched_transcribed_once_and_answered(
    agent: SdrAgent, openai_fake: FakeOpenAI, media: FakeMedia
) -> None:
    openai_fake.then(reply="Entendi, 500 por dia em Campinas!")
    result = await agent.run(turn(audio()))

    assert media.fetched == [AUDIO_URL]
    assert openai_fake.transcription_requests == 1
    assert openai_fake.chat_calls == 1
    assert result.lead_texts == [f"[áudio transcrito] {TRANSCRIPT}"]
    assert openai_fake.user_contents()[-1] == f"[áudio transcrito] {TRANSCRIPT}"
    assert result.reply == "Entendi, 500 por dia em Campinas!"


async def test_text_and_voice_in_one_burst_are_one_call(
    agent: SdrAgent, openai_fake: FakeOpenAI, media: FakeMedia
) -> None:
    result = await agent.run(turn(text("Oi", mid="m1"), audio(mid="m2"), text("é isso", mid="m3")))
    assert openai_fake.transcription_requests == 1
    assert openai_fake.chat_calls == 1
    assert result.lead_texts == ["Oi", f"[áudio transcrito] {TRANSCRIPT}", "é isso"]


async def test_an_unusable_voice_note_still_gets_a_turn_with_a_placeholder(
    make_agent: AgentFactory, openai_fake: FakeOpenAI
) -> None:
    media = FakeMedia(MediaUnusable("media is 40000000 bytes, limit is 16777216"))
    agent = make_agent(fetch_media=media)
    openai_fake.then(reply="Não consegui ouvir o áudio, pode escrever?")
    result = await agent.run(turn(audio()))

    assert media.fetched == [AUDIO_URL]
    assert openai_fake.transcription_requests == 0
    assert openai_fake.chat_calls == 1
    assert result.lead_texts == ["[o lead enviou um áudio que não pôde ser transcrito]"]
    assert openai_fake.user_contents()[-1] == "[o lead enviou um áudio que não pôde ser transcrito]"
    assert result.reply == "Não consegui ouvir o áudio, pode escrever?"


async def test_a_voice_note_without_url_is_not_fetched(
    agent: SdrAgent, openai_fake: FakeOpenAI, media: FakeMedia
) -> None:
    result = await agent.run(turn(audio(url=None)))
    assert media.fetched == []
    assert openai_fake.transcription_requests == 0
    assert result.lead_texts == ["[o lead enviou um áudio que não pôde ser transcrito]"]


async def test_a_transient_media_failure_fails_the_turn_so_it_is_retried(
    make_agent: AgentFactory, openai_fake: FakeOpenAI
) -> None:
    agent = make_agent(fetch_media=FakeMedia(SendError("HTTP 503", status=503, retryable=True)))
    with pytest.raises(SendError):
        await agent.run(turn(audio()))
    assert openai_fake.calls_started == 0


async def test_whisper_down_fails_the_turn_as_unavailable(
    agent: SdrAgent, openai_fake: FakeOpenAI, settings: Settings
) -> None:
    for _ in range(settings.openai_max_attempts):
        openai_fake.transcript_script.append(Step(status=500))
    with pytest.raises(LLMUnavailable):
        await agent.run(turn(audio()))
    assert openai_fake.transcription_requests == settings.openai_max_attempts
    assert openai_fake.calls_started == 0


async def test_a_voice_note_whisper_rejects_still_gets_a_turn_with_a_placeholder(
    agent: SdrAgent, openai_fake: FakeOpenAI
) -> None:
    """Whisper answering 400 (corrupt or unsupported audio) is as final as a media
    download that can never succeed: the same bytes will be rejected on every retry.
    Failing the turn would keep the voice note pending forever, and every later message
    of this lead is batched with it, so the lead would never be answered again."""
    openai_fake.transcript_script.append(Step(status=400))
    openai_fake.then(reply="Não consegui ouvir o áudio, pode escrever?")
    result = await agent.run(turn(audio()))

    assert openai_fake.transcription_requests == 1  # a 400 is not retried
    assert openai_fake.chat_calls == 1
    assert result.lead_texts == ["[o lead enviou um áudio que não pôde ser transcrito]"]
    assert result.reply == "Não consegui ouvir o áudio, pode escrever?"


# --- lead update and scoring ---------------------------------------------------------------


async def test_the_models_lead_update_is_merged_and_scored(agent: SdrAgent, openai_fake: FakeOpenAI) -> None:
    openai_fake.then(
        reply="Perfeito, João! Vou passar para um consultor.",
        lead={
            "name": "João",
            "city": "Campinas - SP",
            "segment": "frigorífico",
            "product_interest": "formadora de hambúrguer",
            "volume": "500 hambúrgueres por dia",
            "urgency": "imediata",
            "decision_role": "decisor",
        },
    )
    known = LeadProfile(company="Frigorífico Boi Bom", email="joao@boibom.com.br")
    inbound = [
        text("sou o João, de Campinas - SP", mid="m1"),
        text("preciso de 500 por dia, urgente", mid="m2"),
    ]
    result = await agent.run(turn(*inbound, profile=known, lead_message_count=3))

    profile = result.profile
    assert (profile.name, profile.city, profile.state) == ("João", "Campinas", "SP")
    assert profile.volume_per_day == 500
    assert (profile.urgency, profile.decision_role) == ("imediata", "decisor")
    # What the model did not say is kept, not erased.
    assert (profile.company, profile.email) == ("Frigorífico Boi Bom", "joao@boibom.com.br")
    assert set(result.changed_fields) >= {
        "name",
        "city",
        "state",
        "segment",
        "volume",
        "urgency",
        "decision_role",
    }
    assert "company" not in result.changed_fields
    assert profile.provenance["name"].message_id == "m2"  # the last message of the turn

    expected = score_lead(profile, lead_message_count=3 + 2, rules=load_scoring_rules())
    assert result.score == expected
    assert result.score.temperature in ("frio", "morno", "quente")
    assert result.score.temperature == "quente"
    assert result.score.reasons


async def test_an_empty_lead_update_changes_nothing_and_still_scores(
    agent: SdrAgent, openai_fake: FakeOpenAI
) -> None:
    known = LeadProfile(name="Maria", city="Londrina", state="PR")
    openai_fake.then(reply="Oi!", lead={"name": None, "city": "  "})
    result = await agent.run(turn(profile=known, lead_message_count=1))
    assert result.changed_fields == []
    assert result.profile == known
    assert result.score.temperature == "frio"
    assert result.score == score_lead(known, lead_message_count=2, rules=load_scoring_rules())


async def test_a_bad_field_from_the_model_is_dropped_and_the_rest_applies(
    agent: SdrAgent, openai_fake: FakeOpenAI
) -> None:
    openai_fake.then(reply="Anotado!", lead={"name": "Ana", "state": "Narnia", "cnpj": "11.111.111/1111-11"})
    result = await agent.run(turn())
    assert result.profile.name == "Ana"
    assert result.profile.state is None and result.profile.cnpj is None
    assert result.changed_fields == ["name"]


# --- bounded work per message (issue 13) ----------------------------------------------------


async def test_a_960k_character_message_is_stored_whole_but_every_prompt_sees_it_cut(
    aiohttp_client: Any, settings: Settings, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, clock: Any
) -> None:
    from tests.conftest import zapi_message
    from tests.helpers.settle import settled
    from web.app import create_app
    from web.keys import STORE

    # 960,023 characters (ASCII, so the JSON body stays under the 1 MiB cap).
    huge = ("Quero orcamento da FB300. " * 36_924).strip()
    note = f"[mensagem cortada: {len(huge) - 4000} caracteres omitidos]"
    bot = await aiohttp_client(create_app(settings, clock=clock))
    for mid, body in (("3EB0HUGE00000001", huge), ("3EB0HUGE00000002", "e o prazo?")):
        response = await bot.post("/webhooks/zapi", json=zapi_message(message_id=mid, text=body))
        assert response.status == 200
        await settled(bot)

    first, second = openai_fake.chat_requests
    assert first["messages"][-1] == {"role": "user", "content": huge[:4000] + "\n" + note}
    # The next turn's history carries the same cut text, not the 960,000 characters.
    assert second["messages"][1] == {"role": "user", "content": huge[:4000] + "\n" + note}
    assert second["messages"][-1] == {"role": "user", "content": "e o prazo?"}
    assert all(len(json.dumps(r["messages"], ensure_ascii=False)) < 30_000 for r in (first, second))
    # The team still reads the whole message (Chatwoot, the store).
    stored = await bot.app[STORE].recent_messages(KEY, 10)
    assert [m.text for m in stored if m.direction == "in"] == [huge, "e o prazo?"]


async def test_the_prompt_limits_come_from_settings(
    aiohttp_client: Any, tmp_path: Path, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, clock: Any
) -> None:
    from agent.budget import prompt_tokens
    from tests.conftest import fast_settings, zapi_message
    from tests.helpers.settle import settled
    from web.app import create_app
    from web.keys import RUNNER

    settings = fast_settings(tmp_path, lead_message_max_chars=50, prompt_max_tokens=5000)
    bot = await aiohttp_client(create_app(settings, clock=clock))
    deps = bot.app[RUNNER].agent.deps
    assert (deps.lead_message_max_chars, deps.prompt_max_tokens) == (50, 5000)
    for index in range(12):
        body = f"mensagem {index:02d} " + "bla " * 199 + "bla"
        payload = zapi_message(message_id=f"3EB0SET{index:09d}", text=body)
        response = await bot.post("/webhooks/zapi", json=payload)
        assert response.status == 200
        await settled(bot)

    last = openai_fake.chat_requests[-1]["messages"]
    cut = ("mensagem 11 " + "bla " * 200)[:50]
    assert last[-1]["content"] == cut + "\n[mensagem cortada: 761 caracteres omitidos]"
    assert prompt_tokens(last) <= 5000

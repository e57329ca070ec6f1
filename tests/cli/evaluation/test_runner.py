"""The turn loop against the real agent graph, with the model faked at the HTTP boundary."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from cli.evaluation.bot import build_bot
from cli.evaluation.lead import SimulatedLead
from cli.evaluation.personas import Persona
from cli.evaluation.runner import Conversation
from cli.evaluation.transcript import Transcript
from tests.conftest import fast_settings
from tests.helpers.clock import sp
from tests.helpers.fake_eval_model import BOT, LEAD, FakeEvalModel


def persona(**fields: Any) -> Persona:
    values: dict[str, Any] = {
        "name": "p",
        "description": "Um lead.",
        "goal": "Comprar.",
        "now": sp(2026, 3, 3, 10, 0),
        "max_turns": 3,
    }
    return Persona.model_validate({**values, **fields})


@pytest.fixture
def fake() -> Any:
    with aioresponses() as mock:
        yield FakeEvalModel(mock)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def play(
    session: aiohttp.ClientSession, tmp_path: Path, who: Persona, turns: int | None = None
) -> Transcript:
    settings = fast_settings(tmp_path, openai_max_attempts=2)
    agent, voices = build_bot(settings, session)
    lead = SimulatedLead(agent.deps.llm, who, "Seleto Industrial")
    return await Conversation(who, agent, voices, lead).play(turns or who.max_turns)


def user_text(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


async def test_the_loop_stops_at_the_turn_limit(
    fake: FakeEvalModel, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    transcript = await play(session, tmp_path, persona(opening="oi, vcs tem formadora?"))
    assert transcript.end_reason == "turn_limit"
    assert [t.lead for t in transcript.turns] == ["oi, vcs tem formadora?", "ok", "ok"]
    assert len(fake.calls(BOT)) == 3
    assert len(fake.calls(LEAD)) == 2  # the opening line costs no call
    assert transcript.bot_tokens.prompt == 3000
    assert transcript.harness_tokens.completion == 200


async def test_the_loop_stops_when_the_lead_ends(
    fake: FakeEvalModel, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake.lead("bom dia").lead("sou de Chapecó").lead_ends()
    fake.bot("Bom dia! De onde você fala?").bot("Ótimo!", lead={"city": "Chapecó"})
    transcript = await play(session, tmp_path, persona(max_turns=8))
    assert transcript.end_reason == "lead_ended"
    assert len(transcript.turns) == 2
    assert transcript.profile["city"] == "Chapecó"
    # The lead sees the bot's words as the other party's, its own as the assistant's.
    last_lead_call = fake.calls(LEAD)[-1]["messages"]
    assert [m["role"] for m in last_lead_call[1:]] == ["assistant", "user", "assistant", "user"]
    assert last_lead_call[-1]["content"] == "Ótimo!"


async def test_time_is_the_persona_s_now(
    fake: FakeEvalModel, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Saturday night: the bot is told the team is away, whatever the machine's clock says."""
    saturday_night = sp(2026, 3, 7, 22, 30)
    await play(session, tmp_path, persona(now=saturday_night.isoformat()), turns=2)
    prompts = [json.dumps(c["messages"], ensure_ascii=False) for c in fake.calls(BOT)]
    assert len(prompts) == 2
    assert all("Fora do horário" in text for text in prompts)


async def test_a_voice_note_reaches_the_agent_transcribed(
    fake: FakeEvalModel, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake.lead("então tipo assim eu faço uns trezentos por dia", voice=True)
    await play(session, tmp_path, persona(voice_notes="always"), turns=1)
    assert (
        user_text(fake.calls(BOT)[0]) == "[áudio transcrito] então tipo assim eu faço uns trezentos por dia"
    )


async def test_a_keyword_opt_out_is_confirmed_without_the_model_and_ends_the_talk(
    fake: FakeEvalModel, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake.lead("não quero mais receber mensagens")
    transcript = await play(session, tmp_path, persona(opening="quem é?"))
    assert transcript.end_reason == "opted_out"
    assert transcript.turns[-1].opted_out
    assert "não vou mais enviar" in transcript.turns[-1].reply
    assert len(fake.calls(BOT)) == 1  # only the opening was answered by the model


async def test_the_model_s_opt_out_and_handoff_are_recorded(
    fake: FakeEvalModel, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    handoff = {"tool": "handoff_to_human", "reason": "pediu_humano", "summary": "Quer um vendedor."}
    fake.bot("Claro, vou passar para o time.", tools=[handoff])
    fake.bot("Tudo bem, não escrevo mais.", tools=[{"tool": "opt_out", "confirmed": True}])
    transcript = await play(session, tmp_path, persona(opening="quero um vendedor"))
    assert transcript.turns[0].handoff == "pediu_humano"
    assert "handoff_to_human" in transcript.turns[0].tools
    assert transcript.turns[1].opted_out
    assert transcript.end_reason == "opted_out"
    # The next turn sees the conversation so far, as the runtime's history would carry it.
    assert "Claro, vou passar para o time." in json.dumps(fake.calls(BOT)[1]["messages"], ensure_ascii=False)


async def test_a_model_that_keeps_failing_errors_the_persona(
    fake: FakeEvalModel, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake.fail(BOT, 429, times=2)
    transcript = await play(session, tmp_path, persona(opening="oi"))
    assert transcript.end_reason == "errored"
    assert transcript.error is not None and "LLMUnavailable" in transcript.error


async def test_a_refused_key_is_reported_without_the_words_that_quote_it(
    fake: FakeEvalModel, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake.fail(BOT, 401)
    transcript = await play(session, tmp_path, persona(opening="oi"))
    assert transcript.end_reason == "errored"
    assert transcript.error == "AuthenticationError: HTTP 401"

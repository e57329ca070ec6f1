"""The chat request laid out for OpenAI's prompt cache (agent/request.py), asserted on the
bytes the bot sends: consecutive turns of one conversation repeat the schema, the static
system prompt and the history byte for byte, and what changes per turn ("now", the
profile, the summary) comes only after them. History is trimmed by tokens behind the
rolling summary, keeping the newest messages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import CallbackResult, aioresponses

from agent.billing import count_request, format_tokens
from agent.budget import HISTORY_ANCHOR_EVERY, anchored_history, message_tokens, prompt_tokens
from agent.graph import AgentDeps, TurnInput, build_messages
from agent.llm import LLMClient
from agent.prompts import load_prompt_bundle
from agent.request import split_system_template
from agent.scoring import load_scoring_rules
from core.lead import LeadProfile
from core.models import InboundMessage, MessageKind
from core.records import StoredMessage
from core.settings import Settings
from tests.conftest import zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from web.app import create_app
from web.configs.agent import llm_config

LEAD = "5544999999999"
NOW = datetime(2025, 3, 10, 17, 0, tzinfo=UTC)


class RawOpenAI(FakeOpenAI):
    """The suite's fake OpenAI, also keeping each chat request's body as sent (bytes)."""

    def __init__(self, mock: aioresponses) -> None:
        self.raw: list[bytes] = []
        super().__init__(mock)

    async def _chat(self, url: Any, **kwargs: Any) -> CallbackResult:
        data = kwargs.get("data")
        self.raw.append(data if isinstance(data, bytes) else pydantic_core.to_json(kwargs.get("json")))
        return await super()._chat(url, **kwargs)


@pytest.fixture
def raw_openai(http_mock: aioresponses) -> RawOpenAI:
    return RawOpenAI(http_mock)


@pytest.fixture
async def app_client(
    aiohttp_client: Callable[..., Any],
    settings: Settings,
    raw_openai: RawOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(create_app(settings, clock=clock))


async def say(bot: TestClient, message_id: str, text: str) -> None:
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id=message_id, text=text))
    assert response.status == 200
    await settled(bot)


def _json(value: Any) -> bytes:
    return pydantic_core.to_json(value)  # the serializer agent/llm.py sends with


async def test_consecutive_turns_repeat_schema_static_prompt_and_history_byte_for_byte(
    app_client: TestClient, raw_openai: RawOpenAI, clock: TestClock
) -> None:
    raw_openai.then(
        reply="Oi! De onde você fala?", lead={"city": "Maringá", "state": "PR"}, summary="Quer formadora."
    )
    await say(app_client, "3EB0CACHE0000001", "Oi, quero saber da formadora de hambúrguer")
    clock.advance(minutes=3)
    raw_openai.then(reply="A FB300 faz 300 por hora.", summary="Lead de Maringá/PR quer formadora.")
    await say(app_client, "3EB0CACHE0000002", "qual a capacidade?")
    clock.advance(minutes=3)
    await say(app_client, "3EB0CACHE0000003", "e quanto custa?")

    first, second, third = raw_openai.raw
    bodies = [json.loads(raw) for raw in raw_openai.raw]
    # The schema is the same bytes on every call (it is not where per-turn data goes).
    formats = [raw[raw.index(b'"response_format":') :] for raw in raw_openai.raw]
    assert formats[0] == formats[1] == formats[2]
    # The messages: static system prompt, then history; the third request repeats the
    # second's history (its lead message and the reply) right after the same system prompt.
    static = _json(bodies[0]["messages"][0])
    shared = os.path.commonprefix([second, third])
    assert shared.startswith(b'{"messages":[' + static + b",")
    history = bodies[1]["messages"][1:3]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert b'{"messages":[' + static + b"," + b",".join(_json(m) for m in history) in shared
    assert bodies[2]["messages"][1:3] == history

    # What changes per turn comes only after that prefix, in this turn's context: the
    # time (to the minute, three minutes apart), the profile, the summary.
    contexts = [body["messages"][-2] for body in bodies[1:]]
    assert [c["role"] for c in contexts] == ["system", "system"]
    times = [re.findall(r"\d\d/\d\d/\d{4} \d\d:\d\d", c["content"]) for c in contexts]
    assert len(times[0]) == len(times[1]) == 1 and times[0] != times[1]
    assert all("Maringá" in c["content"] for c in contexts)
    assert "Quer formadora." in contexts[0]["content"]
    assert "Lead de Maringá/PR quer formadora." in contexts[1]["content"]
    for value in [t[0].encode() for t in times] + ["Maringá".encode(), b"Quer formadora", b"Lead de Maring"]:
        assert value not in shared and value not in formats[0]
    assert b"# Agora" not in static

    # Counted as OpenAI bills it: schema + static prompt + that history are cached.
    counted = count_request(bodies[2], bodies[1])
    prefix = format_tokens(bodies[2]["response_format"]) + prompt_tokens(bodies[1]["messages"][:3]) - 3
    assert counted.shared >= prefix
    assert counted.cached > prefix - 128 and counted.cacheable_share >= 0.8


def test_the_template_splits_before_the_first_per_turn_section() -> None:
    head, tail = split_system_template(load_prompt_bundle().system_template)
    assert "{knowledge}" in head and "{company_name}" in head
    assert tail.startswith("# Agora\n{now}")
    for name in ("{now}", "{lead_profile}", "{missing_fields}", "{conversation_summary}", "{business_hours}"):
        assert name in tail and name not in head
    # A per-turn placeholder in the knowledge's own section does not drag the knowledge along.
    assert split_system_template("Regras.\n\n# Conhecimento\n{knowledge}\n{lead_profile}\n") == (
        "Regras.\n\n# Conhecimento\n{knowledge}",
        "{lead_profile}\n",
    )
    assert split_system_template("Regras {company_name}.") == ("Regras {company_name}.", "")


# --- history behind the summary -------------------------------------------------------------


def stored(count: int, *, chars: int = 400, first_id: int = 1) -> list[StoredMessage]:
    return [
        StoredMessage(
            id=first_id + index,
            direction="in" if index % 2 == 0 else "out",
            kind="text",
            text=(f"mensagem {first_id + index:04d} " + "palavra " * chars)[:chars],
            created_at=NOW - timedelta(minutes=count - index),
        )
        for index in range(count)
    ]


def agent_deps(settings: Settings, **limits: Any) -> AgentDeps:
    async def no_media(message: InboundMessage) -> bytes:  # pragma: no cover - text turns only
        raise AssertionError("no media here")

    return AgentDeps(
        llm=LLMClient(llm_config(settings)),
        fetch_media=no_media,
        prompts=load_prompt_bundle(),
        rules=load_scoring_rules(),
        **limits,
    )


def a_turn(history: list[StoredMessage], summary: str | None = None) -> TurnInput:
    message = InboundMessage(
        channel="zapi", contact_id=LEAD, provider_message_id="3EB0HIST01", kind=MessageKind.TEXT, text="e aí?"
    )
    return TurnInput(
        contact_key=f"whatsapp:{LEAD}",
        inbound=[message],
        profile=LeadProfile(name="Carlos"),
        history=history,
        lead_message_count=len(history) // 2,
        now=NOW,
        summary=summary,
    )


def test_history_is_trimmed_by_tokens_keeping_the_newest_and_the_summary(settings: Settings) -> None:
    history = stored(10)  # ~110 tokens each
    summary = "Carlos, de Maringá/PR, quer a FB300 para 400 por dia."
    messages = build_messages(
        agent_deps(settings, history_max_tokens=500), a_turn(history, summary), ["e aí?"]
    )
    window = [m["content"] for m in messages[1:-2]]
    assert 0 < len(window) < len(history)
    assert window == [m.text for m in history[-len(window) :]]  # the newest, in order
    assert sum(message_tokens({"role": "user", "content": t}) for t in window) <= 500
    # What was dropped is carried by the rolling summary, in this turn's context.
    assert summary in messages[-2]["content"]
    assert messages[-1] == {"role": "user", "content": "e aí?"}


def test_a_long_window_keeps_its_start_while_the_runtimes_window_slides() -> None:
    conversation = [{"role": "user", "content": f"mensagem {i}"} for i in range(1, 41)]
    starts = []
    for end in range(20, 41, 2):  # the runtime passes the last 20, one exchange more per turn
        window, _ = anchored_history(
            conversation[end - 20 : end], ids=list(range(end - 19, end + 1)), available=10**6
        )
        starts.append(window[0]["content"])
        assert window == conversation[end - len(window) : end]  # always the newest, in order
        assert 20 - HISTORY_ANCHOR_EVERY < len(window) <= 20
    # The start moves every 4 turns (8 messages), not every turn.
    assert len(set(starts)) <= 3 and starts.count(starts[0]) >= 2


def test_a_short_window_is_kept_whole() -> None:
    history = [{"role": "user", "content": f"m{i}"} for i in range(10)]
    window, tokens = anchored_history(history, ids=list(range(3, 13)), available=10**6)
    assert window == history and tokens == sum(message_tokens(m) for m in history)


# --- the schema sent ---------------------------------------------------------------------------


def tool_names(request: dict[str, Any]) -> list[str]:
    items = request["response_format"]["json_schema"]["schema"]["properties"]["tool_calls"]["items"]
    return [t["properties"]["tool"]["const"] for t in items["anyOf"]]


async def test_the_meeting_tools_are_sent_only_with_meeting_times(
    settings: Settings, openai_fake: FakeOpenAI
) -> None:
    import aiohttp

    from agent.graph import SdrAgent

    async with aiohttp.ClientSession() as session:
        deps = agent_deps(settings)
        deps.llm = LLMClient(llm_config(settings), session)
        agent = SdrAgent(deps)
        await agent.run(a_turn([]))
        offer = "Horários livres: 1) terça 10h 2) quarta 15h. Quando o lead escolher, chame book_meeting."
        openai_fake.then(reply="Marcado!", tools=[{"tool": "book_meeting", "option": 2}])
        booked = await agent.run(dataclasses.replace(a_turn([]), meeting_note=offer))
    without, with_times = openai_fake.chat_requests
    assert tool_names(without) == [
        "request_quote",
        "register_technical_question",
        "handoff_to_human",
        "opt_out",
    ]
    assert tool_names(with_times)[4:] == ["book_meeting", "reschedule_meeting", "cancel_meeting"]
    assert format_tokens(without["response_format"]) + 100 < format_tokens(with_times["response_format"])
    # Both are the same answer to the same code (and to fakes that tell calls apart by it).
    assert without["response_format"]["json_schema"]["name"] == "AgentTurnOutput"
    assert with_times["response_format"]["json_schema"]["name"] == "AgentTurnOutput"
    assert booked.effects.meeting_option == 2

"""The tools the model may call (`agent/tools.py`) and what the pipeline does with them.

A valid call becomes an effect committed with the turn (an `orcamentos` row, a
technical question for engineering, a handoff, an opt-out); an invalid one is
reported back to the model once and never crashes the turn or silences the lead.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openai.lib._parsing._completions import type_to_response_format_param
from structlog.testing import capture_logs

from agent.graph import AgentTurnOutput
from agent.tools import (
    MAX_QUOTES_PER_TURN,
    MAX_TECHNICAL_QUESTIONS_PER_TURN,
    TOOL_NAMES,
    BookMeeting,
    CancelMeeting,
    HandoffToHuman,
    OptOut,
    RegisterTechnicalQuestion,
    RequestQuote,
    RescheduleMeeting,
    run_tools,
)
from core.records import Handoff, QuoteRequest, TechnicalQuestion
from tests.conftest import zapi_message
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from web.keys import STORE

LEAD = "5544999999999"
KEY = f"whatsapp:{LEAD}"


def quote(
    products: list[str],
    summary: str = "Frigorífico em Londrina/PR, 3.000 hambúrgueres/dia.",
    quantity: str | None = "1",
) -> RequestQuote:
    return RequestQuote(tool="request_quote", products=products, quantity=quantity, summary=summary)


def question(text: str, context: str | None = None) -> RegisterTechnicalQuestion:
    return RegisterTechnicalQuestion(tool="register_technical_question", question=text, context=context)


def handoff(
    reason: str = "pediu_humano", summary: str = "Quer falar com um vendedor sobre a FB300."
) -> HandoffToHuman:
    return HandoffToHuman(tool="handoff_to_human", reason=reason, summary=summary)  # type: ignore[arg-type]


# --- each tool on its own ------------------------------------------------------------------


def test_request_quote_becomes_an_orcamento_for_the_seller() -> None:
    effects = run_tools([quote(["  FB300 ", "", "molde 120 mm"], quantity=" 2 unidades ")])
    assert effects.quotes == [
        QuoteRequest(
            products=["FB300", "molde 120 mm"],
            quantity="2 unidades",
            summary="Frigorífico em Londrina/PR, 3.000 hambúrgueres/dia.",
        )
    ]
    assert effects.called == ["request_quote"]
    assert effects.failures == []


def test_a_blank_quantity_is_stored_as_unknown() -> None:
    effects = run_tools([quote(["FBM100"], quantity="   ")])
    assert effects.quotes[0].quantity is None


def test_technical_question_is_registered_for_engineering() -> None:
    effects = run_tools([question(" A FB300 forma carne de frango? ", context="  ")])
    assert effects.technical_questions == [
        TechnicalQuestion(question="A FB300 forma carne de frango?", context=None)
    ]
    assert effects.called == ["register_technical_question"]


def test_handoff_records_reason_and_summary() -> None:
    effects = run_tools([handoff()])
    assert effects.handoff == Handoff(
        reason="pediu_humano", summary="Quer falar com um vendedor sobre a FB300."
    )
    assert effects.called == ["handoff_to_human"]


def test_opt_out_confirmed_marks_the_lead() -> None:
    effects = run_tools([OptOut(tool="opt_out", confirmed=True)])
    assert effects.opt_out is True
    assert effects.failures == []


def test_opt_out_not_confirmed_does_nothing() -> None:
    effects = run_tools([OptOut(tool="opt_out", confirmed=False)])
    assert effects.opt_out is False
    assert effects.failures == []
    assert effects.quotes == [] and effects.handoff is None


def test_no_tools_no_effects() -> None:
    effects = run_tools([])
    assert (effects.quotes, effects.technical_questions, effects.handoff, effects.opt_out) == (
        [],
        [],
        None,
        False,
    )
    assert effects.called == [] and effects.failures == []


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (quote([]), "produto"),
        (quote(["", "   "]), "produto"),
        (quote(["FB300"], summary="   "), "resumo"),
        (question("   "), "pergunta"),
        (handoff(summary=" "), "resumo"),
    ],
)
def test_an_invalid_call_is_a_failure_with_a_reason_not_an_exception(call: Any, reason: str) -> None:
    effects = run_tools([call])
    assert len(effects.failures) == 1
    failure = effects.failures[0]
    assert failure.startswith(f"{call.tool}: ")
    assert reason in failure
    assert effects.called == []
    assert effects.quotes == [] and effects.technical_questions == [] and effects.handoff is None


def test_one_bad_call_does_not_stop_the_good_ones() -> None:
    effects = run_tools([quote([]), question("Qual a voltagem?"), quote(["FB300"])])
    assert len(effects.failures) == 1
    assert [q.products for q in effects.quotes] == [["FB300"]]
    assert [q.question for q in effects.technical_questions] == ["Qual a voltagem?"]
    assert effects.called == ["register_technical_question", "request_quote"]


def test_handoff_twice_keeps_the_first() -> None:
    effects = run_tools(
        [handoff("pediu_humano", "primeiro resumo"), handoff("lead_quente", "segundo resumo")]
    )
    assert effects.handoff == Handoff(reason="pediu_humano", summary="primeiro resumo")
    assert effects.failures == []


def test_one_turn_creates_at_most_three_quotes_and_three_questions() -> None:
    assert (MAX_QUOTES_PER_TURN, MAX_TECHNICAL_QUESTIONS_PER_TURN) == (3, 3)
    calls: list[Any] = [quote([f"FB{n}"]) for n in range(10)]
    calls += [question(f"Dúvida {n}?") for n in range(10)]
    with capture_logs() as logs:
        effects = run_tools([*calls, handoff()])
    assert [q.products for q in effects.quotes] == [["FB0"], ["FB1"], ["FB2"]]
    assert [q.question for q in effects.technical_questions] == ["Dúvida 0?", "Dúvida 1?", "Dúvida 2?"]
    # The cap is not the model's mistake: no repair call is asked for, other tools still run.
    assert effects.failures == []
    assert effects.handoff is not None and effects.handoff.reason == "pediu_humano"
    assert [entry for entry in logs if entry["event"] == "tool_calls_over_cap"] == [
        {
            "event": "tool_calls_over_cap",
            "log_level": "warning",
            "dropped": {"request_quote": 7, "register_technical_question": 7},
        }
    ]


def test_an_invalid_call_does_not_use_up_the_cap() -> None:
    effects = run_tools([quote([]), quote([]), quote(["A"]), quote(["B"]), quote(["C"]), quote(["D"])])
    assert [q.products for q in effects.quotes] == [["A"], ["B"], ["C"]]
    assert len(effects.failures) == 2


def test_the_model_output_parses_each_tool_by_its_name() -> None:
    output = AgentTurnOutput.model_validate(
        {
            "reply": "Ok!",
            "lead": {},
            "tool_calls": [
                {"tool": "request_quote", "products": ["FB300"], "quantity": None, "summary": "s"},
                {"tool": "register_technical_question", "question": "q", "context": None},
                {"tool": "handoff_to_human", "reason": "outro", "summary": "s"},
                {"tool": "opt_out", "confirmed": True},
                {"tool": "book_meeting", "option": 2},
                {"tool": "reschedule_meeting", "option": 1},
                {"tool": "cancel_meeting", "confirmed": True},
            ],
            "summary": "resumo",
            "image_description": None,
        }
    )
    assert [type(c) for c in output.tool_calls] == [
        RequestQuote,
        RegisterTechnicalQuestion,
        HandoffToHuman,
        OptOut,
        BookMeeting,
        RescheduleMeeting,
        CancelMeeting,
    ]
    assert tuple(c.tool for c in output.tool_calls) == TOOL_NAMES


# --- the schema sent to OpenAI ------------------------------------------------------------------


def _objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            found.append(node)
        for value in node.values():
            found += _objects(value)
    elif isinstance(node, list):
        for value in node:
            found += _objects(value)
    return found


def _dicts(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [d for value in node.values() for d in _dicts(value)]
    if isinstance(node, list):
        return [d for value in node for d in _dicts(value)]
    return []


def test_agent_turn_output_passes_openai_strict_schema_conversion() -> None:
    response_format = type_to_response_format_param(AgentTurnOutput)
    assert response_format["type"] == "json_schema"
    spec = response_format["json_schema"]
    assert spec["strict"] is True
    schema = spec["schema"]
    objects = _objects(schema)
    assert len(objects) >= 6  # the output, the lead update and the four tools
    for obj in objects:
        properties = obj.get("properties", {})
        assert obj.get("additionalProperties") is False, obj.get("title")
        assert sorted(obj.get("required", [])) == sorted(properties), obj.get("title")
    assert set(schema["properties"]) == {"reply", "lead", "tool_calls", "summary", "image_description"}
    tool_titles = {d["title"] for d in schema["$defs"].values()} & {
        "RequestQuote",
        "RegisterTechnicalQuestion",
        "HandoffToHuman",
        "OptOut",
    }
    assert len(tool_titles) == 4
    # Strict mode rejects defaults: every value is explicit, null when unknown.
    assert not any("default" in node for node in _dicts(schema))


# --- through the pipeline -----------------------------------------------------------------------


async def post(bot: TestClient, payload: object) -> None:
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200, await response.text()


def db_rows(bot: TestClient, sql: str) -> list[tuple]:
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        return db.execute(sql).fetchall()


BAD_QUOTE = {
    "tool": "request_quote",
    "products": [],
    "quantity": None,
    "summary": "Quer a FB300 para o frigorífico.",
}
GOOD_QUOTE = {
    "tool": "request_quote",
    "products": ["FB300"],
    "quantity": "1 unidade",
    "summary": "Frigorífico em Londrina/PR, 3.000 hambúrgueres/dia, compra em 30 dias.",
}


async def test_an_invalid_tool_call_gets_one_repair_call_and_the_fix_is_persisted(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Vou registrar seu orçamento!", tools=[BAD_QUOTE])
    openai_fake.then(
        reply="Registrei o pedido de orçamento da FB300, o time comercial te chama.", tools=[GOOD_QUOTE]
    )
    await post(bot, zapi_message(text="Quero um orçamento da FB300"))
    await settled(bot)

    assert openai_fake.chat_calls == 2
    repair = openai_fake.chat_requests[1]["messages"]
    # The model sees what it answered and why the call failed, after the same conversation.
    assert repair[: len(openai_fake.chat_requests[0]["messages"])] == openai_fake.chat_requests[0]["messages"]
    assert repair[-2]["role"] == "assistant" and "request_quote" in repair[-2]["content"]
    assert repair[-1]["role"] == "system"
    assert "request_quote" in repair[-1]["content"] and "produto" in repair[-1]["content"]

    assert zapi_fake.texts_to(LEAD) == [
        "Registrei o pedido de orçamento da FB300, o time comercial te chama."
    ]
    quotes = await bot.app[STORE].quotes(KEY)
    assert [(q["products"], q["quantity"], q["summary"]) for q in quotes] == [
        (GOOD_QUOTE["products"], GOOD_QUOTE["quantity"], GOOD_QUOTE["summary"])
    ]
    assert quotes[0]["status"] == "novo"


async def test_a_repair_that_is_still_invalid_drops_the_call_and_the_lead_still_gets_the_reply(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(reply="Vou registrar!", tools=[BAD_QUOTE])
    openai_fake.then(
        reply="Me conta qual modelo te interessa para eu registrar o orçamento?", tools=[BAD_QUOTE]
    )
    await post(bot, zapi_message(text="Quero um orçamento"))
    await settled(bot)

    assert openai_fake.chat_calls == 2  # exactly one repair, no loop
    assert zapi_fake.texts_to(LEAD) == ["Me conta qual modelo te interessa para eu registrar o orçamento?"]
    assert await bot.app[STORE].quotes(KEY) == []
    assert db_rows(bot, "SELECT status FROM inbound") == [("done",)]


async def test_valid_tool_calls_cost_no_repair_and_are_all_persisted(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(
        reply="Registrei o orçamento e a sua dúvida técnica; a engenharia te responde por aqui.",
        tools=[
            GOOD_QUOTE,
            {
                "tool": "register_technical_question",
                "question": "A FB300 forma frango?",
                "context": "Frigorífico de aves",
            },
        ],
    )
    await post(bot, zapi_message(text="Quero orçamento da FB300. Ela forma frango?"))
    await settled(bot)

    assert openai_fake.chat_calls == 1
    assert zapi_fake.texts_to(LEAD) == [
        "Registrei o orçamento e a sua dúvida técnica; a engenharia te responde por aqui."
    ]
    assert len(await bot.app[STORE].quotes(KEY)) == 1
    questions = await bot.app[STORE].technical_questions(KEY)
    assert [(q["question"], q["context"], q["status"]) for q in questions] == [
        ("A FB300 forma frango?", "Frigorífico de aves", "aberta")
    ]


async def test_handoff_tool_marks_the_lead_for_a_seller(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(
        reply="Claro, vou chamar um vendedor para você.",
        tools=[
            {
                "tool": "handoff_to_human",
                "reason": "pediu_humano",
                "summary": "Pediu para falar com um vendedor.",
            }
        ],
    )
    await post(bot, zapi_message(text="Quero falar com uma pessoa"))
    await settled(bot)
    assert openai_fake.chat_calls == 1
    assert db_rows(bot, "SELECT handoff_state, handoff_reason, handoff_summary FROM leads") == [
        ("requested", "pediu_humano", "Pediu para falar com um vendedor.")
    ]
    # Inside business hours (the `clock` fixture) the model's own handoff reply goes out as written.
    assert zapi_fake.texts_to(LEAD) == ["Claro, vou chamar um vendedor para você."]


async def test_opt_out_tool_confirmed_by_the_model_marks_do_not_contact(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(
        reply="Tudo bem, não te envio mais mensagens.", tools=[{"tool": "opt_out", "confirmed": True}]
    )
    await post(bot, zapi_message(text="olha, prefiro que vocês não falem mais comigo por aqui"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Tudo bem, não te envio mais mensagens."]
    assert db_rows(bot, "SELECT opted_out FROM leads") == [(1,)]
    assert db_rows(bot, "SELECT COUNT(*) FROM followups WHERE status = 'pending'") == [(0,)]


async def test_opt_out_tool_not_confirmed_leaves_the_lead_reachable(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    openai_fake.then(
        reply="Sem problema! Posso te ajudar com mais alguma coisa?",
        tools=[{"tool": "opt_out", "confirmed": False}],
    )
    await post(bot, zapi_message(text="talvez eu não precise mais"))
    await settled(bot)
    assert zapi_fake.texts_to(LEAD) == ["Sem problema! Posso te ajudar com mais alguma coisa?"]
    assert db_rows(bot, "SELECT opted_out FROM leads") == [(0,)]


async def test_a_turn_asking_for_fifty_quotes_stores_three(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    many_quotes = [{**GOOD_QUOTE, "products": [f"FB{n}"]} for n in range(50)]
    many_questions = [
        {"tool": "register_technical_question", "question": f"Dúvida {n}?", "context": None}
        for n in range(50)
    ]
    openai_fake.then(reply="Registrei seus pedidos!", tools=many_quotes + many_questions)
    await post(bot, zapi_message(text="Quero orçamento de tudo"))
    await settled(bot)

    assert openai_fake.chat_calls == 1
    assert zapi_fake.texts_to(LEAD) == ["Registrei seus pedidos!"]
    assert db_rows(bot, "SELECT products FROM orcamentos ORDER BY id") == [
        ('["FB0"]',),
        ('["FB1"]',),
        ('["FB2"]',),
    ]
    assert db_rows(bot, "SELECT question FROM technical_questions ORDER BY id") == [
        ("Dúvida 0?",),
        ("Dúvida 1?",),
        ("Dúvida 2?",),
    ]


def test_book_meeting_keeps_the_first_option_and_refuses_a_non_option() -> None:
    effects = run_tools(
        [BookMeeting(tool="book_meeting", option=2), BookMeeting(tool="book_meeting", option=3)]
    )
    assert effects.meeting_option == 2
    refused = run_tools([BookMeeting(tool="book_meeting", option=0)])
    assert refused.meeting_option is None and refused.failures

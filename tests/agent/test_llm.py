"""The LLM retry policy as a turn sees it: `SdrAgent` -> `LLMClient` (openai SDK on its
aiohttp backend, over a real `aiohttp.ClientSession`) -> OpenAI faked with aioresponses.

429/5xx/timeouts are retried with backoff up to `openai_max_attempts`, then the turn
fails as `LLMUnavailable` (the runtime keeps the messages pending); other 4xx fail at
once; a refusal is `LLMRefused`, never an empty reply.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import openai
import pytest
from aioresponses import CallbackResult, aioresponses

from agent.budget import count_tokens
from agent.graph import TRUNCATED_RETRY_NOTE, AgentDeps, AgentTurnOutput, SdrAgent, TurnInput
from agent.llm import MAX_COMPLETION_TOKENS, LLMClient, LLMTruncated, is_retryable_openai_error
from agent.prompts import MAX_SUMMARY_CHARS, load_prompt_bundle
from agent.scoring import load_scoring_rules
from agent.tools import MAX_QUOTES_PER_TURN, MAX_TECHNICAL_QUESTIONS_PER_TURN
from core.errors import LLMRefused, LLMUnavailable
from core.lead import LeadProfile
from core.models import InboundMessage, MessageKind
from core.settings import Settings
from tests.conftest import fast_settings
from tests.helpers.fakes import FakeOpenAI, load_fixture
from web.configs.agent import llm_config

CHAT_URL = "https://api.openai.com/v1/chat/completions"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def no_media(message: InboundMessage) -> bytes:  # pragma: no cover - text turns only
    raise AssertionError("a text turn must not fetch media")


def make_agent(settings: Settings, session: aiohttp.ClientSession) -> SdrAgent:
    return SdrAgent(
        AgentDeps(
            llm=LLMClient(llm_config(settings), session),
            fetch_media=no_media,
            prompts=load_prompt_bundle(),
            rules=load_scoring_rules(),
        )
    )


@pytest.fixture
def agent(settings: Settings, session: aiohttp.ClientSession) -> SdrAgent:
    return make_agent(settings, session)


def a_turn(body: str = "Oi, vocês têm formadora de hambúrguer?") -> TurnInput:
    return TurnInput(
        contact_key="zapi:5544999999999",
        inbound=[
            InboundMessage(
                channel="zapi",
                contact_id="5544999999999",
                provider_message_id="3EB0LLM000000001",
                kind=MessageKind.TEXT,
                text=body,
            )
        ],
        profile=LeadProfile(),
        history=[],
        lead_message_count=0,
        now=datetime(2025, 3, 10, 17, 0, tzinfo=UTC),
    )


# --- retried ---------------------------------------------------------------------------


async def test_rate_limited_then_ok_is_answered_with_two_requests(
    agent: SdrAgent, openai_fake: FakeOpenAI
) -> None:
    openai_fake.then(status=429).then(reply="Temos sim! Quantos por dia?")
    result = await agent.run(a_turn())
    assert result.reply == "Temos sim! Quantos por dia?"
    assert openai_fake.calls_started == 2
    assert openai_fake.chat_calls == 2


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_then_ok_is_answered(
    agent: SdrAgent, openai_fake: FakeOpenAI, status: int
) -> None:
    openai_fake.then(status=status).then(status=status).then(reply="Olá!")
    result = await agent.run(a_turn())
    assert result.reply == "Olá!"
    assert openai_fake.calls_started == 3


@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(lambda: aiohttp.SocketTimeoutError("Timeout on reading data from socket"), id="read"),
        pytest.param(lambda: aiohttp.ConnectionTimeoutError("Connection timeout"), id="connect"),
        pytest.param(lambda: aiohttp.ServerTimeoutError("timeout"), id="server"),
    ],
)
async def test_a_network_timeout_then_ok_is_answered(
    agent: SdrAgent, openai_fake: FakeOpenAI, timeout: Any
) -> None:
    # What aiohttp raises when the SDK's 30 s socket timeouts expire.
    openai_fake.then(exception=timeout()).then(reply="Olá!")
    result = await agent.run(a_turn())
    assert result.reply == "Olá!"
    assert openai_fake.calls_started == 2


async def test_a_connection_error_then_ok_is_answered(agent: SdrAgent, openai_fake: FakeOpenAI) -> None:
    openai_fake.then(exception=aiohttp.ClientConnectionError("connection reset by peer")).then(reply="Olá!")
    result = await agent.run(a_turn())
    assert result.reply == "Olá!"
    assert openai_fake.calls_started == 2


async def test_a_persistent_server_error_is_unavailable_after_the_last_attempt(
    agent: SdrAgent, openai_fake: FakeOpenAI, settings: Settings
) -> None:
    for _ in range(10):
        openai_fake.then(status=500)
    with pytest.raises(LLMUnavailable):
        await agent.run(a_turn())
    assert openai_fake.calls_started == settings.openai_max_attempts == 4


async def test_the_attempt_budget_is_configurable(
    tmp_path: Any, session: aiohttp.ClientSession, openai_fake: FakeOpenAI
) -> None:
    agent = make_agent(fast_settings(tmp_path, openai_max_attempts=2), session)
    for _ in range(10):
        openai_fake.then(status=503)
    with pytest.raises(LLMUnavailable):
        await agent.run(a_turn())
    assert openai_fake.calls_started == 2


async def test_persistent_rate_limiting_is_unavailable(
    agent: SdrAgent, openai_fake: FakeOpenAI, settings: Settings
) -> None:
    for _ in range(10):
        openai_fake.then(status=429)
    with pytest.raises(LLMUnavailable):
        await agent.run(a_turn())
    assert openai_fake.calls_started == settings.openai_max_attempts


# --- not retried -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (422, openai.UnprocessableEntityError),
    ],
)
async def test_a_client_error_is_not_retried(
    agent: SdrAgent, openai_fake: FakeOpenAI, status: int, error: type[Exception]
) -> None:
    openai_fake.then(status=status).then(reply="should never be asked for")
    with pytest.raises(error):
        await agent.run(a_turn())
    assert openai_fake.calls_started == 1


def test_retry_classification() -> None:
    # Stand-ins for the SDK's request/response objects (their HTTP library changes
    # between SDK versions; the classification only looks at the status code).
    request = SimpleNamespace(method="POST", url=CHAT_URL)

    def status_error(status: int) -> openai.APIStatusError:
        response = SimpleNamespace(request=request, status_code=status, headers={})
        return openai.APIStatusError("x", response=response, body=None)  # type: ignore[arg-type]

    assert is_retryable_openai_error(openai.APITimeoutError(request=request))  # type: ignore[arg-type]
    assert is_retryable_openai_error(openai.APIConnectionError(request=request))  # type: ignore[arg-type]
    rate_limited = SimpleNamespace(request=request, status_code=429, headers={})
    assert is_retryable_openai_error(openai.RateLimitError("x", response=rate_limited, body=None))  # type: ignore[arg-type]
    for status in (408, 409, 500, 502, 503, 504):
        assert is_retryable_openai_error(status_error(status)), status
    for status in (400, 401, 403, 404, 422):
        assert not is_retryable_openai_error(status_error(status)), status
    assert not is_retryable_openai_error(ValueError("not an API error"))


# --- refusal and not configured --------------------------------------------------------


def completion_with(message: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    completion = copy.deepcopy(load_fixture("openai/chat_completion_structured.json"))
    completion["choices"][0]["message"] = {"role": "assistant", "annotations": [], **message}
    completion["choices"][0]["finish_reason"] = finish_reason
    return completion


async def test_a_refusal_is_llm_refused_not_an_empty_reply(agent: SdrAgent, http_mock: aioresponses) -> None:
    requests: list[Any] = []

    async def refuse(url: Any, **kwargs: Any) -> CallbackResult:
        requests.append(kwargs)
        return CallbackResult(
            status=200,
            payload=completion_with(
                {"content": None, "refusal": "I'm sorry, I can't help with that request."}
            ),
        )

    http_mock.post(CHAT_URL, callback=refuse, repeat=True)
    with pytest.raises(LLMRefused, match="can't help"):
        await agent.run(a_turn())
    assert len(requests) == 1  # a refusal is an answer: not retried by the client


async def test_without_an_api_key_the_turn_is_unavailable(
    tmp_path: Any, session: aiohttp.ClientSession, openai_fake: FakeOpenAI
) -> None:
    settings = fast_settings(tmp_path, openai_api_key=None)
    agent = make_agent(settings, session)
    assert not agent.deps.llm.configured
    with pytest.raises(LLMUnavailable):
        await agent.run(a_turn())
    assert openai_fake.calls_started == 0


VALID_OUTPUT = '{"reply": "Olá!", "lead": {}, "tool_calls": [], "summary": "Oi.", "image_description": null}'


async def test_the_client_sends_the_configured_model_key_and_limits(
    agent: SdrAgent, http_mock: aioresponses, settings: Settings
) -> None:
    seen: list[dict[str, Any]] = []

    async def capture(url: Any, **kwargs: Any) -> CallbackResult:
        seen.append(kwargs)
        return CallbackResult(
            status=200,
            payload=completion_with(
                {
                    "content": '{"reply": "Olá!", "lead": {}, "tool_calls": [], "summary": "Oi.",'
                    ' "image_description": null}',
                    "refusal": None,
                }
            ),
        )

    http_mock.post(CHAT_URL, callback=capture)
    result = await agent.run(a_turn())
    assert result.reply == "Olá!"
    headers = {k.lower(): v for k, v in (seen[0].get("headers") or {}).items()}
    assert headers["authorization"] == f"Bearer {settings.openai_api_key.get_secret_value()}"  # type: ignore[union-attr]
    # The SDK's own retries are off: the policy in agent/llm.py is the only one.
    assert headers.get("x-stainless-retry-count", "0") == "0"


# --- the low-level request ---------------------------------------------------------------


async def test_the_request_is_byte_for_byte_what_chat_completions_create_sends(
    agent: SdrAgent, http_mock: aioresponses, settings: Settings
) -> None:
    # `structured` posts through the SDK's low-level `post` (no per-call param transform);
    # what reaches OpenAI must stay exactly what the typed `create` would send.
    seen: list[dict[str, Any]] = []

    async def capture(url: Any, **kwargs: Any) -> CallbackResult:
        seen.append(kwargs)
        return CallbackResult(status=200, payload=completion_with({"content": VALID_OUTPUT, "refusal": None}))

    http_mock.post(CHAT_URL, callback=capture, repeat=True)
    llm = agent.deps.llm
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": 'Você é o SDR.\n"aspas" e \\ barra'},
        {"role": "user", "content": "Oi 👋, vocês têm formadora?"},
        {"role": "assistant", "content": "Temos sim!"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "e esta?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA", "detail": "low"}},
            ],
        },
    ]
    await llm.structured(messages, AgentTurnOutput)
    client = llm._require()
    await client.chat.completions.create(
        model=settings.openai_model,
        messages=messages,  # type: ignore[arg-type]
        temperature=0.4,
        max_completion_tokens=MAX_COMPLETION_TOKENS,
        extra_body={"response_format": llm._response_format(AgentTurnOutput)},
    )
    ours, sdk = seen
    assert ours["data"] == sdk["data"]
    assert dict(ours["headers"]) == dict(sdk["headers"])


async def test_a_completion_that_is_not_a_chat_completion_is_an_api_error_not_retried(
    agent: SdrAgent, http_mock: aioresponses
) -> None:
    requests: list[Any] = []

    async def garbage(url: Any, **kwargs: Any) -> CallbackResult:
        requests.append(kwargs)
        return CallbackResult(status=200, payload={"object": "chat.completion", "choices": "none"})

    http_mock.post(CHAT_URL, callback=garbage, repeat=True)
    with pytest.raises(openai.APIResponseValidationError):
        await agent.run(a_turn())
    assert len(requests) == 1


async def test_a_completion_without_choices_is_llm_refused(agent: SdrAgent, http_mock: aioresponses) -> None:
    completion = copy.deepcopy(load_fixture("openai/chat_completion_structured.json"))
    completion["choices"] = []
    http_mock.post(CHAT_URL, payload=completion)
    with pytest.raises(LLMRefused, match="no choices"):
        await agent.run(a_turn())


# --- an answer cut at the completion limit ----------------------------------------------


def scripted_chat(http_mock: aioresponses, *fixtures: str) -> list[dict[str, Any]]:
    """OpenAI answering each request with the next fixture (the last one repeats)."""
    requests: list[dict[str, Any]] = []

    async def answer(url: Any, **kwargs: Any) -> CallbackResult:
        requests.append(json.loads(kwargs["data"]))
        name = fixtures[min(len(requests), len(fixtures)) - 1]
        completion = load_fixture(f"openai/{name}")
        if name == "chat_completion_structured.json":
            completion["choices"][0]["message"]["content"] = VALID_OUTPUT
        return CallbackResult(status=200, payload=completion)

    http_mock.post(CHAT_URL, callback=answer, repeat=True)
    return requests


async def test_a_cut_answer_is_llm_truncated_never_a_parsed_half(
    agent: SdrAgent, http_mock: aioresponses
) -> None:
    requests = scripted_chat(http_mock, "chat_completion_length.json")
    with pytest.raises(LLMTruncated) as caught:
        await agent.deps.llm.structured([{"role": "user", "content": "Oi"}], AgentTurnOutput)
    assert isinstance(caught.value, LLMRefused)  # the runtime's "failed turn" path
    assert caught.value.usage.completion_tokens == 4096  # what the cut answer cost is kept
    assert len(requests) == 1  # not retried blindly by the client


async def test_a_cut_answer_is_asked_again_shorter_and_the_lead_gets_the_complete_one(
    agent: SdrAgent, http_mock: aioresponses
) -> None:
    requests = scripted_chat(http_mock, "chat_completion_length.json", "chat_completion_structured.json")
    result = await agent.run(a_turn())

    assert result.reply == "Olá!"
    assert result.llm_calls == 2
    first, second = (r["messages"] for r in requests)
    assert second[: len(first)] == first
    assert second[-1] == {"role": "system", "content": TRUNCATED_RETRY_NOTE}
    # Both calls are counted: the cut one was billed too.
    assert result.usage.prompt_tokens == 3312 + 1117
    assert result.usage.completion_tokens == 4096 + 46


async def test_an_answer_cut_twice_fails_the_turn_instead_of_sending_half(
    agent: SdrAgent, http_mock: aioresponses
) -> None:
    requests = scripted_chat(http_mock, "chat_completion_length.json")
    with pytest.raises(LLMTruncated):
        await agent.run(a_turn())
    assert len(requests) == 2  # one shorter retry, no loop


async def test_answers_cut_every_time_end_in_the_fixed_apology_not_half_a_json(
    aiohttp_client: Any, tmp_path: Any, http_mock: aioresponses, clock: Any
) -> None:
    from tests.conftest import ZAPI_INSTANCE, ZAPI_TOKEN, zapi_message
    from tests.helpers.fakes import FakeZapi
    from tests.helpers.settle import settled
    from web.app import create_app
    from web.keys import RUNNER

    zapi = FakeZapi(http_mock, instance_id=ZAPI_INSTANCE, instance_token=ZAPI_TOKEN)
    requests = scripted_chat(http_mock, "chat_completion_length.json")
    bot = await aiohttp_client(create_app(fast_settings(tmp_path), clock=clock))
    response = await bot.post("/webhooks/zapi", json=zapi_message(text="Me explica tudo da FB300"))
    assert response.status == 200
    await settled(bot, timeout=10)

    lead = zapi_message()["phone"]
    assert zapi.texts_to(lead) == [bot.app[RUNNER].agent.deps.prompts.turn_failed_reply]
    assert len(requests) == 2 * 3  # each of the 3 attempts: the call and its shorter retry
    assert all(r["max_completion_tokens"] == MAX_COMPLETION_TOKENS for r in requests)


def test_the_completion_limit_holds_the_largest_answer_a_turn_may_give() -> None:
    # The largest legitimate answer: three full WhatsApp messages, every lead field, the
    # summary at its cap, the per-turn caps of quotes and technical questions, a handoff.
    sentence = "A FB300 é semiautomática e faz de 300 a 350 hambúrgueres por hora, com molde sob medida. "
    longest = AgentTurnOutput.model_validate(
        {
            "reply": "\n\n".join([sentence * 6] * 3),
            "lead": {
                "name": "Maria Aparecida de Souza Albuquerque",
                "company": "Frigorífico Bom Corte Ltda.",
                "cnpj": "12.345.678/0001-90",
                "city": "São José dos Campos",
                "state": "SP",
                "segment": "frigorífico",
                "product_interest": "formadora de hambúrguer automática",
                "volume": "3.000 hambúrgueres por dia",
                "volume_per_day": 3000,
                "urgency": "alta",
                "timeline": "até o fim do próximo mês",
                "budget_signal": "verba aprovada pela diretoria",
                "decision_role": "decisor",
                "knows_company": True,
                "email": "maria.albuquerque@bomcorte.com.br",
                "phone": "5512999998888",
            },
            "tool_calls": [
                {
                    "tool": "request_quote",
                    "products": ["FB300", "FB700", "molde 120 mm"],
                    "quantity": "2",
                    "summary": sentence * 4,
                }
            ]
            * MAX_QUOTES_PER_TURN
            + [{"tool": "register_technical_question", "question": sentence * 2, "context": sentence * 2}]
            * MAX_TECHNICAL_QUESTIONS_PER_TURN
            + [{"tool": "handoff_to_human", "reason": "lead_quente", "summary": sentence * 3}],
            "summary": (sentence * 20)[:MAX_SUMMARY_CHARS],
            "image_description": sentence,
        }
    )
    needed = count_tokens(longest.model_dump_json())
    assert needed > 900  # the old limit cut this answer in half
    assert needed <= MAX_COMPLETION_TOKENS


async def test_an_observer_hears_each_call_end_with_its_real_exception(
    settings: Settings, session: aiohttp.ClientSession, openai_fake: FakeOpenAI
) -> None:
    # chat names the root cause of a failed turn from this hook; the turn keeps a summary only.
    heard: list[BaseException | None] = []
    llm = LLMClient(llm_config(settings), session)
    llm.observe(heard.append)
    agent = SdrAgent(
        AgentDeps(llm=llm, fetch_media=no_media, prompts=load_prompt_bundle(), rules=load_scoring_rules())
    )
    openai_fake.then(status=429).then(reply="Olá!")
    result = await agent.run(a_turn())
    assert result.reply == "Olá!"
    assert len(heard) == 2
    assert isinstance(heard[0], LLMUnavailable) and isinstance(heard[0].__cause__, openai.RateLimitError)
    assert heard[1] is None


async def test_openais_cached_tokens_reach_the_usage_and_the_turns_log(
    agent: SdrAgent, http_mock: aioresponses
) -> None:
    # usage.prompt_tokens_details.cached_tokens: what OpenAI served from its prompt cache
    # (https://developers.openai.com/api/docs/guides/prompt-caching), next to our estimate.
    from structlog.testing import capture_logs

    completion = completion_with({"content": VALID_OUTPUT, "refusal": None})
    completion["usage"].update(prompt_tokens=3900, prompt_tokens_details={"cached_tokens": 3584})
    http_mock.post(CHAT_URL, payload=completion)
    with capture_logs() as logs:
        result = await agent.run(a_turn())
    assert (result.usage.prompt_tokens, result.usage.cached_tokens) == (3900, 3584)
    [line] = [entry for entry in logs if entry["event"] == "llm_tokens"]
    assert (line["prompt_tokens"], line["cached_tokens"]) == (3900, 3584)
    # Our count of the same request: schema + messages, and the prefix the next turn reuses.
    assert 0 < line["cacheable_tokens"] < line["prompt_tokens_estimated"]

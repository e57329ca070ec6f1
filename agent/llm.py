"""OpenAI access for the agent: one structured chat call per turn, and Whisper.

The openai client runs on its aiohttp backend over the app's shared ClientSession, so
every outbound call of the process goes through one pool (and tests fake OpenAI with
aioresponses like every other provider). The SDK's own retries are off: the policy
below is the one place that decides what is retried.
"""

from __future__ import annotations

import importlib
import inspect
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import aiohttp
import httpx
import openai
import pydantic_core
from openai import AsyncOpenAI, DefaultAioHttpClient
from openai.lib._parsing._completions import type_to_response_format_param
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from agent.compact_schema import compact_response_format
from core.audio_length import audio_seconds
from core.errors import LLMRefused, LLMUnavailable
from core.logging import get_logger
from core.probe import ProbeIO, ProbeResult, ok, problem

log = get_logger(__name__)

T = TypeVar("T", bound=BaseModel)


class LLMTruncated(LLMRefused):
    """The answer hit `max_completion_tokens` and stopped mid-JSON: unusable as it is."""

    def __init__(self, message: str, usage: Usage) -> None:
        super().__init__(message)
        self.usage = usage


# Room for the largest answer a turn may legitimately give, in o200k tokens: a reply of
# up to three WhatsApp messages (~600), the summary at its 1,200-character cap (~350),
# every lead field (~250), three quotes and three technical questions at the per-turn
# caps of agent/tools.py plus a handoff (~1,050), an image description (~60) and the
# JSON around them: about 2,000 (built and counted in tests/agent/test_llm.py). The old
# 900 cut such an answer in half. Headroom costs nothing unless used, and an answer that
# still does not fit is asked again shorter, never sent half-written.
MAX_COMPLETION_TOKENS = 4096


def is_retryable_openai_error(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code in (408, 409)
    return False


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """What the OpenAI client reads (OPENAI_*); built from Settings by web/configs/agent.py."""

    api_key: SecretStr | None
    base_url: str
    model: str
    transcribe_model: str
    timeout_s: float
    max_attempts: int
    backoff_base_s: float


def openai_retry_policy(config: LLMConfig) -> AsyncRetrying:
    """OpenAI's retry policy, declared here once and applied by the turn (agent/graph.py),
    never by the client: `LLMUnavailable` (429/5xx/timeouts) is retried with jittered
    exponential backoff up to OPENAI_MAX_ATTEMPTS; anything else fails fast."""
    return AsyncRetrying(
        stop=stop_after_attempt(config.max_attempts),
        wait=wait_random_exponential(multiplier=config.backoff_base_s, max=20),
        retry=retry_if_exception_type(LLMUnavailable),
        reraise=True,
    )


def _unavailable(what: str, exc: openai.OpenAIError) -> Exception:
    """A retryable SDK error as the tree's `LLMUnavailable`; any other stays as it is."""
    if is_retryable_openai_error(exc):
        return LLMUnavailable(f"{what} unavailable: {transport_cause(exc)}")
    return exc


def cause_chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from, outermost first (cycles cut)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def transport_cause(exc: BaseException) -> str:
    """What really failed, for the log and the turn's stored error: the aiohttp transport
    labels a refused connection `APITimeoutError`, which sent operators after a slow
    model when nothing was listening at OPENAI_BASE_URL."""
    chain = cause_chain(exc)
    label = type(exc).__name__
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return f"connection refused ({label})"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return f"host not found ({label})"
    return label


def _aiohttp_transport() -> Any:
    """The transport class wherever this SDK version keeps it, or None (then the SDK's own
    aiohttp pool is used)."""
    for module in ("openai._vendor.httpx_aiohttp.transport", "httpx_aiohttp.transport"):
        try:
            return importlib.import_module(module).AiohttpTransport
        except (ImportError, AttributeError):
            continue
    return None


def openai_client(config: LLMConfig, session: aiohttp.ClientSession | None) -> AsyncOpenAI | None:
    """One way to build the SDK client for every OpenAI call the bot makes (chat,
    transcription, embeddings): our retry policy, not the SDK's (max_retries=0), on the
    app's session. None without a key: the callers say what that means for them."""
    if config.api_key is None:
        return None
    return AsyncOpenAI(
        api_key=config.api_key.get_secret_value(),
        base_url=config.base_url,
        timeout=config.timeout_s,
        max_retries=0,
        http_client=_http_client(session, config.timeout_s),
    )


def _http_client(session: aiohttp.ClientSession | None, timeout: float) -> Any:
    """The SDK's aiohttp backend on the app's one ClientSession (closed with the app).
    The transport has lived in two places across SDK versions: openai's vendored copy,
    then the `httpx_aiohttp` package the `openai[aiohttp]` extra installs."""
    if session is not None:
        transport_cls = _aiohttp_transport()
        if transport_cls is not None:
            return DefaultAioHttpClient(transport=transport_cls(client=session), timeout=timeout)
    return DefaultAioHttpClient(timeout=timeout)


# The request options `chat.completions.create` passes to the same `post` (bearer auth
# only; older SDKs have no per-request security and always send the bearer key).
_CHAT_OPTIONS: Any = (
    {"security": {"bearer_auth": True}} if "security" in openai.RequestOptions.__annotations__ else {}
)


# Newer SDKs take a pre-serialised body as `content` (sent with the client's own
# `Content-Type: application/json`). pydantic-core writes the same bytes as the SDK's
# `json.dumps(ensure_ascii=False, separators=(",", ":"))` about four times faster.
_POST_TAKES_CONTENT = "content" in inspect.signature(AsyncOpenAI.post).parameters


def _json_payload(body: dict[str, Any]) -> dict[str, Any]:
    if _POST_TAKES_CONTENT:
        return {"content": pydantic_core.to_json(body)}
    return {"body": body}


class _Lenient(BaseModel):
    # Like the SDK's own `ChatCompletion` construction: unknown keys ignored, new enum
    # values (a future finish_reason) accepted as plain strings.
    model_config = ConfigDict(extra="ignore")


class _Message(_Lenient):
    content: str | None = None
    refusal: str | None = None


class _Choice(_Lenient):
    message: _Message
    finish_reason: str | None = None


class _PromptTokensDetails(_Lenient):
    cached_tokens: int | None = None


class _CompletionUsage(_Lenient):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Of the prompt tokens, those OpenAI served from its prompt cache (billed at the
    # cached-input price): https://developers.openai.com/api/docs/guides/prompt-caching
    prompt_tokens_details: _PromptTokensDetails | None = None


class _Completion(_Lenient):
    """The part of a chat completion a turn reads, validated straight from the JSON bytes.

    The SDK's full `ChatCompletion` (stdlib JSON -> dicts -> its recursive lenient
    construction) costs ~0.12 ms more CPU per call than parsing these few fields.
    """

    choices: list[_Choice]
    usage: _CompletionUsage | None = None
    # The snapshot that answered ("gpt-4o-2024-08-06"): what the tokens are billed as.
    model: str | None = None


def _parse_completion(response: httpx.Response) -> _Completion:
    try:
        return _Completion.model_validate_json(response.content)
    except ValidationError as exc:
        raise openai.APIResponseValidationError(
            response=response,
            body=response.text,
            message=f"not a chat completion: {exc.error_count()} error(s)",
        ) from exc


# The seconds of audio Whisper heard for the turn running in this context (None each for
# a file whose length could not be told); `count_transcription` opens it around a turn.
_heard: ContextVar[list[float | None] | None] = ContextVar("sdr_transcribed_seconds", default=None)


@contextmanager
def count_transcription() -> Iterator[list[float | None]]:
    """Collect the audio seconds transcribed inside this block (the turn's nodes run in
    tasks that copy the context, so they append to this same list)."""
    heard: list[float | None] = []
    token = _heard.set(heard)
    try:
        yield heard
    finally:
        _heard.reset(token)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Included in `prompt_tokens`: the part read from OpenAI's prompt cache.
    cached_tokens: int = 0
    # The model that answered (the cost figures price the tokens by it); "" unknown.
    model: str = ""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.model or other.model,
        )

    @classmethod
    def of(cls, usage: _CompletionUsage | None, model: str = "") -> Usage:
        if usage is None:
            return cls(model=model)
        details = usage.prompt_tokens_details
        return cls(
            prompt_tokens=usage.prompt_tokens or 0,
            completion_tokens=usage.completion_tokens or 0,
            cached_tokens=(details.cached_tokens or 0) if details is not None else 0,
            model=model,
        )


# What the doctor says for the statuses that need no reading of the body. The 401 body
# quotes part of the key ("Incorrect API key provided: sk-..."), so it is never quoted.
_PROBE_REFUSALS = {
    401: problem(
        "invalid token: OpenAI refused the key",
        "create a key at https://platform.openai.com/api-keys and put it in OPENAI_API_KEY",
    ),
    429: problem(
        "out of credit or over the account's rate limit (HTTP 429)",
        "check credits and limits at https://platform.openai.com/settings/organization/billing",
    ),
    404: problem(
        "wrong URL: the address has no model list",
        "check OPENAI_BASE_URL (the default is https://api.openai.com/v1)",
    ),
}


class LLMClient:
    def __init__(self, config: LLMConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self._client = openai_client(config, session)
        self._formats: dict[tuple[type[BaseModel], str | None], dict[str, Any]] = {}
        self._observers: list[Callable[[BaseException | None], None]] = []

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def close(self) -> None:
        # The transport would close the shared session with it; the app owns that.
        self._client = None

    def observe(self, observer: Callable[[BaseException | None], None]) -> None:
        """Tell `observer` how each structured call ended (None: it answered), with the
        real exception: the turn keeps only a one-line summary, and `chat` must name the
        root cause (a refused connection is not a timeout)."""
        self._observers.append(observer)

    def _notify(self, outcome: BaseException | None) -> None:
        for observer in self._observers:
            observer(outcome)

    def retry_policy(self) -> AsyncRetrying:
        return openai_retry_policy(self.config)

    async def probe(self, io: ProbeIO) -> ProbeResult:
        """The doctor's check: GET {base}/models lists the models the key may use and
        changes nothing (returns {"object": "list", "data": [{"id", "object": "model", ...}]}).
        https://developers.openai.com/api/reference/resources/models/methods/list"""
        c = self.config
        key = c.api_key.get_secret_value() if c.api_key is not None else ""
        reply = await io.get(f"{c.base_url.rstrip('/')}/models", headers={"Authorization": f"Bearer {key}"})
        refused = _PROBE_REFUSALS.get(reply.status)
        if refused is not None:
            return refused
        if reply.status == 403:
            return problem(
                f"the key lacks permission ({io.provider_words(reply, ('error', 'message'))})",
                "check the permissions of the key's project in the OpenAI dashboard",
            )
        models = reply.data.get("data") if isinstance(reply.data, dict) else None
        if not reply.ok or not isinstance(models, list):
            return io.unexpected(reply, ("error", "message"))
        ids = {m.get("id") for m in models if isinstance(m, dict)}
        if ids and c.model not in ids:
            return problem(
                f"key accepted, but model {c.model} is not available to it",
                "set OPENAI_MODEL to a model of your account (e.g. gpt-4o) or allow it in the key's project",
            )
        return ok(f"key accepted; model {c.model} available")

    def _require(self) -> AsyncOpenAI:
        if self._client is None:
            raise LLMUnavailable("OPENAI_API_KEY is not set")
        return self._client

    def _response_format(self, schema: type[BaseModel], name: str | None = None) -> dict[str, Any]:
        """The strict JSON schema for `schema`, compacted, built once per model class.

        `chat.completions.parse` rebuilds it (and walks it through the SDK's param
        transform) on every call: about 7 ms of CPU per turn on the event loop that
        also acknowledges webhooks. Built once, it is sent verbatim, the same bytes on
        every call: it opens the prefix OpenAI's prompt cache reuses (agent/billing.py).
        """
        cached = self._formats.get((schema, name))
        if cached is None:
            cached = compact_response_format(cast(dict[str, Any], type_to_response_format_param(schema)))
            if name is not None:  # a narrower view of the answer's model keeps the answer's name
                cached["json_schema"]["name"] = name
            self._formats[(schema, name)] = cached
        return cached

    def response_format(self, schema: type[BaseModel], *, name: str | None = None) -> dict[str, Any]:
        """What `structured` sends as `response_format` for `schema` (to count it)."""
        return self._response_format(schema, name)

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: type[T],
        *,
        sent_as: type[BaseModel] | None = None,
        temperature: float = 0.4,
        max_completion_tokens: int = MAX_COMPLETION_TOKENS,
    ) -> tuple[T, Usage]:
        """The answer to `messages`, read as `schema`. `sent_as`, when given, is the schema
        sent instead (under `schema`'s name): a narrower one (fewer tokens) whose answers
        `schema` also reads."""
        try:
            result = await self._structured(
                messages,
                schema,
                sent_as=sent_as or schema,
                temperature=temperature,
                max_completion_tokens=max_completion_tokens,
            )
        except Exception as exc:  # not CancelledError: a cut-off call is no model failure
            self._notify(exc)
            raise
        self._notify(None)
        return result

    async def _structured(
        self,
        messages: list[dict[str, Any]],
        schema: type[T],
        *,
        sent_as: type[BaseModel],
        temperature: float,
        max_completion_tokens: int,
    ) -> tuple[T, Usage]:
        client = self._require()
        # Byte for byte what `chat.completions.create(..., extra_body={"response_format":
        # ...})` sends, through the SDK's low-level `post`: `create` first walks every
        # message through its TypedDict param transform, which returns plain dicts
        # unchanged after ~2.5 ms of CPU per call (20-message window, bench/turn_cpu.py).
        # Auth, base URL, timeouts, headers, the aiohttp transport and the status -> error
        # class mapping (`openai.RateLimitError`, `openai.InternalServerError`...) are
        # the client's own, exactly as for `create`.
        body = {
            "messages": messages,
            "model": self.config.model,
            "max_completion_tokens": max_completion_tokens,
            "temperature": temperature,
            "response_format": self._response_format(sent_as, None if sent_as is schema else schema.__name__),
        }
        payload = _json_payload(body)
        try:  # one attempt: the turn retries (see openai_retry_policy)
            response = await client.post(
                "/chat/completions", cast_to=httpx.Response, options=_CHAT_OPTIONS, **payload
            )
        except openai.OpenAIError as exc:
            raise _unavailable("openai", exc) from exc
        completion = _parse_completion(response)
        if not completion.choices:
            raise LLMRefused("no complete structured output (no choices)")
        choice = completion.choices[0]
        usage = Usage.of(completion.usage, completion.model or self.config.model)
        if choice.message.refusal:
            raise LLMRefused(f"refusal: {choice.message.refusal}")
        if choice.finish_reason == "length":
            raise LLMTruncated(f"structured output cut at {max_completion_tokens} completion tokens", usage)
        if not choice.message.content:
            raise LLMRefused(f"no complete structured output (finish_reason={choice.finish_reason})")
        try:
            parsed = schema.model_validate_json(choice.message.content)
        except ValidationError as exc:
            raise LLMRefused(
                f"structured output did not match the schema: {exc.error_count()} error(s)"
            ) from exc
        return parsed, usage

    async def transcribe(self, audio: bytes, *, filename: str, mime: str) -> str:
        client = self._require()
        try:  # one attempt: the turn retries (see openai_retry_policy)
            result = await client.audio.transcriptions.create(
                model=self.config.transcribe_model,
                file=(filename, audio, mime),
                language="pt",
            )
        except openai.OpenAIError as exc:
            raise _unavailable("whisper", exc) from exc
        heard = _heard.get()
        if heard is not None:
            heard.append(audio_seconds(audio))
        return (getattr(result, "text", None) or str(result)).strip()

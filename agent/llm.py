"""OpenAI access for the agent: one structured chat call per turn, and Whisper.

The openai client runs on its aiohttp backend over the app's shared ClientSession, so
every outbound call of the process goes through one pool (and tests fake OpenAI with
aioresponses like every other provider). The SDK's own retries are off: the policy
below is the one place that decides what is retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import openai
from openai import AsyncOpenAI, DefaultAioHttpClient
from openai.lib._parsing._completions import type_to_response_format_param
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from core.logging import get_logger
from core.settings import Settings

log = get_logger(__name__)

T = TypeVar("T", bound=BaseModel)


class LLMUnavailable(Exception):
    """The model could not answer now; the turn stays pending and is retried later."""


class LLMRefused(Exception):
    """The model answered but not with the structured output we require."""


def is_retryable_openai_error(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code in (408, 409)
    return False


def openai_retry_policy(settings: Settings) -> AsyncRetrying:
    """429/5xx/timeouts retried with jittered exponential backoff; anything else fails fast."""
    return AsyncRetrying(
        stop=stop_after_attempt(settings.openai_max_attempts),
        wait=wait_random_exponential(multiplier=settings.openai_backoff_base_s, max=20),
        retry=retry_if_exception(is_retryable_openai_error),
        reraise=True,
    )


def _http_client(session: aiohttp.ClientSession | None, timeout: float) -> Any:
    if session is not None:
        try:
            from openai._vendor.httpx_aiohttp.transport import AiohttpTransport
        except ImportError:  # a future SDK moved it: fall back to the SDK's own pool
            pass
        else:
            return DefaultAioHttpClient(transport=AiohttpTransport(client=session), timeout=timeout)
    return DefaultAioHttpClient(timeout=timeout)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LLMClient:
    def __init__(self, settings: Settings, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._client: AsyncOpenAI | None = None
        self._formats: dict[type[BaseModel], dict[str, Any]] = {}
        if settings.openai_api_key is not None:
            self._client = AsyncOpenAI(
                api_key=settings.openai_api_key.get_secret_value(),
                base_url=settings.openai_base_url,
                timeout=settings.openai_timeout_s,
                max_retries=0,
                http_client=_http_client(session, settings.openai_timeout_s),
            )

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def close(self) -> None:
        # The transport would close the shared session with it; the app owns that.
        self._client = None

    def _require(self) -> AsyncOpenAI:
        if self._client is None:
            raise LLMUnavailable("OPENAI_API_KEY is not set")
        return self._client

    def _response_format(self, schema: type[BaseModel]) -> dict[str, Any]:
        """The strict JSON schema for `schema`, built once per model class.

        `chat.completions.parse` rebuilds it (and walks it through the SDK's param
        transform) on every call: about 7 ms of CPU per turn on the event loop that
        also acknowledges webhooks. Built once, it is sent verbatim.
        """
        cached = self._formats.get(schema)
        if cached is None:
            cached = type_to_response_format_param(schema)
            self._formats[schema] = cached
        return cached

    async def structured(
        self, messages: list[dict[str, Any]], schema: type[T], *, temperature: float = 0.4
    ) -> tuple[T, Usage]:
        client = self._require()
        response_format = self._response_format(schema)
        try:
            async for attempt in openai_retry_policy(self.settings):
                with attempt:
                    completion = await client.chat.completions.create(
                        model=self.settings.openai_model,
                        messages=messages,  # type: ignore[arg-type]
                        temperature=temperature,
                        max_completion_tokens=900,
                        extra_body={"response_format": response_format},
                    )
        except openai.OpenAIError as exc:
            if is_retryable_openai_error(exc):
                raise LLMUnavailable(f"openai unavailable: {type(exc).__name__}") from exc
            raise
        choice = completion.choices[0]
        if choice.message.refusal:
            raise LLMRefused(f"refusal: {choice.message.refusal}")
        if choice.finish_reason == "length" or not choice.message.content:
            raise LLMRefused(f"no complete structured output (finish_reason={choice.finish_reason})")
        try:
            parsed = schema.model_validate_json(choice.message.content)
        except ValidationError as exc:
            raise LLMRefused(f"structured output did not match the schema: {exc.error_count()} error(s)") from exc
        usage = completion.usage
        return parsed, Usage(
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    async def transcribe(self, audio: bytes, *, filename: str, mime: str) -> str:
        client = self._require()
        try:
            async for attempt in openai_retry_policy(self.settings):
                with attempt:
                    result = await client.audio.transcriptions.create(
                        model=self.settings.openai_transcribe_model,
                        file=(filename, audio, mime),
                        language="pt",
                    )
        except openai.OpenAIError as exc:
            if is_retryable_openai_error(exc):
                raise LLMUnavailable(f"whisper unavailable: {type(exc).__name__}") from exc
            raise
        return (getattr(result, "text", None) or str(result)).strip()

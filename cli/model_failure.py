"""Why chat's model call failed, as one English line an operator can act on.

The SDK's labels mislead (its aiohttp transport calls a refused connection a timeout), so
the explanation reads the exception's cause chain; chat watches the agent's LLMClient
through its observer hook and shows the last failure while the bot retries.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import openai

from agent.llm import LLMClient, cause_chain
from core.errors import LLMRefused
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class ModelFailure:
    """Why the last model call failed, as one English line; `fatal` when retrying cannot
    help until the operator changes the configuration (key, URL, model)."""

    text: str
    fatal: bool = False


def explain_model_failure(exc: BaseException, settings: Settings) -> ModelFailure:
    """Read the root cause, not the SDK's label: the aiohttp transport reports a refused
    connection as `APITimeoutError`, and a real timeout as `APIConnectionError`."""
    url = settings.openai_base_url
    chain = cause_chain(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return ModelFailure(f"connection refused at {url}: nothing listens there; check OPENAI_BASE_URL")
    if any(isinstance(e, socket.gaierror) for e in chain):
        return ModelFailure(f"host not found for {url}: check OPENAI_BASE_URL and the network")
    status = next((e.status_code for e in chain if isinstance(e, openai.APIStatusError)), None)
    if status is not None:
        return _status_failure(status, settings)
    deepest = chain[-1]
    if any(isinstance(e, TimeoutError) for e in chain) or isinstance(deepest, openai.APITimeoutError):
        return ModelFailure(f"timeout: {url} did not answer within {settings.openai_timeout_s:g} s")
    if any(isinstance(e, openai.APIConnectionError) for e in chain):
        reason = str(deepest) or type(deepest).__name__
        return ModelFailure(f"connection to {url} failed ({reason}); check OPENAI_BASE_URL and the network")
    if isinstance(exc, LLMRefused):
        return ModelFailure(f"the model answered without a usable reply ({exc})")
    return ModelFailure(f"the model call failed ({type(exc).__name__})")


# Statuses retrying cannot fix: the operator must change the configuration first.
_FATAL_STATUSES = {
    401: "{url} refused the key (HTTP 401): check OPENAI_API_KEY (keys: https://platform.openai.com/api-keys)",
    403: "the key may not use {model} at {url} (HTTP 403): check the key's project permissions",
    404: "{model} not found at {url} (HTTP 404): check OPENAI_BASE_URL and OPENAI_MODEL",
}


def _status_failure(status: int, settings: Settings) -> ModelFailure:
    url, model = settings.openai_base_url, settings.openai_model
    if status in _FATAL_STATUSES:
        return ModelFailure(_FATAL_STATUSES[status].format(url=url, model=model), fatal=True)
    if status == 429:
        return ModelFailure(f"the provider at {url} is busy or the account is over its limit (HTTP 429)")
    if status >= 500:
        return ModelFailure(f"the provider at {url} is down (HTTP {status})")
    return ModelFailure(f"{url} rejected the request (HTTP {status})")


class ModelWatch:
    """Why the agent's last model call failed. The runner keeps only a summary in the
    database ("openai unavailable: APITimeoutError"), the very mislabel chat must avoid."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.failures = 0
        self.last: ModelFailure | None = None

    def endpoint(self) -> str:
        c = self.settings
        return f"{c.openai_model} at {c.openai_base_url} (OPENAI_TIMEOUT_S={c.openai_timeout_s:g}); /sair ends chat"

    def watch(self, llm: LLMClient) -> None:
        llm.observe(self.saw)

    def saw(self, outcome: BaseException | None) -> None:
        if outcome is None:
            self.last = None
            return
        self.last = explain_model_failure(outcome, self.settings)
        self.failures += 1

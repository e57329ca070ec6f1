"""/api/health's word on the OpenAI, PipeRun and Meta CAPI credentials, from the providers.

A "configured" flag only said a token had been pasted: a revoked key, a PipeRun token of
a deleted user or an expired system-user token stayed green until a lead went unanswered
or a deal never reached the CRM. Health now asks each configured provider the doctor's
own question (the client's `probe`: one harmless, authenticated, read-only GET) on the
app's session, under a short deadline.

Monitors poll health every few seconds; providers count calls and some bill them. Each
verdict is kept for HEALTH_PROBE_TTL_S by the app's clock, and requests that arrive
while a check is running wait for that one instead of starting their own, so a provider
sees one call per period however often, and however many at once, health is asked.

What the body says is safe to show: the probe's own sentence (pt-BR, for the operator)
with every quote of a provider's answer replaced by its HTTP status (error bodies echo
requests, tokens included, or a masked piece of a key), then scrubbed of every
configured secret. Where to fix it is the doctor's job (`python main.py doctor`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web

from core.clock import Clock
from core.logging import Scrubber, get_logger
from core.probe import ProbeReply, ProbeResult, ProbeVerdict, problem
from core.settings import Settings
from integrations.meta_capi import MetaCapiClient
from integrations.piperun import PipeRunClient
from web.configs.integrations import meta_capi_config, piperun_config
from web.keys import HTTP, LLM, SETTINGS
from web.probe_io import ProbeContext

log = get_logger(__name__)

# The web process of a split deployment gives its worker's health 2 s
# (web/worker_process.py): a check must end well inside that.
PROBE_TIMEOUT_S = 1.5
_DETAIL_MAX = 160

Status = Literal["ok", "auth_failed", "unreachable", "misconfigured", "not_configured", "unknown"]
# What leaves the service usable; anything else makes the overall status `degraded`.
FINE = frozenset({"ok", "not_configured"})

# Graph error codes that mean the token is refused or lacks a permission, and the ones
# that mean "too many calls" (https://developers.facebook.com/docs/graph-api/guides/error-handling).
_GRAPH_AUTH = frozenset({102, 190, 10, *range(200, 300)})
_GRAPH_THROTTLED = frozenset({4, 17, 32, 613})


@dataclass(frozen=True)
class ProviderState:
    status: Status
    checked_at: datetime | None = None
    detail: str = ""

    def as_json(self) -> dict[str, object]:
        at = self.checked_at.isoformat() if self.checked_at is not None else None
        return {"status": self.status, "checked_at": at, "detail": self.detail}


ProbeOf = Callable[[web.Application, ProbeContext], Awaitable[ProbeResult]]


@dataclass(frozen=True)
class Provider:
    name: str  # the key under `services`
    configured: Callable[[Settings], bool]
    required: str  # the env vars that turn it on, named when it is off
    url_env: str  # where its address comes from, named when it does not answer
    probe: ProbeOf


async def _openai(app: web.Application, io: ProbeContext) -> ProbeResult:
    llm = app.get(LLM)
    if llm is None:  # a web process without a worker: nothing else loads the agent here
        # Imported here, not at the top: the openai package costs the web process ~20 MB
        # of memory it never needs when a worker does the thinking.
        from agent.llm import LLMClient
        from web.configs.agent import llm_config

        llm = LLMClient(llm_config(app[SETTINGS]), app[HTTP])
    return await llm.probe(io)


async def _piperun(app: web.Application, io: ProbeContext) -> ProbeResult:
    return await PipeRunClient(piperun_config(app[SETTINGS]), app[HTTP]).probe(io)


async def _meta_capi(app: web.Application, io: ProbeContext) -> ProbeResult:
    try:
        client = MetaCapiClient(meta_capi_config(app[SETTINGS]), app[HTTP])
    except ValueError:  # a pixel id that is not digits: the client refuses to put it in a URL
        return problem("invalid pixel (dataset) ID: META_PIXEL_ID must be digits only", "")
    return await client.probe(io)


PROVIDERS: tuple[Provider, ...] = (
    Provider("openai", lambda s: s.openai_configured, "OPENAI_API_KEY", "OPENAI_BASE_URL", _openai),
    Provider(
        "piperun",
        lambda s: s.piperun_configured,
        "PIPERUN_API_TOKEN, PIPERUN_PIPELINE_ID, PIPERUN_STAGE_ID",
        "PIPERUN_API_URL",
        _piperun,
    ),
    Provider(
        "meta_capi",
        lambda s: s.meta_capi_configured,
        "META_PIXEL_ID, META_ACCESS_TOKEN",
        "META_GRAPH_URL",
        _meta_capi,
    ),
)


@dataclass
class _HealthIO(ProbeContext):
    """The doctor's GET, which also keeps what the provider answered (to tell a refused
    token from an outage) and never quotes the provider's words."""

    replies: list[ProbeReply] = field(default_factory=list)

    async def get(
        self, url: str, *, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
    ) -> ProbeReply:
        reply = await super().get(url, headers=headers, params=params)
        self.replies.append(reply)
        return reply

    def provider_words(self, reply: ProbeReply, *paths: tuple[str, ...]) -> str:
        return f"HTTP {reply.status}"

    def unexpected(self, reply: ProbeReply, *paths: tuple[str, ...]) -> ProbeResult:
        if reply.status == 429:
            return problem("request limit reached (HTTP 429)", "")
        if reply.status >= 500:
            return problem(f"the service answered with an error (HTTP {reply.status})", "")
        return problem(f"unexpected answer (HTTP {reply.status})", "")


def _graph_code(reply: ProbeReply) -> object:
    error = reply.data.get("error") if isinstance(reply.data, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def classify(result: ProbeResult, replies: list[ProbeReply]) -> Status:
    """A refused token is the operator's to fix, an outage the provider's, a wrong id or
    model the configuration's: the probe's verdict plus what the provider answered."""
    if result.ok:
        return "ok"
    codes = {_graph_code(r) for r in replies}
    if any(r.status in (401, 403) for r in replies) or codes & _GRAPH_AUTH:
        return "auth_failed"
    if any(r.status == 429 or r.status >= 500 for r in replies) or codes & _GRAPH_THROTTLED:
        return "unreachable"
    return "misconfigured"


class ProviderChecks:
    """The kept verdicts and the checks in flight, one of each per provider."""

    def __init__(self, settings: Settings, providers: tuple[Provider, ...] = PROVIDERS) -> None:
        self._settings = settings
        self._providers = providers
        self._ttl = timedelta(seconds=settings.health_probe_ttl_s)
        self._scrubber = Scrubber(settings.secret_values())
        self._kept: dict[str, ProviderState] = {}
        self._running: dict[str, asyncio.Task[ProviderState]] = {}

    def configured(self) -> list[Provider]:
        return [p for p in self._providers if p.configured(self._settings)]

    def not_configured(self) -> dict[str, ProviderState]:
        return {
            p.name: ProviderState("not_configured", detail=f"not configured; to use it, set {p.required}")
            for p in self._providers
            if not p.configured(self._settings)
        }

    def left_to_the_worker(self) -> dict[str, ProviderState]:
        """The web process of a split deployment: the worker, which holds the OpenAI
        client, checks and reports them; this is what stays if it does not answer."""
        waiting = ProviderState("unknown", detail="checked by the worker, which did not answer")
        return {p.name: self.not_configured().get(p.name, waiting) for p in self._providers}

    async def report(self, app: web.Application, clock: Clock) -> dict[str, ProviderState]:
        """Every provider's state; the configured ones checked now unless a verdict younger
        than the TTL is kept."""
        configured = self.configured()
        states = await asyncio.gather(*(self._state(p, app, clock) for p in configured))
        checked = dict(zip((p.name for p in configured), states, strict=True))
        off = self.not_configured()
        return {p.name: checked[p.name] if p.name in checked else off[p.name] for p in self._providers}

    async def _state(self, provider: Provider, app: web.Application, clock: Clock) -> ProviderState:
        kept = self._kept.get(provider.name)
        if kept is not None and kept.checked_at is not None:
            age = clock() - kept.checked_at
            if timedelta(0) <= age < self._ttl:
                return kept
        task = self._running.get(provider.name)
        if task is None:
            task = asyncio.create_task(self._check(provider, app, clock))
            self._running[provider.name] = task
            task.add_done_callback(lambda done: self._done(provider.name, done))
        # Shielded: a monitor hanging up must not cancel the check the others wait for.
        return await asyncio.shield(task)

    def _done(self, name: str, task: asyncio.Task[ProviderState]) -> None:
        if self._running.get(name) is task:
            del self._running[name]

    async def _check(self, provider: Provider, app: web.Application, clock: Clock) -> ProviderState:
        io = _HealthIO(app[HTTP], PROBE_TIMEOUT_S, provider.url_env, self._scrubber)
        result, status = await _probe(provider, app, io)
        detail = " ".join(str(self._scrubber.scrub(result.detail)).split())
        if len(detail) > _DETAIL_MAX:
            detail = detail[: _DETAIL_MAX - 1] + "…"
        state = ProviderState(status, clock(), detail)
        previous = self._kept.get(provider.name)
        self._kept[provider.name] = state
        if previous is None or previous.status != status:
            level = log.info if status == "ok" else log.warning
            level("health_provider_check", provider=provider.name, status=status, detail=detail)
        return state

    async def close(self, _app: web.Application | None = None) -> None:
        """At shutdown: a check still waiting on a provider is of no use to anyone."""
        for task in list(self._running.values()):
            task.cancel()


async def _probe(provider: Provider, app: web.Application, io: _HealthIO) -> tuple[ProbeResult, Status]:
    """Never raises: a transport failure, a timeout or a bug becomes `unreachable`."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            result = await provider.probe(app, io)
    except ProbeVerdict as verdict:  # timeout, refused connection, bad URL or certificate
        return verdict.result, "unreachable"
    except TimeoutError:
        return io.timed_out(), "unreachable"
    except Exception as exc:  # noqa: BLE001 - health must answer, whatever a probe raised
        # Only the kind: the text may carry a URL with a token.
        return problem(f"unexpected error while checking ({type(exc).__name__})", ""), "unreachable"
    return result, classify(result, io.replies)


PROVIDER_CHECKS = web.AppKey("provider_checks", ProviderChecks)

__all__ = ["FINE", "PROVIDERS", "PROVIDER_CHECKS", "ProviderChecks", "ProviderState", "classify"]

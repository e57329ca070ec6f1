"""The aiohttp app factory: owns every long-lived resource through `cleanup_ctx`.

Order matters and is the order of `cleanup_ctx`: the HTTP session and the store open
first and close last; the runtime (turns + outbox dispatcher) starts last and stops
first, so in-flight turns can still commit and deliveries can still be recorded.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from aiohttp import web

from channels.base import Channel
from channels.registry import build_channels
from core.clock import Clock
from core.errors import SendError
from core.logging import configure_logging, get_logger
from core.metrics import Metrics
from core.models import InboundMessage
from core.settings import Settings
from integrations.chatwoot import ChatwootClient
from integrations.meta_capi import MetaCapiClient
from integrations.outbound_webhooks import Endpoint, OutboundWebhookClient, endpoints_from_settings
from integrations.piperun import PipeRunClient
from runtime.breaker import BreakerRegistry
from runtime.capi_delivery import CapiDelivery
from runtime.channel_health import ChannelHealth
from runtime.chatwoot_mirror import ChatwootMirror
from runtime.crm_sync import CrmSync
from runtime.delivery import Delivery
from runtime.dispatcher import OutboxDispatcher
from runtime.followups import FollowUpScheduler
from runtime.lifecycle import CAPI_KIND, PIPERUN_KIND, WEBHOOK_KIND, Lifecycle
from runtime.policies import policy_for
from runtime.turns import TurnRunner
from runtime.webhook_delivery import WebhookDelivery, subscriptions
from store.base import Store
from store.sqlite import SqliteStore
from web.chatwoot_webhook import handle_chatwoot_webhook
from web.crm_webhook import handle_crm_webhook
from web.keys import (
    BREAKERS,
    CHANNEL_HEALTH,
    CHANNELS,
    DISPATCHER,
    FOLLOW_UPS,
    HTTP,
    LLM,
    ROLE,
    RUNNER,
    SETTINGS,
    STOP_RUNTIME,
    STORE,
    WORKER,
)
from web.middlewares import DRAINING, METRICS, Draining, json_error, request_middleware
from web.operator_auth import operator_authorized
from web.webhooks import META_OBJECTS, handle_meta_verification, handle_meta_webhook, handle_webhook
from web.worker_process import WorkerSupervisor, listen_for_nudges

if TYPE_CHECKING:
    from agent.graph import SdrAgent
    from agent.llm import LLMClient

log = get_logger(__name__)

StoreFactory = Callable[[Settings], Store]


def default_store(settings: Settings) -> Store:
    """Supabase when its URL and service-role key are set, else the embedded SQLite file."""
    if settings.supabase_configured:
        # Imported only when used: the supabase client is a heavy import for a laptop run.
        from store.supabase import SupabaseStore

        assert settings.supabase_url is not None and settings.supabase_service_role_key is not None
        return SupabaseStore(
            settings.supabase_url,
            settings.supabase_service_role_key.get_secret_value(),
            timeout_s=settings.supabase_timeout_s,
            max_attempts=settings.supabase_max_attempts,
            instance_id=settings.instance_id,  # None: the host name, stable across restarts
        )
    return SqliteStore(settings.sqlite_path)


def _media_fetcher(
    channels: dict[str, Channel], session: aiohttp.ClientSession, settings: Settings
) -> Callable[[InboundMessage], Awaitable[bytes]]:
    """A URL the media policy refuses is not retryable: it becomes MediaUnusable and the
    turn goes on without the media. (The agent holds a MEDIA_MAX_CONCURRENCY slot around
    this download and the transcription that follows: AgentDeps.media_slots.)"""
    from agent.graph import MediaUnusable

    async def fetch(message: InboundMessage) -> bytes:
        channel = channels[message.channel]
        assert message.media_url is not None
        try:
            return await channel.fetch_media(session, message.media_url, max_bytes=settings.media_max_bytes)
        except SendError as exc:
            if exc.retryable:
                raise
            raise MediaUnusable(str(exc)) from exc

    return fetch


def _build_agent(
    settings: Settings, session: aiohttp.ClientSession, channels: dict[str, Channel]
) -> tuple[LLMClient, SdrAgent]:
    from agent.business_hours import load_business_hours
    from agent.graph import AgentDeps, SdrAgent
    from agent.llm import LLMClient
    from agent.prompts import load_prompt_bundle
    from agent.scoring import load_scoring_rules

    llm = LLMClient(settings, session)
    agent = SdrAgent(
        AgentDeps(
            llm=llm,
            fetch_media=_media_fetcher(channels, session, settings),
            prompts=load_prompt_bundle(),
            rules=load_scoring_rules(),
            hours=load_business_hours(),
            lead_message_max_chars=settings.lead_message_max_chars,
            prompt_max_tokens=settings.prompt_max_tokens,
            media_slots=asyncio.Semaphore(max(1, settings.media_max_concurrency)),
        )
    )
    return llm, agent


def _profile_name_lookup(
    channels: dict[str, Channel], session: aiohttp.ClientSession
) -> Callable[[InboundMessage], Awaitable[str | None]]:
    """Instagram webhooks carry no name: ask the channel once, the store keeps it."""

    async def lookup(message: InboundMessage) -> str | None:
        fetch = getattr(channels.get(message.channel), "fetch_profile_name", None)
        if fetch is None:
            return None
        return await fetch(session, message.contact_id)

    return lookup


Role = Literal["all", "web", "worker"]


def create_app(
    settings: Settings | None = None,
    *,
    store_factory: StoreFactory = default_store,
    role: Role = "all",
    worker: WorkerSupervisor | None = None,
    worker_port: int | None = None,
    clock: Clock | None = None,
) -> web.Application:
    """`all`: one process does everything (tests, `chat`, WORKER_PROCESS=false).
    `web`: webhooks, health and metrics; turns and deliveries run in the `worker` child
    that `worker` supervises (see web/worker_process.py). `clock` is "now" for business
    hours, holidays, sessions, pauses and follow-ups (core/clock.py); the real one by default."""
    settings = settings or Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values())
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[request_middleware],
    )
    app[SETTINGS] = settings
    app[CHANNELS] = build_channels(settings)
    app[CHANNEL_HEALTH] = ChannelHealth()
    app[DRAINING] = Draining()
    app[METRICS] = Metrics({"all": ("ingest", "runtime"), "web": ("ingest",), "worker": ("runtime",)}[role])
    app[ROLE] = role
    if worker is not None:
        app[WORKER] = worker
    app[BREAKERS] = BreakerRegistry(reset_timeout_s=settings.circuit_reset_s)
    # Read once at start: a broken endpoint list stops the bot with a clear message.
    endpoints = endpoints_from_settings(settings)

    async def start_draining(app: web.Application) -> None:
        app[DRAINING].active = True

    app.on_shutdown.append(start_draining)

    async def http_ctx(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.http_timeout_s))
        app[HTTP] = session
        yield
        await session.close()

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        store = store_factory(settings)
        await store.open()
        if role == "web" and worker is not None:
            defer = getattr(store, "leave_checkpoints_to_others", None)
            if defer is not None:
                defer()
        app[STORE] = store
        yield
        await store.close()

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        session, store, channels = app[HTTP], app[STORE], app[CHANNELS]
        thinking = role != "web"
        # The web process of a split deployment never thinks: it does not even load the
        # agent (langgraph, openai), which keeps its memory small.
        llm, agent = _build_agent(settings, session, channels) if thinking else (None, None)
        if llm is not None:
            app[LLM] = llm
        dispatcher = OutboxDispatcher(store, workers=settings.outbox_workers, poll_s=settings.outbox_poll_s)
        runner = TurnRunner(
            store=store,
            agent=agent,
            settings=settings,
            on_commit=dispatcher.wake,
            profile_name=_profile_name_lookup(channels, session),
            lifecycle=Lifecycle(settings, subscriptions(endpoints)),
            metrics=app[METRICS],
            # The worker hears of new messages only through the store: poll it for them.
            shared=True if role == "worker" else None,
            clock=clock,
        )
        delivery = Delivery(
            channels=channels,
            session=session,
            store=store,
            settings=settings,
            health=app[CHANNEL_HEALTH],
            clock=lambda: runner.clock(),  # one clock for "how long since the lead wrote"
        )
        _register_outbox_routes(app, dispatcher, delivery, endpoints)
        follow_ups = FollowUpScheduler(store, runner, poll_s=settings.follow_up_poll_s)
        app[DISPATCHER] = dispatcher
        app[RUNNER] = runner
        app[FOLLOW_UPS] = follow_ups
        nudges = None
        if thinking:
            await dispatcher.start()
            await runner.start()
            await follow_ups.start()
            if role == "worker" and worker_port is not None:
                try:
                    nudges = await listen_for_nudges(worker_port, runner.notify, dispatcher.wake)
                except OSError as exc:  # the UDP port is taken: the store poller still works
                    log.warning("worker_nudges_unavailable", error=str(exc))
        else:
            runner.local_turns = False  # stored messages are the worker's to answer
            if worker is not None:
                runner.forward = worker.nudge
                dispatcher.forward_wake = worker.wake
        # Everything loaded so far (openai, langgraph, pydantic schemas) lives for the
        # whole process: keep it out of the cyclic GC, whose full passes over those
        # objects otherwise stall the loop for tens of milliseconds under load.
        gc.collect()
        gc.freeze()
        if role != "worker":
            _warn_unauthenticated_webhooks(channels)
        log.info(
            "sdr_started",
            store=store.backend_name,
            role=role,
            openai="configured" if settings.openai_configured else "not_configured",
            channels={name: ch.configured for name, ch in channels.items()},
        )
        stopped = False

        async def stop_runtime() -> None:
            # One deadline for the whole stop, so an orchestrator's kill timer (Docker's 10 s,
            # Kubernetes' 30 s) can be set from SHUTDOWN_GRACE_S: turns first, then what is due.
            nonlocal stopped
            if stopped:
                return
            stopped = True
            if nudges is not None:
                nudges.close()
            if llm is None:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + settings.shutdown_grace_s
            await follow_ups.stop()
            await runner.close(timeout=settings.shutdown_grace_s * 0.7)
            await dispatcher.stop(timeout=max(0.5, deadline - loop.time()))
            await llm.close()

        app[STOP_RUNTIME] = stop_runtime
        yield
        await stop_runtime()

    app.cleanup_ctx.extend([http_ctx, store_ctx, runtime_ctx])
    if worker is not None:
        app.cleanup_ctx.append(worker.ctx)  # started last, stopped first
    _add_routes(app, webhooks=role != "worker")
    return app


async def drain(app: web.Application) -> None:
    """SIGTERM, while the socket still listens: webhooks get 503 + Retry-After (providers
    retry them against another instance or after the restart, never "connection refused"),
    health says draining, and running turns and due deliveries finish; then the caller
    closes the socket and runs the cleanup, which finds nothing left to stop."""
    app[DRAINING].active = True
    stop = app.get(STOP_RUNTIME)
    if stop is not None:
        await stop()
    worker = app.get(WORKER)
    if worker is not None:
        await worker.stop()


WEBHOOK_SECRET_MISSING = "error: webhook secret missing"


def _warn_unauthenticated_webhooks(channels: dict[str, Channel]) -> None:
    """Said at start, not discovered when the first lead goes unanswered."""
    for name, channel in channels.items():
        setting = channel.missing_webhook_secret
        route = "meta" if name in META_OBJECTS.values() else name  # one URL for both Meta products
        if channel.configured and setting:
            log.error(
                "webhook_secret_missing",
                channel=name,
                setting=setting,
                action=f"every /webhooks/{route} request is refused until {setting} is set",
            )


def _register_outbox_routes(
    app: web.Application, dispatcher: OutboxDispatcher, delivery: Delivery, endpoints: list[Endpoint]
) -> None:
    """Each side effect with its integration's policy (runtime/policies.py) and circuit
    breaker: one per channel for replies, one per endpoint for webhooks. Erasures (LGPD)
    are always routed, and never give up on an outage (runtime/erasure.py)."""
    from core.records import ERASURE_KIND
    from runtime.erasure import (
        CHATWOOT_ERASE_KIND,
        PIPERUN_ERASE_KIND,
        ChatwootErasure,
        ErasureFanout,
        PipeRunErasure,
        erasure_policy,
        fanout_policy,
    )

    settings, session, store, breakers = app[SETTINGS], app[HTTP], app[STORE], app[BREAKERS]
    fanout = ErasureFanout(store, settings, subscriptions(endpoints))
    dispatcher.register(ERASURE_KIND, fanout.fan_out, fanout_policy(settings))
    per_channel = breakers.per_item("channel_send", lambda item: item.payload.get("channel"))
    for kind, handler in (("send_text", delivery.send_text), ("reengage", delivery.reengage)):
        dispatcher.register(kind, handler, policy_for("channel_send", settings), per_channel)
    if settings.chatwoot_configured:
        mirror = ChatwootMirror(ChatwootClient(settings, session), store, settings, app[CHANNEL_HEALTH])
        for kind, handler in (
            ("chatwoot_message", mirror.message),
            ("chatwoot_profile", mirror.profile),
            ("chatwoot_handoff", mirror.handoff),
        ):
            dispatcher.register(kind, handler, policy_for("chatwoot", settings), breakers.get("chatwoot"))
        dispatcher.register(
            CHATWOOT_ERASE_KIND,
            ChatwootErasure(ChatwootClient(settings, session)).erase,
            erasure_policy("chatwoot", settings),
            breakers.get("chatwoot"),
        )
    if settings.piperun_api_token is not None:
        dispatcher.register(
            PIPERUN_ERASE_KIND,
            PipeRunErasure(PipeRunClient.from_settings(settings, session), settings).erase,
            erasure_policy("piperun", settings),
            breakers.get("piperun"),
        )
    if settings.piperun_configured:
        crm = CrmSync(PipeRunClient.from_settings(settings, session), store, settings)
        dispatcher.register(PIPERUN_KIND, crm.sync, policy_for("piperun", settings), breakers.get("piperun"))
    if settings.meta_capi_configured:
        capi = CapiDelivery(MetaCapiClient.from_settings(session, settings), store, settings)
        dispatcher.register(
            CAPI_KIND, capi.event, policy_for("meta_capi", settings), breakers.get("meta_capi")
        )
    if endpoints:
        hooks = WebhookDelivery(OutboundWebhookClient(session), endpoints, store)
        per_endpoint = breakers.per_item("outbound_webhook", lambda item: item.payload.get("endpoint_id"))
        dispatcher.register(
            WEBHOOK_KIND, hooks.deliver, policy_for("outbound_webhook", settings), per_endpoint
        )


def _add_routes(app: web.Application, *, webhooks: bool = True) -> None:
    app.router.add_get("/api/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", root)
    if not webhooks:  # the worker only answers its parent's loopback health and metrics
        return

    async def zapi(request: web.Request) -> web.Response:
        return await handle_webhook(request, "zapi")

    async def waha(request: web.Request) -> web.Response:
        return await handle_webhook(request, "waha")

    app.router.add_post("/webhooks/zapi", zapi)
    app.router.add_post("/webhooks/waha", waha)
    app.router.add_post("/webhooks/chatwoot", handle_chatwoot_webhook)
    app.router.add_post("/webhooks/crm", handle_crm_webhook)
    app.router.add_get("/webhooks/meta", handle_meta_verification)
    app.router.add_post("/webhooks/meta", handle_meta_webhook)
    # The earlier Seleto bot's Z-API panel pointed here; keep existing setups working.
    app.router.add_post("/webhook/text", zapi)
    app.router.add_post("/webhook/audio", zapi)


async def root(_request: web.Request) -> web.Response:
    return web.json_response({"service": "sdr-agent", "health": "/api/health"})


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    if not operator_authorized(request, app[SETTINGS]):
        return json_error(401, "metrics need Authorization: Bearer <METRICS_TOKEN>")
    try:
        body = await app[METRICS].render(app[STORE], app[BREAKERS].snapshot)
    except Exception as exc:  # noqa: BLE001 - a scrape must say why it failed
        log.error("metrics_store_error", error=str(exc))
        return web.Response(status=503, text=f"# store unavailable: {type(exc).__name__}\n")
    worker = app.get(WORKER)
    if worker is not None:  # turns, outbox, leads and circuits live in the worker
        answer = await worker.fetch(app[HTTP], "/metrics")
        if answer is None or answer[0] != 200:
            return web.Response(status=503, text="# the turn worker is not answering\n")
        body += answer[1]
    return web.Response(body=body, headers={"Content-Type": Metrics.content_type})


async def health(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    store = app[STORE]
    services: dict[str, object] = {}
    healthy = True
    try:
        await store.ping()
        services[store.backend_name] = "connected"
    except Exception as exc:  # noqa: BLE001 - health must answer, whatever the store raised
        services[store.backend_name] = "error"
        log.error("health_store_error", error=str(exc))
        healthy = False
    if store.backend_name != "supabase":
        services["supabase"] = "configured" if settings.supabase_configured else "not_configured"

    def flag(ok: bool) -> str:
        return "configured" if ok else "not_configured"

    services["openai"] = flag(settings.openai_configured)
    for name, channel in app[CHANNELS].items():
        if getattr(channel, "webhook", True):  # the terminal chat channel is not a service
            state = app[CHANNEL_HEALTH].status(name, configured=channel.configured)
            if channel.configured and channel.missing_webhook_secret:
                state = WEBHOOK_SECRET_MISSING  # its webhook refuses everything
            services[name] = state
    services["chatwoot"] = app[CHANNEL_HEALTH].status("chatwoot", configured=settings.chatwoot_configured)
    services["piperun"] = flag(settings.piperun_configured)
    status = "healthy" if healthy else "degraded"
    if app[DRAINING].active:  # load balancers take this instance out while it finishes
        status, healthy = "draining", False
    body: dict[str, object] = {"status": status, "services": services}
    if healthy:
        stats = await store.outbox_stats()
        body["outbox"] = {"pending": stats.pending + stats.inflight, "dead": stats.dead}
        body["active_contacts"] = app[RUNNER].active_contacts
    circuits = app[BREAKERS].snapshot()
    if circuits:
        body["circuits"] = {name: c["state"] for name, c in circuits.items()}
    worker = app.get(WORKER)
    if worker is not None and not await _merge_worker_health(app, worker, body):
        healthy = False
        body["status"] = "degraded" if body["status"] == "healthy" else body["status"]
    if not operator_authorized(request, settings):
        # Liveness for load balancers; which provider failed is the operator's business.
        body = {"status": body["status"]}
    return web.json_response(body, status=200 if healthy else 503)


async def _merge_worker_health(app: web.Application, worker: WorkerSupervisor, body: dict[str, Any]) -> bool:
    """The worker sends the replies, so it knows a provider refusing our token; it also
    holds the turns and the circuits. False when it is not answering."""
    services: dict[str, object] = body["services"]
    answer = await worker.fetch(app[HTTP], "/api/health")
    if answer is None:
        services["worker"] = "down"
        return False
    try:
        theirs = json.loads(answer[1])
    except ValueError:
        theirs = {}
    services["worker"] = "running" if answer[0] == 200 else "degraded"
    for name, state in (theirs.get("services") or {}).items():
        if state not in ("configured", "not_configured", "connected") and name in services:
            services[name] = state  # e.g. auth_failed, seen by the worker when sending
    for key in ("active_contacts", "circuits"):
        if key in theirs:
            body[key] = theirs[key]
    return answer[0] == 200


__all__ = ["create_app", "drain"]

"""The aiohttp app factory: owns every long-lived resource through `cleanup_ctx`.

Order matters and is the order of `cleanup_ctx`: the HTTP session and the store open
first and close last; the runtime (turns + outbox dispatcher) starts last and stops
first, so in-flight turns can still commit and deliveries can still be recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from aiohttp import web

from agent.business_hours import load_business_hours
from channels.base import Channel, profile_lookup, read_receipts
from channels.registry import build_channels
from core.clock import Clock
from core.errors import ProviderError
from core.form_fields import FormFieldMap, load_form_field_map
from core.logging import get_logger
from core.metrics import Metrics
from core.models import InboundMessage
from core.settings import Settings
from integrations.chatwoot import ChatwootClient
from integrations.meta_capi import MetaCapiClient
from integrations.outbound_webhooks import Endpoint
from integrations.piperun import PipeRunTexts, load_piperun_texts
from runtime.breaker import BreakerRegistry
from runtime.channel_health import ChannelHealth
from runtime.delivery import AttachmentFetcher, Delivery
from runtime.dispatcher import OutboxDispatcher
from runtime.followups import FollowUpScheduler
from runtime.handoff_card import HandoffCard, load_handoff_card
from runtime.lifecycle import Lifecycle, piperun_owners
from runtime.notifier import ForwardingNotifier, LocalNotifier
from runtime.routes import RouteDeps, register_outbox_routes
from runtime.seller_notes import SellerNotes, load_seller_notes
from runtime.sellers import load_sellers
from runtime.templates import TemplateBook, load_templates
from runtime.turns import TurnRunner
from runtime.webhook_delivery import subscriptions
from store.base import Store
from store.sqlite import SqliteStore
from web.chatwoot_panel import setup_chatwoot_panel
from web.chatwoot_webhook import handle_chatwoot_webhook
from web.configs.channels import channels_config
from web.configs.integrations import (
    chatwoot_config,
    meta_capi_config,
    piperun_clients,
    webhook_endpoints,
)
from web.configs.runtime import delivery_config, lifecycle_config, route_config, runner_config
from web.crm_webhook import handle_crm_webhook
from web.dashboard import setup_dashboard
from web.health import health, starting_metrics
from web.keys import (
    BREAKERS,
    CHANNEL_HEALTH,
    CHANNELS,
    CLOCK,
    DISPATCHER,
    FOLLOW_UPS,
    FORM_FIELDS,
    HTTP,
    LIFECYCLE,
    LLM,
    NOTIFIER,
    ROLE,
    RUNNER,
    SETTINGS,
    STOP_RUNTIME,
    STORE,
    WORKER,
)
from web.leads_api import handle_leads_api
from web.middlewares import DRAINING, METRICS, Draining, json_error, request_middleware
from web.operator_auth import operator_authorized
from web.optional_parts import lead_ads_intake, meeting_desk, meeting_reminders, prompts_and_knowledge
from web.provider_checks import PROVIDER_CHECKS, ProviderChecks
from web.rdstation_webhook import handle_rdstation_webhook
from web.webhooks import (
    BACKGROUND_CALLS,
    META_OBJECTS,
    BackgroundCalls,
    handle_meta_verification,
    handle_meta_webhook,
    handle_webhook,
)
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
        except ProviderError as exc:
            if exc.retryable:  # the turn is retried later; a permanent refusal drops the media
                raise
            raise MediaUnusable(str(exc)) from exc

    return fetch


def _build_agent(
    settings: Settings, session: aiohttp.ClientSession, channels: dict[str, Channel]
) -> tuple[LLMClient, SdrAgent]:
    from agent.graph import AgentDeps, SdrAgent
    from agent.llm import LLMClient
    from agent.scoring import load_scoring_rules
    from web.configs.agent import llm_config

    llm = LLMClient(llm_config(settings), session)
    prompts, knowledge = prompts_and_knowledge(settings, session)
    agent = SdrAgent(
        AgentDeps(
            llm=llm,
            fetch_media=_media_fetcher(channels, session, settings),
            prompts=prompts,
            knowledge=knowledge,
            rules=load_scoring_rules(),
            hours=load_business_hours(),
            lead_message_max_chars=settings.lead_message_max_chars,
            prompt_max_tokens=settings.prompt_max_tokens,
            history_max_tokens=settings.history_max_tokens,
            media_slots=asyncio.Semaphore(max(1, settings.media_max_concurrency)),
        )
    )
    return llm, agent


def _profile_name_lookup(
    channels: dict[str, Channel], session: aiohttp.ClientSession
) -> Callable[[InboundMessage], Awaitable[str | None]]:
    """Instagram webhooks carry no name: ask the channel once, the store keeps it."""

    async def lookup(message: InboundMessage) -> str | None:
        channel = profile_lookup(channels.get(message.channel))
        if channel is None:
            return None
        name = await channel.fetch_profile_name(session, message.contact_id)
        return str(name) if name is not None else None

    return lookup


def _client_factories(settings: Settings, session: aiohttp.ClientSession) -> dict[str, Any]:
    """The outbox handlers' clients, one per handler as before; only the configured ones."""
    factories: dict[str, Any] = {}
    if settings.chatwoot_configured:
        factories["chatwoot"] = lambda: ChatwootClient(chatwoot_config(settings), session)
    if settings.piperun_api_token is not None:
        # One pace (PIPERUN_RATE_PER_S) shared by the sync, note and erasure clients.
        factories["piperun"] = piperun_clients(settings, session)
    if settings.meta_capi_configured:
        factories["capi"] = lambda: MetaCapiClient(meta_capi_config(settings), session)
    return factories


@dataclass(frozen=True)
class _Texts:
    """The text files the runtime renders from (the agent reads its own prompts when it
    is built): read when the app is built, never at first use."""

    card: HandoffCard
    piperun: PipeRunTexts | None
    notes: SellerNotes
    templates: TemplateBook
    forms: FormFieldMap


def _read_texts(settings: Settings) -> _Texts:
    piperun = load_piperun_texts() if settings.piperun_configured else None
    templates = load_templates(
        fallback_name=settings.whatsapp_reengage_template,
        fallback_language=settings.whatsapp_template_language,
        first_touch_name=settings.whatsapp_first_touch_template,
    )
    return _Texts(
        card=load_handoff_card(),
        piperun=piperun,
        notes=load_seller_notes(),
        templates=templates,
        forms=load_form_field_map(),
    )


def _read_receipt(
    channels: dict[str, Channel], session: aiohttp.ClientSession
) -> Callable[[InboundMessage], Awaitable[None]]:
    """Blue ticks and "typing..." on the lead's last message, where the channel has them."""

    async def receipt(message: InboundMessage) -> None:
        channel = read_receipts(channels.get(message.channel))
        if channel is not None:
            await channel.mark_read(session, message.provider_message_id, typing=True)

    return receipt


def _attachment_fetcher(settings: Settings, session: aiohttp.ClientSession) -> AttachmentFetcher | None:
    """Sellers' Chatwoot files, fetched from Chatwoot's own origin only."""
    if not settings.chatwoot_configured:
        return None
    return ChatwootClient(chatwoot_config(settings), session).download_attachment


Role = Literal["all", "web", "worker"]


def create_app(
    settings: Settings,
    *,
    clock: Clock,
    store_factory: StoreFactory = default_store,
    role: Role = "all",
    worker: WorkerSupervisor | None = None,
    worker_port: int | None = None,
) -> web.Application:
    """`all`: one process does everything (tests, `chat`, WORKER_PROCESS=false).
    `web`: webhooks, health and metrics; turns and deliveries run in the `worker` child
    that `worker` supervises (see web/worker_process.py). `clock` is "now" for business
    hours, holidays, sessions, pauses and follow-ups (core/clock.py).

    Nothing here touches the process (logging, the GC): the caller owns it, see
    web/serve.py's `configure_process` and `freeze_gc_once_started`."""
    app = _base_app(settings, role, worker)
    # Read once at build: a broken endpoint list or text file stops the bot with a clear message.
    endpoints = webhook_endpoints(settings)
    texts = _read_texts(settings) if role != "web" else None
    app[FORM_FIELDS] = texts.forms if texts is not None else load_form_field_map()
    app[LIFECYCLE] = Lifecycle(
        lifecycle_config(settings),
        subscriptions(endpoints),
        texts.notes if texts is not None else None,
        seller_owner=piperun_owners(load_sellers()) if settings.meetings_enabled else None,
    )
    app.on_shutdown.append(_start_draining)
    runtime = _RuntimeCtx(
        settings, role, endpoints, worker=worker, worker_port=worker_port, clock=clock, texts=texts
    )
    app.cleanup_ctx.extend([_http_ctx(settings), _store_ctx(settings, store_factory, role, worker), runtime])
    if worker is not None:
        app.cleanup_ctx.append(worker.ctx)  # started last, stopped first
    _add_routes(app, webhooks=role != "worker")
    return app


def _base_app(settings: Settings, role: Role, worker: WorkerSupervisor | None) -> web.Application:
    """The application and what lives as long as it, whatever the role."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[request_middleware])
    app[SETTINGS] = settings
    app[CHANNELS] = build_channels(channels_config(settings))
    app[CHANNEL_HEALTH] = ChannelHealth()
    app[DRAINING] = Draining()
    app[METRICS] = Metrics({"all": ("ingest", "runtime"), "web": ("ingest",), "worker": ("runtime",)}[role])
    app[ROLE] = role
    if worker is not None:
        app[WORKER] = worker
    app[BREAKERS] = BreakerRegistry(reset_timeout_s=settings.circuit_reset_s)
    app[PROVIDER_CHECKS] = checks = ProviderChecks(settings)  # /api/health's kept verdicts
    app.on_shutdown.append(checks.close)
    # Webhooks' best-effort calls (WAHA presence subscriptions), cancelled at shutdown.
    app[BACKGROUND_CALLS] = calls = BackgroundCalls()
    app.on_shutdown.append(calls.close)
    return app


async def _start_draining(app: web.Application) -> None:
    app[DRAINING].active = True


CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def _http_ctx(settings: Settings) -> CleanupCtx:
    async def http_ctx(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.http_timeout_s))
        app[HTTP] = session
        yield
        await session.close()

    return http_ctx


def _store_ctx(
    settings: Settings, store_factory: StoreFactory, role: Role, worker: WorkerSupervisor | None
) -> CleanupCtx:
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

    return store_ctx


class _RuntimeCtx:
    """cleanup_ctx of the runtime: turns, outbox and follow-ups where this role thinks;
    a notifier that forwards to the worker child where it does not."""

    def __init__(
        self,
        settings: Settings,
        role: Role,
        endpoints: list[Endpoint],
        *,
        worker: WorkerSupervisor | None,
        worker_port: int | None,
        clock: Clock,
        texts: _Texts | None,
    ) -> None:
        self.settings = settings
        self.role = role
        self.endpoints = endpoints
        self.worker = worker
        self.worker_port = worker_port
        self.clock = clock
        self.texts = texts
        self.stop_parts: list[Callable[[], Awaitable[None]]] = []
        self.nudges: asyncio.DatagramTransport | None = None
        self.stopped = False

    async def __call__(self, app: web.Application) -> AsyncIterator[None]:
        if self.role == "web":
            # The web process of a split deployment never thinks: it does not even load
            # the agent (langgraph, openai), which keeps its memory small.
            worker = self.worker
            app[NOTIFIER] = (
                ForwardingNotifier(worker.nudge, worker.wake, worker.presence)
                if worker
                else ForwardingNotifier()
            )
            app[CLOCK] = self.clock
        else:
            await self._start_thinking(app)
        channels = app[CHANNELS]
        if self.role != "worker":
            _warn_unauthenticated_webhooks(channels)
        log.info(
            "sdr_started",
            store=app[STORE].backend_name,
            role=self.role,
            openai="configured" if self.settings.openai_configured else "not_configured",
            channels={name: ch.configured for name, ch in channels.items()},
        )
        app[STOP_RUNTIME] = self.stop
        yield
        await self.stop()

    async def _start_thinking(self, app: web.Application) -> None:
        settings, session, store, channels = self.settings, app[HTTP], app[STORE], app[CHANNELS]
        llm, agent = _build_agent(settings, session, channels)
        app[LLM] = llm
        assert self.texts is not None  # read by create_app for every role that thinks
        card = self.texts.card
        dispatcher = OutboxDispatcher(store, workers=settings.outbox_workers, poll_s=settings.outbox_poll_s)
        runner = TurnRunner(
            store=store,
            agent=agent,
            config=runner_config(settings),
            card=card,
            on_commit=dispatcher.wake,
            profile_name=_profile_name_lookup(channels, session),
            read_receipt=_read_receipt(channels, session),
            notes=self.texts.notes,
            lifecycle=app[LIFECYCLE],
            metrics=app[METRICS],
            # The worker hears of new messages only through the store: poll it for them.
            shared=True if self.role == "worker" else None,
            clock=self.clock,
            meetings=meeting_desk(settings, session, store, self.clock),
        )
        delivery = Delivery(
            channels=channels,
            session=session,
            store=store,
            config=delivery_config(settings),
            health=app[CHANNEL_HEALTH],
            card=card,
            clock=runner.now,  # one clock for "how long since the lead wrote"
            templates=self.texts.templates,
            notes=self.texts.notes,
            attachments=_attachment_fetcher(settings, session),
            max_media_bytes=settings.media_max_bytes,
        )
        deps = RouteDeps(
            route_config(settings),
            session,
            store,
            app[BREAKERS],
            app[CHANNEL_HEALTH],
            delivery,
            self.endpoints,
            **_client_factories(settings, session),
            piperun_texts=self.texts.piperun,
            lead_ads=lead_ads_intake(settings, session, store, self.texts.forms, runner),
            seller_owner=piperun_owners(load_sellers()) if settings.meetings_enabled else None,
        )
        register_outbox_routes(dispatcher, deps)
        follow_ups = FollowUpScheduler(store, runner, poll_s=settings.follow_up_poll_s)
        app[DISPATCHER], app[RUNNER], app[FOLLOW_UPS] = dispatcher, runner, follow_ups
        reminders = meeting_reminders(app, runner.now, dispatcher.wake)
        app[NOTIFIER] = LocalNotifier(runner, dispatcher)
        app[CLOCK] = runner.now  # the scenarios move the runner's clock
        await dispatcher.start()
        await runner.start()
        await follow_ups.start()
        if reminders is not None:
            await reminders.start()
        if self.role == "worker" and self.worker_port is not None:
            try:
                self.nudges = await listen_for_nudges(self.worker_port, runner, dispatcher.wake)
            except OSError as exc:  # the UDP port is taken: the store poller still works
                log.warning("worker_nudges_unavailable", error=str(exc))

        async def stop_thinking() -> None:
            # One deadline for the whole stop, so an orchestrator's kill timer (Docker's
            # 10 s, Kubernetes' 30 s) can be set from SHUTDOWN_GRACE_S: turns first, then
            # what is due.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + settings.shutdown_grace_s
            await follow_ups.stop()
            if reminders is not None:
                await reminders.stop()
            await runner.close(timeout=settings.shutdown_grace_s * 0.7)
            await dispatcher.stop(timeout=max(0.5, deadline - loop.time()))
            await llm.close()

        self.stop_parts.append(stop_thinking)

    async def stop(self) -> None:
        """Once, from drain() or the cleanup, whichever comes first."""
        if self.stopped:
            return
        self.stopped = True
        if self.nudges is not None:
            self.nudges.close()
        for part in self.stop_parts:
            await part()


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
    app.router.add_post("/webhooks/rdstation", handle_rdstation_webhook)
    app.router.add_post("/api/leads", handle_leads_api)
    setup_chatwoot_panel(app, app[SETTINGS])  # the lead panel inside Chatwoot
    setup_dashboard(app, app[SETTINGS])  # the sales dashboard (issue 20)
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
    if (starting := await starting_metrics(app)) is not None:
        return starting
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


__all__ = ["create_app", "drain"]

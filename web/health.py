"""`GET /api/health`: what monitoring and load balancers learn about this instance.

The HTTP status answers one question, "can this instance take webhooks and keep them?":
503 when the store fails, while draining, or when the turn worker does not answer. For
the first seconds after `listening` the worker child is still loading: that is 503
`starting` with `Retry-After: 1` and the parts not up yet, not a failure; a worker that
was up and died, or is being restarted after a crash, is `degraded`. A
provider refusing our token or down (a channel, Chatwoot, OpenAI, PipeRun, Meta CAPI)
does not make it 503: another instance would fare no better and the messages are kept
for later. Such a provider is named under `services` and the overall `status` says
`degraded` for OpenAI, PipeRun and Meta CAPI, whose credentials are checked for real
(web/provider_checks.py); the store's `connected`/`error` is left to the store. A store
that is merely busy (SQLite's write lock held by another writer through the probe's
short wait, as under a flood) is `busy` and `degraded`, still 200: only a store that
fails is down.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from core.logging import get_logger
from store.base import StoreBusy
from web.keys import (
    BREAKERS,
    CHANNEL_HEALTH,
    CHANNELS,
    CLOCK,
    HTTP,
    ROLE,
    RUNNER,
    SETTINGS,
    STOP_RUNTIME,
    STORE,
    WORKER,
)
from web.middlewares import DRAINING
from web.operator_auth import operator_authorized
from web.provider_checks import FINE, PROVIDER_CHECKS, ProviderState
from web.worker_process import WorkerSupervisor

log = get_logger(__name__)

WEBHOOK_SECRET_MISSING = "error: webhook secret missing"
STORE_BUSY = "busy"
RETRY_AFTER = {"Retry-After": "1"}


async def health(request: web.Request) -> web.Response:
    app = request.app
    services: dict[str, object] = {}
    store_ok = await _store_state(app, services)
    _configured_services(app, services, await _provider_states(app))
    draining = app[DRAINING].active  # load balancers take this instance out while it finishes
    body: dict[str, object] = {"services": services}
    store = app.get(STORE)
    if store_ok and not draining and store is not None:
        stats = await store.outbox_stats()
        body["outbox"] = {"pending": stats.pending + stats.inflight, "dead": stats.dead}
        runner = app.get(RUNNER)
        body["active_contacts"] = runner.active_contacts if runner is not None else 0
    circuits = app[BREAKERS].snapshot()
    if circuits:
        body["circuits"] = {name: c["state"] for name, c in circuits.items()}
    worker = app.get(WORKER)
    worker_ok = worker is None or await _merge_worker_health(app, worker, body)
    starting = [] if draining else starting_parts(app)
    if starting:
        body["starting"] = starting
        body.pop("active_contacts", None)  # the worker holds them, and it has not said yet
    status = _status(store_ok=store_ok, worker_ok=worker_ok, draining=draining, starting=bool(starting))
    if status == "healthy" and (_a_provider_fails(services) or STORE_BUSY in services.values()):
        status = "degraded"  # still 200: see the module's docstring
    body = {"status": status, **body}
    if not operator_authorized(request, app[SETTINGS]):
        # Liveness for load balancers; which provider failed is the operator's business.
        body = {"status": status}
    ok = store_ok and worker_ok and not draining and not starting
    return web.json_response(body, status=200 if ok else 503, headers=RETRY_AFTER if starting else None)


def starting_parts(app: web.Application) -> list[str]:
    """The parts of the first start-up that are not up yet, [] once they are. The store
    and the runtime start before the socket listens (aiohttp's cleanup_ctx), so in
    practice this names the worker child until it first answers; a part that was up and
    failed is a failure (`degraded`), never `starting` again."""
    parts = [name for name, key in (("store", STORE), ("runtime", STOP_RUNTIME)) if key not in app]
    worker = app.get(WORKER)
    if worker is not None and worker.starting:
        parts.append("worker")
    return parts


async def starting_metrics(app: web.Application) -> web.Response | None:
    """`/metrics` while starting: a scrape failing now is not an outage, say so. A
    worker still said to be starting is asked first: it may have come up since the
    last look, and only an answer ends its start-up."""
    worker = app.get(WORKER)
    if worker is not None and worker.starting:
        await worker.fetch(app[HTTP], "/api/health")
    starting = starting_parts(app)
    if not starting or app[DRAINING].active:
        return None
    text = f"# starting: {', '.join(starting)} not up yet, retry in a second\n"
    return web.Response(status=503, text=text, headers=RETRY_AFTER)


def _status(*, store_ok: bool, worker_ok: bool, draining: bool, starting: bool) -> str:
    """A store that fails is a failure even while starting; draining says so over all."""
    if draining:
        return "draining"
    if not store_ok:
        return "degraded"
    if starting:
        return "starting"
    return "healthy" if worker_ok else "degraded"


async def _store_state(app: web.Application, services: dict[str, object]) -> bool:
    """False when the store fails; True too while it is not open yet (that is `starting`)."""
    store = app.get(STORE)
    if store is None:
        return True
    try:
        await store.ping()
        services[store.backend_name] = "connected"
    except StoreBusy as exc:
        # Up, and merely busy (another writer held the lock through the probe's wait):
        # webhooks still get stored (their writes wait longer), so no 503.
        services[store.backend_name] = STORE_BUSY
        log.warning("health_store_busy", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - health must answer, whatever the store raised
        services[store.backend_name] = "error"
        log.error("health_store_error", error=str(exc))
        return False
    return True


def _configured_services(
    app: web.Application, services: dict[str, object], providers: dict[str, ProviderState]
) -> None:
    settings = app[SETTINGS]
    store = app.get(STORE)
    if store is not None and store.backend_name != "supabase":
        services["supabase"] = "configured" if settings.supabase_configured else "not_configured"
    services["openai"] = providers["openai"].as_json()
    for name, channel in app[CHANNELS].items():
        if getattr(channel, "webhook", True):  # the terminal chat channel is not a service
            state = app[CHANNEL_HEALTH].status(name, configured=channel.configured)
            if channel.configured and channel.missing_webhook_secret:
                state = WEBHOOK_SECRET_MISSING  # its webhook refuses everything
            services[name] = state
    services["chatwoot"] = app[CHANNEL_HEALTH].status("chatwoot", configured=settings.chatwoot_configured)
    services["piperun"] = providers["piperun"].as_json()
    services["meta_capi"] = providers["meta_capi"].as_json()


async def _provider_states(app: web.Application) -> dict[str, ProviderState]:
    checks = app[PROVIDER_CHECKS]
    if app[ROLE] == "web" and WORKER in app:
        return checks.left_to_the_worker()  # replaced by the worker's answer when it comes
    return await checks.report(app, app[CLOCK])


def _a_provider_fails(services: dict[str, object]) -> bool:
    return any(isinstance(s, dict) and s.get("status") not in FINE for s in services.values())


async def _merge_worker_health(app: web.Application, worker: WorkerSupervisor, body: dict[str, Any]) -> bool:
    """The worker sends the replies, so it knows a provider refusing our token; it also
    holds the turns, the circuits and the OpenAI client, so it checks the providers'
    credentials. False when it is not answering."""
    services: dict[str, object] = body["services"]
    answer = await worker.fetch(app[HTTP], "/api/health")
    if answer is None:
        services["worker"] = "starting" if worker.starting else "down"
        return False
    try:
        theirs = json.loads(answer[1])
    except ValueError:
        theirs = {}
    services["worker"] = "running" if answer[0] == 200 else "degraded"
    for name, state in (theirs.get("services") or {}).items():
        if name not in services:
            continue
        if isinstance(services[name], dict):  # a provider check: the worker's verdict
            if isinstance(state, dict):
                services[name] = state
        elif isinstance(state, str) and state not in ("configured", "not_configured", "connected"):
            services[name] = state  # e.g. auth_failed, seen by the worker when sending
    for key in ("active_contacts", "circuits"):
        if key in theirs:
            body[key] = theirs[key]
    return answer[0] == 200


__all__ = [
    "RETRY_AFTER",
    "STORE_BUSY",
    "WEBHOOK_SECRET_MISSING",
    "health",
    "starting_parts",
    "starting_metrics",
]

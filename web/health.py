"""`GET /api/health`: what monitoring and load balancers learn about this instance.

The HTTP status answers one question, "can this instance take webhooks and keep them?":
503 when the store fails, while draining, or when the turn worker does not answer. A
provider refusing our token or down (a channel, Chatwoot, OpenAI, PipeRun, Meta CAPI)
does not make it 503: another instance would fare no better and the messages are kept
for later. Such a provider is named under `services` and the overall `status` says
`degraded` for OpenAI, PipeRun and Meta CAPI, whose credentials are checked for real
(web/provider_checks.py); the store's `connected`/`error` is left to the store.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from core.logging import get_logger
from web.keys import BREAKERS, CHANNEL_HEALTH, CHANNELS, CLOCK, HTTP, ROLE, RUNNER, SETTINGS, STORE, WORKER
from web.middlewares import DRAINING
from web.operator_auth import operator_authorized
from web.provider_checks import FINE, PROVIDER_CHECKS, ProviderState
from web.worker_process import WorkerSupervisor

log = get_logger(__name__)

WEBHOOK_SECRET_MISSING = "error: webhook secret missing"


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
    providers = await _provider_states(app)
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
    status = "healthy" if healthy else "degraded"
    if app[DRAINING].active:  # load balancers take this instance out while it finishes
        status, healthy = "draining", False
    body: dict[str, object] = {"status": status, "services": services}
    if healthy:
        stats = await store.outbox_stats()
        body["outbox"] = {"pending": stats.pending + stats.inflight, "dead": stats.dead}
        runner = app.get(RUNNER)
        body["active_contacts"] = runner.active_contacts if runner is not None else 0
    circuits = app[BREAKERS].snapshot()
    if circuits:
        body["circuits"] = {name: c["state"] for name, c in circuits.items()}
    worker = app.get(WORKER)
    if worker is not None and not await _merge_worker_health(app, worker, body):
        healthy = False
        body["status"] = "degraded" if body["status"] == "healthy" else body["status"]
    if body["status"] == "healthy" and _a_provider_fails(services):
        body["status"] = "degraded"  # still 200: see the module's docstring
    if not operator_authorized(request, settings):
        # Liveness for load balancers; which provider failed is the operator's business.
        body = {"status": body["status"]}
    return web.json_response(body, status=200 if healthy else 503)


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
        services["worker"] = "down"
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


__all__ = ["WEBHOOK_SECRET_MISSING", "health"]

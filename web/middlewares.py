"""Request ids and JSON errors for every route.

Providers and operators get `{"error": ...}` with a 4xx for anything we reject, and a
bug becomes a logged 500 with the request id, never an HTML traceback.
"""

from __future__ import annotations

import itertools
import os
import re

import structlog
from aiohttp import web

from core.logging import get_logger
from core.metrics import Metrics

log = get_logger(__name__)

# Unique per process and cheap: a uuid4 per webhook is measurable at webhook rates.
_PREFIX = f"{os.getpid():x}{os.urandom(3).hex()}-"
_COUNTER = itertools.count(1)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def json_error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class Draining:
    """Set on SIGTERM: from then on webhooks get 503 (providers retry them against the
    next instance or the next start) while in-flight turns finish."""

    def __init__(self) -> None:
        self.active = False


DRAINING = web.AppKey("draining", Draining)
METRICS = web.AppKey("metrics", Metrics)


# Where leads come in: refused with Retry-After while draining, like every webhook.
_INTAKE_PATHS = ("/webhooks/", "/webhook/", "/api/leads")


@web.middleware
async def request_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """One middleware, not two: it runs on every webhook, so each frame counts."""
    # A caller's id is kept only if it looks like an id: it is logged unscrubbed.
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else f"{_PREFIX}{next(_COUNTER):x}"
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            draining = request.app.get(DRAINING)
            if draining is not None and draining.active and request.path.startswith(_INTAKE_PATHS):
                response = json_error(503, "shutting down, retry shortly")
                response.headers["Retry-After"] = "5"
            else:
                response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            response = json_error(413, "request body too large")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = json_error(exc.status, exc.reason or "error")
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except Exception:
            log.exception("unhandled_error", path=request.path)
            response = json_error(500, "internal error")
        response.headers["X-Request-Id"] = request_id
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.webhook(request.path, response.status)
        return response

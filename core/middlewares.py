"""Request ids and JSON errors for every route.

Providers and operators get `{"error": ...}` with a 4xx for anything we reject, and a
bug becomes a logged 500 with the request id, never an HTML traceback.
"""

from __future__ import annotations

import uuid

import structlog
from aiohttp import web

from core.logging import get_logger

log = get_logger(__name__)


def json_error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def request_id_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        response = await handler(request)
        response.headers["X-Request-Id"] = request_id
        return response


@web.middleware
async def json_error_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason or "error")
    except Exception:
        log.exception("unhandled_error", path=request.path)
        return json_error(500, "internal error")

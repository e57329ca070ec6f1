"""Who may read the operator's views (/metrics, the detailed /api/health).

They name the providers that failed, the queue sizes and the circuits: useful to an
attacker probing the deployment. With METRICS_TOKEN set they need
`Authorization: Bearer <token>`; without it they stay open, as before, so a first run
needs no setup. A load balancer's liveness check never needs the token.
"""

from __future__ import annotations

from aiohttp import web

from core.secret_compare import secrets_match
from core.settings import Settings


def operator_headers(settings: Settings) -> dict[str, str]:
    """What the web process sends its own worker for health and metrics."""
    if settings.metrics_token is None:
        return {}
    return {"Authorization": f"Bearer {settings.metrics_token.get_secret_value()}"}


def bearer_token(request: web.Request) -> str:
    """The credentials of an `Authorization: Bearer ...` header; "" without one."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def operator_authorized(request: web.Request, settings: Settings) -> bool:
    if settings.metrics_token is None:
        return True
    return secrets_match(bearer_token(request), settings.metrics_token.get_secret_value())

"""The sales dashboard (issue 20): `GET /dashboard`, a page for the sales manager.

The funnel of the leads created in the period (new → answered → qualified → handed off →
meeting booked → won, with the conversion between stages) by week or by source, time to
first reply, temperatures, handoff reasons, opt-outs, and what the model cost (US$ and
R$ at BRL_PER_USD) per day, per lead and per qualified lead; figures from
`Store.funnel` (core/analytics.py), charts from pygal (web/dashboard_charts.py), HTML in
web/dashboard_page.py. No script, no CDN: the one stylesheet is served below.

- `GET /dashboard?token=...` (or `Authorization: Bearer <token>`): the page. Parameters:
  `weeks` (1-52, default 8: this week and the 7 before it), `group` (`week`, default, or
  `source`), `until` (YYYY-MM-DD, the period's last day, company time; default today).
- `GET /dashboard/static/dashboard.css`: its stylesheet.

The token is DASHBOARD_TOKEN, else METRICS_TOKEN (the operator's token already opens
/metrics), compared in constant time and never logged (the request log keeps the path
only). Missing or wrong: 403. Neither configured: **404**, as for the Chatwoot panel: the
page holds business data (lead counts, what leads said when handed off, costs), so it is
closed until someone chooses a secret, and a closed dashboard answers like a path that
does not exist, telling a scanner nothing. (/metrics stays open without METRICS_TOKEN
for a first run's sake; this page does not follow it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import SecretStr

from agent.business_hours import DEFAULT_TIMEZONE
from agent.prompts import DEFAULT_PROMPTS_DIR, PromptError
from core.analytics import GroupBy
from core.config_files import read_toml
from core.errors import StoreUnavailable
from core.logging import get_logger
from core.secret_compare import secrets_match
from core.settings import Settings
from web.dashboard_page import render_page
from web.keys import CLOCK, STORE
from web.middlewares import json_error
from web.operator_auth import bearer_token

log = get_logger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static" / "dashboard"
_STATIC = {"dashboard.css": "text/css"}
MAX_WEEKS = 52
DEFAULT_WEEKS = 8
_CSP = (
    "default-src 'none'; style-src 'self'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'"
)
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    # Framed by no other site (clickjacking); the bot's own origin may, as the browser test's page does.
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class DashboardConfig:
    """Read once when the app is built. `token` None: the dashboard is closed."""

    token: str | None
    timezone: str
    company: str
    brl_per_usd: float


DASHBOARD = web.AppKey("dashboard", DashboardConfig)


def _secret(value: SecretStr | None) -> str | None:
    text = value.get_secret_value() if value is not None else ""
    return text if text.strip() else None


def _company(prompts_dir: Path) -> tuple[str, str]:
    """The company's name and time zone from prompts/company.toml (as the prompt bundle
    reads them); a missing or broken file is the prompt loader's error, not this page's."""
    try:
        company = read_toml(prompts_dir / "company.toml", what="company", error=PromptError)
    except PromptError:
        company = {}
    name, tz = company.get("name"), company.get("timezone")
    tz = tz if isinstance(tz, str) else DEFAULT_TIMEZONE
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        log.error("dashboard_timezone_unknown", timezone=tz, using="UTC")
        tz = "UTC"
    return (name.strip() if isinstance(name, str) else ""), tz


def dashboard_config(settings: Settings, prompts_dir: Path = DEFAULT_PROMPTS_DIR) -> DashboardConfig:
    company, tz = _company(prompts_dir)
    return DashboardConfig(
        token=_secret(settings.dashboard_token) or _secret(settings.metrics_token),
        timezone=tz,
        company=company,
        brl_per_usd=settings.brl_per_usd,
    )


def _given_token(request: web.Request) -> str | None:
    return bearer_token(request) or request.query.get("token")


def _refusal(config: DashboardConfig, request: web.Request) -> web.Response | None:
    """404 while the dashboard is closed, 403 for a missing or wrong token, None to go on."""
    if config.token is None:
        return json_error(404, "the dashboard is off: set DASHBOARD_TOKEN (or METRICS_TOKEN)")
    if not secrets_match(_given_token(request), config.token):
        return json_error(403, "wrong or missing dashboard token")
    return None


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime
    group_by: GroupBy


def period_of(query: dict[str, str], *, now: datetime, tz: ZoneInfo) -> Period:
    """`weeks` whole weeks (Monday to Sunday, company time) up to `until`'s day included;
    ValueError with a reason a person can act on."""
    raw_weeks = query.get("weeks", str(DEFAULT_WEEKS))
    if not raw_weeks.isdigit() or not 1 <= int(raw_weeks) <= MAX_WEEKS:
        raise ValueError(f"weeks must be a whole number from 1 to {MAX_WEEKS}")
    group = query.get("group", "week")
    if group not in ("week", "source"):
        raise ValueError("group must be week or source")
    last = now.astimezone(tz).date()
    if "until" in query:
        try:
            last = date.fromisoformat(query["until"])
        except ValueError:
            raise ValueError("until must be a date, YYYY-MM-DD") from None
    first = last - timedelta(days=last.weekday()) - timedelta(weeks=int(raw_weeks) - 1)
    since = datetime.combine(first, time(), tz)
    until = datetime.combine(last + timedelta(days=1), time(), tz)
    return Period(since=since, until=until, group_by="source" if group == "source" else "week")


async def dashboard_page(request: web.Request) -> web.Response:
    config = request.app[DASHBOARD]
    if (refused := _refusal(config, request)) is not None:
        return refused
    tz = ZoneInfo(config.timezone)
    try:
        period = period_of(dict(request.query), now=request.app[CLOCK](), tz=tz)
    except ValueError as exc:
        return json_error(400, str(exc))
    store = request.app[STORE]
    tz_name, rate = config.timezone, config.brl_per_usd
    try:
        funnel = await store.funnel(
            period.since, period.until, group_by=period.group_by, timezone=tz_name, brl_per_usd=rate
        )
    except StoreUnavailable as exc:
        log.error("dashboard_store_unavailable", error=str(exc))
        return json_error(503, "store unavailable, retry later")
    keep = {k: v for k, v in request.query.items() if k in ("token", "weeks", "until")}
    body = render_page(funnel, company=config.company, query=keep)
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)


async def dashboard_static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _STATIC.get(name)
    if content_type is None or request.app[DASHBOARD].token is None:
        return json_error(404, "not found")
    body = (STATIC_DIR / name).read_bytes()
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


def setup_dashboard(app: web.Application, settings: Settings) -> None:
    """The dashboard's routes; closed (404) unless DASHBOARD_TOKEN or METRICS_TOKEN is set."""
    app[DASHBOARD] = dashboard_config(settings)
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/dashboard/static/{name}", dashboard_static)


__all__ = ["DASHBOARD", "DashboardConfig", "Period", "dashboard_config", "period_of", "setup_dashboard"]

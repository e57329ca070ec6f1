"""The lead panel inside Chatwoot: a Chatwoot Dashboard App.

An admin adds it in Chatwoot (Settings > Integrations > Dashboard Apps: a title and the
URL `<PUBLIC_URL>/chatwoot/panel?token=<CHATWOOT_PANEL_TOKEN>`); Chatwoot then shows it as
a tab of every conversation, in an iframe, and posts the conversation and its contact
into it (`{"event": "appContext", "data": {"conversation", "contact", "currentAgent"}}`
as a JSON string, again whenever the page posts `chatwoot-dashboard-app:fetch-info` to
its parent; see tests/fixtures/chatwoot/dashboard_app_frame_app_context.json).

- `GET /chatwoot/panel?token=...`: the page (no inline script; its JS and CSS are files
  served below), framable only by the Chatwoot origin (CSP `frame-ancestors`); the page
  trusts a message only from that origin.
- `GET /chatwoot/panel/api/lead?conversation_id=&contact_id=`: the lead card (JSON).
- `POST /chatwoot/panel/api/lead/pause` and `/resume` (`{"conversation_id", "contact_id"}`):
  the bot stops answering this lead for BOT_PAUSE_HOURS, or answers again; the card back.

The API wants the same token in the `X-Panel-Token` header; ids from the page mean
nothing without it. No token configured: every route answers 404 (closed by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, tzinfo
from html import escape
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from agent.business_hours import load_business_hours
from core.errors import StoreUnavailable
from core.logging import get_logger
from core.records import LeadRecord
from core.secret_compare import secrets_match
from core.settings import Settings
from store.base import Store
from web.chatwoot_panel_card import build_card
from web.keys import CLOCK, STORE
from web.middlewares import json_error

log = get_logger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static" / "chatwoot_panel"
TOKEN_HEADER = "X-Panel-Token"
_STATIC = {"panel.js": "application/javascript", "panel.css": "text/css"}
_NO_STORE = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_API_CSP = "default-src 'none'; frame-ancestors 'none'"


@dataclass(frozen=True)
class PanelConfig:
    """Read once when the app is built. `token` None: the panel is closed."""

    token: str | None
    chatwoot_origin: str | None
    pause: timedelta
    deal_url: str
    zone: tzinfo
    page: str

    @property
    def open(self) -> bool:
        return self.token is not None and self.chatwoot_origin is not None


PANEL = web.AppKey("chatwoot_panel", PanelConfig)


class LeadRef(BaseModel):
    """Which lead the page asks about: Chatwoot's conversation id (`conversation.id`,
    the display id) and, as a fallback, its contact id (`meta.sender.id`)."""

    model_config = ConfigDict(extra="ignore")

    conversation_id: int | None = None
    contact_id: int | None = None

    @model_validator(mode="after")
    def _one_id(self) -> LeadRef:
        if self.conversation_id is None and self.contact_id is None:
            raise ValueError("conversation_id or contact_id is required")
        return self


def origin_of(url: str | None) -> str | None:
    """scheme://host[:port] of a URL; None when it is not an http(s) address."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    # As a browser says it (MessageEvent.origin): lower case, no default port.
    default = 443 if scheme == "https" else 80
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


def panel_config(settings: Settings) -> PanelConfig:
    token = settings.chatwoot_panel_token.get_secret_value() if settings.chatwoot_panel_token else None
    origin = origin_of(settings.chatwoot_frontend_url or settings.chatwoot_api_url)
    if token is not None and origin is None:
        log.error(
            "chatwoot_panel_closed",
            reason="set CHATWOOT_FRONTEND_URL (or CHATWOOT_API_URL): only that origin may show the panel",
        )
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return PanelConfig(
        token=token,
        chatwoot_origin=origin,
        pause=timedelta(hours=settings.bot_pause_hours),
        deal_url=settings.piperun_deal_url,
        zone=load_business_hours().zone,
        page=page.replace("$chatwoot_origin", escape(origin or "", quote=True)),
    )


def _page_headers(origin: str) -> dict[str, str]:
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        f"base-uri 'none'; form-action 'none'; frame-ancestors {origin}"
    )
    return {**_NO_STORE, "Content-Security-Policy": csp}


def _refusal(config: PanelConfig, given: str | None) -> web.Response | None:
    """404 while the panel is closed, 403 for a missing or wrong token, None to go on."""
    if not config.open or config.token is None:
        return json_error(404, "the Chatwoot panel is off: set CHATWOOT_PANEL_TOKEN")
    if not secrets_match(given, config.token):
        return json_error(403, "wrong or missing panel token")
    return None


async def panel_page(request: web.Request) -> web.Response:
    config = request.app[PANEL]
    if (refused := _refusal(config, request.query.get("token"))) is not None:
        return refused
    assert config.chatwoot_origin is not None
    return web.Response(
        text=config.page, content_type="text/html", headers=_page_headers(config.chatwoot_origin)
    )


async def panel_static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _STATIC.get(name)
    if content_type is None or not request.app[PANEL].open:
        return json_error(404, "not found")
    body = (STATIC_DIR / name).read_bytes()
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


async def _find_lead(store: Store, ref: LeadRef) -> LeadRecord | None:
    """The store's own lookups: the conversation first, else the contact's latest lead."""
    if ref.conversation_id is not None:
        lead = await store.lead_by_chatwoot_conversation(ref.conversation_id)
        if lead is not None:
            return lead
    if ref.contact_id is not None:
        return await store.lead_by_chatwoot_contact(ref.contact_id)
    return None


async def _card_response(request: web.Request, lead: LeadRecord) -> web.Response:
    config = request.app[PANEL]
    card = await build_card(
        request.app[STORE], lead, now=request.app[CLOCK](), zone=config.zone, deal_url=config.deal_url
    )
    headers = {**_NO_STORE, "Content-Security-Policy": _API_CSP}
    return web.json_response(card.model_dump(mode="json"), headers=headers)


async def _lead_for(request: web.Request, raw: object) -> LeadRecord | web.Response:
    if (refused := _refusal(request.app[PANEL], request.headers.get(TOKEN_HEADER))) is not None:
        return refused
    try:
        ref = LeadRef.model_validate(raw)
    except ValidationError:
        return json_error(400, "conversation_id or contact_id (integers) is required")
    lead = await _find_lead(request.app[STORE], ref)
    if lead is None:
        return json_error(404, "no lead for this Chatwoot conversation")
    return lead


async def lead_card(request: web.Request) -> web.Response:
    try:
        found = await _lead_for(request, dict(request.query))
        return found if isinstance(found, web.Response) else await _card_response(request, found)
    except StoreUnavailable as exc:
        log.error("chatwoot_panel_store_unavailable", error=str(exc))
        return json_error(503, "store unavailable, retry later")


async def _body(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError:
        return None


async def _set_bot(request: web.Request, action: Literal["pause", "resume"]) -> web.Response:
    """Pause or resume through the store, as a seller's reply (pause) or a conversation
    given back to the bot (resume) would; the card as it is now."""
    try:
        found = await _lead_for(request, await _body(request))
        if isinstance(found, web.Response):
            return found
        store, config = request.app[STORE], request.app[PANEL]
        until = request.app[CLOCK]() + config.pause if action == "pause" else None
        await store.set_human_owned(found.contact_key, until=until)
        log.info("chatwoot_panel_bot", action=action, channel=found.channel)
        lead = await store.get_lead(found.contact_key)
        return await _card_response(request, lead or found)
    except StoreUnavailable as exc:
        log.error("chatwoot_panel_store_unavailable", error=str(exc))
        return json_error(503, "store unavailable, retry later")


async def pause_bot(request: web.Request) -> web.Response:
    return await _set_bot(request, "pause")


async def resume_bot(request: web.Request) -> web.Response:
    return await _set_bot(request, "resume")


def setup_chatwoot_panel(app: web.Application, settings: Settings) -> None:
    """The panel's routes; closed (404) unless CHATWOOT_PANEL_TOKEN is set."""
    app[PANEL] = panel_config(settings)
    app.router.add_get("/chatwoot/panel", panel_page)
    app.router.add_get("/chatwoot/panel/static/{name}", panel_static)
    app.router.add_get("/chatwoot/panel/api/lead", lead_card)
    app.router.add_post("/chatwoot/panel/api/lead/pause", pause_bot)
    app.router.add_post("/chatwoot/panel/api/lead/resume", resume_bot)


__all__ = ["PANEL", "TOKEN_HEADER", "LeadRef", "origin_of", "panel_config", "setup_chatwoot_panel"]

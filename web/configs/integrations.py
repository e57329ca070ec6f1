"""Settings -> each integration's own config (Chatwoot, PipeRun, Meta CAPI, outbound webhooks)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
from pydantic import SecretStr

from core.settings import Settings
from integrations.chatwoot import ChatwootConfig
from integrations.google_calendar import GoogleCalendarConfig, service_account_info
from integrations.meta_capi import MetaCapiConfig
from integrations.meta_leads import MetaLeadsConfig
from integrations.outbound_webhooks import Endpoint, load_endpoints
from integrations.piperun import Pace, PipeRunClient, PipeRunConfig
from runtime.ratelimit import RateLimiter


def chatwoot_config(settings: Settings) -> ChatwootConfig:
    return ChatwootConfig(
        api_url=settings.chatwoot_api_url,
        api_token=settings.chatwoot_api_token,
        account_id=settings.chatwoot_account_id,
        inbox_id=settings.chatwoot_inbox_id,
        webhook_secret=settings.chatwoot_webhook_secret,
        timeout_s=settings.http_timeout_s,
    )


def piperun_config(settings: Settings) -> PipeRunConfig:
    return PipeRunConfig(
        token=settings.piperun_api_token,
        api_url=settings.piperun_api_url,
        timeout_s=settings.http_timeout_s,
        pipeline_id=settings.piperun_pipeline_id,
        stage_id=settings.piperun_stage_id,
    )


def piperun_pace(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Pace:
    """PIPERUN_RATE_PER_S as the client's pacing hook: one RateLimiter, each request
    takes the next slot and sleeps until it. PipeRun's limit is per account, so one pace
    must be shared by every client of the account (piperun_clients)."""
    limiter = RateLimiter(settings.piperun_rate_per_s)

    async def pace() -> None:
        delay = limiter.reserve(clock())
        if delay > 0:
            await sleep(delay)

    return pace


def piperun_clients(settings: Settings, session: aiohttp.ClientSession) -> Callable[[], PipeRunClient]:
    """The outbox handlers' PipeRun clients (sync, note, erasure): one each, one pace."""
    config, pace = piperun_config(settings), piperun_pace(settings)
    return lambda: PipeRunClient(config, session, pace=pace)


def meta_capi_config(settings: Settings) -> MetaCapiConfig:
    """The timeout is the config's own (CAPI's 30 s), not HTTP_TIMEOUT_S, as it always was."""
    return MetaCapiConfig(
        graph_url=settings.meta_graph_url,
        version=settings.meta_graph_version,
        pixel_id=settings.meta_pixel_id,
        access_token=settings.meta_access_token,
        test_event_code=settings.meta_test_event_code,
        whatsapp_business_account_id=settings.whatsapp_business_account_id,
        lead_event_source=settings.meta_capi_lead_event_source,
    )


def meta_leads_config(settings: Settings) -> MetaLeadsConfig:
    return MetaLeadsConfig(
        page_access_token=settings.meta_page_access_token,
        graph_url=settings.meta_graph_url,
        graph_version=settings.meta_graph_version,
        timeout_s=settings.http_timeout_s,
    )


def webhook_endpoints(settings: Settings) -> list[Endpoint]:
    """OUTBOUND_WEBHOOKS / OUTBOUND_WEBHOOKS_FILE read once, when the app is built: a bad
    file stops the start instead of the first delivery."""
    return load_endpoints(settings.outbound_webhooks, settings.outbound_webhooks_file)


def google_calendar_config(settings: Settings) -> GoogleCalendarConfig:
    """Read once at start: a key that cannot be read stops the start with the next step."""
    secret = settings.google_service_account_json
    info = None
    if secret is not None or settings.google_service_account_file is not None:
        info = service_account_info(
            json_text=secret.get_secret_value() if secret is not None else None,
            file=settings.google_service_account_file,
        )
    return GoogleCalendarConfig(
        api_url=settings.google_calendar_api_url,
        token_url=settings.google_token_url,
        service_account_info=info,
        oauth_client_id=settings.google_oauth_client_id,
        oauth_client_secret=settings.google_oauth_client_secret,
        timeout_s=settings.http_timeout_s,
    )


def seller_refresh_tokens(settings: Settings) -> dict[str, SecretStr]:
    """GOOGLE_SELLER_REFRESH_TOKENS: {"<seller key>": "<refresh token>"}; a malformed value
    stops the start with what is wrong (never the tokens themselves)."""
    raw = settings.google_seller_refresh_tokens
    if raw is None:
        return {}
    try:
        data = json.loads(raw.get_secret_value())
    except ValueError:
        raise ValueError(
            'GOOGLE_SELLER_REFRESH_TOKENS is not JSON: use {"<seller key>": "<refresh token>"}'
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError("GOOGLE_SELLER_REFRESH_TOKENS must map each seller key to its refresh token (text)")
    return {key: SecretStr(token) for key, token in data.items() if token.strip()}

"""Settings -> each integration's own config (Chatwoot, PipeRun, Meta CAPI, outbound webhooks)."""

from __future__ import annotations

from core.settings import Settings
from integrations.chatwoot import ChatwootConfig
from integrations.meta_capi import MetaCapiConfig
from integrations.outbound_webhooks import Endpoint, load_endpoints
from integrations.piperun import PipeRunConfig


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


def meta_capi_config(settings: Settings) -> MetaCapiConfig:
    """The timeout is the config's own (CAPI's 30 s), not HTTP_TIMEOUT_S, as it always was."""
    return MetaCapiConfig(
        graph_url=settings.meta_graph_url,
        version=settings.meta_graph_version,
        pixel_id=settings.meta_pixel_id,
        access_token=settings.meta_access_token,
        test_event_code=settings.meta_test_event_code,
    )


def webhook_endpoints(settings: Settings) -> list[Endpoint]:
    """OUTBOUND_WEBHOOKS / OUTBOUND_WEBHOOKS_FILE read once, when the app is built: a bad
    file stops the start instead of the first delivery."""
    return load_endpoints(settings.outbound_webhooks, settings.outbound_webhooks_file)

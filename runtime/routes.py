"""The outbox's registry: each kind, its typed handler, its policy and its breaker.

Each side effect goes with its integration's policy (runtime/policies.py) and circuit
breaker: one per channel for replies, one per endpoint for webhooks. Erasures (LGPD)
are always routed, and never give up on an outage (runtime/erasure.py). A kind whose
integration is not configured has no route: its items die with "no handler", which
`python main.py outbox list --status dead` shows and `replay` resends once configured.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from core.outbox import (
    PAYLOADS,
    CapiEvent,
    ChatwootErase,
    ChatwootHandoff,
    ChatwootMessage,
    ChatwootProfile,
    LeadErasure,
    OutboundWebhook,
    PipeRunErase,
    PipeRunSync,
    Reengage,
    SendText,
)
from core.records import OutboxItem
from core.settings import Settings
from integrations.chatwoot import ChatwootClient
from integrations.meta_capi import MetaCapiClient
from integrations.outbound_webhooks import Endpoint, OutboundWebhookClient
from integrations.piperun import PipeRunClient
from runtime.breaker import BreakerRegistry
from runtime.capi_delivery import CapiDelivery
from runtime.channel_health import ChannelHealth
from runtime.chatwoot_mirror import ChatwootMirror
from runtime.crm_sync import CrmSync
from runtime.delivery import Delivery
from runtime.dispatcher import OutboxDispatcher
from runtime.erasure import ChatwootErasure, ErasureFanout, PipeRunErasure, erasure_policy, fanout_policy
from runtime.policies import policy_for
from runtime.webhook_delivery import WebhookDelivery, subscriptions
from store.base import Store


@dataclass(frozen=True)
class RouteDeps:
    settings: Settings
    session: aiohttp.ClientSession
    store: Store
    breakers: BreakerRegistry
    health: ChannelHealth
    delivery: Delivery
    endpoints: list[Endpoint]


def _breaker_key(item: OutboxItem, field: str) -> str | None:
    """The channel (replies) or endpoint (webhooks) an item's breaker is chosen by."""
    value = getattr(PAYLOADS[item.kind].parse(item.payload), field, None)
    return str(value) if value else None


def register_outbox_routes(dispatcher: OutboxDispatcher, deps: RouteDeps) -> None:
    settings, breakers = deps.settings, deps.breakers
    fanout = ErasureFanout(deps.store, settings, subscriptions(deps.endpoints))
    dispatcher.register_typed(LeadErasure, fanout.fan_out, fanout_policy(settings))
    per_channel = breakers.per_item("channel_send", lambda item: _breaker_key(item, "channel"))
    send_policy = policy_for("channel_send", settings)
    dispatcher.register_typed(SendText, deps.delivery.send_text, send_policy, per_channel)
    dispatcher.register_typed(Reengage, deps.delivery.reengage, send_policy, per_channel)
    _chatwoot_routes(dispatcher, deps)
    _piperun_routes(dispatcher, deps)
    if settings.meta_capi_configured:
        capi = CapiDelivery(MetaCapiClient.from_settings(deps.session, settings), deps.store, settings)
        dispatcher.register_typed(
            CapiEvent, capi.event, policy_for("meta_capi", settings), breakers.get("meta_capi")
        )
    if deps.endpoints:
        hooks = WebhookDelivery(OutboundWebhookClient(deps.session), deps.endpoints, deps.store)
        per_endpoint = breakers.per_item("outbound_webhook", lambda item: _breaker_key(item, "endpoint_id"))
        dispatcher.register_typed(
            OutboundWebhook, hooks.deliver, policy_for("outbound_webhook", settings), per_endpoint
        )


def _chatwoot_routes(dispatcher: OutboxDispatcher, deps: RouteDeps) -> None:
    settings = deps.settings
    if not settings.chatwoot_configured:
        return
    breaker = deps.breakers.get("chatwoot")
    mirror = ChatwootMirror(ChatwootClient(settings, deps.session), deps.store, settings, deps.health)
    policy = policy_for("chatwoot", settings)
    dispatcher.register_typed(ChatwootMessage, mirror.message, policy, breaker)
    dispatcher.register_typed(ChatwootProfile, mirror.profile, policy, breaker)
    dispatcher.register_typed(ChatwootHandoff, mirror.handoff, policy, breaker)
    erasure = ChatwootErasure(ChatwootClient(settings, deps.session))
    dispatcher.register_typed(ChatwootErase, erasure.erase, erasure_policy("chatwoot", settings), breaker)


def _piperun_routes(dispatcher: OutboxDispatcher, deps: RouteDeps) -> None:
    settings = deps.settings
    breaker = deps.breakers.get("piperun") if settings.piperun_api_token is not None else None
    if settings.piperun_api_token is not None:
        erasure = PipeRunErasure(PipeRunClient.from_settings(settings, deps.session), settings)
        dispatcher.register_typed(PipeRunErase, erasure.erase, erasure_policy("piperun", settings), breaker)
    if settings.piperun_configured:
        crm = CrmSync(PipeRunClient.from_settings(settings, deps.session), deps.store, settings)
        dispatcher.register_typed(
            PipeRunSync, crm.sync, policy_for("piperun", settings), deps.breakers.get("piperun")
        )

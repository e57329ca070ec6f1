"""The outbox's registry: each kind, its typed handler, its policy and its breaker.

Each side effect goes with its integration's policy (runtime/policies.py) and circuit
breaker: one per channel for replies, one per endpoint for webhooks. Erasures (LGPD)
are always routed, and never give up on an outage (runtime/erasure.py). A kind whose
integration is not configured has no route: its items die with "no handler", which
`python main.py outbox list --status dead` shows and `replay` resends once configured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from pydantic import ValidationError

from core.outbox import (
    PAYLOADS,
    CapiEvent,
    ChatwootErase,
    ChatwootHandoff,
    ChatwootMessage,
    ChatwootNote,
    ChatwootProfile,
    LeadAdsFetch,
    LeadErasure,
    OutboundWebhook,
    PipeRunActivity,
    PipeRunErase,
    PipeRunNote,
    PipeRunSync,
    Reengage,
    SendMedia,
    SendText,
)
from core.records import OutboxItem
from integrations.chatwoot import ChatwootClient
from integrations.meta_capi import MetaCapiClient
from integrations.outbound_webhooks import Endpoint, OutboundWebhookClient
from integrations.piperun import PipeRunClient, PipeRunTexts
from runtime.breaker import BreakerRegistry
from runtime.capi_delivery import CapiConfig, CapiDelivery
from runtime.channel_health import ChannelHealth
from runtime.chatwoot_mirror import ChatwootMirror, MirrorConfig
from runtime.crm_sync import CrmSync, CrmSyncConfig
from runtime.delivery import Delivery
from runtime.dispatcher import OutboxDispatcher
from runtime.erasure import (
    ChatwootErasure,
    ErasureConfig,
    ErasureFanout,
    PipeRunErasure,
    erasure_policy,
    fanout_policy,
)
from runtime.lead_ads import LeadAdsIntake
from runtime.policies import OutboxKnobs, policy_for
from runtime.webhook_delivery import WebhookDelivery, subscriptions
from store.base import Store


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """Which integrations get a route (None: not configured, so its items die with "no
    handler" until it is), and the operator's OUTBOX_* knobs for every policy."""

    outbox: OutboxKnobs
    erasure: ErasureConfig
    mirror: MirrorConfig | None = None
    crm: CrmSyncConfig | None = None
    capi: CapiConfig | None = None


@dataclass(frozen=True)
class RouteDeps:
    """The clients come as factories, built by the composition root from its settings:
    each handler gets its own client, as it always had."""

    config: RouteConfig
    session: aiohttp.ClientSession
    store: Store
    breakers: BreakerRegistry
    health: ChannelHealth
    delivery: Delivery
    endpoints: list[Endpoint]
    chatwoot: Callable[[], ChatwootClient] | None = None
    piperun: Callable[[], PipeRunClient] | None = None
    capi: Callable[[], MetaCapiClient] | None = None
    # Read at start by the composition root; required when the PipeRun sync is routed.
    piperun_texts: PipeRunTexts | None = None
    # Meta Lead Ads (META_PAGE_ACCESS_TOKEN): announced leads read from the Graph API.
    lead_ads: LeadAdsIntake | None = None
    # A seller's PipeRun user (prompts/sellers.toml, with MEETINGS_ENABLED): the lead's
    # routed seller owns the deal.
    seller_owner: Callable[[str], int | None] | None = None


def _breaker_key(item: OutboxItem, field: str) -> str | None:
    """The channel (replies) or endpoint (webhooks) an item's breaker is chosen by.

    An invalid payload has none: the handler dead-letters it naming only its fields.
    Raising here instead would log a validation traceback, and that carries the payload's
    values (a lead's words) into the log."""
    try:
        payload = PAYLOADS[item.kind].parse(item.payload)
    except ValidationError:
        return None
    value = getattr(payload, field, None)
    return str(value) if value else None


def register_outbox_routes(dispatcher: OutboxDispatcher, deps: RouteDeps) -> None:
    config, breakers = deps.config, deps.breakers
    knobs = config.outbox
    fanout = ErasureFanout(deps.store, config.erasure, subscriptions(deps.endpoints))
    dispatcher.register_typed(LeadErasure, fanout.fan_out, fanout_policy(knobs))
    per_channel = breakers.per_item("channel_send", lambda item: _breaker_key(item, "channel"))
    send_policy = policy_for("channel_send", knobs)
    dispatcher.register_typed(SendText, deps.delivery.send_text, send_policy, per_channel)
    dispatcher.register_typed(SendMedia, deps.delivery.send_media, send_policy, per_channel)
    dispatcher.register_typed(Reengage, deps.delivery.reengage, send_policy, per_channel)
    if deps.lead_ads is not None:
        dispatcher.register_typed(
            LeadAdsFetch, deps.lead_ads.fetch, policy_for("meta_leads", knobs), breakers.get("meta_leads")
        )
    _chatwoot_routes(dispatcher, deps)
    _piperun_routes(dispatcher, deps)
    if config.capi is not None and deps.capi is not None:
        capi = CapiDelivery(deps.capi(), deps.store, config.capi)
        dispatcher.register_typed(
            CapiEvent, capi.event, policy_for("meta_capi", knobs), breakers.get("meta_capi")
        )
    if deps.endpoints:
        hooks = WebhookDelivery(OutboundWebhookClient(deps.session), deps.endpoints, deps.store)
        per_endpoint = breakers.per_item("outbound_webhook", lambda item: _breaker_key(item, "endpoint_id"))
        dispatcher.register_typed(
            OutboundWebhook, hooks.deliver, policy_for("outbound_webhook", knobs), per_endpoint
        )


def _chatwoot_routes(dispatcher: OutboxDispatcher, deps: RouteDeps) -> None:
    config, client = deps.config, deps.chatwoot
    if config.mirror is None or client is None:
        return
    breaker = deps.breakers.get("chatwoot")
    # The lead's files are fetched by the channel that received them (its credentials,
    # the media rule) and posted to Chatwoot as attachments.
    mirror = ChatwootMirror(
        client(), deps.store, config.mirror, deps.health, media=deps.delivery.channels, session=deps.session
    )
    policy = policy_for("chatwoot", config.outbox)
    dispatcher.register_typed(ChatwootMessage, mirror.message, policy, breaker)
    dispatcher.register_typed(ChatwootProfile, mirror.profile, policy, breaker)
    dispatcher.register_typed(ChatwootHandoff, mirror.handoff, policy, breaker)
    dispatcher.register_typed(ChatwootNote, mirror.note, policy, breaker)
    erasure = ChatwootErasure(client())
    dispatcher.register_typed(
        ChatwootErase, erasure.erase, erasure_policy("chatwoot", config.outbox), breaker
    )


def _piperun_routes(dispatcher: OutboxDispatcher, deps: RouteDeps) -> None:
    config, client = deps.config, deps.piperun
    if client is None:
        return
    if config.erasure.piperun:
        erasure = PipeRunErasure(client(), config.erasure.piperun_forget)
        dispatcher.register_typed(
            PipeRunErase,
            erasure.erase,
            erasure_policy("piperun", config.outbox),
            deps.breakers.get("piperun"),
        )
    if config.crm is not None:
        if deps.piperun_texts is None:
            raise ValueError("the PipeRun sync needs its texts (prompts/piperun.toml), read at start")
        crm = CrmSync(client(), deps.store, config.crm, deps.piperun_texts, seller_owner=deps.seller_owner)
        policy, breaker = policy_for("piperun", config.outbox), deps.breakers.get("piperun")
        dispatcher.register_typed(PipeRunSync, crm.sync, policy, breaker)
        # After the sync in the lead's CRM lane: a deal the same turn created gets its notes.
        dispatcher.register_typed(PipeRunNote, crm.note, policy, breaker)
        # The same lane: a booked meeting's activity on the deal the sync created.
        dispatcher.register_typed(PipeRunActivity, crm.activity, policy, breaker)

"""Every integration client fails with a typed leaf of core's exception tree, makes one
attempt per call, and its legacy `retryable` / `auth_failed` flags agree with the type."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr

from core.errors import AuthFailed, Permanent, ProviderError, ProviderRejected, ProviderUnavailable, Retryable
from core.settings import Settings
from integrations.chatwoot import ChatwootAuthFailed, ChatwootClient, ChatwootRejected, ChatwootUnavailable
from integrations.meta_capi import (
    CapiAuthFailed,
    CapiRejected,
    CapiUnavailable,
    MetaCapiClient,
    MetaCapiConfig,
    build_event,
)
from integrations.outbound_webhooks import (
    Endpoint,
    OutboundWebhookClient,
    WebhookDeliveryRejected,
    WebhookDeliveryUnavailable,
)
from integrations.piperun import (
    PipeRunAuthFailed,
    PipeRunClient,
    PipeRunConfig,
    PipeRunRejected,
    PipeRunUnavailable,
)
from web.configs.integrations import chatwoot_config

CW = "https://chat.example.com/api/v1/accounts/7"
PR = "https://api.pipe.run/v1"
GRAPH_EVENTS = "https://graph.facebook.com/v21.0/1234567890123456/events"
HOOK = "https://crm.example.com/hooks/sdr"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


def assert_consistent(err: Any) -> None:
    """The flags the runtime still reads are the type, read another way."""
    assert isinstance(err, ProviderError)
    assert err.retryable is isinstance(err, Retryable)
    assert err.auth_failed is isinstance(err, AuthFailed)
    assert isinstance(err, Retryable) != isinstance(err, Permanent)


def calls(mocked: aioresponses) -> int:
    return sum(len(requests) for requests in mocked.requests.values())


# --- Chatwoot --------------------------------------------------------------------------


def chatwoot(session: aiohttp.ClientSession) -> ChatwootClient:
    settings = Settings(
        _env_file=None,
        chatwoot_api_url="https://chat.example.com",
        chatwoot_api_token="cw-token-errors-1a2b3c",
        chatwoot_account_id="7",
        chatwoot_inbox_id="3",
    )
    return ChatwootClient(chatwoot_config(settings), session)


@pytest.mark.parametrize(
    ("response", "leaf", "core_leaf"),
    [
        ({"status": 429, "payload": {"error": "slow down"}}, ChatwootUnavailable, ProviderUnavailable),
        ({"status": 502, "body": "<html>Bad Gateway</html>"}, ChatwootUnavailable, ProviderUnavailable),
        ({"exception": TimeoutError()}, ChatwootUnavailable, ProviderUnavailable),
        ({"exception": aiohttp.ClientConnectionError("reset")}, ChatwootUnavailable, ProviderUnavailable),
        ({"status": 401, "payload": {"error": "Invalid Access Token"}}, ChatwootAuthFailed, AuthFailed),
        ({"status": 403, "payload": {"error": "forbidden"}}, ChatwootAuthFailed, AuthFailed),
        ({"status": 422, "payload": {"message": "status is invalid"}}, ChatwootRejected, ProviderRejected),
    ],
)
async def test_chatwoot_failures_are_typed_and_tried_once(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    response: dict[str, Any],
    leaf: type,
    core_leaf: type,
) -> None:
    mocked.post(f"{CW}/conversations/318/toggle_status", **response)

    with pytest.raises(leaf) as raised:
        await chatwoot(session).toggle_status(318, "open")

    assert isinstance(raised.value, core_leaf)
    assert_consistent(raised.value)
    assert calls(mocked) == 1


# --- PipeRun ---------------------------------------------------------------------------


def piperun(session: aiohttp.ClientSession) -> PipeRunClient:
    return PipeRunClient(PipeRunConfig(api_url=PR, token=SecretStr("pr-token-errors-4d5e6f")), session)


DEALS = re.compile(rf"^{re.escape(PR)}/deals\?.*")


@pytest.mark.parametrize(
    ("response", "leaf"),
    [
        ({"status": 503, "payload": {"message": "down"}}, PipeRunUnavailable),
        ({"exception": TimeoutError()}, PipeRunUnavailable),
        ({"status": 401, "payload": {"success": False, "message": "Unauthorized"}}, PipeRunAuthFailed),
        ({"status": 403, "payload": {"success": False, "message": "Forbidden"}}, PipeRunAuthFailed),
        ({"status": 400, "payload": {"success": False, "message": "Bad Request"}}, PipeRunRejected),
        ({"status": 200, "payload": {"success": False, "message": "Refused"}}, PipeRunRejected),
    ],
)
async def test_piperun_failures_are_typed_and_tried_once(
    session: aiohttp.ClientSession, mocked: aioresponses, response: dict[str, Any], leaf: type
) -> None:
    mocked.get(DEALS, **response)

    with pytest.raises(leaf) as raised:
        await piperun(session).find_open_deal(1, 2)

    assert_consistent(raised.value)
    assert calls(mocked) == 1


async def test_piperun_rate_limit_carries_retry_after_on_the_core_attribute(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.get(DEALS, status=429, headers={"Retry-After": "42"})

    with pytest.raises(PipeRunUnavailable) as raised:
        await piperun(session).find_open_deal(1, 2)

    assert raised.value.retry_after == 42.0 == raised.value.retry_after_s


async def test_legacy_flags_are_read_only(session: aiohttp.ClientSession, mocked: aioresponses) -> None:
    mocked.get(DEALS, status=400, payload={"success": False, "message": "Bad Request"})

    with pytest.raises(PipeRunRejected) as raised:
        await piperun(session).find_open_deal(1, 2)

    with pytest.raises(AttributeError):
        raised.value.retryable = True  # type: ignore[misc]


# --- Meta CAPI -------------------------------------------------------------------------


def graph_error(code: int, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": "x", "type": "OAuthException", "code": code, "fbtrace_id": "T", **extra}}


@pytest.mark.parametrize(
    ("response", "leaf"),
    [
        ({"status": 400, "payload": graph_error(4)}, CapiUnavailable),  # Graph's rate limit is a 400
        ({"status": 400, "payload": graph_error(999, is_transient=True)}, CapiUnavailable),
        ({"status": 500, "body": "oops"}, CapiUnavailable),
        ({"exception": TimeoutError()}, CapiUnavailable),
        ({"status": 400, "payload": graph_error(190)}, CapiAuthFailed),
        ({"status": 403, "body": ""}, CapiAuthFailed),
        ({"status": 400, "payload": graph_error(100, error_subcode=2804003)}, CapiRejected),
        ({"status": 200, "payload": {"events_received": 0, "fbtrace_id": "T"}}, CapiRejected),
    ],
)
async def test_capi_failures_are_typed_and_tried_once(
    session: aiohttp.ClientSession, mocked: aioresponses, response: dict[str, Any], leaf: type
) -> None:
    mocked.post(GRAPH_EVENTS, **response)
    config = MetaCapiConfig(
        graph_url="https://graph.facebook.com",
        version="v21.0",
        pixel_id="1234567890123456",
        access_token=SecretStr("EAAx"),
    )
    client = MetaCapiClient(config, session)
    event = build_event("lead", contact_key="zapi:5511987654321", channel="zapi", phone="5511987654321")

    with pytest.raises(leaf) as raised:
        await client.send(event)

    assert_consistent(raised.value)
    assert calls(mocked) == 1


# --- outbound webhooks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "leaf"),
    [
        ({"status": 503}, WebhookDeliveryUnavailable),
        ({"status": 429}, WebhookDeliveryUnavailable),
        ({"exception": TimeoutError()}, WebhookDeliveryUnavailable),
        ({"status": 404}, WebhookDeliveryRejected),
        ({"status": 302, "headers": {"Location": "https://elsewhere.example.com/"}}, WebhookDeliveryRejected),
    ],
)
async def test_webhook_delivery_failures_are_typed_and_tried_once(
    session: aiohttp.ClientSession, mocked: aioresponses, response: dict[str, Any], leaf: type
) -> None:
    mocked.post(HOOK, **response)
    endpoint = Endpoint.model_validate({"url": HOOK, "secret": "s" * 20, "events": ["*"]})

    with pytest.raises(leaf) as raised:
        await OutboundWebhookClient(session).deliver(
            endpoint, "lead.hot", "d-1", {"x": 1}, datetime(2026, 1, 5, 12, tzinfo=UTC)
        )

    assert_consistent(raised.value)
    assert raised.value.result.retryable is raised.value.retryable
    assert calls(mocked) == 1

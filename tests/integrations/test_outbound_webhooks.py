"""Outbound webhooks against aioresponses fakes, and the receiver's side of the contract.

What an integrator relies on: every delivery is signed so the README snippet verifies
it, carries its event and a delivery id that stays the same across retries, failures
the receiver can recover from are retried while the others are not, a wrong config
says what is wrong without echoing the secret, and nothing secret or personal reaches
the logs.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from structlog.testing import capture_logs
from yarl import URL

from core.settings import Settings
from integrations.outbound_webhooks import (
    EVENTS,
    DeliveryResult,
    Endpoint,
    OutboundWebhookClient,
    OutboundWebhookConfigError,
    WebhookDeliveryError,
    encode_body,
    load_endpoints,
    sign,
    stable_delivery_id,
    subscribers,
    verify,
)
from runtime.policies import is_transient
from web.configs.integrations import webhook_endpoints

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "outbound_webhooks"
URL_ = "https://crm.example.com/hooks/sdr"
SECRET = "whsec_0123456789abcdef0123"
WHEN = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
# Shaped like a lead.hot event: personal data that must never reach a log line.
DATA = {
    "lead": {"name": "Joana Conceição", "phone": "5511987654321", "city": "São Paulo", "score": 87},
    "reasons": ["orçamento definido", "prazo < 30 dias"],
}


def endpoint(**overrides: Any) -> Endpoint:
    values: dict[str, Any] = {"id": "crm-main", "url": URL_, "secret": SECRET, "events": ["lead.hot"]}
    values.update(overrides)
    return Endpoint.model_validate(values)


@pytest.fixture
async def client() -> AsyncIterator[OutboundWebhookClient]:
    async with aiohttp.ClientSession() as session:
        yield OutboundWebhookClient(session)


def sent(mock: aioresponses, url: str = URL_) -> list[Any]:
    return mock.requests[("POST", URL(url))]


async def deliver(client: OutboundWebhookClient, ep: Endpoint | None = None, **kw: Any) -> DeliveryResult:
    return await client.deliver(ep or endpoint(), "lead.hot", "d-1", DATA, WHEN, **kw)


def load_receiver() -> Any:
    spec = importlib.util.spec_from_file_location("receiver", FIXTURES / "receiver.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- what goes on the wire --------------------------------------------------------------


async def test_a_delivery_posts_the_envelope_with_its_headers(
    http_mock: aioresponses, client: OutboundWebhookClient
) -> None:
    http_mock.post(URL_, status=200, payload={"ok": True})
    result = await client.deliver(endpoint(), "lead.hot", "d-42", DATA, WHEN, attempt=2)

    (call,) = sent(http_mock)
    body: bytes = call.kwargs["data"]
    headers = call.kwargs["headers"]
    assert json.loads(body) == {"event": "lead.hot", "timestamp": "2025-10-20T12:00:00.000Z", "data": DATA}
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Webhook-Event"] == "lead.hot"
    assert headers["X-Webhook-Id"] == "d-42"
    assert headers["X-Webhook-Signature"] == sign(body, SECRET)
    assert headers["User-Agent"].startswith("SDR-Agent-Webhook/")
    assert call.kwargs["timeout"].total == 30
    assert call.kwargs["allow_redirects"] is False
    assert result.ok and result.status == 200
    assert (result.endpoint_id, result.host, result.event, result.delivery_id, result.attempt) == (
        "crm-main",
        "crm.example.com",
        "lead.hot",
        "d-42",
        2,
    )
    assert result.duration_ms >= 0 and result.error is None


async def test_a_retry_sends_the_same_bytes_signature_and_id(
    http_mock: aioresponses, client: OutboundWebhookClient
) -> None:
    http_mock.post(URL_, status=503)
    http_mock.post(URL_, status=204)
    with pytest.raises(WebhookDeliveryError):
        await deliver(client)
    await deliver(client, attempt=2)

    first, second = sent(http_mock)
    assert first.kwargs["data"] == second.kwargs["data"]
    for header in ("X-Webhook-Signature", "X-Webhook-Id", "X-Webhook-Event"):
        assert first.kwargs["headers"][header] == second.kwargs["headers"][header]


def test_stable_delivery_ids() -> None:
    one = stable_delivery_id("crm-main", "hooks:lead.hot:zapi:5511987654321")
    assert one == stable_delivery_id("crm-main", "hooks:lead.hot:zapi:5511987654321")
    assert one != stable_delivery_id("other", "hooks:lead.hot:zapi:5511987654321")


def test_the_body_is_compact_utf8_json_and_naive_times_are_utc() -> None:
    body = encode_body("lead.hot", WHEN.replace(tzinfo=None), {"city": "São Paulo", "at": WHEN})
    assert (
        body
        == '{"event":"lead.hot","timestamp":"2025-10-20T12:00:00.000Z","data":{"city":"São Paulo","at":"2025-10-20T12:00:00.000Z"}}'.encode()
    )


# --- the receiver's side ------------------------------------------------------------------


async def test_the_readme_receiver_verifies_a_real_delivery(
    http_mock: aioresponses, client: OutboundWebhookClient
) -> None:
    http_mock.post(URL_, status=200)
    await deliver(client)
    (call,) = sent(http_mock)
    body, signature = call.kwargs["data"], call.kwargs["headers"]["X-Webhook-Signature"]

    receiver = load_receiver()
    assert receiver.verify_webhook(body, signature, SECRET)
    assert receiver.verify_webhook(body, f"sha256={signature}", SECRET)
    assert not receiver.verify_webhook(body, signature, "a-different-secret-entirely")
    assert not receiver.verify_webhook(body.replace(b"87", b"99"), signature, SECRET)
    assert not receiver.verify_webhook(body, None, SECRET)


def test_verify_is_the_same_check_on_our_side() -> None:
    body = encode_body("lead.hot", WHEN, DATA)
    signature = sign(body, SECRET)
    assert len(signature) == 64 and signature == signature.lower()
    assert verify(body, signature, SECRET)
    assert verify(body, f"sha256={signature.upper()}", SECRET)
    assert not verify(body, signature, "a-different-secret-entirely")
    assert not verify(body + b" ", signature, SECRET)
    assert not verify(body, "", SECRET) and not verify(body, None, SECRET)
    assert not verify(body, "sha256=zz\u00e7", SECRET)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_receivers_verify_too() -> None:
    """The README's Node snippet on the raw body, and the custom-webhooks doc's style of
    signing JSON.stringify(req.body): our compact UTF-8 body survives the round trip."""
    body = encode_body("lead.hot", WHEN, DATA)
    script = (
        "const { verifyWebhook } = require(process.argv[1]);"
        "const crypto = require('crypto');"
        "const chunks = []; process.stdin.on('data', c => chunks.push(c)); process.stdin.on('end', () => {"
        "  const raw = Buffer.concat(chunks), [sig, secret] = [process.argv[2], process.argv[3]];"
        "  const docStyle = crypto.createHmac('sha256', secret).update(JSON.stringify(JSON.parse(raw))).digest('hex');"
        "  console.log(JSON.stringify({ raw: verifyWebhook(raw, sig, secret),"
        "    wrong: verifyWebhook(raw, sig, 'a-different-secret-entirely'), doc: docStyle === sig }));"
        "});"
    )
    out = subprocess.run(
        ["node", "-e", script, str(FIXTURES / "receiver.js"), sign(body, SECRET), SECRET],
        input=body,
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert json.loads(out.stdout) == {"raw": True, "wrong": False, "doc": True}


# --- failures -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_server_errors_and_rate_limits_are_retryable(
    http_mock: aioresponses, client: OutboundWebhookClient, status: int
) -> None:
    http_mock.post(URL_, status=status)
    with pytest.raises(WebhookDeliveryError) as raised:
        await deliver(client, attempt=3)
    err = raised.value
    assert err.retryable and is_transient(err)
    assert err.status == status
    assert err.result.ok is False and err.result.status == status and err.result.attempt == 3
    assert err.result.retryable is True and err.result.error.startswith(f"HTTP {status}")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 301])
async def test_other_answers_are_permanent(
    http_mock: aioresponses, client: OutboundWebhookClient, status: int
) -> None:
    http_mock.post(
        URL_, status=status, headers={"Location": "https://elsewhere.example/"} if status == 301 else None
    )
    with pytest.raises(WebhookDeliveryError) as raised:
        await deliver(client)
    assert raised.value.retryable is False and not is_transient(raised.value)
    assert raised.value.result.status == status


@pytest.mark.parametrize(
    "exception",
    [
        TimeoutError(),
        aiohttp.ServerTimeoutError("read timeout"),
        aiohttp.ClientConnectionError("refused"),
    ],
    ids=["timeout", "read-timeout", "connection"],
)
async def test_no_answer_is_retryable(
    http_mock: aioresponses, client: OutboundWebhookClient, exception: Exception
) -> None:
    http_mock.post(URL_, exception=exception)
    with pytest.raises(WebhookDeliveryError) as raised:
        await deliver(client)
    assert raised.value.retryable and is_transient(raised.value)
    assert raised.value.status is None and raised.value.result.status is None


async def test_an_unknown_event_is_a_bug_not_a_delivery(client: OutboundWebhookClient) -> None:
    with pytest.raises(ValueError, match="lead.won"):
        await client.deliver(endpoint(), "lead.won", "d-1", DATA, WHEN)


# --- nothing secret or personal in the logs -------------------------------------------


async def test_neither_the_secret_nor_the_data_nor_the_url_query_is_logged(
    http_mock: aioresponses, client: OutboundWebhookClient
) -> None:
    url = "https://automation.example.net/webhook?token=receiver-token-123"
    ep = endpoint(url=url)
    http_mock.post(url, status=200)
    http_mock.post(url, status=500)
    http_mock.post(url, exception=aiohttp.ClientConnectionError(f"Cannot connect to {url}"))
    with capture_logs() as logs:
        await deliver(client, ep)
        errors = []
        for _ in range(2):
            with pytest.raises(WebhookDeliveryError) as raised:
                await deliver(client, ep)
            errors.append(raised.value)

    assert [e["event"] for e in logs] == [
        "outbound_webhook_delivered",
        "outbound_webhook_failed",
        "outbound_webhook_failed",
    ]
    assert logs[0]["endpoint"] == "crm-main" and logs[0]["host"] == "automation.example.net"
    text = repr(logs) + repr([str(e) for e in errors]) + repr([e.result.as_dict() for e in errors]) + repr(ep)
    for leak in (SECRET, "receiver-token-123", "Joana", "5511987654321", "São Paulo", "orçamento"):
        assert leak not in text


# --- configuration --------------------------------------------------------------------


def test_endpoints_from_a_json_string() -> None:
    text = json.dumps([{"url": URL_, "secret": SECRET, "events": ["lead.hot", "lead.hot", "message.sent"]}])
    (ep,) = load_endpoints(text, None)
    assert ep.events == ("lead.hot", "message.sent")
    assert ep.enabled and ep.host == "crm.example.com"
    assert ep.id.startswith("crm.example.com-")  # derived, stable for the same URL
    assert load_endpoints(text, None)[0].id == ep.id
    assert ep.secret.get_secret_value() == SECRET and SECRET not in repr(ep)


def test_endpoints_from_a_toml_file() -> None:
    crm, automation = load_endpoints(None, FIXTURES / "endpoints.toml")
    assert (crm.id, crm.name, crm.events) == (
        "crm-main",
        "Our CRM",
        ("lead.hot", "lead.qualified", "conversation.handoff"),
    )
    assert automation.events == ("*",) and automation.enabled is False


def test_endpoints_from_a_json_file_and_from_settings() -> None:
    (ep,) = load_endpoints(None, FIXTURES / "endpoints.json")
    assert ep.id == "zapier"
    settings = Settings(_env_file=None, outbound_webhooks_file=FIXTURES / "endpoints.json")
    assert webhook_endpoints(settings) == [ep]
    assert load_endpoints(None, None) == [] and load_endpoints("  ", None) == []


def test_star_subscribes_to_everything_and_disabled_to_nothing() -> None:
    everything = endpoint(id="all", events=["*"])
    assert all(everything.wants(event) for event in EVENTS)
    hot_only = endpoint(id="hot", events=["lead.hot"])
    assert hot_only.wants("lead.hot") and not hot_only.wants("message.received")
    off = endpoint(id="off", events=["*"], enabled=False)
    assert not any(off.wants(event) for event in EVENTS)
    assert subscribers([everything, hot_only, off], "message.sent") == [everything]
    with pytest.raises(ValueError, match="lead.won"):
        everything.wants("lead.won")


def entry(**overrides: Any) -> str:
    values: dict[str, Any] = {"url": URL_, "secret": SECRET, "events": ["lead.hot"]}
    values.update(overrides)
    return json.dumps([{k: v for k, v in values.items() if v is not None}])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[{", "OUTBOUND_WEBHOOKS is not valid JSON"),
        ('{"url": "x"}', "expected a list of endpoints"),
        ("[42]", "endpoint 1 must be an object"),
        (entry(events=["lead.won"]), "events: unknown event(s) 'lead.won'; known: lead.created"),
        (entry(events=[]), "events: must be a non-empty list"),
        (entry(secret=None), "secret: Field required"),
        (entry(secret="short-secret"), "secret: must be at least 16 characters"),
        (entry(url="ftp://crm.example.com/x"), "url: must be an absolute http(s) URL"),
        (entry(url="crm.example.com/hooks"), "url: must be an absolute http(s) URL"),
        (entry(id="has space"), "id: must be 1-64 letters"),
        (entry(event=["lead.hot"]), "event: unknown field"),
        (entry(enabled="maybe"), "enabled: Input should be a valid boolean"),
    ],
    ids=[
        "json",
        "not-a-list",
        "not-an-object",
        "unknown-event",
        "no-events",
        "no-secret",
        "short-secret",
        "ftp",
        "no-scheme",
        "bad-id",
        "typo",
        "enabled",
    ],
)
def test_bad_config_says_what_and_where(text: str, message: str) -> None:
    with pytest.raises(OutboundWebhookConfigError) as raised:
        load_endpoints(text, None)
    assert message in str(raised.value)
    assert str(raised.value).startswith("OUTBOUND_WEBHOOKS")


def test_a_config_error_never_echoes_the_secret() -> None:
    secret = "tooshort-9f3a"
    with pytest.raises(OutboundWebhookConfigError) as raised:
        load_endpoints(entry(secret=secret), None)
    assert secret not in str(raised.value)
    assert "endpoint 1 (crm.example.com)" in str(raised.value)
    with pytest.raises(OutboundWebhookConfigError) as raised:
        load_endpoints(entry(secret=["not", "a", "string", SECRET]), None)
    assert SECRET not in str(raised.value)


def test_file_problems_are_clear(tmp_path: Path) -> None:
    with pytest.raises(OutboundWebhookConfigError, match="cannot read"):
        load_endpoints(None, tmp_path / "missing.toml")
    yaml = tmp_path / "hooks.yaml"
    yaml.write_text("- url: x\n")
    with pytest.raises(OutboundWebhookConfigError, match=r"use a \.toml or \.json file"):
        load_endpoints(None, yaml)
    broken = tmp_path / "hooks.toml"
    broken.write_text("[[endpoints]\nurl = 1\n")
    with pytest.raises(OutboundWebhookConfigError, match=r"hooks\.toml\) is not valid TOML"):
        load_endpoints(None, broken)
    with pytest.raises(OutboundWebhookConfigError, match="not both"):
        load_endpoints(entry(), FIXTURES / "endpoints.toml")


def test_two_endpoints_with_one_id_are_refused() -> None:
    text = json.dumps(
        [
            {"id": "crm", "url": URL_, "secret": SECRET, "events": ["*"]},
            {"id": "crm", "url": "https://other.example.com/h", "secret": SECRET, "events": ["*"]},
        ]
    )
    with pytest.raises(OutboundWebhookConfigError, match="two endpoints have the id 'crm'"):
        load_endpoints(text, None)

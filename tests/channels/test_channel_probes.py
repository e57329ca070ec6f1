"""Each channel's own doctor probe: the read-only call it makes with its own URL and
header builders, and the pt-BR verdict it returns (the very texts `python main.py doctor`
prints; tests/cli/test_doctor.py checks them through the doctor)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from channels.instagram import InstagramChannel
from channels.waha import WahaChannel
from channels.whatsapp_cloud import WhatsAppCloudChannel
from channels.zapi import ZapiChannel
from core.probe import ProbeResult, ProbeVerdict
from core.settings import Settings
from tests.helpers.channel_probe import FakeProbeIO
from web.configs.channels import instagram_config, waha_config, whatsapp_cloud_config, zapi_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

ZAPI_ID = "3C01D0C7049F0E1B2"
ZAPI_TOKEN = "F0E1D2C3B4A5D0C70869A4B"
ZAPI_CLIENT = "Fa9c1d2e3f4b5a69d0c787766554"
ZAPI_STATUS = f"https://api.z-api.io/instances/{ZAPI_ID}/token/{ZAPI_TOKEN}/status"
WAHA = "http://waha.internal:3000"
WAHA_KEY = "waha-key-probe-0c9b8a7f6e5d"
GRAPH = "https://graph.facebook.com/v21.0"
PHONE_ID = "106540352242922"
WA_TOKEN = "EAAGwa-probe-token-1f2e3d4c5b6a"
WA_URL = f"{GRAPH}/{PHONE_ID}?fields=display_phone_number,verified_name"
IG_ID = "17841400000000001"
IG_TOKEN = "IGQV-probe-token-9a8b7c6d5e4f"
IG_URL = f"{GRAPH}/{IG_ID}?fields=username"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.fixture
async def io() -> AsyncIterator[FakeProbeIO]:
    async with aiohttp.ClientSession() as session:
        yield FakeProbeIO(session, secrets=[ZAPI_TOKEN, ZAPI_CLIENT, WAHA_KEY, WA_TOKEN, IG_TOKEN])


def zapi(**overrides: Any) -> ZapiChannel:
    values = {
        "zapi_instance_id": ZAPI_ID,
        "zapi_instance_token": ZAPI_TOKEN,
        "zapi_client_token": ZAPI_CLIENT,
    }
    return ZapiChannel(zapi_config(settings(**{**values, **overrides})))


def waha(**overrides: Any) -> WahaChannel:
    return WahaChannel(waha_config(settings(**{"waha_url": WAHA, "waha_api_key": WAHA_KEY, **overrides})))


def cloud() -> WhatsAppCloudChannel:
    return WhatsAppCloudChannel(
        whatsapp_cloud_config(settings(whatsapp_phone_number_id=PHONE_ID, whatsapp_access_token=WA_TOKEN))
    )


def instagram() -> InstagramChannel:
    return InstagramChannel(
        instagram_config(settings(instagram_account_id=IG_ID, instagram_access_token=IG_TOKEN))
    )


# --- Z-API ------------------------------------------------------------------------------


async def test_zapi_asks_the_instance_status_with_the_client_token(io: FakeProbeIO) -> None:
    with aioresponses() as mocked:
        mocked.get(ZAPI_STATUS, payload=fixture("doctor/zapi_status_connected.json"))
        result = await zapi().probe(io)
    assert result == ProbeResult(True, "WhatsApp connected")
    assert io.calls == [
        {
            "url": ZAPI_STATUS,
            "headers": {"Accept": "application/json", "Client-Token": ZAPI_CLIENT},
            "params": {},
        }
    ]


async def test_zapi_without_client_token_sends_none(io: FakeProbeIO) -> None:
    with aioresponses() as mocked:
        mocked.get(ZAPI_STATUS, payload=fixture("doctor/zapi_status_connected.json"))
        await zapi(zapi_client_token=None).probe(io)
    assert io.calls[0]["headers"] == {"Accept": "application/json"}


async def test_zapi_phone_offline_is_ok_with_a_warning(io: FakeProbeIO) -> None:
    body = {**fixture("doctor/zapi_status_connected.json"), "smartphoneConnected": False}
    with aioresponses() as mocked:
        mocked.get(ZAPI_STATUS, payload=body)
        result = await zapi().probe(io)
    assert result == ProbeResult(True, "WhatsApp connected (warning: the phone has no internet right now)")


async def test_zapi_disconnected_quotes_zapi(io: FakeProbeIO) -> None:
    with aioresponses() as mocked:
        mocked.get(ZAPI_STATUS, payload=fixture("doctor/zapi_status_disconnected.json"))
        result = await zapi().probe(io)
    assert not result.ok
    assert result.detail == "instance found, but WhatsApp is disconnected (You are not connected.)"
    assert "QR code" in result.hint


@pytest.mark.parametrize(
    ("status", "body", "detail", "env"),
    [
        (403, {"error": f"Client-Token {ZAPI_CLIENT} not allowed"}, "invalid token", "ZAPI_CLIENT_TOKEN"),
        (400, {"error": "your client-token is not configured"}, "invalid token", "ZAPI_CLIENT_TOKEN"),
        (401, {}, "invalid token", "ZAPI_CLIENT_TOKEN"),
        (404, {"error": "Instance not found"}, "wrong instance ID or token", "ZAPI_INSTANCE_ID"),
    ],
)
async def test_zapi_refusals_name_the_setting(
    io: FakeProbeIO, status: int, body: dict[str, str], detail: str, env: str
) -> None:
    with aioresponses() as mocked:
        mocked.get(ZAPI_STATUS, status=status, payload=body)
        result = await zapi().probe(io)
    assert not result.ok and result.detail.startswith(detail) and env in result.hint
    assert ZAPI_CLIENT not in result.detail + result.hint


@pytest.mark.parametrize(("status", "body"), [(500, {"error": "boom"}), (200, {"unexpected": True})])
async def test_zapi_odd_answers_go_back_to_the_doctor(io: FakeProbeIO, status: int, body: Any) -> None:
    with aioresponses() as mocked:
        mocked.get(ZAPI_STATUS, status=status, payload=body)
        result = await zapi().probe(io)
    assert result == ProbeResult(False, f"unexpected answer (HTTP {status})", "UNEXPECTED")


# --- WAHA -------------------------------------------------------------------------------


async def test_waha_working_session_shows_its_masked_number(io: FakeProbeIO) -> None:
    with aioresponses() as mocked:
        mocked.get(f"{WAHA}/api/sessions/default", payload=fixture("doctor/waha_session_working.json"))
        result = await waha().probe(io)
    assert result.ok and result.detail.startswith("session 'default' WORKING, number ")
    assert "***" in result.detail
    assert io.calls[0]["headers"] == {"Accept": "application/json", "X-Api-Key": WAHA_KEY}


async def test_waha_session_name_is_quoted_into_the_path(io: FakeProbeIO) -> None:
    with aioresponses() as mocked:
        mocked.get(f"{WAHA}/api/sessions/vendas%2F1", payload={"status": "WORKING"})
        result = await waha(waha_session="vendas/1", waha_api_key=None).probe(io)
    assert result == ProbeResult(True, "session 'vendas/1' WORKING")
    assert io.calls[0]["headers"] == {"Accept": "application/json"}


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        ("SCAN_QR_CODE", "QR code"),
        ("STARTING", "wait a minute"),
        ("STOPPED", "Start"),
        ("FAILED", "Restart"),
        ("SOMETHING_NEW", "check the session in the WAHA dashboard"),
    ],
)
async def test_waha_session_not_ready_says_what_to_do(io: FakeProbeIO, status: str, hint: str) -> None:
    body = {**fixture("doctor/waha_session_scan_qr.json"), "status": status.lower()}
    with aioresponses() as mocked:
        mocked.get(f"{WAHA}/api/sessions/default", payload=body)
        result = await waha().probe(io)
    assert not result.ok and result.detail == f"session 'default' is not ready ({status})"
    assert hint in result.hint


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (401, "invalid token: WAHA refused the API key"),
        (403, "invalid token: WAHA refused the API key"),
        (404, "session 'default' does not exist on this WAHA"),
        (502, "unexpected answer (HTTP 502)"),
    ],
)
async def test_waha_refusals(io: FakeProbeIO, status: int, detail: str) -> None:
    with aioresponses() as mocked:
        mocked.get(f"{WAHA}/api/sessions/default", status=status, payload={"message": "no"})
        result = await waha().probe(io)
    assert not result.ok and result.detail == detail


# --- WhatsApp Cloud and Instagram (Graph) ------------------------------------------------


async def test_cloud_reads_the_phone_number_node_with_the_bearer(io: FakeProbeIO) -> None:
    body = fixture("doctor/whatsapp_phone_number.json")
    with aioresponses() as mocked:
        mocked.get(WA_URL, payload=body)
        result = await cloud().probe(io)
    assert result.ok and result.detail.startswith("number ") and "verified name" in result.detail
    assert str(body["display_phone_number"]) not in result.detail
    assert io.calls[0]["headers"] == {"Authorization": f"Bearer {WA_TOKEN}"}
    assert io.calls[0]["params"] == {"fields": "display_phone_number,verified_name"}


@pytest.mark.parametrize(
    ("status", "body", "detail", "hint"),
    [
        (401, fixture("whatsapp_cloud/error_190.json"), "invalid token", "WHATSAPP_ACCESS_TOKEN"),
        (
            400,
            fixture("doctor/graph_error_100_33.json"),
            "wrong phone number ID",
            "WHATSAPP_PHONE_NUMBER_ID",
        ),
        (403, {"error": {"code": 10}}, "the token lacks permission", "whatsapp_business_messaging"),
        (400, {"error": {"code": 4}}, "Meta's call limit reached", "wait"),
        (418, {"error": {"code": 1}}, "unexpected answer (HTTP 418)", "UNEXPECTED"),
    ],
)
async def test_cloud_graph_refusals_say_token_or_id(
    io: FakeProbeIO, status: int, body: Any, detail: str, hint: str
) -> None:
    with aioresponses() as mocked:
        mocked.get(WA_URL, status=status, payload=body)
        result = await cloud().probe(io)
    assert not result.ok and result.detail.startswith(detail) and hint in result.hint


async def test_cloud_answer_without_the_fields_is_unexpected(io: FakeProbeIO) -> None:
    with aioresponses() as mocked:
        mocked.get(WA_URL, payload={"id": PHONE_ID})
        result = await cloud().probe(io)
    assert result.detail == "unexpected answer (HTTP 200)"


async def test_instagram_reads_the_account_username(io: FakeProbeIO) -> None:
    with aioresponses() as mocked:
        mocked.get(IG_URL, payload=fixture("doctor/instagram_user.json"))
        result = await instagram().probe(io)
    assert result == ProbeResult(True, "account @seletoindustrial")
    assert io.calls[0]["headers"] == {"Authorization": f"Bearer {IG_TOKEN}"}


async def test_instagram_without_permission_names_it(io: FakeProbeIO) -> None:
    with aioresponses() as mocked:
        mocked.get(IG_URL, status=403, payload=fixture("meta_capi/error_200_permission.json"))
        result = await instagram().probe(io)
    assert not result.ok and result.detail == "the token lacks permission to read this asset"
    assert "instagram_manage_messages" in result.hint and "INSTAGRAM_ACCESS_TOKEN" in result.hint


async def test_instagram_without_username_is_unexpected(io: FakeProbeIO) -> None:
    with aioresponses() as mocked:
        mocked.get(IG_URL, payload={"id": IG_ID})
        result = await instagram().probe(io)
    assert result.detail == "unexpected answer (HTTP 200)"


# --- transport ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [zapi, waha, cloud, instagram], ids=lambda f: f.__name__)
async def test_a_transport_failure_is_the_ios_verdict(io: FakeProbeIO, make: Any) -> None:
    with aioresponses() as mocked:
        for url in (ZAPI_STATUS, f"{WAHA}/api/sessions/default", WA_URL, IG_URL):
            mocked.get(url, exception=aiohttp.ClientConnectionError())
        with pytest.raises(ProbeVerdict) as verdict:
            await make().probe(io)
    assert verdict.value.result.detail == "URL unreachable (host does not answer)"

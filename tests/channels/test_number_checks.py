"""Is this number on WhatsApp? Before a form lead's first message the runtime asks the
channel (Z-API phone-exists, WAHA contacts/check-exists); WhatsApp Cloud has no lookup
and says it by refusing the send (131026), or later in a failed status.

Contracts, with fixtures citing their source:
- Z-API: GET /instances/{id}/token/{token}/phone-exists/{phone}, Client-Token header,
  200 {"exists": bool} (tests/fixtures/zapi/phone_exists_docs.json).
- WAHA: GET /api/contacts/check-exists?phone=&session=, X-Api-Key, 200
  WANumberExistResult (tests/fixtures/waha/contacts_check_exists_openapi.json).
- WhatsApp Cloud: error 131026 "Message undeliverable" on the send
  (whatsapp_cloud/error_131026.json) or in statuses[].errors[]
  (whatsapp_cloud/status_failed_131026.json).
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr
from structlog.testing import capture_logs
from yarl import URL

from channels.base import ChecksNumbers, number_checker
from channels.errors import ChannelInvalidRecipient, RecipientNotOnWhatsApp
from channels.media_fetch import MediaConfig
from channels.waha import WahaChannel
from channels.waha.config import WahaConfig
from channels.whatsapp_cloud import WhatsAppCloudChannel
from channels.whatsapp_cloud.config import WhatsAppCloudConfig
from channels.zapi import ZapiChannel
from channels.zapi.config import ZapiConfig
from core.errors import InvalidRecipient, Permanent, Retryable
from core.models import mask_phone

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PHONE = "5511987654321"

ZAPI_BASE = "https://api.z-api.io"
ZAPI_INSTANCE = "3C0INSTANCE0ID"
ZAPI_TOKEN = "zapi-instance-SECRET-token"
ZAPI_CLIENT_TOKEN = "zapi-client-SECRET-token"
ZAPI_URL = f"{ZAPI_BASE}/instances/{ZAPI_INSTANCE}/token/{ZAPI_TOKEN}/phone-exists/{PHONE}"

WAHA_BASE = "http://waha:3000"
WAHA_KEY = "waha-key-SECRET-7f6e5d4c"
WAHA_SESSION = "default"
WAHA_URL = f"{WAHA_BASE}/api/contacts/check-exists"

GRAPH = "https://graph.facebook.com"
GRAPH_VERSION = "v21.0"
PHONE_NUMBER_ID = "106540352242922"
SEND_URL = f"{GRAPH}/{GRAPH_VERSION}/{PHONE_NUMBER_ID}/messages"

MEDIA = MediaConfig(waha_url=WAHA_BASE, zapi_base_url=ZAPI_BASE, meta_graph_url=GRAPH)


def load(name: str) -> Any:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data.pop("_source", None)
    return data


def zapi(**overrides: Any) -> ZapiChannel:
    values: dict[str, Any] = {
        "base_url": ZAPI_BASE,
        "instance_id": ZAPI_INSTANCE,
        "instance_token": SecretStr(ZAPI_TOKEN),
        "client_token": SecretStr(ZAPI_CLIENT_TOKEN),
        "webhook_secret": None,
        "rate_per_s": 5.0,
        "http_timeout_s": 7.5,
        "media": MEDIA,
    }
    values.update(overrides)
    return ZapiChannel(ZapiConfig(**values))


def waha(**overrides: Any) -> WahaChannel:
    values: dict[str, Any] = {
        "url": WAHA_BASE,
        "api_key": SecretStr(WAHA_KEY),
        "session": WAHA_SESSION,
        "webhook_hmac_key": None,
        "webhook_secret": None,
        "rate_per_s": 5.0,
        "http_timeout_s": 7.5,
        "media": MEDIA,
    }
    values.update(overrides)
    return WahaChannel(WahaConfig(**values))


def cloud() -> WhatsAppCloudChannel:
    return WhatsAppCloudChannel(
        WhatsAppCloudConfig(
            phone_number_id=PHONE_NUMBER_ID,
            access_token=SecretStr("EAAG-cloud-SECRET-token"),
            template_language="pt_BR",
            graph_url=GRAPH,
            graph_version=GRAPH_VERSION,
            app_secret=SecretStr("app-secret"),
            rate_per_s=20.0,
            http_timeout_s=7.5,
            media=MEDIA,
        )
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mock() -> Any:
    with aioresponses() as m:
        yield m


def only_request(mock: aioresponses, method: str, url: str | URL) -> Any:
    calls = mock.requests.get((method, URL(url) if isinstance(url, str) else url))
    assert calls, f"no {method} {url}; made: {list(mock.requests)}"
    assert len(calls) == 1
    return calls[0]


def assert_warned_masked(logs: list[dict[str, Any]], event: str) -> None:
    [entry] = [e for e in logs if e["event"] == event]
    assert entry["log_level"] == "warning"
    assert PHONE not in json.dumps(logs, default=str)
    assert entry["contact"] == mask_phone(PHONE) != PHONE


# --- the capability -------------------------------------------------------------------


def test_zapi_and_waha_check_numbers_cloud_does_not() -> None:
    assert isinstance(zapi(), ChecksNumbers) and number_checker(zapi()) is not None
    assert isinstance(waha(), ChecksNumbers) and number_checker(waha()) is not None
    # Meta has no lookup: the runtime just sends and catches RecipientNotOnWhatsApp.
    assert number_checker(cloud()) is None
    assert number_checker(object()) is None


def test_not_on_whatsapp_is_a_permanent_invalid_recipient() -> None:
    assert issubclass(RecipientNotOnWhatsApp, ChannelInvalidRecipient)
    assert issubclass(RecipientNotOnWhatsApp, InvalidRecipient)
    assert issubclass(RecipientNotOnWhatsApp, Permanent)
    assert not issubclass(RecipientNotOnWhatsApp, Retryable)


# --- Z-API ----------------------------------------------------------------------------

ZAPI_FIXTURE = load("zapi/phone_exists_docs.json")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ZAPI_FIXTURE["exists"], True),
        (ZAPI_FIXTURE["missing"], False),
        (ZAPI_FIXTURE["documented_example"], False),
    ],
)
async def test_zapi_phone_exists(
    session: aiohttp.ClientSession, mock: aioresponses, body: Any, expected: bool
) -> None:
    mock.get(ZAPI_URL, status=200, payload=body)
    assert await zapi().on_whatsapp(session, PHONE) is expected
    call = only_request(mock, "GET", ZAPI_URL)
    assert call.kwargs["headers"]["Client-Token"] == ZAPI_CLIENT_TOKEN


async def test_zapi_asks_with_digits_only(session: aiohttp.ClientSession, mock: aioresponses) -> None:
    mock.get(ZAPI_URL, status=200, payload=ZAPI_FIXTURE["exists"])
    assert await zapi().on_whatsapp(session, "+55 (11) 98765-4321") is True
    only_request(mock, "GET", ZAPI_URL)


async def test_zapi_without_client_token_sends_no_header(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.get(ZAPI_URL, status=200, payload=ZAPI_FIXTURE["missing"])
    assert await zapi(client_token=None).on_whatsapp(session, PHONE) is False
    assert "Client-Token" not in only_request(mock, "GET", ZAPI_URL).kwargs["headers"]


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500, "payload": {"error": "internal"}},
        {"status": 503, "body": "Service Unavailable"},
        {"status": 429, "payload": {"error": "rate limit"}},
        {"status": 401, "payload": {"error": "your client-token is not configured"}},
        {"status": 200, "payload": {"connected": True}},
        {"status": 200, "body": "not json"},
        {"exception": TimeoutError()},
        {"exception": aiohttp.ClientConnectionError("boom " + ZAPI_TOKEN)},
    ],
)
async def test_zapi_cannot_tell_is_none_and_never_raises(
    session: aiohttp.ClientSession, mock: aioresponses, reply: dict[str, Any]
) -> None:
    mock.get(ZAPI_URL, **reply)
    with capture_logs() as logs:
        assert await zapi().on_whatsapp(session, PHONE) is None
    assert_warned_masked(logs, "zapi_phone_check_failed")
    assert ZAPI_TOKEN not in json.dumps(logs, default=str)


async def test_zapi_unconfigured_or_no_digits_asks_nothing(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    assert await zapi(instance_token=None).on_whatsapp(session, PHONE) is None
    assert await zapi().on_whatsapp(session, "  ") is None
    assert not mock.requests


# --- WAHA -----------------------------------------------------------------------------

WAHA_FIXTURE = load("waha/contacts_check_exists_openapi.json")
WAHA_QUERY = URL(WAHA_URL).with_query({"phone": PHONE, "session": WAHA_SESSION})


@pytest.mark.parametrize(
    ("body", "expected"), [(WAHA_FIXTURE["exists"], True), (WAHA_FIXTURE["missing"], False)]
)
async def test_waha_check_exists(
    session: aiohttp.ClientSession, mock: aioresponses, body: Any, expected: bool
) -> None:
    mock.get(WAHA_QUERY, status=200, payload=body)
    assert await waha().on_whatsapp(session, PHONE) is expected
    call = only_request(mock, "GET", WAHA_QUERY)
    assert call.kwargs["params"] == {"phone": PHONE, "session": WAHA_SESSION}
    assert call.kwargs["headers"]["X-Api-Key"] == WAHA_KEY


@pytest.mark.parametrize("contact", [f"{PHONE}@c.us", f"{PHONE}@s.whatsapp.net", "+55 11 98765-4321"])
async def test_waha_asks_with_the_phone_digits(
    session: aiohttp.ClientSession, mock: aioresponses, contact: str
) -> None:
    mock.get(WAHA_QUERY, status=200, payload=WAHA_FIXTURE["exists"])
    assert await waha().on_whatsapp(session, contact) is True


async def test_waha_uses_its_session_name(session: aiohttp.ClientSession, mock: aioresponses) -> None:
    url = URL(WAHA_URL).with_query({"phone": PHONE, "session": "vendas"})
    mock.get(url, status=200, payload=WAHA_FIXTURE["missing"])
    assert await waha(session="vendas").on_whatsapp(session, PHONE) is False


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500, "payload": {"exception": {"message": "wid error"}}},
        {"status": 422, "payload": {"error": "Session status is not as expected. Try again later"}},
        {"status": 401, "payload": {"message": "Unauthorized"}},
        {"status": 200, "payload": {"chatId": f"{PHONE}@c.us"}},
        {"status": 200, "payload": {"numberExists": "true"}},
        {"exception": TimeoutError()},
        {"exception": aiohttp.ClientConnectionError("down")},
    ],
)
async def test_waha_cannot_tell_is_none_and_never_raises(
    session: aiohttp.ClientSession, mock: aioresponses, reply: dict[str, Any]
) -> None:
    mock.get(WAHA_QUERY, **reply)
    with capture_logs() as logs:
        assert await waha().on_whatsapp(session, PHONE) is None
    assert_warned_masked(logs, "waha_phone_check_failed")
    assert WAHA_KEY not in json.dumps(logs, default=str)


@pytest.mark.parametrize("contact", ["81896604192873@lid", "120363025246125486@g.us", ""])
async def test_waha_asks_nothing_for_what_is_no_phone(
    session: aiohttp.ClientSession, mock: aioresponses, contact: str
) -> None:
    assert await waha().on_whatsapp(session, contact) is None
    assert await waha(url=None).on_whatsapp(session, PHONE) is None
    assert not mock.requests


# --- WhatsApp Cloud: 131026 ------------------------------------------------------------


def graph_error(name: str) -> tuple[int, dict[str, Any]]:
    body = load(f"whatsapp_cloud/{name}")
    return body.pop("_http_status"), body


async def test_cloud_send_refused_with_131026_is_recipient_not_on_whatsapp(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    status, body = graph_error("error_131026.json")
    mock.post(SEND_URL, status=status, payload=body)
    with pytest.raises(RecipientNotOnWhatsApp) as caught:
        await cloud().send_text(session, PHONE, "Olá!", typing_s=0)
    error = caught.value
    assert isinstance(error, InvalidRecipient) and isinstance(error, Permanent)
    assert error.invalid_recipient and not error.retryable
    assert getattr(error, "code", None) == 131026
    assert "Bearer" not in str(error) and "SECRET" not in str(error)


async def test_cloud_template_refused_with_131026_too(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    status, body = graph_error("error_131026.json")
    mock.post(SEND_URL, status=status, payload=body)
    with pytest.raises(RecipientNotOnWhatsApp):
        await cloud().send_template(session, PHONE, name="boas_vindas")


@pytest.mark.parametrize("name", ["error_131030.json", "error_131047.json", "error_131000.json"])
async def test_other_cloud_refusals_are_not_taken_for_it(
    session: aiohttp.ClientSession, mock: aioresponses, name: str
) -> None:
    status, body = graph_error(name)
    mock.post(SEND_URL, status=status, payload=body)
    with pytest.raises(Exception) as caught:
        await cloud().send_text(session, PHONE, "Olá!", typing_s=0)
    assert not isinstance(caught.value, RecipientNotOnWhatsApp)


def test_a_failed_status_with_131026_says_not_on_whatsapp() -> None:
    [status] = cloud().parse(load("whatsapp_cloud/status_failed_131026.json")).statuses
    assert status.status == "failed"
    assert status.not_on_whatsapp is True
    assert status.outside_window is False


def test_other_statuses_are_not_flagged() -> None:
    channel = cloud()
    [window] = channel.parse(load("whatsapp_cloud/status_failed_131047.json")).statuses
    assert window.outside_window is True and window.not_on_whatsapp is False
    [delivered] = channel.parse(load("whatsapp_cloud/status_delivered.json")).statuses
    assert delivered.not_on_whatsapp is False


def test_131026_among_several_errors_still_counts() -> None:
    payload = copy.deepcopy(load("whatsapp_cloud/status_failed_131026.json"))
    status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    status["errors"].insert(0, {"code": 131000, "title": "Something went wrong"})
    [parsed] = cloud().parse(payload).statuses
    assert parsed.not_on_whatsapp is True

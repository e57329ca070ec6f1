"""Z-API send_media: each kind goes to the operation docs/message/ names, with the body
fields and the base64 data URI it documents, and is answered like send_text."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from channels.base import OutgoingMedia, SendsMedia, media_sender
from channels.zapi import ZapiChannel
from core.errors import AuthFailed, InvalidRecipient, ProviderError, ProviderRejected, ProviderUnavailable
from core.settings import Settings
from web.configs.channels import zapi_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "zapi"
INSTANCE_ID = "3C0FFEE1234INSTANCE"
INSTANCE_TOKEN = "inst-tok-SECRET-9f8e7d"
CLIENT_TOKEN = "client-tok-SECRET-1a2b3c"
BASE = f"https://api.z-api.io/instances/{INSTANCE_ID}/token/{INSTANCE_TOKEN}"
PHONE = "5544999999999"
PDF = b"%PDF-1.4 proposta"


def response() -> dict[str, Any]:
    data = json.loads((FIXTURES / "send_media_response.json").read_text(encoding="utf-8"))
    data.pop("_source")
    return data


@pytest.fixture
def channel() -> ZapiChannel:
    values: dict[str, Any] = {
        "_env_file": None,
        "zapi_instance_id": INSTANCE_ID,
        "zapi_instance_token": INSTANCE_TOKEN,
        "zapi_client_token": CLIENT_TOKEN,
        "http_timeout_s": 7.5,
    }
    return ZapiChannel(zapi_config(Settings(**values)))


def media(kind: str, **overrides: Any) -> OutgoingMedia:
    values: dict[str, Any] = {
        "kind": kind,
        "data": PDF,
        "mime": "application/pdf",
        "file_name": "Proposta Comercial.pdf",
        "caption": "Segue a proposta",
    }
    values.update(overrides)
    return OutgoingMedia(**values)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def send(channel: ZapiChannel, url: str, item: OutgoingMedia, **reply: Any) -> tuple[Any, Any]:
    with aioresponses() as mocked:
        mocked.post(url, **(reply or {"payload": response()}))
        async with aiohttp.ClientSession() as session:
            sent = await channel.send_media(session, PHONE, item)
        [call] = mocked.requests[("POST", URL(url))]
    return sent, call


def test_zapi_is_found_as_a_media_sender(channel: ZapiChannel) -> None:
    assert isinstance(channel, SendsMedia) and media_sender(channel) is channel


@pytest.mark.parametrize(
    ("item", "op", "body"),
    [
        (
            media("image", data=b"\x89PNG", mime="image/png", file_name="foto.png"),
            "send-image",
            {
                "phone": PHONE,
                "image": "data:image/png;base64," + b64(b"\x89PNG"),
                "caption": "Segue a proposta",
            },
        ),
        (
            media("document"),
            "send-document/pdf",
            {
                "phone": PHONE,
                "document": "data:application/pdf;base64," + b64(PDF),
                "fileName": "Proposta Comercial.pdf",
                "caption": "Segue a proposta",
            },
        ),
        (
            media("video", data=b"mp4", mime="video/mp4", file_name="demo.mp4", caption=None),
            "send-video",
            {"phone": PHONE, "video": "data:video/mp4;base64," + b64(b"mp4")},
        ),
        (
            media("audio", data=b"OggS", mime="audio/ogg; codecs=opus", file_name="voz.ogg"),
            "send-audio",
            {"phone": PHONE, "audio": "data:audio/ogg;base64," + b64(b"OggS")},
        ),
    ],
    ids=["image", "document", "video", "audio"],
)
async def test_each_kind_goes_where_the_docs_say(
    channel: ZapiChannel, item: OutgoingMedia, op: str, body: dict[str, Any]
) -> None:
    sent, call = await send(channel, f"{BASE}/{op}", item)
    assert sent.provider_message_id == "D241XXXX732339502B68"  # messageId, not zaapId
    assert call.kwargs["json"] == body
    assert call.kwargs["headers"]["Client-Token"] == CLIENT_TOKEN
    assert call.kwargs["headers"]["Content-Type"] == "application/json"
    assert call.kwargs["timeout"].total == 7.5


@pytest.mark.parametrize(
    ("file_name", "mime", "extension"),
    [
        ("Tabela.XLSX", "application/octet-stream", "xlsx"),
        ("sem-extensao", "application/pdf", "pdf"),
        ("", "text/csv", "csv"),
        ("nome.com espaço", "application/zip", "zip"),
        ("x", "application/x-nothing-known", "bin"),
    ],
)
async def test_the_document_extension_comes_from_the_name_else_the_type(
    channel: ZapiChannel, file_name: str, mime: str, extension: str
) -> None:
    item = media("document", file_name=file_name, mime=mime, caption=None)
    _, call = await send(channel, f"{BASE}/send-document/{extension}", item)
    assert "caption" not in call.kwargs["json"]
    assert ("fileName" in call.kwargs["json"]) is bool(file_name)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": "unauthorized"}, AuthFailed),
        (429, "", ProviderUnavailable),
        (500, {"error": "internal"}, ProviderUnavailable),
        (400, {"error": "phone 5544999999999 does not exist on WhatsApp"}, InvalidRecipient),
        (400, {"error": "invalid base64"}, ProviderRejected),
    ],
)
async def test_refusals_map_like_send_text(channel: ZapiChannel, status: int, body: Any, error: type) -> None:
    reply = {"status": status, "body": body} if isinstance(body, str) else {"status": status, "payload": body}
    with pytest.raises(ProviderError) as raised:
        await send(channel, f"{BASE}/send-image", media("image", mime="image/jpeg"), **reply)
    assert isinstance(raised.value, error)
    assert "send-image failed" in str(raised.value)
    assert INSTANCE_TOKEN not in str(raised.value) and CLIENT_TOKEN not in str(raised.value)


async def test_transport_failure_is_retryable_and_hides_the_token(channel: ZapiChannel) -> None:
    url = f"{BASE}/send-document/pdf"
    with pytest.raises(ProviderError) as raised:
        await send(channel, url, media("document"), exception=aiohttp.ClientConnectionError(url))
    assert isinstance(raised.value, ProviderUnavailable)
    assert INSTANCE_TOKEN not in str(raised.value)


async def test_an_unconfigured_channel_sends_nothing() -> None:
    values: dict[str, Any] = {"_env_file": None}
    channel = ZapiChannel(zapi_config(Settings(**values)))
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderRejected):
                await channel.send_media(session, PHONE, media("image"))
        assert mocked.requests == {}

"""Media URLs come from webhooks, and webhooks can be forged: where the bot will fetch
media from, where it will not, and who gets the provider's credentials on the way.

Addresses that need no DNS are checked through the channels with aioresponses (nothing
may be requested at all); names, redirects and credentials are checked against a real
HTTP server on loopback, with an injected resolver standing in for DNS.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aioresponses import aioresponses
from tenacity import AsyncRetrying, stop_after_attempt

from channels.media_fetch import MediaFetcher, MediaRefused
from channels.waha import WahaChannel
from channels.zapi import MediaTooLarge, ZapiChannel
from core.errors import ProviderError
from core.models import InboundMessage, MessageKind
from core.settings import Settings
from tests.conftest import zapi_message
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from web.configs.channels import media_config, waha_config, zapi_config
from web.keys import STORE

API_KEY = "waha-key-SECRET-7f6e5d4c"
AUDIO = b"OggS" + b"\x00" * 60
TIMEOUT = aiohttp.ClientTimeout(total=5)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "zapi_instance_id": "3C0FFEE1234INSTANCE",
        "zapi_instance_token": "inst-tok-SECRET-9f8e7d",
        "zapi_client_token": "client-tok-SECRET-1a2b3c",
        "waha_url": "http://waha:3000",
        "waha_api_key": API_KEY,
        "http_timeout_s": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


# --- a media host on loopback ------------------------------------------------------------


@dataclass
class Seen:
    path_qs: str
    host: str
    api_key: str | None


@dataclass
class MediaHost:
    """Serves files, redirects wherever `?to=` says, and plays WAHA's GET /api/sendText
    (which really sends a message), remembering every request it was made."""

    server: TestServer
    seen: list[Seen] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [s.path_qs for s in self.seen]


@pytest.fixture
async def media_host(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> MediaHost:
    host: MediaHost

    async def record(request: web.Request) -> None:
        host.seen.append(Seen(request.path_qs, request.host, request.headers.get("X-Api-Key")))

    async def file(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=AUDIO, content_type="audio/ogg")

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        await record(request)
        raise web.HTTPFound(f"/loop/{int(request.match_info['n']) + 1}")

    async def send_text(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"id": "true_5511999999999@c.us_SENT"}, status=201)

    async def endless(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"\x00" * 16_384)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/api/files/moved/{name}", redirect)
    app.router.add_get("/api/files/{name}", file)
    app.router.add_get("/api/files/{session}/{name}", file)
    app.router.add_get("/store/{name}", file)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop/{n}", loop)
    app.router.add_get("/api/sendText", send_text)
    app.router.add_get("/endless", endless)
    host = MediaHost(await aiohttp_server(app))
    return host


def resolver(
    table: dict[str, list[str]],
) -> tuple[Callable[[str, int], Awaitable[list[str]]], list[tuple[str, int]]]:
    """DNS as the test says: `table` maps a name to its addresses."""
    asked: list[tuple[str, int]] = []

    async def lookup(host: str, port: int) -> list[str]:
        asked.append((host, port))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return lookup, asked


# --- addresses a URL names without DNS -----------------------------------------------------


INTERNAL_URLS = [
    "http://127.0.0.1/m.ogg",
    "http://127.0.0.1./m.ogg",
    "http://127.1/m.ogg",
    "http://2130706433/m.ogg",  # 127.0.0.1 as one decimal number
    "http://0x7f.1/m.ogg",  # ... in hex
    "http://017700000001/m.ogg",  # ... in octal
    "http://[::1]/m.ogg",
    "http://[::ffff:127.0.0.1]/m.ogg",  # IPv4-mapped IPv6
    "http://[::ffff:10.0.0.5]/m.ogg",
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 of 169.254.169.254
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",  # CGNAT range (Alibaba metadata)
    "http://100.64.0.1/m.ogg",
    "http://10.0.0.5/m.ogg",
    "http://172.16.0.1/m.ogg",
    "http://192.168.0.10/m.ogg",
    "http://0.0.0.0:3000/m.ogg",
    "http://[fe80::1]/m.ogg",
    "http://224.0.0.1/m.ogg",
    "http://localhost:8080/admin",
    "http://api.localhost/m.ogg",
    "http://metadata/computeMetadata/v1/",  # single-label names only exist inside
    "http://redis:6379/",
    "http://1.2.3.4.5/m.ogg",  # aiohttp would hand this to getaddrinfo as an "IP"
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
async def test_media_urls_naming_an_internal_address_are_refused_without_a_request(url: str) -> None:
    channel = ZapiChannel(zapi_config(make_settings()))
    with aioresponses() as mocked:
        mocked.get(re.compile(r".*"), body=b"AKIA-secret-credentials", repeat=True)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.fetch_media(session, url, max_bytes=1000)
        assert not mocked.requests
    assert exc_info.value.retryable is False


@pytest.mark.parametrize("url", ["http://u:p@cdn.example.com/m.ogg", "https://user@cdn.example.com/m.ogg"])
async def test_media_urls_carrying_userinfo_are_refused(url: str) -> None:
    channel = ZapiChannel(zapi_config(make_settings()))
    with aioresponses() as mocked:
        mocked.get(re.compile(r".*"), body=b"x", repeat=True)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as exc_info:
                await channel.fetch_media(session, url, max_bytes=1000)
        assert not mocked.requests
    assert exc_info.value.retryable is False


async def test_a_public_address_is_fetched() -> None:
    channel = ZapiChannel(zapi_config(make_settings()))
    url = "https://storage.z-api.io/media/3EB0.ogg"
    with aioresponses() as mocked:
        mocked.get(url, body=AUDIO)
        async with aiohttp.ClientSession() as session:
            assert await channel.fetch_media(session, url, max_bytes=1000) == AUDIO


# --- names: the resolved address decides ------------------------------------------------------


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.5"], ["93.184.215.14", "10.0.0.5"], ["::ffff:10.0.0.5"], ["169.254.169.254"], ["127.0.0.1"]],
    ids=["private", "mixed-answer", "mapped-v6", "metadata", "loopback"],
)
async def test_a_public_looking_name_that_resolves_inside_is_refused(addresses: list[str]) -> None:
    lookup, asked = resolver({"media.example.com": addresses})
    fetcher = MediaFetcher(lookup=lookup)
    with pytest.raises(MediaRefused) as exc_info:
        await fetcher.fetch("http://media.example.com/m.ogg", max_bytes=1000, timeout=TIMEOUT)
    assert asked == [("media.example.com", 80)]
    assert exc_info.value.retryable is False
    assert "non-public" in str(exc_info.value)


async def test_the_connection_goes_to_the_address_that_was_checked(media_host: MediaHost) -> None:
    # "media.example.com" resolves to our loopback server: refused as it is, fetched (from
    # that very address) once the operator trusts the origin.
    lookup, _ = resolver({"media.example.com": ["127.0.0.1"]})
    url = f"http://media.example.com:{media_host.port}/store/a.ogg"
    with pytest.raises(MediaRefused):
        await MediaFetcher(lookup=lookup).fetch(url, max_bytes=1000, timeout=TIMEOUT)
    assert media_host.seen == []

    settings = make_settings(media_trusted_origins=[f"http://media.example.com:{media_host.port}"])
    fetcher = MediaFetcher.from_config(media_config(settings), lookup=lookup)
    assert await fetcher.fetch(url, max_bytes=1000, timeout=TIMEOUT) == AUDIO
    assert [(s.path_qs, s.host) for s in media_host.seen] == [
        ("/store/a.ogg", f"media.example.com:{media_host.port}")
    ]


async def test_a_name_that_does_not_resolve_is_a_transient_failure() -> None:
    lookup, _ = resolver({})
    with pytest.raises(ProviderError) as exc_info:
        await MediaFetcher(lookup=lookup).fetch(
            "http://media.example.com/m.ogg", max_bytes=1000, timeout=TIMEOUT
        )
    assert not isinstance(exc_info.value, MediaRefused)
    assert exc_info.value.retryable is True


# --- redirects: every hop is checked again -------------------------------------------------


def trusting(media_host: MediaHost, **overrides: Any) -> Settings:
    return make_settings(media_trusted_origins=[media_host.origin], **overrides)


@pytest.mark.parametrize(
    "target",
    [
        # All of them are this loopback server under another name, so a followed hop shows.
        "http://localhost:{port}/store/secret.ogg",
        "http://127.1:{port}/store/secret.ogg",
        "http://2130706433:{port}/store/secret.ogg",
        "http://0x7f.1:{port}/store/secret.ogg",
        "http://[::ffff:127.0.0.1]:{port}/store/secret.ogg",
    ],
)
async def test_a_redirect_into_the_network_is_refused(media_host: MediaHost, target: str) -> None:
    channel = ZapiChannel(zapi_config(trusting(media_host)))
    url = f"{media_host.origin}/redirect?to={target.format(port=media_host.port)}"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as exc_info:
            await channel.fetch_media(session, url, max_bytes=1000)
    assert exc_info.value.retryable is False
    assert [s.path_qs.split("?")[0] for s in media_host.seen] == ["/redirect"]  # never reached /store


async def test_a_redirect_to_a_name_resolving_inside_is_refused(media_host: MediaHost) -> None:
    lookup, asked = resolver({"cdn.example.com": ["127.0.0.1"]})
    fetcher = MediaFetcher.from_config(media_config(trusting(media_host)), lookup=lookup)
    url = f"{media_host.origin}/redirect?to=http://cdn.example.com:{media_host.port}/store/secret.ogg"
    with pytest.raises(MediaRefused):
        await fetcher.fetch(url, max_bytes=1000, timeout=TIMEOUT)
    assert asked == [("cdn.example.com", media_host.port)]
    assert [s.path_qs.split("?")[0] for s in media_host.seen] == ["/redirect"]


async def test_redirects_inside_a_trusted_origin_are_followed(media_host: MediaHost) -> None:
    channel = ZapiChannel(zapi_config(trusting(media_host)))
    async with aiohttp.ClientSession() as session:
        data = await channel.fetch_media(
            session, f"{media_host.origin}/redirect?to=/store/a.ogg", max_bytes=1000
        )
    assert data == AUDIO
    assert media_host.paths() == ["/redirect?to=/store/a.ogg", "/store/a.ogg"]


async def test_endless_redirects_stop_after_five_hops(media_host: MediaHost) -> None:
    channel = ZapiChannel(zapi_config(trusting(media_host)))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as exc_info:
            await channel.fetch_media(session, f"{media_host.origin}/loop/0", max_bytes=1000)
    assert exc_info.value.retryable is False
    assert media_host.paths() == [f"/loop/{n}" for n in range(6)]


async def test_a_body_without_content_length_stops_at_the_limit(media_host: MediaHost) -> None:
    channel = ZapiChannel(zapi_config(trusting(media_host)))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(MediaTooLarge) as exc_info:
            await channel.fetch_media(session, f"{media_host.origin}/endless", max_bytes=100_000)
    assert exc_info.value.retryable is False


# --- WAHA: its API is not media, its key stays home -------------------------------------------


def waha_on(media_host: MediaHost, **overrides: Any) -> WahaChannel:
    return WahaChannel(waha_config(make_settings(waha_url=media_host.origin, **overrides)))


async def test_waha_files_are_fetched_with_the_key(media_host: MediaHost) -> None:
    # WAHA names its files on its own default address; read as "our WAHA".
    url = "http://localhost:3000/api/files/default/false_5511999999999@c.us_3EB0.oga"
    async with aiohttp.ClientSession() as session:
        assert await waha_on(media_host).fetch_media(session, url, max_bytes=1000) == AUDIO
    assert [(s.path_qs, s.api_key) for s in media_host.seen] == [
        ("/api/files/default/false_5511999999999@c.us_3EB0.oga", API_KEY)
    ]


@pytest.mark.parametrize(
    "url",
    [
        # WAHA's default address, but its API: GET /api/sendText sends a message.
        "http://localhost:3000/api/sendText?session=default&chatId=5511988887777@c.us&text=Pix+aqui",
        "{origin}/api/sendText?session=default&chatId=5511988887777@c.us&text=Pix+aqui",
        "{origin}/api/files/../sendText?session=default&chatId=5511988887777@c.us&text=Pix+aqui",
        "{origin}/api/files/moved/a.oga?to=/api/sendText%3FchatId%3D5511988887777%40c.us%26text%3DPix",
    ],
    ids=["loopback-rewrite", "waha-origin", "dot-segments", "redirect"],
)
async def test_a_media_url_cannot_reach_wahas_api(media_host: MediaHost, url: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as exc_info:
            await waha_on(media_host).fetch_media(
                session, url.format(origin=media_host.origin), max_bytes=1000
            )
    assert exc_info.value.retryable is False
    assert not any(s.path_qs.startswith("/api/sendText") for s in media_host.seen)


async def test_the_waha_key_is_not_sent_after_a_redirect_elsewhere(media_host: MediaHost) -> None:
    # Both origins are the same loopback server, so it sees what each hop carried.
    other = f"http://localhost:{media_host.port}"
    channel = waha_on(media_host, media_trusted_origins=[other])
    url = f"{media_host.origin}/api/files/moved/a.oga?to={other}/store/a.oga"
    async with aiohttp.ClientSession() as session:
        assert await channel.fetch_media(session, url, max_bytes=1000) == AUDIO
    assert [(s.path_qs.split("?")[0], s.api_key) for s in media_host.seen] == [
        ("/api/files/moved/a.oga", API_KEY),
        ("/store/a.oga", None),
    ]


async def test_the_waha_key_does_not_come_back_after_leaving(media_host: MediaHost) -> None:
    other = f"http://localhost:{media_host.port}"
    channel = waha_on(media_host, media_trusted_origins=[other])
    back = f"{media_host.origin}/api/files/a.oga"
    url = f"{media_host.origin}/api/files/moved/a.oga?to={other}/redirect?to={back}"
    async with aiohttp.ClientSession() as session:
        assert await channel.fetch_media(session, url, max_bytes=1000) == AUDIO
    assert [s.api_key for s in media_host.seen] == [API_KEY, None, None]
    assert media_host.seen[-1].path_qs == "/api/files/a.oga"


async def test_trusting_wahas_origin_explicitly_does_not_open_its_api(media_host: MediaHost) -> None:
    channel = waha_on(media_host, media_trusted_origins=[media_host.origin])
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError):
            await channel.fetch_media(session, f"{media_host.origin}/api/sendText?text=oi", max_bytes=1000)
    assert media_host.seen == []


@pytest.mark.parametrize("entry", ["waha:3000", "http://minio:9000/bucket", "ftp://files.example.com", "*"])
async def test_a_malformed_trusted_origin_trusts_nothing(entry: str) -> None:
    channel = ZapiChannel(zapi_config(make_settings(media_trusted_origins=[entry])))
    with aioresponses() as mocked:
        mocked.get(re.compile(r".*"), body=b"x", repeat=True)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError):
                await channel.fetch_media(session, "http://minio:9000/bucket/a.ogg", max_bytes=1000)
        assert not mocked.requests


# --- the app: a refused URL is answered, never retried; media has its own slots -------------------


async def test_a_forged_image_url_gets_an_answer_without_being_fetched(
    bot: TestClient, http_mock: aioresponses, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/bot"
    payload = zapi_message("received_image.json")
    payload["image"]["imageUrl"] = metadata
    http_mock.get(metadata, body=b'{"AccessKeyId": "AKIA-secret"}', content_type="image/jpeg")
    openai_fake.then(reply="Não consegui abrir a imagem, pode me contar o que ela mostra?")

    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200
    await settled(bot)

    assert not [key for key in http_mock.requests if key[1].host == "169.254.169.254"]
    assert openai_fake.chat_calls == 1
    [content] = openai_fake.user_contents()
    assert isinstance(content, str)  # no image part: nothing from that address reached the model
    assert zapi_fake.texts_to(payload["phone"]) == [
        "Não consegui abrir a imagem, pode me contar o que ela mostra?"
    ]
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        assert db.execute("SELECT status FROM inbound").fetchall() == [("done",)]


async def test_media_work_holds_its_own_small_set_of_slots_through_the_transcription() -> None:
    """32 turns with voice notes at once: only MEDIA_MAX_CONCURRENCY of them download and
    transcribe at a time (a slot is held until Whisper answers), not one per turn slot."""
    from agent.graph import AgentDeps, TurnInput, perceive
    from agent.prompts import load_prompt_bundle
    from agent.scoring import load_scoring_rules
    from core.lead import LeadProfile

    busy = {"now": 0, "peak": 0}
    release = asyncio.Event()

    async def fetch(message: InboundMessage) -> bytes:
        busy["now"] += 1
        busy["peak"] = max(busy["peak"], busy["now"])
        return b"OggS" + message.provider_message_id.encode()

    class Whisper:
        def retry_policy(self) -> AsyncRetrying:  # the turn's retries: one attempt is enough here
            return AsyncRetrying(stop=stop_after_attempt(1), reraise=True)

        async def transcribe(self, audio: bytes, *, filename: str, mime: str) -> str:
            await release.wait()  # the body is still held while Whisper listens
            busy["now"] -= 1
            return "transcrição"

    deps = AgentDeps(
        llm=Whisper(),  # type: ignore[arg-type]
        fetch_media=fetch,
        prompts=load_prompt_bundle(),
        rules=load_scoring_rules(),
        media_slots=asyncio.Semaphore(2),
    )
    turns = [
        TurnInput(
            contact_key=f"whatsapp:55449999900{n:02d}",
            inbound=[
                InboundMessage(
                    channel="zapi",
                    contact_id=f"55449999900{n:02d}",
                    provider_message_id=f"3EB0MEDIA{n:04d}",
                    kind=MessageKind.AUDIO,
                    media_url=f"https://storage.z-api.io/{n}.ogg",
                )
            ],
            profile=LeadProfile(),
            history=[],
            lead_message_count=0,
            now=datetime(2026, 12, 2, 13, 30, tzinfo=UTC),
        )
        for n in range(32)
    ]
    tasks = [asyncio.create_task(perceive(deps, turn)) for turn in turns]
    for _ in range(10):  # let every task run as far as it can
        await asyncio.sleep(0)
    assert busy["now"] == 2  # two held through their transcription, thirty waiting
    release.set()
    results = await asyncio.gather(*tasks)
    assert busy["peak"] == 2
    assert all("transcrição" in texts[0] for texts, _images in results)

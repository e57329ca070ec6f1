"""The channel contract: what the runtime relies on from every adapter.

Every test here talks to an adapter only through what `channels/base.py` promises
(`authenticate`, `parse`, `send_text`, `fetch_media`) and the typed errors of
core/errors.py, so the same suite proves Z-API, WAHA, the WhatsApp Cloud API, Instagram
and, where it applies, the terminal channel. What is particular to one provider (its
payload quirks, its error codes, its URLs) stays in that provider's own test file.

Each adapter is described once by a `Case`: how to build it, how its provider proves a
webhook, which documented fixture carries each kind of message, where it sends, and
which answer means "this recipient cannot receive".
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from aioresponses import aioresponses
from yarl import URL

from channels import base
from channels.base import Channel
from channels.cli import CliChannel
from channels.errors import MediaTooLarge
from channels.instagram import InstagramChannel
from channels.waha import WahaChannel
from channels.whatsapp_cloud import WhatsAppCloudChannel
from channels.zapi import ZapiChannel
from core.errors import (
    AuthFailed,
    InvalidRecipient,
    Permanent,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    Retryable,
    WebhookRejected,
)
from core.models import MessageKind
from core.settings import Settings
from web.configs.channels import instagram_config, waha_config, whatsapp_cloud_config, zapi_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GRAPH = "https://graph.facebook.com"
VERSION = "v21.0"
META_SECRET = "app-secret-CONTRACT-0a1b2c3d"

Headers = dict[str, str]


def load(name: str) -> Any:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data.pop("_source", None)
        data.pop("_http_status", None)
    return data


def hex_hmac(secret: str, body: bytes, digest: Callable[..., Any]) -> str:
    return hmac.new(secret.encode(), body, digest).hexdigest()


@dataclass(frozen=True)
class Case:
    name: str
    settings: dict[str, Any]
    build: Callable[[Settings], Channel]
    # The webhook secret: its setting, and how a request proves it for a body.
    secret_setting: str
    secret: str
    prove: Callable[[str, bytes], tuple[str, Headers]]
    forged_status: int  # what a proof made with another secret gets
    signs_body: bool  # whether the proof covers the body (a signature, not a token)
    unset_status: int  # what every request gets while the secret is not set
    kinds: list[tuple[str, MessageKind]]
    send_url: str
    contact: str
    sent_body: Any
    sent_id: str
    unconfigured: dict[str, Any]
    invalid_recipient: tuple[int, Any]
    secrets: list[str]  # what we send the provider, which its errors may echo
    error_detail_max: int
    retry_after: bool = False  # whether a 429's Retry-After reaches the error
    courtesy: list[str] = field(default_factory=list)  # calls made before the send
    media_url: str | None = None  # a media URL a webhook could carry
    media_target: str | None = None  # where the adapter really fetches it
    media_auth_statuses: tuple[int, ...] = ()

    def channel(self, **overrides: Any) -> Channel:
        values = {"_env_file": None, "http_timeout_s": 7.5, **self.settings, **overrides}
        return self.build(Settings(**values))

    def __str__(self) -> str:
        return self.name


# --- the adapters --------------------------------------------------------------------

ZAPI_TOKEN = "inst-tok-CONTRACT-9f8e7d"
ZAPI_CLIENT = "client-tok-CONTRACT-1a2b3c"
ZAPI_SEND = f"https://api.z-api.io/instances/3C0FFEE1234INSTANCE/token/{ZAPI_TOKEN}/send-text"
WAHA_URL = "http://waha:3000"
WAHA_KEY = "waha-key-CONTRACT-7f6e5d4c"
WAHA_FILE = "/api/files/default/false_5511999999999@c.us_3EB0A1B2C3D4E5F60002.oga"
WA_TOKEN = "EAAG-CONTRACT-token-9f8e7d6c5b4a"
WA_PHONE_ID = "106540352242922"
IG_TOKEN = "IGAA-CONTRACT-token-9f8e7d6c5b4a"
IG_MEDIA = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1090385762178001&signature=AbxVq9Jk3mT0yR2pL7sN1cQe"


def zapi_proof(secret: str, body: bytes) -> tuple[str, Headers]:
    return f"/webhooks/zapi?token={secret}", {}


def waha_proof(secret: str, body: bytes) -> tuple[str, Headers]:
    return "/webhooks/waha", {"X-Webhook-Hmac": hex_hmac(secret, body, hashlib.sha512)}


def meta_proof(secret: str, body: bytes) -> tuple[str, Headers]:
    return "/webhooks/meta", {"X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body, hashlib.sha256)}


ZAPI = Case(
    name="zapi",
    settings={
        "zapi_instance_id": "3C0FFEE1234INSTANCE",
        "zapi_instance_token": ZAPI_TOKEN,
        "zapi_client_token": ZAPI_CLIENT,
        "zapi_webhook_secret": "hook-secret-CONTRACT-123",
    },
    build=lambda settings: ZapiChannel(zapi_config(settings)),
    secret_setting="ZAPI_WEBHOOK_SECRET",
    secret="hook-secret-CONTRACT-123",
    prove=zapi_proof,
    forged_status=401,
    signs_body=False,
    unset_status=403,
    kinds=[
        ("zapi/received_text.json", MessageKind.TEXT),
        ("zapi/received_audio_ptt.json", MessageKind.AUDIO),
        ("zapi/received_image.json", MessageKind.IMAGE),
        ("zapi/received_video.json", MessageKind.VIDEO),
        ("zapi/received_document.json", MessageKind.DOCUMENT),
        ("zapi/received_sticker.json", MessageKind.STICKER),
        ("zapi/received_location.json", MessageKind.LOCATION),
        ("zapi/received_contact.json", MessageKind.CONTACT),
        ("zapi/received_button_reply.json", MessageKind.BUTTON_REPLY),
        ("zapi/received_list_reply.json", MessageKind.LIST_REPLY),
        ("zapi/received_reaction.json", MessageKind.REACTION),
    ],
    send_url=ZAPI_SEND,
    contact="5544999999999",
    sent_body=load("zapi/send_text_response.json"),
    sent_id="D241XXXX732339502B68",
    unconfigured={"zapi_instance_token": None},
    # Z-API answers 400 for numbers that are not on WhatsApp.
    invalid_recipient=(400, {"error": "phone 5544999999999 does not exist on WhatsApp"}),
    secrets=[ZAPI_TOKEN, ZAPI_CLIENT],
    error_detail_max=300,
    retry_after=True,
    media_url="https://example.com/zapi-media/3EB0A1B2C3D4E5F60002.ogg",
)

WAHA = Case(
    name="waha",
    settings={
        "waha_url": WAHA_URL,
        "waha_api_key": WAHA_KEY,
        "waha_webhook_hmac_key": "hmac-CONTRACT-0a9b8c",
    },
    build=lambda settings: WahaChannel(waha_config(settings)),
    secret_setting="WAHA_WEBHOOK_HMAC_KEY",
    secret="hmac-CONTRACT-0a9b8c",
    prove=waha_proof,
    forged_status=403,
    signs_body=True,
    unset_status=403,
    kinds=[
        ("waha/message_text.json", MessageKind.TEXT),
        ("waha/message_voice.json", MessageKind.AUDIO),
        ("waha/message_image.json", MessageKind.IMAGE),
        ("waha/message_video.json", MessageKind.VIDEO),
        ("waha/message_document.json", MessageKind.DOCUMENT),
        ("waha/message_location.json", MessageKind.LOCATION),
        ("waha/message_vcard.json", MessageKind.CONTACT),
        ("waha/message_button_reply.json", MessageKind.BUTTON_REPLY),
        ("waha/message_list_reply.json", MessageKind.LIST_REPLY),
    ],
    send_url=f"{WAHA_URL}/api/sendText",
    contact="5511999999999",
    sent_body=load("waha/send_text_response_gows.json"),
    sent_id="true_5511999999999@c.us_3EB0C0FFEE0123456789",
    unconfigured={"waha_url": None},
    # WEBJS reports a chat id that is not on WhatsApp as a 500.
    invalid_recipient=(500, {"statusCode": 500, "exception": {"message": "wid error: invalid wid"}}),
    secrets=[WAHA_KEY, "hmac-CONTRACT-0a9b8c"],
    error_detail_max=300,
    retry_after=True,
    courtesy=[f"{WAHA_URL}/api/sendSeen"],
    # WAHA names its own files by its own idea of its address (localhost); they are
    # fetched from WAHA_URL with the API key, which nothing else ever gets.
    media_url=f"http://localhost:3000{WAHA_FILE}",
    media_target=f"{WAHA_URL}{WAHA_FILE}",
    media_auth_statuses=(401, 403),
)

CLOUD = Case(
    name="whatsapp_cloud",
    settings={
        "meta_graph_url": GRAPH,
        "meta_graph_version": VERSION,
        "meta_app_secret": META_SECRET,
        "whatsapp_phone_number_id": WA_PHONE_ID,
        "whatsapp_access_token": WA_TOKEN,
    },
    build=lambda settings: WhatsAppCloudChannel(whatsapp_cloud_config(settings)),
    secret_setting="META_APP_SECRET",
    secret=META_SECRET,
    prove=meta_proof,
    forged_status=403,
    signs_body=True,
    unset_status=401,
    kinds=[
        ("whatsapp_cloud/text.json", MessageKind.TEXT),
        ("whatsapp_cloud/audio_voice.json", MessageKind.AUDIO),
        ("whatsapp_cloud/image.json", MessageKind.IMAGE),
        ("whatsapp_cloud/video.json", MessageKind.VIDEO),
        ("whatsapp_cloud/document.json", MessageKind.DOCUMENT),
        ("whatsapp_cloud/sticker.json", MessageKind.STICKER),
        ("whatsapp_cloud/location.json", MessageKind.LOCATION),
        ("whatsapp_cloud/contacts.json", MessageKind.CONTACT),
        ("whatsapp_cloud/button.json", MessageKind.BUTTON_REPLY),
        ("whatsapp_cloud/interactive_button_reply.json", MessageKind.BUTTON_REPLY),
        ("whatsapp_cloud/interactive_list_reply.json", MessageKind.LIST_REPLY),
        ("whatsapp_cloud/reaction.json", MessageKind.REACTION),
    ],
    send_url=f"{GRAPH}/{VERSION}/{WA_PHONE_ID}/messages",
    contact="5511987654321",
    sent_body=load("whatsapp_cloud/send_text_response.json"),
    sent_id="wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjI4NkY0N0JGQkQ5RjQxMTJGMQA=",
    unconfigured={"whatsapp_access_token": None},
    invalid_recipient=(400, load("whatsapp_cloud/error_131026.json")),
    secrets=[WA_TOKEN, META_SECRET],
    error_detail_max=450,
)

INSTAGRAM = Case(
    name="instagram",
    settings={
        "meta_graph_url": GRAPH,
        "meta_graph_version": VERSION,
        "meta_app_secret": META_SECRET,
        "instagram_account_id": "17841400008460056",
        "instagram_access_token": IG_TOKEN,
    },
    build=lambda settings: InstagramChannel(instagram_config(settings)),
    secret_setting="META_APP_SECRET",
    secret=META_SECRET,
    prove=meta_proof,
    forged_status=403,
    signs_body=True,
    unset_status=401,
    kinds=[
        ("instagram/message_text.json", MessageKind.TEXT),
        ("instagram/message_audio.json", MessageKind.AUDIO),
        ("instagram/message_image.json", MessageKind.IMAGE),
        ("instagram/message_video.json", MessageKind.VIDEO),
        ("instagram/message_file.json", MessageKind.DOCUMENT),
        ("instagram/message_quick_reply.json", MessageKind.BUTTON_REPLY),
        ("instagram/messaging_postback.json", MessageKind.BUTTON_REPLY),
        ("instagram/message_share_post.json", MessageKind.OTHER),
    ],
    send_url=f"{GRAPH}/{VERSION}/me/messages",
    contact="1254459154682919",
    sent_body=load("instagram/send_text_response.json"),
    sent_id="aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDA4NDYwMDU2OjM0MDI4MjM2Njg0MTcxMDMwMT0700",
    unconfigured={"instagram_access_token": None},
    invalid_recipient=(400, load("instagram/error_user_unavailable.json")),
    secrets=[IG_TOKEN],
    error_detail_max=300,
    media_url=IG_MEDIA,
)

CASES = [ZAPI, WAHA, CLOUD, INSTAGRAM]
SIGNED = [case for case in CASES if case.signs_body]
MEDIA = [case for case in CASES if case.media_url is not None]
KINDS = [
    pytest.param(case, fixture, kind, id=f"{case.name}-{Path(fixture).stem}")
    for case in CASES
    for fixture, kind in case.kinds
]


def raw_body(case: Case) -> bytes:
    return json.dumps(load(case.kinds[0][0]), ensure_ascii=False).encode("utf-8")


def request(path: str, headers: Headers | None = None) -> Any:
    return make_mocked_request("POST", path, headers=headers or {})


# --- verify --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_providers_proof_is_accepted(case: Case) -> None:
    body = raw_body(case)
    path, headers = case.prove(case.secret, body)
    channel = case.channel()
    assert channel.missing_webhook_secret is None
    channel.authenticate(request(path, headers), body)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_proof_made_with_another_secret_is_refused(case: Case) -> None:
    body = raw_body(case)
    path, headers = case.prove("not-the-secret", body)
    with pytest.raises(WebhookRejected) as refused:
        case.channel().authenticate(request(path, headers), body)
    assert refused.value.status == case.forged_status
    assert case.secret not in refused.value.message


@pytest.mark.parametrize("case", [*CASES, None], ids=lambda c: str(c or "cli"))
def test_a_request_without_proof_is_refused_with_401(case: Case | None) -> None:
    channel = case.channel() if case is not None else CliChannel()
    with pytest.raises(WebhookRejected) as refused:
        channel.authenticate(request("/webhooks/any"), b"{}")
    assert refused.value.status == 401


@pytest.mark.parametrize("case", SIGNED, ids=str)
def test_a_signed_body_altered_by_one_byte_is_refused(case: Case) -> None:
    body = raw_body(case)
    path, headers = case.prove(case.secret, body)
    altered = bytearray(body)
    altered[len(body) // 2] ^= 0x01
    with pytest.raises(WebhookRejected) as refused:
        case.channel().authenticate(request(path, headers), bytes(altered))
    assert refused.value.status == 403


@pytest.mark.parametrize("case", CASES, ids=str)
def test_without_its_secret_a_channel_refuses_every_webhook(case: Case) -> None:
    """Closed by default: an unauthenticated route would let anyone drive the bot."""
    channel = case.channel(**{case.secret_setting.lower(): None})
    assert channel.missing_webhook_secret == case.secret_setting
    body = raw_body(case)
    path, headers = case.prove(case.secret, body)
    with pytest.raises(WebhookRejected) as refused:
        channel.authenticate(request(path, headers), body)
    assert refused.value.status == case.unset_status


# --- parse ---------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "fixture", "kind"), KINDS)
def test_each_documented_kind_becomes_one_message(case: Case, fixture: str, kind: MessageKind) -> None:
    result = case.channel().parse(load(fixture))
    assert result.ignored == [] and result.statuses == []
    [message] = result.messages
    assert message.channel == case.name and message.kind is kind
    assert message.contact_id and message.provider_message_id
    assert message.from_me is False and message.is_group is False


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("payload", [[], "text", 42, None])
def test_a_body_that_is_not_an_object_is_a_400(case: Case, payload: object) -> None:
    with pytest.raises(WebhookRejected) as refused:
        case.channel().parse(payload)
    assert refused.value.status == 400


def test_the_cli_channel_parses_no_webhook() -> None:
    with pytest.raises(WebhookRejected) as refused:
        CliChannel().parse({"type": "ReceivedCallback"})
    assert refused.value.status == 400


# --- send ----------------------------------------------------------------------------


async def send(case: Case, mocked: aioresponses, channel: Channel | None = None) -> Any:
    for url in case.courtesy:
        mocked.post(url, status=201)
    async with aiohttp.ClientSession() as session:
        return await (channel or case.channel()).send_text(session, case.contact, "oi", typing_s=0)


async def refusal(case: Case, status: int, body: Any, headers: Headers | None = None) -> Any:
    with aioresponses() as mocked:
        if isinstance(body, str):
            mocked.post(case.send_url, status=status, body=body, headers=headers)
        else:
            mocked.post(case.send_url, status=status, payload=body, headers=headers)
        with pytest.raises(ProviderError) as raised:
            await send(case, mocked)
    return raised.value


def assert_flags_follow_the_type(err: Any) -> None:
    """The legacy flags the runtime still reads say what the type says."""
    assert err.retryable is isinstance(err, Retryable)
    assert err.auth_failed is isinstance(err, AuthFailed)
    assert err.invalid_recipient is isinstance(err, InvalidRecipient)


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_send_text_returns_the_providers_id(case: Case) -> None:
    with aioresponses() as mocked:
        mocked.post(case.send_url, payload=case.sent_body)
        sent = await send(case, mocked)
        [call] = mocked.requests[("POST", URL(case.send_url))]
    assert sent.provider_message_id == case.sent_id
    assert call.kwargs["timeout"].total == 7.5


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("body", ["", "ok"])
@pytest.mark.parametrize("status", [200, 201])
async def test_a_2xx_without_an_id_is_success_without_id(case: Case, body: str, status: int) -> None:
    """Accepted but unidentified: a resend would duplicate the message."""
    with aioresponses() as mocked:
        mocked.post(case.send_url, status=status, body=body, content_type="text/plain")
        sent = await send(case, mocked)
    assert sent.provider_message_id is None


async def test_the_cli_channel_writes_the_reply_and_names_it() -> None:
    out = io.StringIO()
    async with aiohttp.ClientSession() as session:
        sent = await CliChannel(out).send_text(session, "seller", "oi", typing_s=3)
    assert out.getvalue() == "bot> oi\n"
    assert sent.provider_message_id and sent.provider_message_id.startswith("cli-")


# --- error mapping -------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_auth_failed(case: Case, status: int) -> None:
    err = await refusal(case, status, "")
    assert isinstance(err, AuthFailed) and isinstance(err, Permanent)
    assert err.status == status and f"HTTP {status}" in str(err)
    assert_flags_follow_the_type(err)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize(
    ("status", "body"),
    [(429, ""), (500, {"error": "internal"}), (502, "<html>Bad Gateway</html>"), (503, "")],
)
async def test_throttling_and_server_trouble_are_retryable(case: Case, status: int, body: Any) -> None:
    err = await refusal(case, status, body)
    assert isinstance(err, ProviderUnavailable) and isinstance(err, Retryable)
    assert err.status == status and str(status) in str(err)
    assert_flags_follow_the_type(err)


@pytest.mark.parametrize("case", [c for c in CASES if c.retry_after], ids=str)
async def test_a_429_says_how_long_to_wait_when_the_provider_does(case: Case) -> None:
    err = await refusal(case, 429, "", headers={"Retry-After": "7"})
    assert isinstance(err, ProviderUnavailable) and err.retry_after == 7.0
    err = await refusal(case, 429, "", headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})
    assert isinstance(err, ProviderUnavailable) and err.retry_after is None


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_recipient_that_cannot_receive_is_invalid_recipient(case: Case) -> None:
    status, body = case.invalid_recipient
    err = await refusal(case, status, body)
    assert isinstance(err, InvalidRecipient) and isinstance(err, Permanent)
    assert_flags_follow_the_type(err)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize(("status", "body"), [(400, "bad request"), (404, ""), (422, {"message": "no"})])
async def test_other_client_errors_are_permanent(case: Case, status: int, body: Any) -> None:
    err = await refusal(case, status, body)
    assert isinstance(err, ProviderRejected) and not isinstance(err, Retryable)
    assert not isinstance(err, AuthFailed | InvalidRecipient)
    assert err.status == status
    assert_flags_follow_the_type(err)


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_error_texts_carry_no_secret_and_stay_short(case: Case) -> None:
    echo = " ".join(case.secrets) + " " + "x" * 5000
    for status in (400, 401, 500):
        err = await refusal(case, status, {"error": {"message": echo}, "message": echo})
        text = str(err)
        assert all(secret not in text for secret in case.secrets)
        assert len(text) < case.error_detail_max


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize(
    "make_exception",
    [
        lambda url, secret: TimeoutError(),
        lambda url, secret: aiohttp.ServerTimeoutError("timeout"),
        lambda url, secret: aiohttp.ClientConnectionError(f"cannot connect to {url} with {secret}"),
        lambda url, secret: aiohttp.ServerDisconnectedError(),
    ],
    ids=["timeout", "server-timeout", "connection", "disconnected"],
)
async def test_transport_failures_are_retryable_and_say_nothing_secret(
    case: Case, make_exception: Callable[[str, str], Exception]
) -> None:
    with aioresponses() as mocked:
        mocked.post(case.send_url, exception=make_exception(case.send_url, case.secrets[0]))
        with pytest.raises(ProviderError) as raised:
            await send(case, mocked)
    err = raised.value
    assert isinstance(err, ProviderUnavailable) and err.status is None
    assert_flags_follow_the_type(err)
    assert all(secret not in str(err) for secret in case.secrets)
    assert err.__suppress_context__ is True  # the URL- or token-bearing cause is not chained


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_an_unconfigured_channel_refuses_to_send_without_asking(case: Case) -> None:
    channel = case.channel(**case.unconfigured)
    assert channel.configured is False
    with aioresponses() as mocked:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ProviderError) as raised:
                await channel.send_text(session, case.contact, "oi", typing_s=1)
        assert mocked.requests == {}
    assert isinstance(raised.value, Permanent) and not isinstance(raised.value, Retryable)
    assert_flags_follow_the_type(raised.value)


async def test_a_broken_terminal_is_permanent() -> None:
    out = io.StringIO()
    out.close()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as raised:
            await CliChannel(out).send_text(session, "seller", "oi", typing_s=0)
    assert isinstance(raised.value, Permanent)
    assert_flags_follow_the_type(raised.value)


# --- media ---------------------------------------------------------------------------


async def fetch(case: Case, *, max_bytes: int, url: str | None = None) -> bytes:
    async with aiohttp.ClientSession() as session:
        return await case.channel().fetch_media(
            session, url if url is not None else str(case.media_url), max_bytes=max_bytes
        )


def media_target(case: Case) -> str:
    return case.media_target or str(case.media_url)


@pytest.mark.parametrize("case", MEDIA, ids=str)
async def test_media_exactly_at_the_limit_is_fetched(case: Case) -> None:
    with aioresponses() as mocked:
        mocked.get(media_target(case), body=b"a" * 100)
        assert len(await fetch(case, max_bytes=100)) == 100


@pytest.mark.parametrize("case", MEDIA, ids=str)
async def test_media_declared_too_large_is_refused_for_good(case: Case) -> None:
    with aioresponses() as mocked:
        mocked.get(media_target(case), body=b"a" * 10, headers={"Content-Length": "999999"})
        with pytest.raises(MediaTooLarge) as raised:
            await fetch(case, max_bytes=1000)
    assert isinstance(raised.value, ProviderError) and isinstance(raised.value, Permanent)
    assert raised.value.retryable is False


@pytest.mark.parametrize("case", MEDIA, ids=str)
@pytest.mark.parametrize("headers", [{"Content-Length": "10"}, {}], ids=["lying-length", "no-length"])
async def test_media_is_counted_while_it_streams(case: Case, headers: Headers) -> None:
    """No (or a lying) Content-Length must not let a huge body through."""
    with aioresponses() as mocked:
        mocked.get(media_target(case), body=b"a" * 300_000, headers=headers)
        with pytest.raises(MediaTooLarge):
            await fetch(case, max_bytes=100_000)


@pytest.mark.parametrize("case", MEDIA, ids=str)
@pytest.mark.parametrize("status", [500, 503, 429, 404, 401, 403])
async def test_media_http_errors(case: Case, status: int) -> None:
    with aioresponses() as mocked:
        mocked.get(media_target(case), status=status, body="nope")
        with pytest.raises(ProviderError) as raised:
            await fetch(case, max_bytes=1000)
    err = raised.value
    assert err.status == status
    assert err.retryable is (status >= 429 and status != 404)
    assert err.auth_failed is (status in case.media_auth_statuses)
    assert_flags_follow_the_type(err)
    assert all(secret not in str(err) for secret in case.secrets)


@pytest.mark.parametrize("case", MEDIA, ids=str)
@pytest.mark.parametrize(
    "exception", [TimeoutError(), aiohttp.ClientConnectionError()], ids=["timeout", "connection"]
)
async def test_media_transport_failures_are_retryable(case: Case, exception: Exception) -> None:
    with aioresponses() as mocked:
        mocked.get(media_target(case), exception=exception)
        with pytest.raises(ProviderError) as raised:
            await fetch(case, max_bytes=1000)
    assert isinstance(raised.value, ProviderUnavailable) and raised.value.retryable is True


@pytest.mark.parametrize("case", [*MEDIA, CLOUD], ids=str)
@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.ogg", "not a url", ""])
async def test_media_urls_that_are_not_http_are_refused_for_good(case: Case, url: str) -> None:
    with pytest.raises(ProviderError) as raised:
        await fetch(case, max_bytes=1000, url=url)
    assert isinstance(raised.value, Permanent) and raised.value.retryable is False


# --- optional capabilities -----------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "capabilities"),
    [
        (ZAPI, {"probe", "media"}),
        (WAHA, {"probe", "media"}),
        (CLOUD, {"probe", "templates", "read_receipts", "media"}),
        (INSTAGRAM, {"probe", "profile_lookup", "media"}),
        (None, set()),
    ],
    ids=lambda c: str(c) if isinstance(c, Case) else ("cli" if c is None else ""),
)
def test_optional_capabilities_are_found_by_protocol_not_by_name(
    case: Case | None, capabilities: set[str]
) -> None:
    channel = case.channel() if case is not None else CliChannel()
    found = {
        name
        for name, lookup in (
            ("probe", base.prober),
            ("templates", base.templates),
            ("read_receipts", base.read_receipts),
            ("profile_lookup", base.profile_lookup),
            ("media", base.media_sender),
        )
        if lookup(channel) is channel
    }
    assert found == capabilities

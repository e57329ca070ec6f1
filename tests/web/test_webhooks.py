"""The Z-API webhook as a provider and an attacker see it: authentication, bad bodies,
size limits, an unavailable store, duplicates, request ids and wrong methods.

Everything is observed from the outside: HTTP status and JSON body, what landed in the
SQLite `inbound` table, whether OpenAI was called and whether the lead got a reply.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.errors import StoreUnavailable
from tests.conftest import fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from tests.web.support import LEAD_PHONE, WEBHOOK_SECRET, error_body, inbound_count, rows
from web.app import create_app
from web.keys import SETTINGS, STORE

WEBHOOK_PATHS = ["/webhooks/zapi", "/webhook/text", "/webhook/audio"]
JSON_HEADERS = {"Content-Type": "application/json"}

CONTENT_FIXTURES = [
    "received_text.json",
    "received_text_from_ad.json",
    "received_audio_ptt.json",
    "received_image.json",
    "received_document.json",
    "received_video.json",
    "received_sticker.json",
    "received_location.json",
    "received_contact.json",
    "received_button_reply.json",
    "received_list_reply.json",
    "received_reaction.json",
]
CONTENT_BLOCKS = {
    "received_text.json": "text",
    "received_text_from_ad.json": "externalAdReply",
    "received_audio_ptt.json": "audio",
    "received_image.json": "image",
    "received_document.json": "document",
    "received_video.json": "video",
    "received_sticker.json": "sticker",
    "received_location.json": "location",
    "received_contact.json": "contact",
    "received_button_reply.json": "buttonsResponseMessage",
    "received_list_reply.json": "listResponseMessage",
    "received_reaction.json": "reaction",
}


async def answered_once(client: TestClient, zapi_fake: FakeZapi, message_id: str, **kw: Any) -> None:
    """A valid lead message is accepted and exactly one reply reaches the lead."""
    before = len(zapi_fake.sent)
    response = await client.post("/webhooks/zapi", json=zapi_message(message_id=message_id, text="Oi"), **kw)
    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == 1
    await settled(client)
    assert [sent["phone"] for sent in zapi_fake.sent[before:]] == [LEAD_PHONE]


# --- authentication -------------------------------------------------------------------


@pytest.fixture
async def guarded(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> TestClient:
    """A bot with ZAPI_WEBHOOK_SECRET set."""
    return await aiohttp_client(
        create_app(fast_settings(tmp_path, zapi_webhook_secret=WEBHOOK_SECRET), clock=clock)
    )


BAD_CREDENTIALS: dict[str, dict[str, Any]] = {
    "no_token": {},
    "empty_query_token": {"params": {"token": ""}},
    "wrong_token_same_length": {"params": {"token": "x" * len(WEBHOOK_SECRET)}},
    "wrong_token_shorter": {"params": {"token": WEBHOOK_SECRET[:-1]}},
    "wrong_token_longer": {"params": {"token": WEBHOOK_SECRET + "0"}},
    "prefix_only": {"params": {"token": WEBHOOK_SECRET[:4]}},
    "different_case": {"params": {"token": WEBHOOK_SECRET.upper()}},
    "non_ascii_token": {"params": {"token": "çãõ-" + WEBHOOK_SECRET}},
    "token_under_other_query_name": {"params": {"secret": WEBHOOK_SECRET}},
    "wrong_header": {"headers": {"X-Webhook-Token": "nope"}},
    "bearer_wrong": {"headers": {"Authorization": "Bearer nope"}},
    "basic_scheme_with_secret": {"headers": {"Authorization": f"Basic {WEBHOOK_SECRET}"}},
    "secret_in_client_token_header": {"headers": {"Client-Token": WEBHOOK_SECRET}},
}


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
async def test_requests_without_the_right_token_get_401_and_change_nothing(
    guarded: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, case: str, path: str
) -> None:
    response = await guarded.post(
        path, json=zapi_message(message_id=f"3EB0UNAUTH{case}"), **BAD_CREDENTIALS[case]
    )
    assert response.status == 401
    body = await error_body(response)
    assert WEBHOOK_SECRET not in json.dumps(body)

    await settled(guarded)  # anything wrongly accepted would have had its turn by now
    assert inbound_count(guarded) == 0
    assert openai_fake.calls_started == 0
    assert zapi_fake.attempts == 0


async def test_authentication_comes_before_parsing(guarded: TestClient) -> None:
    """An unauthenticated caller learns nothing about what the parser accepts."""
    for body in (b"not json", b"[]", b"", json.dumps({"type": "ReceivedCallback"}).encode()):
        response = await guarded.post("/webhooks/zapi", data=body, headers=JSON_HEADERS)
        assert response.status == 401, body
        await error_body(response)
    assert inbound_count(guarded) == 0


@pytest.mark.parametrize(
    "credentials",
    [
        {"params": {"token": WEBHOOK_SECRET}},
        {"headers": {"X-Webhook-Token": WEBHOOK_SECRET}},
        {"headers": {"Authorization": f"Bearer {WEBHOOK_SECRET}"}},
        # A proxy that adds the header must not be defeated by a stale query token.
        {"params": {"token": "stale"}, "headers": {"X-Webhook-Token": WEBHOOK_SECRET}},
    ],
    ids=["query", "x_webhook_token", "bearer", "wrong_query_right_header"],
)
async def test_the_right_token_is_accepted_and_the_lead_is_answered(
    guarded: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, credentials: dict[str, Any]
) -> None:
    await answered_once(guarded, zapi_fake, "3EB0AUTHOK0000001", **credentials)
    assert rows(guarded, "SELECT status FROM inbound") == [("done",)]
    assert openai_fake.chat_calls == 1


async def test_without_a_configured_secret_no_token_is_needed(bot: TestClient, zapi_fake: FakeZapi) -> None:
    await answered_once(bot, zapi_fake, "3EB0NOSECRET00001")


# --- malformed bodies -----------------------------------------------------------------


def _fixture_bytes(name: str = "received_text.json") -> bytes:
    return json.dumps(zapi_message(name), ensure_ascii=False).encode()


def _not_json() -> list[bytes]:
    return [
        b"hello",
        b"type=ReceivedCallback&phone=5544999999999&messageId=1",
        b"<xml><type>ReceivedCallback</type></xml>",
        b"{'type': 'ReceivedCallback', 'messageId': 'x', 'phone': '5544999999999'}",
        b"{type: ReceivedCallback}",
        b'{"type": "ReceivedCallback",}',
        b'{"type": "ReceivedCallback"}{"type": "ReceivedCallback"}',
        b'{"type": "ReceivedCallback"} trailing',
        b"type: ReceivedCallback\nphone: '5544999999999'\n",
        b"undefined",
        b"None",
        b"True",
        b"\x00" * 16,
        b'{"a": 01}',
        b'{"a": .5}',
        b'{"a": +1}',
        b'{"a": 0x10}',
        b'{"a": "\\x41"}',
        b'{"a": "\\u12"}',
        b'{"a": "line\nbreak"}',
        b"// comment\n{}",
        b"\xef\xbb\xbf",
        b"{",
        b"}",
        b'{"type"}',
        b'{"type": }',
        b'{"type": "ReceivedCallback" "phone": "1"}',
        b"[1, 2",
        b'"unterminated',
    ]


def _json_but_not_an_object() -> list[bytes]:
    fixture = zapi_message()
    values: list[Any] = [
        [],
        [fixture],
        [[]],
        [None],
        ["type", "ReceivedCallback"],
        [{"type": "ReceivedCallback"}],
        "string",
        "ReceivedCallback",
        json.dumps(fixture),  # a JSON object serialised twice: a string
        "",
        0,
        -1,
        3.14,
        1e308,
        True,
        False,
        None,
    ]
    return [json.dumps(v).encode() for v in values] + [b"NaN", b"Infinity", b"-Infinity"]


def _truncated() -> list[bytes]:
    whole = _fixture_bytes("received_text_from_ad.json")
    return [whole[:cut] for cut in range(0, len(whole) - 1, max(1, len(whole) // 40))]


def _keys_deleted_or_null() -> list[bytes]:
    out = []
    for name in CONTENT_FIXTURES:
        for key in ("type", "messageId", "phone"):
            deleted = zapi_message(name)
            del deleted[key]
            nulled = zapi_message(name)
            nulled[key] = None
            out += [json.dumps(deleted).encode(), json.dumps(nulled).encode()]
    return out


# Fields Z-API documents with a type; a body with another type there is not Z-API's.
_STR_FIELDS = ("messageId", "phone", "senderName", "chatName", "status", "connectedPhone", "instanceId")
_BOOL_FIELDS = ("fromMe", "isGroup", "isNewsletter", "broadcast", "waitingMessage", "isEdit", "isStatusReply")
_NUM_FIELDS = ("momment",)
_BAD_FOR = {
    "str": [12345, ["x"], {"a": 1}],
    "bool": ["talvez", [], {"a": 1}, 7],
    "num": ["ontem", [], {"a": 1}],
}


def _types_changed() -> list[bytes]:
    out = []
    for name in ("received_text.json", "received_audio_ptt.json", "received_image.json"):
        for kind, fields in (("str", _STR_FIELDS), ("bool", _BOOL_FIELDS), ("num", _NUM_FIELDS)):
            for field in fields:
                for bad in _BAD_FOR[kind]:
                    payload = zapi_message(name)
                    payload[field] = bad
                    out.append(json.dumps(payload).encode())
    for name, block in CONTENT_BLOCKS.items():
        for bad in ("texto solto", 5, ["a"], True):
            payload = zapi_message(name)
            payload[block] = bad
            out.append(json.dumps(payload).encode())
    for bad in (1, ["ReceivedCallback"], {"name": "ReceivedCallback"}, True):
        payload = zapi_message()
        payload["type"] = bad
        out.append(json.dumps(payload).encode())
    return out


_BAD_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3",  # truncated two-byte sequence
    b"\xc0\xaf",  # overlong "/"
    b"\xe2\x82",  # truncated three-byte sequence
    b"\xf8\x88\x80\x80\x80",  # five-byte form
    b"\x80",  # lone continuation byte
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"Ol\xe1",  # latin-1 "Olá"
    b"\x93oi\x94",  # cp1252 quotes
]


def _invalid_utf8() -> list[bytes]:
    whole = _fixture_bytes()
    text = "Olá, quero saber".encode()
    message_id = b"3EB0A1B2C3D4E5F60001"
    assert text in whole and message_id in whole
    out = []
    for bad in _BAD_UTF8:
        out.append(whole.replace(text, bad + text))
        out.append(whole.replace(message_id, message_id + bad))
    return out


def _binary_and_empty() -> list[bytes]:
    rnd = random.Random(20240601)
    return [b"", b" ", b"\r\n\t"] + [
        rnd.randbytes(n) for n in (1, 2, 3, 7, 64, 256, 1024, 4096) for _ in range(3)
    ]


MALFORMED: dict[str, list[bytes]] = {
    "not_json": _not_json(),
    "json_not_an_object": _json_but_not_an_object(),
    "truncated_json": _truncated(),
    "required_keys_deleted_or_null": _keys_deleted_or_null(),
    "types_changed": _types_changed(),
    "invalid_utf8": _invalid_utf8(),
    "binary_and_empty": _binary_and_empty(),
    # The two below are each enough to turn a request into a 500 on CPython's json module.
    "huge_nesting": [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        _fixture_bytes().replace(b'"text": {', b'"text": ' + b"[" * 5_000 + b"]" * 5_000 + b', "x": {'),
        json.dumps({**zapi_message(), "text": {"message": "x"}})[:-1].encode()
        + b', "extra": '
        + b"[" * 20_000
        + b"]" * 20_000
        + b"}",
    ],
    "huge_integers": [
        b"9" * 5_000,
        b'{"type": "ReceivedCallback", "momment": ' + b"9" * 5_000 + b"}",
        json.dumps(zapi_message())[:-1].encode() + b', "momment": ' + b"1" * 4_400 + b"}",
        b"[" + b"7" * 10_000 + b"]",
    ],
}


def test_the_malformed_corpus_is_large_enough() -> None:
    assert sum(len(bodies) for bodies in MALFORMED.values()) >= 200


@pytest.mark.parametrize("category", list(MALFORMED))
async def test_malformed_bodies_get_a_4xx_json_error_and_store_nothing(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi, category: str
) -> None:
    failures = []
    for index, body in enumerate(MALFORMED[category]):
        path = WEBHOOK_PATHS[index % len(WEBHOOK_PATHS)]
        response = await bot.post(path, data=body, headers=JSON_HEADERS)
        text = await response.text()
        ok = 400 <= response.status < 500 and response.content_type == "application/json"
        if ok:
            decoded = json.loads(text)
            ok = isinstance(decoded, dict) and isinstance(decoded.get("error"), str)
        if not ok:
            failures.append((index, response.status, body[:60], text[:80]))
    assert not failures, (
        f"{len(failures)}/{len(MALFORMED[category])} bodies not answered 4xx JSON: {failures[:5]}"
    )

    await settled(bot)  # anything wrongly accepted would have had its turn by now
    assert inbound_count(bot) == 0
    assert openai_fake.calls_started == 0
    # The provider's next real message still goes through.
    await answered_once(bot, zapi_fake, f"3EB0AFTER{category}")


@pytest.mark.parametrize(
    "body",
    [
        # Node's JSON.stringify writes a lone surrogate (a cut emoji) as an escape.
        json.dumps(zapi_message(message_id="3EB0SURR0001", text="Oi \ud83d")).encode(),
        json.dumps(zapi_message(message_id="3EB0SURR0002", text="\udc00fim")).encode(),
        json.dumps({**zapi_message(message_id="3EB0SURR0003"), "senderName": "Jo\ud800o"}).encode(),
        json.dumps(zapi_message(message_id="3EB0SURR\udc04")).encode(),
        # CESU-style encoded surrogate bytes: not valid UTF-8.
        _fixture_bytes().replace("Olá".encode(), b"\xed\xa0\x80"),
        # Valid JSON nested 600 deep with a lone surrogate at the bottom (it was a 500).
        json.dumps(
            {**zapi_message(message_id="3EB0SURR0006"), "extra": json.loads("[" * 600 + "1" + "]" * 600)}
        )
        .replace("1" + "]" * 600, '"\\ud83d"' + "]" * 600, 1)
        .encode(),
    ],
    ids=[
        "cut_emoji_in_text",
        "low_surrogate_in_text",
        "surrogate_in_sender_name",
        "surrogate_in_message_id",
        "surrogate_bytes",
        "deeply_nested_surrogate",
    ],
)
async def test_lone_surrogates_never_cause_a_5xx(bot: TestClient, zapi_fake: FakeZapi, body: bytes) -> None:
    """Either rejected with a 4xx or accepted and answered: a 500 makes Z-API retry forever."""
    response = await bot.post("/webhooks/zapi", data=body, headers=JSON_HEADERS)
    assert response.status < 500, await response.text()
    assert response.content_type == "application/json"
    if response.status >= 400:
        await error_body(response)
        assert inbound_count(bot) == 0
    else:
        await settled(bot)
        assert [sent["phone"] for sent in zapi_fake.sent] == [LEAD_PHONE]
    await answered_once(bot, zapi_fake, "3EB0AFTERSURROGATE")


async def test_unknown_event_types_are_acknowledged_without_storing_or_answering(
    bot: TestClient, openai_fake: FakeOpenAI
) -> None:
    for payload in (
        {"type": "SomethingNew", "messageId": "x"},
        {"type": ""},
        {"type": "PresenceChatCallback"},
    ):
        response = await bot.post("/webhooks/zapi", json=payload)
        assert response.status == 200
        assert (await response.json())["accepted"] == 0
    await settled(bot)
    assert inbound_count(bot) == 0
    assert openai_fake.calls_started == 0


# --- body size ------------------------------------------------------------------------


@pytest.fixture
async def small_limit(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    clock: TestClock,
) -> TestClient:
    return await aiohttp_client(create_app(fast_settings(tmp_path, max_body_bytes=4096), clock=clock))


def _padded(size: int, message_id: str) -> bytes:
    payload = zapi_message(message_id=message_id, text="Oi")
    payload["padding"] = ""
    base = len(json.dumps(payload).encode())
    payload["padding"] = "p" * (size - base)
    body = json.dumps(payload).encode()
    assert len(body) == size
    return body


async def test_a_body_over_the_limit_gets_413_json_and_is_not_stored(
    small_limit: TestClient, openai_fake: FakeOpenAI
) -> None:
    response = await small_limit.post(
        "/webhooks/zapi", data=_padded(4097, "3EB0BIG000001"), headers=JSON_HEADERS
    )
    assert response.status == 413
    await error_body(response)
    await settled(small_limit)
    assert inbound_count(small_limit) == 0
    assert openai_fake.calls_started == 0


async def test_a_body_just_under_the_limit_is_accepted(small_limit: TestClient, zapi_fake: FakeZapi) -> None:
    # aiohttp's client_max_size rejects a body of exactly the limit (it compares with >=).
    response = await small_limit.post(
        "/webhooks/zapi", data=_padded(4095, "3EB0EDGE00001"), headers=JSON_HEADERS
    )
    assert response.status == 200, await response.text()
    await settled(small_limit)
    assert [sent["phone"] for sent in zapi_fake.sent] == [LEAD_PHONE]


async def test_a_chunked_body_over_the_limit_gets_413(small_limit: TestClient) -> None:
    body = _padded(20_000, "3EB0CHUNKED01")

    async def chunks():  # no Content-Length: the limit must hold while streaming
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = await small_limit.post("/webhooks/zapi", data=chunks(), headers=JSON_HEADERS)
    assert response.status == 413
    await error_body(response)
    assert inbound_count(small_limit) == 0


async def test_the_default_limit_rejects_a_multi_megabyte_body(bot: TestClient, zapi_fake: FakeZapi) -> None:
    assert bot.app[SETTINGS].max_body_bytes == 1_048_576  # the documented default
    response = await bot.post(
        "/webhooks/zapi", data=_padded(2 * 1_048_576, "3EB0HUGE00001"), headers=JSON_HEADERS
    )
    assert response.status == 413
    await error_body(response)
    await answered_once(bot, zapi_fake, "3EB0AFTERHUGE")


# --- store unavailable ----------------------------------------------------------------


async def test_store_refusing_writes_gets_503_then_the_retry_is_accepted(
    bot: TestClient, monkeypatch: pytest.MonkeyPatch, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    store = bot.app[STORE]

    async def unavailable(*_a: Any, **_kw: Any) -> bool:
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(store, "add_inbound", unavailable)
    payload = zapi_message(message_id="3EB0STORE0000001", text="Oi, tudo bem?")
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 503
    await error_body(response)
    await settled(bot)
    assert openai_fake.calls_started == 0
    assert inbound_count(bot) == 0

    monkeypatch.undo()  # the store is back; Z-API retries the same delivery
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200
    assert (await response.json())["accepted"] == 1
    await settled(bot)
    assert zapi_fake.texts_to(LEAD_PHONE) == [openai_fake.default_reply]
    assert openai_fake.calls_started == 1


async def test_a_closed_store_gets_503_and_reopening_it_recovers(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    store = bot.app[STORE]
    await store.close()
    payload = zapi_message(message_id="3EB0CLOSED000001", text="Oi")
    try:
        response = await bot.post("/webhooks/zapi", json=payload)
        assert response.status == 503
        await error_body(response)
        # fromMe events are stored too: same answer, nothing silently dropped.
        response = await bot.post("/webhooks/zapi", json=zapi_message("received_from_me.json"))
        assert response.status == 503
    finally:
        await store.open()
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200
    assert (await response.json())["accepted"] == 1
    await settled(bot)
    assert zapi_fake.texts_to(LEAD_PHONE) == [openai_fake.default_reply]


async def test_a_read_only_database_gets_503_not_500(bot: TestClient, zapi_fake: FakeZapi) -> None:
    """What a full or read-only disk looks like to SQLite ("attempt to write a readonly database")."""
    store = bot.app[STORE]
    store.db.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
    payload = zapi_message(message_id="3EB0READONLY0001", text="Oi")
    try:
        response = await bot.post("/webhooks/zapi", json=payload)
        assert response.status == 503
        await error_body(response)
    finally:
        store.db.execute("PRAGMA query_only = OFF")  # type: ignore[attr-defined]
    response = await bot.post("/webhooks/zapi", json=payload)
    assert response.status == 200
    await settled(bot)
    assert [sent["phone"] for sent in zapi_fake.sent] == [LEAD_PHONE]


# --- duplicates, request ids, methods -------------------------------------------------


async def test_a_duplicate_delivery_is_acknowledged_and_does_nothing_else(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    payload = zapi_message(message_id="3EB0DUP000000001", text="Oi")
    first = await bot.post("/webhooks/zapi", json=payload)
    await settled(bot)
    assert zapi_fake.texts_to(LEAD_PHONE) == [openai_fake.default_reply]
    # Z-API retries after the turn already finished, on another of the accepted paths.
    second = await bot.post("/webhook/text", json=payload)
    assert first.status == second.status == 200
    assert (await first.json())["accepted"] == 1
    body = await second.json()
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    await settled(bot)
    assert openai_fake.calls_started == 1
    assert len(zapi_fake.sent) == 1
    assert rows(bot, "SELECT COUNT(*) FROM inbound") == [(1,)]


async def test_request_id_is_echoed_on_success_and_on_errors(bot: TestClient) -> None:
    cases = [
        ("post", "/webhooks/zapi", {"json": zapi_message(message_id="3EB0REQID0001")}, 200),
        ("post", "/webhooks/zapi", {"data": b"nope"}, 400),
        ("get", "/webhooks/zapi", {}, 405),
        ("get", "/no/such/route", {}, 404),
        ("get", "/api/health", {}, 200),
    ]
    for index, (method, path, kwargs, status) in enumerate(cases):
        request_id = f"req-{index}-7f3a9c"
        response = await getattr(bot, method)(path, headers={"X-Request-Id": request_id}, **kwargs)
        assert response.status == status, path
        assert response.headers.get("X-Request-Id") == request_id, path


async def test_a_request_id_is_generated_when_the_caller_sends_none(bot: TestClient) -> None:
    ids = set()
    for _ in range(3):
        response = await bot.post("/webhooks/zapi", data=b"{}", headers=JSON_HEADERS)
        assert response.status == 422
        ids.add(response.headers.get("X-Request-Id"))
    assert None not in ids and "" not in ids
    assert len(ids) == 3


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_on_a_webhook_gets_405_json(bot: TestClient, path: str, method: str) -> None:
    response = await bot.request(method, path)
    assert response.status == 405
    await error_body(response)
    assert inbound_count(bot) == 0


async def test_405_says_which_method_is_allowed(bot: TestClient) -> None:
    """RFC 9110 15.5.6: a 405 response MUST carry an Allow header listing the methods."""
    response = await bot.get("/webhooks/zapi")
    assert response.status == 405
    assert "POST" in response.headers.get("Allow", "")


async def test_unknown_route_gets_404_json(bot: TestClient) -> None:
    response = await bot.post("/webhooks/nope", json=zapi_message())
    assert response.status == 404
    await error_body(response)

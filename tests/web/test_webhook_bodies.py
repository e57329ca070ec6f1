"""The Z-API webhook fed bad bodies: not JSON, JSON of the wrong shape, truncated,
keys deleted or retyped, invalid UTF-8, binary: a 4xx JSON error and nothing stored,
never a 5xx; unknown event types are acknowledged and ignored."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import zapi_message
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from tests.web.support import LEAD_PHONE, error_body, inbound_count
from tests.web.test_webhooks import (
    JSON_HEADERS,
    WEBHOOK_PATHS,
    answered_once,
)

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

"""Chatwoot client: exact requests, tolerant response parsing, error mapping, webhooks.

Responses and webhook bodies are fixtures under tests/fixtures/chatwoot/, each citing
its source in `_source`; request bodies are checked against the request schemas of
Chatwoot's swagger definitions kept there as `schema_*.json`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from aioresponses import aioresponses
from yarl import URL

from core.errors import ProviderError, WebhookRejected
from core.settings import Settings
from integrations.chatwoot import (
    ChatwootClient,
    ChatwootConfig,
    ChatwootError,
    ChatwootWebhookEvent,
    parse_contact_response,
    parse_webhook_event,
    to_e164,
    verify_webhook,
)
from web.configs.integrations import chatwoot_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "chatwoot"

API_URL = "https://chat.agrosouza.com.br"
TOKEN = "cw-tok-SECRET-7f3a9b2c1d"
ACCOUNT = "7"
INBOX = "3"
WEBHOOK_SECRET = "cw-hook-SECRET-q1w2e3"
BASE = f"{API_URL}/api/v1/accounts/{ACCOUNT}"
SOURCE_ID = "8f3c2a71-5d4e-4b8a-9c1f-2e7d6b5a4c39"


def make_config(**overrides: Any) -> ChatwootConfig:
    """Through the Settings mapping, so the environment's names reach the client."""
    values: dict[str, Any] = {
        "_env_file": None,
        "chatwoot_api_url": API_URL,
        "chatwoot_api_token": TOKEN,
        "chatwoot_account_id": ACCOUNT,
        "chatwoot_inbox_id": INBOX,
        "chatwoot_webhook_secret": WEBHOOK_SECRET,
        "http_timeout_s": 4.5,
    }
    values.update(overrides)
    return chatwoot_config(Settings(**values))


def load(name: str) -> Any:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data.pop("_source", None)
    return data


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mock() -> Any:
    with aioresponses() as m:
        yield m


@pytest.fixture
def client(session: aiohttp.ClientSession) -> ChatwootClient:
    return ChatwootClient(make_config(), session)


def only_call(mock: aioresponses, method: str, url: str | URL) -> Any:
    calls = mock.requests.get((method, URL(url)))
    assert calls, f"no {method} {url}; made: {list(mock.requests)}"
    assert len(calls) == 1
    return calls[0]


def assert_auth_headers(call: Any) -> None:
    headers = call.kwargs["headers"]
    assert headers["api_access_token"] == TOKEN
    assert "Authorization" not in headers
    assert call.kwargs["timeout"].total == 4.5


_TYPES = {
    "object": dict,
    "string": str,
    "boolean": bool,
    "array": list,
    "integer": int,
    "number": (int, float),
}


def assert_matches_schema(body: Any, schema_name: str) -> None:
    """The subset of JSON Schema the swagger request definitions use."""
    schema = load(schema_name)
    assert isinstance(body, dict)
    for key in schema.get("required", []):
        assert key in body, f"{schema_name}: missing required {key}"
    props = schema.get("properties", {})
    for key, value in body.items():
        assert key in props, f"{schema_name}: {key} is not in the documented body"
        spec = props[key]
        expected = _TYPES[spec["type"]]
        assert isinstance(value, expected), f"{schema_name}: {key} should be {spec['type']}"
        if spec["type"] in ("integer", "number"):
            assert not isinstance(value, bool)
        if "enum" in spec:
            assert value in spec["enum"], f"{schema_name}: {key}={value!r} not in {spec['enum']}"
        if spec["type"] == "array" and "items" in spec:
            item_type = _TYPES[spec["items"]["type"]]
            assert all(isinstance(item, item_type) for item in value)


# --- configuration --------------------------------------------------------------------


async def test_configured_needs_url_token_and_account(session: aiohttp.ClientSession) -> None:
    assert ChatwootClient(make_config(), session).configured
    assert not ChatwootClient(make_config(chatwoot_api_token=None), session).configured
    assert not ChatwootClient(make_config(chatwoot_api_url=""), session).configured
    assert not ChatwootClient(make_config(chatwoot_account_id=None), session).configured


async def test_unconfigured_client_refuses_without_a_request(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    cw = ChatwootClient(make_config(chatwoot_api_token=None), session)
    with pytest.raises(ChatwootError) as err:
        await cw.toggle_status(318, "open")
    assert err.value.retryable is False
    assert mock.requests == {}


async def test_api_url_given_with_api_v1_suffix_is_accepted(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    cw = ChatwootClient(make_config(chatwoot_api_url=f"{API_URL}/api/v1/"), session)
    mock.post(f"{BASE}/conversations/318/toggle_status", payload=load("toggle_status_response.json"))
    assert await cw.toggle_status(318, "open") == "open"


# --- contacts -------------------------------------------------------------------------


async def test_search_contact_returns_the_exact_phone_match(
    client: ChatwootClient, mock: aioresponses
) -> None:
    url = URL(f"{BASE}/contacts/search").with_query(q="+5544999887766")
    mock.get(url, payload=load("contact_search_response.json"))

    contact = await client.search_contact("+5544999887766")

    assert contact is not None
    # The first result is a substring hit on another number and must be skipped.
    assert contact.id == 1042
    assert contact.source_id_for(3) == SOURCE_ID
    call = only_call(mock, "GET", url)
    assert_auth_headers(call)
    assert call.kwargs["params"] == {"q": "+5544999887766"}


async def test_search_contact_by_identifier_and_by_bare_digits(
    client: ChatwootClient, mock: aioresponses
) -> None:
    by_id = URL(f"{BASE}/contacts/search").with_query(q="whatsapp:5544999887766")
    by_digits = URL(f"{BASE}/contacts/search").with_query(q="5544999887766")
    mock.get(by_id, payload=load("contact_search_response.json"))
    mock.get(by_digits, payload=load("contact_search_response.json"))

    found = await client.search_contact("whatsapp:5544999887766")
    assert found is not None and found.id == 1042
    found = await client.search_contact("5544999887766")
    assert found is not None and found.id == 1042


async def test_search_contact_none_when_no_exact_match(client: ChatwootClient, mock: aioresponses) -> None:
    empty = URL(f"{BASE}/contacts/search").with_query(q="+5511912345678")
    partial = URL(f"{BASE}/contacts/search").with_query(q="+55449998877")
    mock.get(empty, payload=load("contact_search_empty.json"))
    mock.get(partial, payload=load("contact_search_response.json"))

    assert await client.search_contact("+5511912345678") is None
    assert await client.search_contact("+55449998877") is None


async def test_create_contact_sends_documented_body(client: ChatwootClient, mock: aioresponses) -> None:
    mock.post(f"{BASE}/contacts", payload=load("contact_create_response.json"))

    contact_id, source_id = await client.create_contact(
        "Mariana Souza",
        "55 (44) 99988-7766",
        "whatsapp:5544999887766",
        {"empresa": "Agro Souza Ltda", "cidade_uf": "Maringá/PR"},
    )

    assert (contact_id, source_id) == (1042, SOURCE_ID)
    call = only_call(mock, "POST", f"{BASE}/contacts")
    assert_auth_headers(call)
    body = call.kwargs["json"]
    assert body == {
        "inbox_id": 3,
        "name": "Mariana Souza",
        "phone_number": "+5544999887766",
        "identifier": "whatsapp:5544999887766",
        "custom_attributes": {"empresa": "Agro Souza Ltda", "cidade_uf": "Maringá/PR"},
    }
    assert_matches_schema(body, "schema_contact_create.json")


async def test_create_contact_omits_unknown_fields(client: ChatwootClient, mock: aioresponses) -> None:
    mock.post(f"{BASE}/contacts", payload=load("contact_create_response.json"))
    await client.create_contact(None, "+5544999887766", None)
    body = only_call(mock, "POST", f"{BASE}/contacts").kwargs["json"]
    assert body == {"inbox_id": 3, "phone_number": "+5544999887766"}
    assert_matches_schema(body, "schema_contact_create.json")


@pytest.mark.parametrize(
    "fixture",
    [
        "contact_create_response.json",
        "contact_create_response_list.json",
        "contact_create_response_flat.json",
    ],
)
async def test_every_contact_response_shape_gives_the_same_ids(
    client: ChatwootClient, mock: aioresponses, fixture: str
) -> None:
    mock.post(f"{BASE}/contacts", payload=load(fixture))
    assert await client.create_contact("Mariana Souza", "+5544999887766", None) == (1042, SOURCE_ID)


def test_parse_contact_response_shapes_directly() -> None:
    contact = load("contact_create_response_flat.json")
    shapes = [
        load("contact_create_response.json"),
        load("contact_create_response_list.json"),
        contact,
        {"contact": contact},
        {"payload": contact},
    ]
    for shape in shapes:
        parsed, source_id = parse_contact_response(shape, 3)
        assert parsed.id == 1042
        assert source_id == SOURCE_ID
    # A source id of another inbox is not ours.
    _, other = parse_contact_response(load("contact_create_response_list.json"), 99)
    assert other is None
    for bad in ({}, {"payload": []}, {"payload": {"contact": {}}}, [], None, {"payload": [{"name": "x"}]}):
        with pytest.raises(ValueError):
            parse_contact_response(bad, 3)


async def test_create_contact_without_an_id_in_the_answer_is_permanent(
    client: ChatwootClient, mock: aioresponses
) -> None:
    mock.post(f"{BASE}/contacts", payload={"payload": {"contact": {}}})
    with pytest.raises(ChatwootError) as err:
        await client.create_contact("x", "+5544999887766", None)
    assert err.value.retryable is False


async def test_create_contact_needs_an_inbox_and_a_valid_phone(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    no_inbox = ChatwootClient(make_config(chatwoot_inbox_id=None), session)
    with pytest.raises(ChatwootError) as err:
        await no_inbox.create_contact("x", "+5544999887766", None)
    assert err.value.retryable is False
    with pytest.raises(ChatwootError):
        await ChatwootClient(make_config(), session).create_contact("x", "12-34", None)
    assert mock.requests == {}


def test_to_e164() -> None:
    assert to_e164("5544999887766") == "+5544999887766"
    assert to_e164("+55 (44) 99988-7766") == "+5544999887766"
    with pytest.raises(ValueError):
        to_e164("123")


async def test_update_contact_attributes(client: ChatwootClient, mock: aioresponses) -> None:
    mock.put(f"{BASE}/contacts/1042", payload=load("contact_update_response.json"))

    contact = await client.update_contact_attributes(1042, {"score": 82, "temperatura": "quente"})

    assert contact.id == 1042
    assert contact.custom_attributes["temperatura"] == "quente"
    call = only_call(mock, "PUT", f"{BASE}/contacts/1042")
    assert_auth_headers(call)
    assert call.kwargs["json"] == {"custom_attributes": {"score": 82, "temperatura": "quente"}}
    assert_matches_schema(call.kwargs["json"], "schema_contact_update.json")


async def test_delete_contact_is_one_authenticated_delete_and_a_second_one_is_done(
    client: ChatwootClient, mock: aioresponses
) -> None:
    """swagger contacts/crud.yml `contactDelete`: 200 with no body, 404 once it is gone."""
    mock.delete(f"{BASE}/contacts/1042", status=200, body="")
    mock.delete(f"{BASE}/contacts/1042", status=404, payload=load("error_404.json"))

    assert await client.delete_contact(1042) is True
    assert await client.delete_contact(1042) is False
    calls = mock.requests[("DELETE", URL(f"{BASE}/contacts/1042"))]
    assert len(calls) == 2
    assert_auth_headers(calls[0])
    assert "json" not in calls[0].kwargs


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (429, True), (401, False), (403, False)])
async def test_delete_contact_failures_say_whether_to_retry(
    client: ChatwootClient, mock: aioresponses, status: int, retryable: bool
) -> None:
    mock.delete(f"{BASE}/contacts/1042", status=status, payload={"error": "nope"})
    with pytest.raises(ChatwootError) as caught:
        await client.delete_contact(1042)
    assert caught.value.retryable is retryable and caught.value.status == status
    assert TOKEN not in str(caught.value)


async def test_contact_conversations(client: ChatwootClient, mock: aioresponses) -> None:
    mock.get(f"{BASE}/contacts/1042/conversations", payload=load("contact_conversations_response.json"))

    conversations = await client.contact_conversations(1042)

    assert [(c.id, c.status, c.inbox_id) for c in conversations] == [
        (301, "resolved", 3),
        (318, "pending", 3),
    ]
    assert conversations[0].labels == ["morno"]
    call = only_call(mock, "GET", f"{BASE}/contacts/1042/conversations")
    assert_auth_headers(call)
    assert "json" not in call.kwargs


# --- conversations and messages -------------------------------------------------------


async def test_create_conversation_pending_by_default(client: ChatwootClient, mock: aioresponses) -> None:
    mock.post(f"{BASE}/conversations", payload=load("conversation_create_response.json"))

    conversation_id = await client.create_conversation(1042, SOURCE_ID)

    assert conversation_id == 318
    call = only_call(mock, "POST", f"{BASE}/conversations")
    assert_auth_headers(call)
    body = call.kwargs["json"]
    assert body == {"source_id": SOURCE_ID, "inbox_id": 3, "contact_id": 1042, "status": "pending"}
    assert_matches_schema(body, "schema_conversation_create.json")


async def test_create_conversation_rejects_unknown_status(client: ChatwootClient, mock: aioresponses) -> None:
    with pytest.raises(ChatwootError):
        await client.create_conversation(1042, SOURCE_ID, status="closed")  # type: ignore[arg-type]
    assert mock.requests == {}


@pytest.mark.parametrize(
    ("message_type", "private"), [("incoming", False), ("outgoing", False), ("outgoing", True)]
)
async def test_create_message_text(
    client: ChatwootClient, mock: aioresponses, message_type: str, private: bool
) -> None:
    url = f"{BASE}/conversations/318/messages"
    mock.post(url, payload=load("message_create_response.json"))

    message_id = await client.create_message(
        318,
        "Qual o volume mensal?",
        message_type=message_type,
        private=private,  # type: ignore[arg-type]
    )

    assert message_id == 90211
    call = only_call(mock, "POST", url)
    assert_auth_headers(call)
    body = call.kwargs["json"]
    assert body == {"content": "Qual o volume mensal?", "message_type": message_type, "private": private}
    assert_matches_schema(body, "schema_message_create.json")


async def test_create_message_with_attachment_is_multipart(
    client: ChatwootClient, mock: aioresponses
) -> None:
    url = f"{BASE}/conversations/318/messages"
    mock.post(url, payload=load("message_create_attachment_response.json"))
    pdf = b"%PDF-1.4 catalogo"

    message_id = await client.create_message(
        318, "Catálogo 2024", message_type="incoming", attachment=("catalogo.pdf", pdf, "application/pdf")
    )

    assert message_id == 90212
    call = only_call(mock, "POST", url)
    assert_auth_headers(call)
    assert "json" not in call.kwargs
    form = call.kwargs["data"]
    assert isinstance(form, aiohttp.FormData)
    fields = {opts["name"]: (opts, headers, value) for opts, headers, value in form._fields}
    assert fields["content"][2] == "Catálogo 2024"
    assert fields["message_type"][2] == "incoming"
    assert fields["private"][2] == "false"
    opts, headers, value = fields["attachments[]"]
    assert value == pdf
    assert opts["filename"] == "catalogo.pdf"
    assert headers["Content-Type"] == "application/pdf"


async def test_create_message_rejects_other_message_types(client: ChatwootClient, mock: aioresponses) -> None:
    with pytest.raises(ChatwootError):
        await client.create_message(318, "x", message_type="activity")  # type: ignore[arg-type]
    assert mock.requests == {}


@pytest.mark.parametrize("status", ["open", "pending", "resolved"])
async def test_toggle_status(client: ChatwootClient, mock: aioresponses, status: str) -> None:
    url = f"{BASE}/conversations/318/toggle_status"
    answer = load("toggle_status_response.json")
    answer["payload"]["current_status"] = status
    mock.post(url, payload=answer)

    assert await client.toggle_status(318, status) == status  # type: ignore[arg-type]

    call = only_call(mock, "POST", url)
    assert_auth_headers(call)
    assert call.kwargs["json"] == {"status": status}
    assert_matches_schema(call.kwargs["json"], "schema_toggle_status.json")


async def test_add_labels(client: ChatwootClient, mock: aioresponses) -> None:
    url = f"{BASE}/conversations/318/labels"
    mock.post(url, payload=load("labels_response.json"))

    labels = await client.add_labels(318, ["quente", " sdr-bot ", ""])

    assert labels == ["quente", "sdr-bot"]
    call = only_call(mock, "POST", url)
    assert_auth_headers(call)
    assert call.kwargs["json"] == {"labels": ["quente", "sdr-bot"]}
    assert_matches_schema(call.kwargs["json"], "schema_labels.json")


async def test_assign_team(client: ChatwootClient, mock: aioresponses) -> None:
    url = f"{BASE}/conversations/318/assignments"
    mock.post(url, payload=load("assignment_team_response.json"))

    await client.assign_team(318, 4)

    call = only_call(mock, "POST", url)
    assert_auth_headers(call)
    assert call.kwargs["json"] == {"team_id": 4}
    assert_matches_schema(call.kwargs["json"], "schema_assignment.json")


# --- error mapping --------------------------------------------------------------------

TOGGLE_URL = f"{BASE}/conversations/318/toggle_status"


@pytest.mark.parametrize(
    ("status", "body", "retryable", "auth_failed", "detail"),
    [
        (429, {"error": "Too many requests"}, True, False, "Too many requests"),
        (500, {"error": "Internal Server Error"}, True, False, "Internal Server Error"),
        (502, "<html>Bad Gateway</html>", True, False, "Bad Gateway"),
        (503, "", True, False, None),
        (401, "error_401.json", False, True, "Invalid Access Token"),
        (403, {"error": "You are not authorized to do this action"}, False, True, "not authorized"),
        (404, "error_404.json", False, False, "Resource could not be found"),
        (422, "error_422.json", False, False, "Identifier has already been taken"),
        (400, {"errors": ["status is invalid"]}, False, False, "status is invalid"),
    ],
)
async def test_http_errors_are_mapped(
    client: ChatwootClient,
    mock: aioresponses,
    status: int,
    body: Any,
    retryable: bool,
    auth_failed: bool,
    detail: str | None,
) -> None:
    if isinstance(body, str) and body.endswith(".json"):
        body = load(body)
    if isinstance(body, dict):
        mock.post(TOGGLE_URL, status=status, payload=body)
    else:
        mock.post(TOGGLE_URL, status=status, body=body)

    with pytest.raises(ChatwootError) as err:
        await client.toggle_status(318, "open")

    exc = err.value
    assert isinstance(exc, ProviderError)
    assert exc.status == status
    assert exc.retryable is retryable
    assert exc.auth_failed is auth_failed
    assert f"HTTP {status}" in str(exc)
    if detail:
        assert detail in str(exc)
    assert TOKEN not in str(exc)


async def test_timeout_is_retryable(client: ChatwootClient, mock: aioresponses) -> None:
    mock.post(TOGGLE_URL, exception=TimeoutError())
    with pytest.raises(ChatwootError) as err:
        await client.toggle_status(318, "open")
    assert err.value.retryable is True
    assert err.value.status is None
    assert "timed out" in str(err.value)


async def test_connection_error_is_retryable_and_hides_its_text(
    client: ChatwootClient, mock: aioresponses
) -> None:
    mock.post(
        TOGGLE_URL,
        exception=aiohttp.ClientConnectionError(f"cannot connect, headers api_access_token={TOKEN}"),
    )
    with pytest.raises(ChatwootError) as err:
        await client.toggle_status(318, "open")
    assert err.value.retryable is True
    assert "ClientConnectionError" in str(err.value)
    assert TOKEN not in str(err.value)


async def test_token_echoed_by_chatwoot_is_redacted(client: ChatwootClient, mock: aioresponses) -> None:
    mock.post(TOGGLE_URL, status=422, payload={"message": f"bad token {TOKEN} for account"})
    with pytest.raises(ChatwootError) as err:
        await client.toggle_status(318, "open")
    assert TOKEN not in str(err.value)
    assert "[REDACTED]" in str(err.value)
    assert err.value.retryable is False


async def test_non_json_success_is_not_retried(client: ChatwootClient, mock: aioresponses) -> None:
    url = f"{BASE}/conversations/318/messages"
    mock.post(url, status=200, body="<html>ok</html>")
    with pytest.raises(ChatwootError) as err:
        await client.create_message(318, "oi", message_type="outgoing")
    assert err.value.retryable is False  # it may have been created: a retry could duplicate it


# --- webhook payloads -----------------------------------------------------------------


def test_account_webhook_agent_reply() -> None:
    event = parse_webhook_event(load("webhook_message_created_account.json"))
    assert isinstance(event, ChatwootWebhookEvent)
    assert event.event == "message_created"
    assert event.message_id == 90230
    assert event.message_type == "outgoing"
    assert event.private is False
    assert event.content == "Oi Mariana, aqui é o Carlos do comercial. Posso te ligar agora?"
    assert event.conversation_id == 318
    assert event.conversation_status == "open"
    assert event.sender_type == "user"
    assert event.contact_source_id == SOURCE_ID
    assert event.content_attributes == {}
    assert event.source_id is None
    assert event.account is not None and event.account.id == 7
    assert event.is_agent_reply


def test_agent_bot_webhook_incoming_message() -> None:
    event = parse_webhook_event(load("webhook_message_created_agent_bot.json"))
    assert event.event == "message_created"
    assert event.message_id == 90231
    assert event.message_type == "incoming"
    assert event.sender_type == "contact"
    assert event.conversation_id == 318
    assert event.conversation_status == "pending"
    assert event.source_id == "wamid.HBgMNTU0NDk5OTg4Nzc2NhUCABIYFjNFQjBDMEE5RjE="
    assert event.content_attributes == {"in_reply_to": None}
    assert event.sender is not None and event.sender.phone_number == "+5544999887766"
    assert not event.is_agent_reply


def test_private_note_is_not_an_agent_reply() -> None:
    event = parse_webhook_event(load("webhook_message_created_private_note.json"))
    assert event.private is True
    assert event.message_type == "outgoing"
    assert event.sender_type == "user"
    assert not event.is_agent_reply


def test_conversation_status_changed() -> None:
    event = parse_webhook_event(load("webhook_conversation_status_changed.json"))
    assert event.event == "conversation_status_changed"
    assert event.conversation_id == 318
    assert event.conversation_status == "resolved"
    assert event.message_id is None
    assert event.contact_source_id == SOURCE_ID
    assert not event.is_agent_reply


def test_webhook_from_raw_bytes_and_tolerant_nulls() -> None:
    body = load("webhook_message_created_agent_bot.json")
    body["content_attributes"] = None
    body["private"] = None
    body["id"] = "90231"  # the docs' sample sends ids as strings
    body["brand_new_field"] = {"x": 1}
    event = parse_webhook_event(json.dumps(body).encode())
    assert event.message_id == 90231
    assert event.content_attributes == {}
    assert event.private is None  # not said: never taken for "public" (see the relay)


def test_integer_message_type_is_mapped() -> None:
    body = load("webhook_message_created_account.json")
    body["message_type"] = 1
    assert parse_webhook_event(body).message_type == "outgoing"


def test_unknown_events_parse_without_error() -> None:
    event = parse_webhook_event({"event": "conversation_typing_on", "id": 318})
    assert event.event == "conversation_typing_on"
    assert event.conversation_id == 318


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    target = out
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return out


_MSG = load("webhook_message_created_account.json")
_STATUS = load("webhook_conversation_status_changed.json")


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"not json{", 400),
        (b"[1, 2]", 400),
        ("null", 400),
        (["event"], 400),
        ({"id": 1}, 422),
        ({"event": ""}, 422),
        ({"event": 42}, 422),
        (_without(_MSG, "id"), 422),
        (_without(_MSG, "message_type"), 422),
        (_without(_MSG, "conversation"), 422),
        (_without(_MSG, "conversation", "id"), 422),
        ({**_MSG, "message_type": "sideways"}, 422),
        ({**_MSG, "id": "abc"}, 422),
        ({**_MSG, "private": "maybe"}, 422),
        ({**_MSG, "content_attributes": "x"}, 422),
        ({**_MSG, "conversation": "318"}, 422),
        (_without(_STATUS, "status"), 422),
        (_without(_STATUS, "id"), 422),
    ],
)
def test_malformed_webhooks_are_rejected(payload: Any, status: int) -> None:
    with pytest.raises(WebhookRejected) as err:
        parse_webhook_event(payload)
    assert err.value.status == status
    assert "chatwoot webhook" in err.value.message


# --- webhook authentication -----------------------------------------------------------

RAW = json.dumps(load("webhook_message_created_account.json")).encode()
NOW = 1_718_050_200


def _sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _request(path: str = "/webhooks/chatwoot", headers: dict[str, str] | None = None) -> Any:
    return make_mocked_request("POST", path, headers=headers or {})


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (f"/webhooks/chatwoot?token={WEBHOOK_SECRET}", {}),
        ("/webhooks/chatwoot", {"X-Chatwoot-Webhook-Token": WEBHOOK_SECRET}),
        ("/webhooks/chatwoot", {"Authorization": f"Bearer {WEBHOOK_SECRET}"}),
        (
            "/webhooks/chatwoot",
            {"X-Chatwoot-Signature": _sign(WEBHOOK_SECRET, str(NOW), RAW), "X-Chatwoot-Timestamp": str(NOW)},
        ),
        (
            # Signature stale, but the URL token is right: the token alone suffices.
            f"/webhooks/chatwoot?token={WEBHOOK_SECRET}",
            {"X-Chatwoot-Signature": _sign(WEBHOOK_SECRET, "1000", RAW), "X-Chatwoot-Timestamp": "1000"},
        ),
    ],
)
def test_webhook_secret_valid(path: str, headers: dict[str, str]) -> None:
    verify_webhook(make_config().webhook_secret, _request(path, headers), RAW, now=NOW)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/webhooks/chatwoot", {}),
        ("/webhooks/chatwoot?token=", {}),
        ("/webhooks/chatwoot?token=wrong-secret", {}),
        (f"/webhooks/chatwoot?token={WEBHOOK_SECRET}x", {}),
        ("/webhooks/chatwoot", {"X-Chatwoot-Webhook-Token": "nope"}),
        ("/webhooks/chatwoot", {"Authorization": f"Basic {WEBHOOK_SECRET}"}),
        (
            "/webhooks/chatwoot",
            {"X-Chatwoot-Signature": _sign("other-secret", str(NOW), RAW), "X-Chatwoot-Timestamp": str(NOW)},
        ),
        (
            # Signed body replaced by another one.
            "/webhooks/chatwoot",
            {
                "X-Chatwoot-Signature": _sign(WEBHOOK_SECRET, str(NOW), b"{}"),
                "X-Chatwoot-Timestamp": str(NOW),
            },
        ),
        (
            # Replayed: right signature, timestamp too old.
            "/webhooks/chatwoot",
            {
                "X-Chatwoot-Signature": _sign(WEBHOOK_SECRET, str(NOW - 3600), RAW),
                "X-Chatwoot-Timestamp": str(NOW - 3600),
            },
        ),
        ("/webhooks/chatwoot", {"X-Chatwoot-Signature": _sign(WEBHOOK_SECRET, str(NOW), RAW)}),
        (
            "/webhooks/chatwoot",
            {"X-Chatwoot-Signature": _sign(WEBHOOK_SECRET, "abc", RAW), "X-Chatwoot-Timestamp": "abc"},
        ),
    ],
)
def test_webhook_secret_wrong_or_missing(path: str, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected) as err:
        verify_webhook(make_config().webhook_secret, _request(path, headers), RAW, now=NOW)
    assert err.value.status == 401
    assert WEBHOOK_SECRET not in err.value.message


def test_webhook_refused_when_no_secret_is_configured(session: aiohttp.ClientSession) -> None:
    config = make_config(chatwoot_webhook_secret=None)
    with pytest.raises(WebhookRejected) as err:
        verify_webhook(config.webhook_secret, _request("/webhooks/chatwoot?token=anything"), RAW, now=NOW)
    assert err.value.status == 401
    # The method on the client delegates to the same check.
    with pytest.raises(WebhookRejected):
        ChatwootClient(config, session).verify_webhook(_request("/webhooks/chatwoot?token=x"), RAW)
    ChatwootClient(make_config(), session).verify_webhook(
        _request(f"/webhooks/chatwoot?token={WEBHOOK_SECRET}"), RAW
    )


def test_every_fixture_cites_its_source() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict) and data.get("_source"), path.name


async def test_assign_agent(client: ChatwootClient, mock: aioresponses) -> None:
    # A booked meeting's seller becomes the conversation's assignee (`assignee_id`).
    url = f"{BASE}/conversations/318/assignments"
    mock.post(url, payload=load("assignment_agent_response.json"))

    await client.assign_agent(318, 12)

    call = only_call(mock, "POST", url)
    assert_auth_headers(call)
    assert call.kwargs["json"] == {"assignee_id": 12}
    assert_matches_schema(call.kwargs["json"], "schema_assignment.json")


def test_an_id_beyond_a_bigint_is_a_422_not_a_store_error() -> None:
    # Found by the webhook fuzzer: a forged contact_inbox.contact_id of 80 digits reached
    # the SQLite lookup and overflowed (a 500). Chatwoot's ids are bigints.
    payload = load("webhook_message_created_account.json")
    payload["conversation"]["contact_inbox"]["contact_id"] = int("9" * 80)
    with pytest.raises(WebhookRejected) as refused:
        parse_webhook_event(payload)
    assert refused.value.status == 422

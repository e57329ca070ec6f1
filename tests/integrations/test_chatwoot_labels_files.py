"""Chatwoot client, what the sellers need: their labels survive the bot's, an attachment
is downloaded from Chatwoot and from nowhere else, and the payload shapes of older
releases and of the help center's sample are read safely.

Fixtures under tests/fixtures/chatwoot/ cite their source in `_source`; the label write
is checked against the swagger request schema kept there (schema_labels.json)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from core.errors import ProviderError
from integrations.chatwoot import ChatwootClient, parse_webhook_event
from integrations.chatwoot.labels import merge_labels
from tests.integrations.test_chatwoot_client import (
    API_URL,
    BASE,
    TOKEN,
    assert_matches_schema,
    load,
    make_config,
)

LABELS = f"{BASE}/conversations/318/labels"
TEMPERATURES = frozenset({"frio", "morno", "quente"})
BLOB = f"{API_URL}/rails/active_storage/blobs/redirect/eyJfcmFpbHMiOnt9--c0ffee/proposta-FB300.pdf"
DISK = f"{API_URL}/rails/active_storage/disk/eyJfcmFpbHMiOnt9--d15c/proposta-FB300.pdf"
S3 = "https://agrosouza-chatwoot.s3.sa-east-1.amazonaws.com/k3y?X-Amz-Signature=abc"
PDF = b"%PDF-1.7 proposta FB300"


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


def calls(mock: aioresponses, method: str, url: str) -> list[Any]:
    return list(mock.requests.get((method, URL(url)), []))


# --- labels ---------------------------------------------------------------------------


def test_merge_swaps_only_the_bots_family_and_keeps_everyone_elses() -> None:
    current = ["proposta-enviada", "morno", "VIP"]
    assert merge_labels(current, add=["quente"], replace=TEMPERATURES) == [
        "proposta-enviada",
        "VIP",
        "quente",
    ]
    assert merge_labels(current, add=["orcamento"]) == ["proposta-enviada", "morno", "VIP", "orcamento"]
    # Chatwoot keeps titles in lower case: the same label in another case is not added twice.
    assert merge_labels(["vip"], add=["VIP", " ", 3]) == ["vip"]


async def test_the_temperature_label_replaces_the_bots_old_one_and_keeps_the_sellers(
    client: ChatwootClient, mock: aioresponses
) -> None:
    mock.get(LABELS, payload=load("labels_list_response.json"))  # quente, proposta-enviada
    mock.post(LABELS, payload={"payload": ["proposta-enviada", "morno"]})
    labels = await client.merge_labels(318, add=["morno"], replace=TEMPERATURES)
    assert labels == ["proposta-enviada", "morno"]
    body = calls(mock, "POST", LABELS)[0].kwargs["json"]
    assert body == {"labels": ["proposta-enviada", "morno"]}
    assert_matches_schema(body, "schema_labels.json")
    assert calls(mock, "GET", LABELS)[0].kwargs["headers"]["api_access_token"] == TOKEN


async def test_nothing_is_written_when_the_labels_are_already_there(
    client: ChatwootClient, mock: aioresponses
) -> None:
    mock.get(LABELS, payload=load("labels_list_response.json"))
    assert await client.merge_labels(318, add=["quente"], replace=TEMPERATURES) == [
        "quente",
        "proposta-enviada",
    ]
    assert calls(mock, "POST", LABELS) == []


@pytest.mark.parametrize("answer", [{"error": "oops"}, {"payload": "quente"}, {}])
async def test_labels_that_cannot_be_read_are_never_overwritten(
    client: ChatwootClient, mock: aioresponses, answer: Any
) -> None:
    mock.get(LABELS, payload=answer)
    with pytest.raises(ProviderError) as err:
        await client.merge_labels(318, add=["quente"], replace=TEMPERATURES)
    assert err.value.retryable is False
    assert calls(mock, "POST", LABELS) == []


async def test_a_labels_read_during_an_outage_is_retried_later(
    client: ChatwootClient, mock: aioresponses
) -> None:
    mock.get(LABELS, status=503, payload={"error": "Service Unavailable"})
    with pytest.raises(ProviderError) as err:
        await client.merge_labels(318, add=["orcamento"])
    assert err.value.retryable is True
    assert calls(mock, "POST", LABELS) == []


# --- attachments ----------------------------------------------------------------------


async def test_an_attachment_on_chatwoots_disk_is_downloaded_with_its_name(
    client: ChatwootClient, mock: aioresponses
) -> None:
    mock.get(BLOB, status=302, headers={"Location": DISK})
    mock.get(
        DISK,
        body=PDF,
        headers={
            "Content-Type": "application/pdf",
            "Content-Disposition": "inline; filename=\"proposta.pdf\"; filename*=UTF-8''proposta%20FB300.pdf",
        },
    )
    data, mime, name = await client.download_attachment(BLOB, max_bytes=1024)
    assert (data, mime, name) == (PDF, "application/pdf", "proposta FB300.pdf")
    for url in (BLOB, DISK):  # both hops are Chatwoot's own: the token goes along
        assert calls(mock, "GET", url)[0].kwargs["headers"]["api_access_token"] == TOKEN


async def test_a_redirect_to_the_storage_host_is_followed_without_the_token(
    client: ChatwootClient, mock: aioresponses
) -> None:
    mock.get(BLOB, status=302, headers={"Location": S3})
    mock.get(S3, body=PDF, headers={"Content-Type": "application/pdf"})
    data, mime, name = await client.download_attachment(BLOB, max_bytes=1024)
    assert (data, mime) == (PDF, "application/pdf")
    assert name == "proposta-FB300.pdf"  # from the Chatwoot URL when the store names none
    assert "api_access_token" not in calls(mock, "GET", S3)[0].kwargs["headers"]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/rails/active_storage/blobs/redirect/x/proposta.pdf",
        "http://chat.agrosouza.com.br/rails/active_storage/blobs/redirect/x/proposta.pdf",  # other scheme
        "https://chat.agrosouza.com.br:8443/rails/active_storage/blobs/redirect/x/proposta.pdf",
        "https://user:pw@chat.agrosouza.com.br/x.pdf",
        "file:///etc/passwd",
        "/rails/active_storage/blobs/redirect/x/proposta.pdf",
    ],
)
async def test_an_attachment_anywhere_but_chatwoot_is_refused_without_a_request(
    client: ChatwootClient, mock: aioresponses, url: str
) -> None:
    with pytest.raises(ProviderError) as err:
        await client.download_attachment(url, max_bytes=1024)
    assert err.value.retryable is False
    assert not mock.requests


async def test_a_file_over_the_limit_is_refused_for_good(client: ChatwootClient, mock: aioresponses) -> None:
    mock.get(BLOB, body=b"x" * 2048, headers={"Content-Type": "application/pdf"})
    with pytest.raises(ProviderError) as err:
        await client.download_attachment(BLOB, max_bytes=1024)
    assert err.value.retryable is False


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (401, False), (429, True), (502, True)])
async def test_download_failures_say_whether_to_retry(
    client: ChatwootClient, mock: aioresponses, status: int, retryable: bool
) -> None:
    mock.get(BLOB, status=status, body="no")
    with pytest.raises(ProviderError) as err:
        await client.download_attachment(BLOB, max_bytes=1024)
    assert err.value.retryable is retryable
    assert TOKEN not in str(err.value)


async def test_a_file_not_yet_stored_behind_the_redirect_is_retried_later(
    client: ChatwootClient, mock: aioresponses
) -> None:
    mock.get(BLOB, status=302, headers={"Location": DISK})
    mock.get(DISK, status=404, body="Not Found")
    with pytest.raises(ProviderError) as err:
        await client.download_attachment(BLOB, max_bytes=1024)
    assert err.value.retryable is True


async def test_a_download_timeout_is_retried_later(client: ChatwootClient, mock: aioresponses) -> None:
    mock.get(BLOB, exception=TimeoutError())
    with pytest.raises(ProviderError) as err:
        await client.download_attachment(BLOB, max_bytes=1024)
    assert err.value.retryable is True


async def test_endless_redirects_are_refused(client: ChatwootClient, mock: aioresponses) -> None:
    mock.get(BLOB, status=302, headers={"Location": BLOB}, repeat=True)
    with pytest.raises(ProviderError) as err:
        await client.download_attachment(BLOB, max_bytes=1024)
    assert err.value.retryable is False


# --- payload shapes ---------------------------------------------------------------------


def test_the_help_center_sample_names_the_conversation_by_display_id() -> None:
    event = parse_webhook_event(load("webhook_help_center_sample.json"))
    assert event.message_id == 1 and event.conversation_id == 1
    assert event.private is None and not event.is_agent_reply


def test_display_id_is_the_conversation_id_when_both_are_given() -> None:
    body = load("webhook_message_created_account.json")
    body["conversation"]["display_id"] = 318
    body["conversation"]["id"] = 90001  # a database id some forks send: not what URLs take
    assert parse_webhook_event(body).conversation_id == 318
    status = load("webhook_conversation_status_changed.json")
    assert parse_webhook_event({**status, "display_id": 318, "id": 90001}).conversation_id == 318


@pytest.mark.parametrize("private", ["absent", None])
def test_an_outgoing_message_that_does_not_say_private_is_not_a_reply(private: Any) -> None:
    body = load("webhook_message_created_account.json")
    if private == "absent":
        del body["private"]
    else:
        body["private"] = private
    event = parse_webhook_event(json.dumps(body))
    assert event.private_unknown and not event.is_agent_reply


def test_a_replys_attachments_are_read_as_chatwoot_sends_them() -> None:
    event = parse_webhook_event(load("webhook_message_created_attachments.json"))
    assert event.is_agent_reply
    assert [(a.id, a.file_type, a.file_size) for a in event.attachments] == [
        (7301, "file", 182340),
        (7302, "image", 240511),
    ]
    assert all((a.data_url or "").startswith(API_URL) for a in event.attachments)

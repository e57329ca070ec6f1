"""The Supabase store's failures sit on the one exception tree, so callers decide by type:
an outage is `Retryable` (the turn runner and the outbox try again), a refused request
is `Permanent` (a bug or a schema out of date: dead-lettered, never retried)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from core.errors import Permanent, Retryable, SDRError, StoreUnavailable
from store.supabase import SupabaseRequestError, SupabaseStore
from store.supabase.errors import PostgrestRejected, PostgrestTransient

URL = "https://sdr-errors.supabase.co"
KEY = "errors-service-role-key"


@pytest.fixture
def answers() -> list[httpx.Response]:
    return []


@pytest.fixture
async def store(answers: list[httpx.Response]) -> AsyncIterator[SupabaseStore]:
    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    s = SupabaseStore(URL, KEY, transport=httpx.MockTransport(handler), max_attempts=1)
    await s.open()
    yield s
    await s.close()


async def test_an_outage_is_retryable_and_names_its_transient_cause(
    store: SupabaseStore, answers: list[httpx.Response]
) -> None:
    answers.append(httpx.Response(503, json={"code": "PGRST001", "message": "down"}))
    with pytest.raises(StoreUnavailable) as caught:
        await store.pending_contacts()
    assert isinstance(caught.value, Retryable) and not isinstance(caught.value, Permanent)
    assert isinstance(caught.value.__cause__, PostgrestTransient)
    assert isinstance(caught.value.__cause__, Retryable)


async def test_a_refused_request_is_permanent_and_not_an_outage(
    store: SupabaseStore, answers: list[httpx.Response]
) -> None:
    answers.append(httpx.Response(404, json={"code": "PGRST202", "message": "Could not find the function"}))
    with pytest.raises(SupabaseRequestError) as caught:
        await store.pending_contacts()
    assert isinstance(caught.value, Permanent) and isinstance(caught.value, SDRError)
    assert not isinstance(caught.value, Retryable)
    assert isinstance(caught.value.__cause__, PostgrestRejected)
    assert isinstance(caught.value.__cause__, Permanent)


async def test_a_refused_key_is_an_outage_whatever_its_4xx(
    store: SupabaseStore, answers: list[httpx.Response]
) -> None:
    answers.append(httpx.Response(401, json={"message": "Invalid API key"}))
    with pytest.raises(StoreUnavailable) as caught:
        await store.pending_contacts()
    assert isinstance(caught.value, Retryable)
    assert isinstance(caught.value.__cause__, PostgrestRejected)

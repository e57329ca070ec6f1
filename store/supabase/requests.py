"""The one way every Supabase request goes: a deadline, one retry policy, and every
answer classified by its HTTP status before supabase-py sees it.

Retried: 5xx, timeouts, connection errors; never a 4xx, which would fail the same way
again. When the policy gives up, the store raises `StoreUnavailable` (webhooks answer
503 so the provider retries, /api/health reports `supabase: error`); a 4xx becomes
`SupabaseRequestError`, except a refused key, which is an outage for this bot. Nothing
personal and never the service-role key goes into a log line or an exception message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any, NoReturn

import httpx
from postgrest.types import ReturnMethod
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from core.errors import StoreUnavailable
from core.logging import Scrubber, get_logger
from store.supabase.errors import PostgrestRejected, PostgrestTransient, SupabaseRequestError
from store.supabase.names import FUNCTIONS

log = get_logger("store.supabase")
_SCRUB = Scrubber()

RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 2.0
RETRY_JITTER_S = 0.1

# Retried on transient failures only, with exponential backoff and jitter; the number of
# attempts is the store's (SUPABASE_MAX_ATTEMPTS), set per store by `copy(stop=...)`.
RETRY_POLICY = AsyncRetrying(
    retry=retry_if_exception_type(PostgrestTransient),
    wait=wait_exponential(multiplier=RETRY_INITIAL_S, max=RETRY_MAX_S) + wait_random(0, RETRY_JITTER_S),
    stop=stop_after_attempt(3),
    reraise=True,
)


async def check_status(response: httpx.Response) -> None:
    """Classify every answer before supabase-py sees it: its own errors do not carry the
    HTTP status, and the status is what decides between retry, 503 and a bug."""
    if response.status_code < 400:
        return
    await response.aread()
    if response.status_code >= 500:
        raise PostgrestTransient(f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    # `details` can quote row values (a duplicate key's value): left out on purpose; the
    # message keeps what names the problem, with phone-like digit runs masked.
    message = body.get("message")
    raise PostgrestRejected(
        response.status_code, body.get("code"), _SCRUB.scrub(str(message)[:300]) if message else None
    )


# Our policy is the only one that retries: postgrest-py's own retry (GET/HEAD only, its
# own backoff) is switched off where this supabase-py version has the switch.
_NO_CLIENT_RETRY: dict[str, Any] = (
    {"postgrest_client_retry": False}
    if "postgrest_client_retry" in {f.name for f in fields(AsyncClientOptions)}
    else {}
)

Request = Callable[[], Awaitable[Any]]


class PostgrestRequests:
    """The HTTP side of the Supabase store: its client, and `_rpc`, `_select` and
    `_update`, the only three ways the store talks to PostgREST."""

    def __init__(
        self,
        url: str,
        service_role_key: str,
        *,
        timeout_s: float,
        max_attempts: int,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._url = url
        self._key = service_role_key
        self._timeout_s = timeout_s
        self._retrying = RETRY_POLICY.copy(stop=stop_after_attempt(max(1, max_attempts)))
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncClient | None = None

    # --- lifecycle ----------------------------------------------------------------
    async def open(self) -> None:
        """One HTTP client for the store's life; no request yet, so an outage at start
        shows in /api/health instead of stopping the process."""
        if self._client is not None:
            return
        http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self._timeout_s),
            event_hooks={"response": [check_status]},
        )
        options = AsyncClientOptions(
            httpx_client=http,
            postgrest_client_timeout=self._timeout_s,
            auto_refresh_token=False,
            persist_session=False,
            **_NO_CLIENT_RETRY,
        )
        try:
            self._client = await acreate_client(self._url, self._key, options=options)
        except Exception:
            await http.aclose()
            raise
        self._http = http

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.aclose()

    # --- the one way every request goes ---------------------------------------------
    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise StoreUnavailable("supabase store is not open")
        return self._client

    async def _attempt(self, request: Request) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await request()
        except TimeoutError as exc:
            raise PostgrestTransient(f"no answer within {self._timeout_s:g} s") from exc
        except httpx.TimeoutException as exc:
            raise PostgrestTransient(f"timeout ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise PostgrestTransient(f"connection error ({type(exc).__name__})") from exc
        return response.data

    async def _call(self, operation: str, request: Request) -> Any:
        self._require_client()
        try:
            # A copy per call: a Retrying object keeps its iteration state, and calls overlap.
            return await self._retrying.copy()(self._attempt, request)
        except PostgrestTransient as exc:
            log.warning("supabase_unavailable", operation=operation, error=str(exc))
            raise StoreUnavailable(f"supabase {operation} unavailable: {exc}") from exc
        except PostgrestRejected as exc:
            self._rejected(operation, exc)

    @staticmethod
    def _rejected(operation: str, exc: PostgrestRejected) -> NoReturn:
        if exc.status in (401, 403):
            # A revoked or wrong key is an outage for this bot: refuse (503), never drop.
            raise StoreUnavailable(
                f"supabase {operation} unavailable: the service role key was refused (HTTP {exc.status})"
            ) from exc
        log.error("supabase_rejected", operation=operation, status=exc.status, code=exc.code)
        raise SupabaseRequestError(operation, exc.status, exc.code, exc.message) from exc

    async def _rpc(self, function: str, **params: Any) -> Any:
        unknown = set(params) - set(FUNCTIONS[function])
        if unknown:  # a programming error, caught by the schema-names test too
            raise TypeError(f"{function} takes no {sorted(unknown)}")
        client = self._require_client()
        return await self._call(f"rpc {function}", lambda: client.rpc(function, params).execute())

    async def _select(
        self,
        table: str,
        columns: str,
        *,
        eq: dict[str, Any] | None = None,
        lte: dict[str, Any] | None = None,
        order: tuple[str, ...] = (),
        desc: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        client = self._require_client()

        def request() -> Awaitable[Any]:
            query = client.table(table).select(columns)
            for column, value in (eq or {}).items():
                query = query.eq(column, value)
            for column, value in (lte or {}).items():
                query = query.lte(column, value)
            for column in order:
                query = query.order(column, desc=desc)
            if limit is not None:
                query = query.limit(limit)
            return query.execute()

        rows: list[dict[str, Any]] = await self._call(f"select {table}", request)
        return rows

    async def _update(
        self, table: str, values: dict[str, Any], *, eq: dict[str, Any], is_null: tuple[str, ...] = ()
    ) -> None:
        client = self._require_client()

        def request() -> Awaitable[Any]:
            query = client.table(table).update(values, returning=ReturnMethod.minimal)
            for column, value in eq.items():
                query = query.eq(column, value)
            for column in is_null:
                query = query.is_(column, None)
            return query.execute()

        await self._call(f"update {table}", request)

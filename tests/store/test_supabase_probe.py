"""The Supabase store's own doctor probe: each way the store's read can fail, worded for
the operator, with the store always closed and the key never quoted.

The store is a stand-in here (the real one against a loopback PostgREST is in
tests/cli/test_doctor.py); the `ProbeIO` is a minimal one whose verdicts are recognisable.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from core.errors import StoreUnavailable
from core.probe import ProbeReply, ProbeResult
from core.settings import Settings
from store.supabase import SupabaseRequestError
from store.supabase_probe import probe_supabase

URL = "https://abcdefgh.supabase.co"
KEY = "service-role-key-for-the-probe"


class FakeIO:
    timeout_s = 3.0

    async def get(
        self, url: str, *, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
    ) -> ProbeReply:
        raise AssertionError("the Supabase probe reads through the store, not through the doctor's GET")

    def timed_out(self) -> ProbeResult:
        return ProbeResult(False, "TIMED OUT")

    def unreachable(self, host: str) -> ProbeResult:
        return ProbeResult(False, f"UNREACHABLE {host}")

    def provider_words(self, reply: ProbeReply, *paths: tuple[str, ...]) -> str:
        return ""

    def unexpected(self, reply: ProbeReply, *paths: tuple[str, ...]) -> ProbeResult:
        return ProbeResult(False, "UNEXPECTED")

    def scrub(self, text: str) -> str:
        return text.replace(KEY, "***")


class FakeStore:
    """Records how the probe built it; `ping` (or `open`) fails as told."""

    built: list[FakeStore] = []
    error: Exception | None = None
    fail_on_open = False

    def __init__(self, url: str, key: str, *, timeout_s: float, max_attempts: int) -> None:
        self.args = (url, key, timeout_s, max_attempts)
        self.closed = False
        FakeStore.built.append(self)

    async def open(self) -> None:
        if FakeStore.fail_on_open and FakeStore.error is not None:
            raise FakeStore.error

    async def ping(self) -> None:
        if FakeStore.error is not None:
            raise FakeStore.error

    async def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_store(monkeypatch: pytest.MonkeyPatch) -> None:
    import store.supabase as supabase_module

    FakeStore.built, FakeStore.error, FakeStore.fail_on_open = [], None, False
    monkeypatch.setattr(supabase_module, "SupabaseStore", FakeStore)


def settings() -> Settings:
    return Settings(_env_file=None, supabase_url=URL, supabase_service_role_key=KEY)  # type: ignore[arg-type]


def url_and_key(s: Settings) -> tuple[str | None, SecretStr | None]:
    return s.supabase_url, s.supabase_service_role_key


async def probe(error: Exception | None = None, *, on_open: bool = False) -> ProbeResult:
    FakeStore.error, FakeStore.fail_on_open = error, on_open
    result = await probe_supabase(*url_and_key(settings()), FakeIO())
    [store] = FakeStore.built
    assert store.closed
    assert KEY not in result.detail + result.hint
    return result


async def test_a_readable_store_is_ok_and_read_once_with_the_service_role_key() -> None:
    result = await probe()
    assert result == ProbeResult(
        True, "database reachable with the service_role key; the bot's tables are present"
    )
    assert FakeStore.built[0].args == (URL, KEY, 3.0, 1)


@pytest.mark.parametrize(
    ("error", "detail", "hint"),
    [
        (
            StoreUnavailable(
                "supabase select inbound unavailable: the service role key was refused (HTTP 401)"
            ),
            "invalid token: Supabase refused the service_role key",
            "SUPABASE_SERVICE_ROLE_KEY",
        ),
        (
            StoreUnavailable(f"supabase select inbound unavailable: HTTP 503 {KEY}"),
            "Supabase did not answer properly (supabase select inbound unavailable: HTTP 503 ***)",
            "Supabase dashboard",
        ),
        (
            SupabaseRequestError("select inbound", 404, "PGRST205", "Could not find the table"),
            "the Supabase database does not have the bot's tables yet",
            "migrate --apply",
        ),
        (
            SupabaseRequestError("select inbound", 400, "42883", "function does not exist"),
            "the Supabase database does not have the bot's tables yet",
            "DATABASE_URL",
        ),
        (
            SupabaseRequestError("select inbound", 400, "22P02", "invalid input"),
            "Supabase refused the read (HTTP 400 22P02)",
            "latest schema",
        ),
        (
            httpx.InvalidURL("no scheme"),
            "could not open the Supabase client (InvalidURL)",
            "SUPABASE_URL",
        ),
    ],
)
async def test_each_failure_is_worded_for_the_operator(error: Exception, detail: str, hint: str) -> None:
    result = await probe(error)
    assert not result.ok
    assert result.detail == detail
    assert hint in result.hint


async def test_timeouts_and_unreachable_hosts_take_the_doctors_own_words() -> None:
    assert await probe(StoreUnavailable("supabase select inbound unavailable: no answer within 3 s")) == (
        ProbeResult(False, "TIMED OUT")
    )
    FakeStore.built = []
    reply = await probe(StoreUnavailable("supabase select inbound unavailable: timeout (ReadTimeout)"))
    assert reply.detail == "TIMED OUT"
    FakeStore.built = []
    reply = await probe(
        StoreUnavailable("supabase select inbound unavailable: connection error (ConnectError)")
    )
    assert reply.detail == "UNREACHABLE abcdefgh.supabase.co"


async def test_a_failure_on_open_still_closes_the_store() -> None:
    result = await probe(ValueError("bad key format"), on_open=True)
    assert result.detail == "could not open the Supabase client (ValueError)"


async def test_without_the_store_module_the_probe_says_to_update_the_bot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "store.supabase", None)
    result = await probe_supabase(*url_and_key(settings()), FakeIO())
    assert result.detail == "this version of the bot has no Supabase module"
    assert "SUPABASE_URL empty" in result.hint


async def test_without_the_supabase_library_the_probe_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_store(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "store.supabase":
            raise ModuleNotFoundError("No module named 'supabase'", name="supabase")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_store)
    result = await probe_supabase(*url_and_key(settings()), FakeIO())
    assert result.detail == "the library 'supabase' used by Supabase is missing"
    assert result.hint == "reinstall the bot's dependencies: pip install -e ."

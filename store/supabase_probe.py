"""The doctor's check of the Supabase store: the store's own read, worded for an operator.

Beside the store, not inside its package: the Supabase backend is optional and its
libraries need not be installed for SQLite setups, so this module imports nothing of
it until the probe runs, and says what is missing when the import fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yarl import URL

from core.errors import StoreUnavailable
from core.probe import ProbeIO, ProbeResult, ok, problem

if TYPE_CHECKING:
    from pydantic import SecretStr

    from store.supabase import SupabaseRequestError

# PostgREST codes for "that table or function is not there": the schema was never applied.
MISSING_SCHEMA = frozenset({"PGRST205", "PGRST202", "42P01", "42883"})
# How much of the store's own words an operator is shown.
_QUOTE_MAX = 120


async def probe_supabase(url: str | None, key: SecretStr | None, io: ProbeIO) -> ProbeResult:
    """SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, checked with the store's own read."""
    try:  # optional backend: its dependencies need not be installed for SQLite setups
        from store.supabase import SupabaseRequestError, SupabaseStore
    except ImportError as exc:
        return _not_installed(exc)
    # The store's own read: `ping` selects one row of `inbound` through PostgREST.
    store = SupabaseStore(
        url or "",
        _secret(key),
        timeout_s=io.timeout_s,
        max_attempts=1,
    )
    try:
        await store.open()
        await store.ping()
    except StoreUnavailable as exc:
        return _unavailable(exc, url or "", io)
    except SupabaseRequestError as exc:
        return _rejected(exc)
    except Exception as exc:  # client construction: bad URL or key format
        return problem(
            f"could not open the Supabase client ({type(exc).__name__})",
            "check SUPABASE_URL (https://<project>.supabase.co) and SUPABASE_SERVICE_ROLE_KEY",
        )
    finally:
        await store.close()
    return ok("database reachable with the service_role key; the bot's tables are present")


def _not_installed(exc: ImportError) -> ProbeResult:
    if exc.name and exc.name.startswith("store"):
        return problem(
            "this version of the bot has no Supabase module",
            "update the bot; meanwhile, leave SUPABASE_URL empty to use the built-in SQLite",
        )
    return problem(
        f"the library '{exc.name}' used by Supabase is missing",
        "reinstall the bot's dependencies: pip install -e .",
    )


def _unavailable(exc: StoreUnavailable, url: str, io: ProbeIO) -> ProbeResult:
    said = str(exc).lower()
    if "key was refused" in said:
        return problem(
            "invalid token: Supabase refused the service_role key",
            "copy the service_role key (Supabase → Project Settings → API) into SUPABASE_SERVICE_ROLE_KEY",
        )
    if "timeout" in said or "no answer" in said:
        return io.timed_out()
    if "connection error" in said:
        return io.unreachable(_host(url))
    return problem(
        f"Supabase did not answer properly ({io.scrub(str(exc))[:_QUOTE_MAX]})",
        "check the project's status in the Supabase dashboard and run again",
    )


def _rejected(exc: SupabaseRequestError) -> ProbeResult:
    if exc.status == 404 or exc.code in MISSING_SCHEMA:
        return problem(
            "the Supabase database does not have the bot's tables yet",
            "apply the schema: set DATABASE_URL and run python main.py migrate --apply",
        )
    return problem(
        f"Supabase refused the read (HTTP {exc.status}{' ' + exc.code if exc.code else ''})",
        "apply the latest schema: python main.py migrate --apply",
    )


def _host(url: str) -> str:
    try:
        return URL(url).host or "?"
    except (TypeError, ValueError):
        return "?"


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""

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
            f"não deu para abrir o cliente do Supabase ({type(exc).__name__})",
            "confira SUPABASE_URL (https://<projeto>.supabase.co) e SUPABASE_SERVICE_ROLE_KEY",
        )
    finally:
        await store.close()
    return ok("banco acessível com a chave service_role; tabelas do bot presentes")


def _not_installed(exc: ImportError) -> ProbeResult:
    if exc.name and exc.name.startswith("store"):
        return problem(
            "esta versão do bot não tem o módulo do Supabase",
            "atualize o bot; enquanto isso, deixe SUPABASE_URL vazio para usar o SQLite embutido",
        )
    return problem(
        f"falta a biblioteca '{exc.name}' usada pelo Supabase",
        "instale as dependências do bot de novo: pip install -e .",
    )


def _unavailable(exc: StoreUnavailable, url: str, io: ProbeIO) -> ProbeResult:
    said = str(exc).lower()
    if "key was refused" in said:
        return problem(
            "token inválido: o Supabase recusou a chave service_role",
            "copie a chave service_role (Supabase → Project Settings → API) para SUPABASE_SERVICE_ROLE_KEY",
        )
    if "timeout" in said or "no answer" in said:
        return io.timed_out()
    if "connection error" in said:
        return io.unreachable(_host(url))
    return problem(
        f"o Supabase não respondeu direito ({io.scrub(str(exc))[:_QUOTE_MAX]})",
        "veja o status do projeto no painel do Supabase e rode de novo",
    )


def _rejected(exc: SupabaseRequestError) -> ProbeResult:
    if exc.status == 404 or exc.code in MISSING_SCHEMA:
        return problem(
            "o banco do Supabase ainda não tem as tabelas do bot",
            "aplique o schema: defina DATABASE_URL e rode python main.py migrate --apply",
        )
    return problem(
        f"o Supabase recusou a leitura (HTTP {exc.status}{' ' + exc.code if exc.code else ''})",
        "aplique o schema mais recente: python main.py migrate --apply",
    )


def _host(url: str) -> str:
    try:
        return URL(url).host or "?"
    except (TypeError, ValueError):
        return "?"


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""

"""Real-PostgreSQL helpers for the Supabase migration tests (and anything else that
needs the migrated schema): connect, create a throwaway schema, apply the migrations.

`TEST_DATABASE_URL` wins, else the local service at 127.0.0.1:5432. When Postgres is
unreachable a test is skipped, unless `SDR_REQUIRE_SERVICES=1` (CI), where it fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

try:
    import psycopg
    from psycopg.types.json import Jsonb
except ImportError:  # pragma: no cover - psycopg is a dev dependency
    if os.environ.get("SDR_REQUIRE_SERVICES") == "1":
        raise
    pytest.skip("psycopg is not installed: pip install 'psycopg[binary]'", allow_module_level=True)

__all__ = [
    "Jsonb",
    "apply_migrations",
    "connect",
    "database_url",
    "fresh_schema",
    "psycopg",
    "require_postgres",
]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "supabase" / "migrations"


def database_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL


def migration_files() -> list[Path]:
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    assert files, f"no migrations in {MIGRATIONS_DIR}: a schema without them proves nothing"
    return files


def connect(schema: str | None = None, **kwargs):  # type: ignore[no-untyped-def]
    """A new autocommit connection, with search_path set to `schema` when given."""
    options = f"-c search_path={schema}" if schema else None
    return psycopg.connect(database_url(), autocommit=True, connect_timeout=5, options=options, **kwargs)


def require_postgres() -> None:
    """Skip (or, in CI, fail) when the database cannot be reached."""
    try:
        with connect() as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {database_url()}: start it or set TEST_DATABASE_URL ({exc})"
        if os.environ.get("SDR_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def apply_migrations(conn, times: int = 1) -> None:  # type: ignore[no-untyped-def]
    for _ in range(times):
        for path in migration_files():
            conn.execute(path.read_text(encoding="utf-8"))


@contextmanager
def fresh_schema(*, apply_times: int = 2) -> Iterator[str]:
    """A new schema `t_<random>` with the migrations applied (twice: re-run safety),
    dropped afterwards."""
    require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    with connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            with connect(schema) as conn:
                apply_migrations(conn, apply_times)
            yield schema
        finally:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

"""`python main.py migrate [--apply]`: the Supabase/Postgres schema, printed or applied.

Every migration file is re-runnable, so applying twice is safe; applying needs psycopg
(the `postgres` extra) and DATABASE_URL. Failures are `CliError`s: one line that says
what to do, never the URL's password.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from cli.errors import CliError
from core.paths import PROJECT_ROOT
from core.settings import Settings

MIGRATIONS = PROJECT_ROOT / "supabase" / "migrations"
CONNECT_TIMEOUT_S = 10


def run_migrate(settings: Settings, *, apply: bool) -> int:
    """Print the schema SQL, or apply it to DATABASE_URL (every file is re-runnable)."""
    files = sorted(MIGRATIONS.glob("*.sql"))
    if not files:
        print(f"error: no migrations found in {MIGRATIONS}: is this a full checkout?", file=sys.stderr)
        return 2
    if not apply:
        for path in files:
            print(f"-- {path.name}\n{path.read_text(encoding='utf-8')}")
        return 0
    if settings.database_url is None:
        print(
            "error: set DATABASE_URL to apply the migrations (or run without --apply to print them).",
            file=sys.stderr,
        )
        return 2
    try:
        import psycopg
    except ImportError:
        raise CliError(
            "migrate --apply needs the postgres extra (psycopg): pip install -e '.[postgres]' "
            "(or pip install 'psycopg[binary]'), then run it again."
        ) from None
    url = settings.database_url.get_secret_value()
    try:
        conn = psycopg.connect(url, autocommit=False, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise CliError(
            f"cannot connect to the database at {_where(url)} ({_first_line(exc)}). "
            "Check DATABASE_URL and that PostgreSQL is running and reachable."
        ) from exc
    with conn:
        for path in files:
            try:
                conn.execute(path.read_text(encoding="utf-8"))
            except psycopg.Error as exc:
                raise CliError(
                    f"applying {path.name} failed, nothing was committed ({_first_line(exc)}). "
                    "Check that DATABASE_URL's user may create tables and functions."
                ) from exc
            print(f"applied {path.name}")
        conn.commit()
    return 0


def _where(url: str) -> str:
    """host:port/database of a connection URL, never its user or password."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.hostname or 'localhost'}{port}{parts.path or ''}"


def _first_line(exc: Exception) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)

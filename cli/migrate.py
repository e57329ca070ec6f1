"""`python main.py migrate [--apply]`: the Supabase/Postgres schema, printed or applied.

Every migration file is re-runnable, so applying twice is safe; applying needs psycopg
(the `postgres` extra) and DATABASE_URL.
"""

from __future__ import annotations

import sys

from core.paths import PROJECT_ROOT
from core.settings import Settings

MIGRATIONS = PROJECT_ROOT / "supabase" / "migrations"


def run_migrate(settings: Settings, *, apply: bool) -> int:
    """Print the schema SQL, or apply it to DATABASE_URL (every file is re-runnable)."""
    files = sorted(MIGRATIONS.glob("*.sql"))
    if not files:
        print(f"no migrations found in {MIGRATIONS}", file=sys.stderr)
        return 2
    if not apply:
        for path in files:
            print(f"-- {path.name}\n{path.read_text(encoding='utf-8')}")
        return 0
    if settings.database_url is None:
        print(
            "Set DATABASE_URL to apply the migrations (or run without --apply to print them).",
            file=sys.stderr,
        )
        return 2
    try:
        import psycopg
    except ImportError:
        print("Applying needs psycopg: pip install 'psycopg[binary]'", file=sys.stderr)
        return 2
    with psycopg.connect(settings.database_url.get_secret_value(), autocommit=False) as conn:
        for path in files:
            conn.execute(path.read_text(encoding="utf-8"))
            print(f"applied {path.name}")
        conn.commit()
    return 0

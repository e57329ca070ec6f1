"""`python main.py migrate`: print the schema, or apply it (twice, safely) to DATABASE_URL."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote

import pytest

import main
from core.settings import Settings
from tests.store import pg_support


def test_without_apply_the_sql_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(_env_file=None, sqlite_path=tmp_path / "x.sqlite3")
    assert main._migrate(settings, apply=False) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE IF NOT EXISTS" in out and "sdr_commit_turn" in out


def test_apply_without_database_url_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(_env_file=None, sqlite_path=tmp_path / "x.sqlite3")
    assert main._migrate(settings, apply=True) == 2
    assert "DATABASE_URL" in capsys.readouterr().err


def test_apply_creates_the_schema_and_can_run_again(tmp_path: Path) -> None:
    pg_support.require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    with pg_support.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            url = pg_support.database_url()
            sep = "&" if "?" in url else "?"
            target = f"{url}{sep}options={quote(f'-c search_path={schema}')}"
            settings = Settings(_env_file=None, sqlite_path=tmp_path / "x.sqlite3", database_url=target)
            assert main._migrate(settings, apply=True) == 0
            assert main._migrate(settings, apply=True) == 0  # re-running is safe
            tables = {
                row[0]
                for row in admin.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
                )
            }
            assert {"leads", "messages", "inbound", "outbox", "orcamentos", "technical_questions"} <= tables
        finally:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

"""What an operator sees when a command fails: one line on stderr saying what went wrong
and what to do, exit 1 (2 for a mistyped command line), and no traceback unless --debug.

These run `python main.py` as the operator does: the exit code and stderr are the
process's. Each runs in an empty directory (no .env is read) with only the variables
the case sets.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there
KEY = "service-role-key-that-must-never-be-printed"


def run(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "SYSTEMROOT") if k in os.environ}
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *argv],
        check=False,
        cwd=tmp_path,
        env={**base, "SQLITE_PATH": str(tmp_path / "sdr.sqlite3"), "LOG_FORMAT": "console", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize("argv", [("outbox", "stats"), ("forget", "5511999999999")])
def test_supabase_unreachable_is_one_line_naming_what_to_check(tmp_path: Path, argv: tuple[str, ...]) -> None:
    result = run(tmp_path, *argv, SUPABASE_URL=UNREACHABLE, SUPABASE_SERVICE_ROLE_KEY=KEY)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("error: the store is unreachable")
    assert "SUPABASE_URL" in line and "python main.py doctor" in line
    assert KEY not in result.stderr + result.stdout


def test_a_store_path_that_cannot_exist_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = run(tmp_path, "outbox", "stats", SQLITE_PATH=str(tmp_path / "a-file" / "sdr.sqlite3"))
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("error: cannot use ") and "SQLITE_PATH" in line


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run(
        tmp_path, "--debug", "outbox", "stats", SUPABASE_URL=UNREACHABLE, SUPABASE_SERVICE_ROLE_KEY=KEY
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "StoreUnavailable" in result.stderr


def test_migrate_apply_against_an_unreachable_database(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    result = run(tmp_path, "migrate", "--apply", DATABASE_URL="postgresql://sdr:pa55word@127.0.0.1:9/sdr")
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("error: cannot connect to the database at 127.0.0.1:9/sdr")
    assert "Check DATABASE_URL" in line
    assert "pa55word" not in result.stderr + result.stdout


def test_migrate_apply_without_psycopg_names_the_extra(tmp_path: Path) -> None:
    """A directory named psycopg whose import fails stands in for the missing package."""
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no psycopg here')\n")
    result = run(
        tmp_path,
        "migrate",
        "--apply",
        DATABASE_URL="postgresql://sdr:x@127.0.0.1:9/sdr",
        PYTHONPATH=str(shadow.parent),
    )
    assert result.returncode == 1
    assert "pip install -e '.[postgres]'" in one_line(result)


def test_an_invalid_setting_names_the_variable_not_its_value(tmp_path: Path) -> None:
    result = run(tmp_path, "outbox", "stats", PORT="eighty", OPENAI_API_KEY="sk-never-printed-0000")
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("error: invalid setting(s): PORT:") and ".env" in line
    assert "eighty" not in line and "sk-never-printed" not in result.stderr


def test_a_taken_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    """The port is bound before `listening` is logged and before the worker process
    starts: the operator reads which port and what to do, and the process exits 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(tmp_path, "serve", HOST="127.0.0.1", PORT=str(port))
    output = result.stdout + result.stderr
    assert result.returncode == 1
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "port_in_use" in lines[0] and f"127.0.0.1:{port}" in lines[0]
    assert f"another process is listening on port {port}: stop it, or set PORT to a free port" in lines[0]
    assert not re.search(r"\] listening ", output)  # the event, not the hint's words
    assert "worker" not in output and "Traceback" not in output


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("forget", "5511999999999", "--channel", "telegram"), "invalid choice: 'telegram'"),
        (("outbox", "stats", "--limit", "0"), "--limit: '0' must be 1 or more"),
        (("outbox", "explode"), "invalid choice: 'explode'"),
        (("outbox", "list", "--kind", "piperun"), "invalid choice: 'piperun'"),
        (("launch",), "no command 'launch'; choose from serve, chat"),
        (("help", "launch"), "no command 'launch'"),
    ],
)
def test_a_mistyped_command_line_is_one_usage_line_exit_2(
    tmp_path: Path, argv: tuple[str, ...], says: str
) -> None:
    result = run(tmp_path, *argv)
    assert result.returncode == 2
    line = one_line(result)
    assert says in line and "see `python main.py help" in line
    assert "worker" not in line


def test_forget_lists_the_channels_it_knows(tmp_path: Path) -> None:
    line = one_line(run(tmp_path, "forget", "5511999999999", "--channel", "telegram"))
    for channel in ("whatsapp", "instagram", "cli", "zapi", "waha", "whatsapp_cloud"):
        assert f"'{channel}'" in line

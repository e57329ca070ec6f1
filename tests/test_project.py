"""The newcomer's path: README commands, CI and configuration stay in sync."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from core.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    command = ci.strip().splitlines()[-1]
    assert command in readme, "README's test command and .ci/run drifted apart"


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    example = (REPO / ".env.example").read_text()
    names = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    expected = {name.upper() for name in Settings.model_fields}
    assert names == expected


def test_env_example_as_is_starts_with_nothing_configured(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text((REPO / ".env.example").read_text())
    settings = Settings(_env_file=env)
    assert not settings.openai_configured
    assert not settings.zapi_configured
    assert settings.sqlite_path.name == "sdr.sqlite3"
    assert settings.zapi_webhook_secret is None


def test_every_variable_the_readme_names_is_a_real_setting() -> None:
    """A newcomer copies names from the README: each must be one the bot reads."""
    readme = (REPO / "README.md").read_text()
    named = {
        n for n in re.findall(r"`([A-Z][A-Z0-9_]{3,})=?[^`]*`", readme) if not n.endswith("_")
    }  # not FOO_*
    settings = {name.upper() for name in Settings.model_fields}
    not_settings = {"POST", "PROBLEM", "WORKING", "TEST_DATABASE_URL"}  # words and the test suite's own
    assert sorted(named - settings - not_settings) == []


def test_every_app_a_test_builds_runs_on_the_test_clock() -> None:
    """Opening hours, holidays and sessions follow the app's clock: an app built in a test
    without one reads the machine's time, and its outcome then depends on when CI runs."""
    import ast

    unclocked = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "create_app"
                and not any(k.arg in ("clock", None) for k in node.keywords)
            ):
                unclocked.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert unclocked == []


def test_nothing_imports_the_composition_root() -> None:
    """main.py sits above every floor (import-linter only takes packages, so this part of
    the layer contract is checked here): a package importing it would turn the map upside
    down."""
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("core", "store", "agent", "channels", "integrations", "runtime", "web", "cli")
        for path in (REPO / folder).rglob("*.py")
        if re.search(r"^\s*(from main import|import main\b)", path.read_text(), flags=re.M)
    ]
    assert offenders == []


SOURCE_FLOORS = ("core", "store", "agent", "channels", "integrations", "runtime", "web", "cli")
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def _source_files() -> list[Path]:
    return [REPO / "main.py"] + [p for floor in SOURCE_FLOORS for p in sorted((REPO / floor).rglob("*.py"))]


def test_no_source_file_is_longer_than_600_lines() -> None:
    """A file a newcomer cannot read in one sitting hides more than one job (benches and
    tests are exempt: they are long by nature)."""
    long_files = {
        str(path.relative_to(REPO)): n
        for path in _source_files()
        if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert long_files == {}


def test_no_function_is_longer_than_80_lines() -> None:
    long_functions = {}
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = length
    assert long_functions == {}


def test_the_web_process_does_not_load_the_model_client() -> None:
    """The web role only takes webhooks; the worker thinks. The openai package (and the
    agent graph) cost the web process ~20 MB it never uses, so nothing it imports at
    start may pull them in (a fresh interpreter: this suite has long imported them)."""
    probe = "import sys, web.app; print(sorted(m for m in ('openai', 'langgraph') if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"

"""The README is a newcomer's path: what it tells them to type must exist, where it sends
them must be there, and it must stay short enough to be read before the first try."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("**/*.md"))
README_MAX_LINES = 220

# `python main.py chat`, `python main.py outbox show 1`; flags and placeholders are not commands.
_COMMAND = re.compile(r"python main\.py((?:\s+(?:help|[a-z][a-z-]*))?(?:\s+[a-z][a-z-]*)?)")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _named_commands(paths: list[Path]) -> set[tuple[str, ...]]:
    """Every `python main.py WORD [WORD]` the pages name, as (command, maybe sub-action)."""
    named: set[tuple[str, ...]] = set()
    for path in paths:
        for match in _COMMAND.finditer(path.read_text(encoding="utf-8")):
            words = tuple(match.group(1).split())
            if words:
                named.add(words)
    return named


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public way to list subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _positional_choices(parser: argparse.ArgumentParser) -> set[str] | None:
    """The closed set a command's first positional takes (`outbox stats|list|...`), if any."""
    for action in parser._actions:
        if not action.option_strings and action.choices is not None:
            return {str(c) for c in action.choices}
    return None


def _cli_parser() -> argparse.ArgumentParser | None:
    """The parser main.py dispatches with (cli.parser builds it for main.py), or None in
    a layout without it, where the CLI itself is asked instead."""
    try:
        from cli.parser import build_parser
    except ImportError:
        return None
    return build_parser()


def _answers_help(words: tuple[str, ...]) -> bool:
    done = subprocess.run(
        [sys.executable, "main.py", words[0], "--help"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode == 0 and all(word in done.stdout for word in words[1:])


def test_readme_is_short_enough_to_read_before_the_first_try() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_every_command_the_readme_and_docs_name_is_a_real_cli_command() -> None:
    named = _named_commands([README, *DOCS])
    assert {words[0] for words in named} >= {"chat", "doctor", "outbox", "forget", "migrate"}
    parser = _cli_parser()
    if parser is None:
        wrong = [" ".join(words) for words in sorted(named) if not _answers_help(words)]
    else:
        commands = _subcommands(parser)
        wrong = [" ".join(words) for words in sorted(named) if not _is_command(commands, words)]
    assert wrong == [], f"the README or docs/ name commands the CLI does not have: {wrong}"


def _is_command(commands: dict[str, argparse.ArgumentParser], words: tuple[str, ...]) -> bool:
    command = commands.get(words[0])
    if command is None:
        return False
    choices = _positional_choices(command)
    return len(words) == 1 or choices is None or words[1] in choices


def test_a_command_the_cli_does_not_have_is_caught() -> None:
    """The check above would pass on an empty list: make sure it can fail."""
    parser = _cli_parser()
    if parser is None:
        assert not _answers_help(("no-such-command",))
        return
    commands = _subcommands(parser)
    assert not _is_command(commands, ("no-such-command",))
    assert not _is_command(commands, ("outbox", "purge"))
    assert _is_command(commands, ("outbox", "replay"))


def test_every_relative_link_in_the_readme_and_docs_points_at_a_file() -> None:
    broken = []
    for page in [README, *DOCS]:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # https:, mailto:, an anchor on the same page
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert broken == []


def test_the_readme_sends_the_long_material_to_docs() -> None:
    readme = README.read_text(encoding="utf-8")
    linked = {target for target in _LINK.findall(readme) if target.startswith("docs/")}
    assert linked >= {
        "docs/providers.md",
        "docs/operate.md",
        "docs/configuration.md",
        "docs/how-it-works.md",
        "docs/security.md",
        "docs/performance.md",
    }
    # The path a newcomer follows, in this order.
    order = [
        "## The two commands",
        "## Try it in 2 minutes",
        "## Connect a provider",
        "## Operate",
        "## Limits",
    ]
    positions = [readme.index(heading) for heading in order]
    assert positions == sorted(positions)


def test_the_health_page_documents_every_key_the_health_body_has() -> None:
    """A monitor's author reads docs/operate.md, not web/health.py."""
    operate = (REPO / "docs" / "operate.md").read_text(encoding="utf-8")
    keys = ["status", "starting", "services", "worker", "outbox", "active_contacts", "circuits"]
    states = ["healthy", "degraded", "starting", "draining", "Retry-After"]
    assert [k for k in keys + states if f"`{k}" not in operate and f".{k}`" not in operate] == []


def _settings() -> set[str]:
    from core.settings import Settings

    return {name.upper() for name in Settings.model_fields}


def test_the_configuration_page_lists_every_setting() -> None:
    """docs/configuration.md is the map of .env.example: a new setting belongs on it."""
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"[A-Z][A-Z0-9_]{3,}", page))
    for stem, tails in re.findall(r"([A-Z][A-Z0-9_]+)\[([A-Z0-9_/]+)\]", page):  # FOO[_A/_B]
        listed |= {stem} | {stem + tail for tail in tails.split("/")}
    patterns = [
        re.escape(p).replace(r"\*", "[A-Z0-9_]+")
        for p in re.findall(r"[A-Z0-9_]*\*[A-Z0-9_]*", page)
        if p.strip("*")  # FOO_* or *_RATE_PER_S, never markdown's bare ** (it would match all)
    ]
    unlisted = [n for n in _settings() if n not in listed and not any(re.fullmatch(p, n) for p in patterns)]
    assert sorted(unlisted) == []


def test_every_variable_the_docs_name_is_a_real_setting() -> None:
    """The README's rule (tests/test_project.py) for the pages it links to."""
    words = {
        "POST",
        "PROBLEM",
        "WORKING",
        "TEST_DATABASE_URL",
    }  # HTTP, doctor's word, WAHA's state, the suite's
    named = {
        name
        for page in DOCS
        for name in re.findall(r"`([A-Z][A-Z0-9_]{3,})=?[^`]*`", page.read_text(encoding="utf-8"))
        if not name.endswith("_")
    }
    assert sorted(named - _settings() - words) == []

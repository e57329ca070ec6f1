"""Reading the editable files in `prompts/`: one place decides what a broken file says.

Every loader (scoring rules, business hours, company, fixed messages) fails at start
with the file's path in the message, so a manager who mistyped a file knows which one.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_toml(path: Path, *, what: str, error: type[Exception]) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{what} file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} file {path} is not valid TOML: {exc}") from exc

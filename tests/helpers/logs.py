"""Logging for apps under test, set up as the entry points set it up for the process.

`create_app` no longer touches process-wide logging (main.py and the chat do, through
`web.serve.configure_process`). Every test starts with the logging an app of
`fast_settings` would have had (tests/conftest.py); a test that reads the logs, or needs
another level, format or secret list, says so where it builds its app:
`create_app(logging_for(settings), clock=...)`, from the test body, so the logs land in
the test's own capture (capsys).
"""

from __future__ import annotations

from core.settings import Settings
from web.serve import configure_process


def logging_for(settings: Settings) -> Settings:
    """Configure logging as the process would for `settings`; returns them, to read inline."""
    configure_process(settings)
    return settings

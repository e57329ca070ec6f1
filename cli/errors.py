"""Every CLI failure as one line on stderr: what went wrong, what to do; exit 1.

An operator who mistyped a setting or whose database is down needs the sentence that
says so, not 14 to 134 lines of traceback ending in a library's internals. The commands
raise the project's own errors (or `CliError` with the exact words); this is the one
place that turns them into a line, so no command wraps itself in try/except. `--debug`
re-raises instead, for the traceback. Every line goes through the log scrubber: an error
text can carry a URL with a token.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from pydantic import ValidationError

from agent.business_hours import BusinessHoursError
from agent.prompts import PromptError
from agent.scoring import ScoringRulesError
from core.errors import LLMUnavailable, SDRError, StoreUnavailable
from core.logging import Scrubber
from integrations.outbound_webhooks.config import OutboundWebhookConfigError
from integrations.piperun.texts import PipeRunTextsError
from runtime.handoff_card import HandoffCardError
from runtime.seller_notes import SellerNotesError
from runtime.templates import TemplatesError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# The files (and file-like settings) an operator edits: each error names the file at fault.
CONFIG_FILE_ERRORS: tuple[type[Exception], ...] = (
    PromptError,
    ScoringRulesError,
    BusinessHoursError,
    HandoffCardError,
    SellerNotesError,
    TemplatesError,
    PipeRunTextsError,
    OutboundWebhookConfigError,
)


class CliError(Exception):
    """A failure a command words itself: `message` is the whole line, `code` the exit."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "").rstrip(".")


def settings_problem(exc: ValidationError) -> str:
    """Which environment variables are invalid and why, never their values (a secret may
    be among them)."""
    problems = [
        f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}" for err in exc.errors()
    ]
    return (
        f"invalid setting(s): {'; '.join(problems)}. "
        "Fix them in .env or the environment (see .env.example) and run again."
    )


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line and exit code for a failure."""
    if isinstance(exc, CliError):
        return exc.message, exc.code
    if isinstance(exc, ValidationError):
        return settings_problem(exc), EXIT_FAILURE
    if isinstance(exc, StoreUnavailable):
        return (
            f"the store is unreachable ({_first_line(str(exc))}). Check SUPABASE_URL / "
            "SUPABASE_SERVICE_ROLE_KEY (or SQLITE_PATH) and the network, then run "
            "`python main.py doctor`.",
            EXIT_FAILURE,
        )
    if isinstance(exc, LLMUnavailable):
        return (
            f"the model is unreachable ({_first_line(str(exc))}). Check OPENAI_API_KEY / "
            "OPENAI_BASE_URL, then run `python main.py doctor`.",
            EXIT_FAILURE,
        )
    if isinstance(exc, CONFIG_FILE_ERRORS):
        return f"configuration problem: {_first_line(str(exc))}. Fix it and run again.", EXIT_FAILURE
    if isinstance(exc, OSError) and exc.filename:
        return (
            f"cannot use {exc.filename}: {exc.strerror or type(exc).__name__}. "
            "Check the path (e.g. SQLITE_PATH) exists and is writable.",
            EXIT_FAILURE,
        )
    if isinstance(exc, SDRError):
        return (
            f"{type(exc).__name__}: {_first_line(str(exc))}. Run `python main.py doctor` to check "
            "the integrations, or add --debug for the traceback.",
            EXIT_FAILURE,
        )
    return (
        f"unexpected error ({type(exc).__name__}: {_first_line(str(exc))}). "
        "Run again with --debug for the traceback and open an issue with it.",
        EXIT_FAILURE,
    )


def run_guarded(
    action: Callable[[], int],
    *,
    debug: bool,
    secrets: Callable[[], Iterable[str]] = lambda: (),
    err: TextIO | None = None,
) -> int:
    """Run one command; a failure becomes one scrubbed line on stderr and its exit code,
    or the traceback with `debug`. `secrets` is asked only on a failure (the settings may
    be what failed to load)."""
    try:
        return action()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        line, code = describe(exc)
        try:
            known = list(secrets())
        except Exception:  # the settings themselves are broken: nothing configured to hide
            known = []
        print(f"error: {Scrubber(known).scrub(line)}", file=err or sys.stderr)
        return code

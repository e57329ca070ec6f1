"""A real headless browser for the pages the bot serves: Debian's Chromium, driven by its
command line (`--screenshot`, `--dump-dom`), no Python browser library.

Chromium runs as a child process while the test's event loop keeps serving the pages it
asks for. `--virtual-time-budget` lets the page's timers and fetches run to completion
before the capture, so a test never races the page's rendering (the pages mark the
moment with a `data-ready` attribute for the assertions to check).

Without Chromium a test is skipped with the command that installs it, unless
`SDR_REQUIRE_SERVICES=1` (CI, which installs it in .ci/run), where it fails, as the
PostgreSQL tests do (tests/store/pg_support.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Kept after the run (gitignored): what the page looked like, for a person to open.
ARTIFACTS = REPO / "test-artifacts"
_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser's path; skip (or, in CI, fail) when there is none."""
    found = chromium_path()
    if found is not None:
        return found
    message = "Chromium is not installed: apt-get install -y chromium (Debian)"
    if os.environ.get("SDR_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


async def chromium(
    url: str,
    *,
    screenshot: Path | None = None,
    window: tuple[int, int] = (420, 1400),
    budget_ms: int = 8000,
    timeout_s: float = 90.0,
) -> str:
    """Load `url` in headless Chromium and return its DOM once the time budget is spent
    (`--dump-dom`), or take a PNG of the window into `screenshot` and return ""."""
    browser = require_chromium()
    with tempfile.TemporaryDirectory(prefix="sdr-chromium-") as profile:
        args = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            # One renderer for every frame: the virtual time budget then waits for an
            # iframe of another site (its own process under site isolation) too.
            "--disable-site-isolation-trials",
            "--disable-features=IsolateOrigins,site-per-process",
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            f"--virtual-time-budget={budget_ms}",
        ]
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            args.append(f"--screenshot={screenshot}")
        else:
            args.append("--dump-dom")
        process = await asyncio.create_subprocess_exec(
            *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"Chromium did not finish {url} within {timeout_s} s") from None
    if process.returncode != 0:
        raise AssertionError(
            f"Chromium failed ({process.returncode}): {err.decode(errors='replace')[-2000:]}"
        )
    if screenshot is not None:
        assert screenshot.is_file() and screenshot.stat().st_size > 0, f"no screenshot at {screenshot}"
        print(f"screenshot: {screenshot}")
        return ""
    return out.decode("utf-8", errors="replace")


__all__ = ["ARTIFACTS", "chromium", "chromium_path", "require_chromium"]

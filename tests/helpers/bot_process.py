"""Run `python main.py` as a real process, so tests can SIGKILL it mid-turn."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import OPENAI_KEY, WEBHOOK_TOKEN, ZAPI_CLIENT_TOKEN, ZAPI_INSTANCE, ZAPI_TOKEN
from web.worker_process import free_port

REPO = Path(__file__).resolve().parents[2]


def children(pid: int) -> list[int]:
    """Direct children of `pid` (the turn worker `python main.py` starts), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class BotProcess:
    def __init__(self, *, sqlite_path: Path, provider_url: str, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.sqlite_path = sqlite_path
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "SQLITE_PATH": str(sqlite_path),
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": f"{provider_url}/v1",
            "OPENAI_BACKOFF_BASE_S": "0.01",
            "ZAPI_BASE_URL": provider_url,
            "ZAPI_INSTANCE_ID": ZAPI_INSTANCE,
            "ZAPI_INSTANCE_TOKEN": ZAPI_TOKEN,
            "ZAPI_CLIENT_TOKEN": ZAPI_CLIENT_TOKEN,
            "ZAPI_WEBHOOK_SECRET": WEBHOOK_TOKEN,
            "DEBOUNCE_QUIET_S": "0.05",
            "DEBOUNCE_MAX_S": "0.3",
            "OUTBOX_POLL_S": "0.05",
            "TYPING_CHARS_PER_S": "1000",
            "LOG_FORMAT": "json",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def zapi_webhook(self) -> str:
        """The URL pasted into Z-API's "Ao receber", secret included."""
        return f"{self.url}/webhooks/zapi?token={WEBHOOK_TOKEN}"

    async def start(self, timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "main.py"], cwd=REPO, env=self.env, stdout=log, stderr=log
        )
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"bot exited early: {self.log_path.read_text()[-2000:]}")
                try:
                    async with session.get(f"{self.url}/api/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError("bot did not become healthy")
                await asyncio.sleep(0.05)

    def backlog(self) -> tuple[int, int]:
        """What the bot's SQLite file still has to do: (pending inbound messages, pending
        or in-flight outbox items), read like an operator would, from outside."""
        with closing(sqlite3.connect(self.sqlite_path, timeout=10)) as db:
            inbound = db.execute("SELECT COUNT(*) FROM inbound WHERE status = 'pending'").fetchone()[0]
            outbox = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'inflight')"
            ).fetchone()[0]
        return inbound, outbox

    async def health(self, session: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
        token = self.env.get("METRICS_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with session.get(f"{self.url}/api/health", headers=headers) as response:
                return response.status, await response.json()
        except (aiohttp.ClientError, ValueError) as exc:
            return 0, {"error": repr(exc)}

    async def settled(self, *, timeout: float = 20.0, poll_s: float = 0.05) -> None:
        """Return once the bot has nothing left to do; fail after `timeout` s.

        The subprocess counterpart of tests/helpers/settle.py: no inbound message pending
        and no outbox item pending or in flight in its SQLite file, AND its /api/health
        (which merges the turn worker's) healthy with `active_contacts` 0 and outbox
        pending 0, on two consecutive looks `poll_s` apart. A state, not a count: it
        cannot be overshot, so exact counts can be asserted right after."""
        assert self.proc is not None, "the bot was never started"
        deadline = time.monotonic() + timeout
        in_a_row = 0
        last: object = None
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"the bot exited ({self.proc.returncode}) before settling")
                backlog = await asyncio.to_thread(self.backlog)
                status, body = await self.health(session)
                outbox = body.get("outbox")
                quiet = (
                    backlog == (0, 0)
                    and status == 200
                    and body.get("active_contacts") == 0
                    and isinstance(outbox, dict)
                    and outbox.get("pending") == 0
                )
                last = {
                    "pending_inbound": backlog[0],
                    "pending_or_inflight_outbox": backlog[1],
                    "health": status,
                    "active_contacts": body.get("active_contacts"),
                    "outbox": outbox,
                }
                in_a_row = in_a_row + 1 if quiet else 0
                if in_a_row >= 2:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"the bot did not settle within {timeout} s; last look: {last}")
                await asyncio.sleep(poll_s)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, exactly like a crash or OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=20)
        return self.proc.returncode if self.proc else None

"""Run `python main.py` as a real process, so tests can SIGKILL it mid-turn."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from core.worker_process import free_port
from tests.conftest import OPENAI_KEY, ZAPI_CLIENT_TOKEN, ZAPI_INSTANCE, ZAPI_TOKEN

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


import datetime as _dt, time as _time
_XXX_OFFSET = ""
if os.environ.get("XXX_BOT_FAKETIME"):
    _t = _dt.datetime.fromisoformat(os.environ["XXX_BOT_FAKETIME"]).replace(tzinfo=_dt.timezone.utc).timestamp()
    _XXX_OFFSET = f"{int(_t - _time.time()):+d}"


class BotProcess:
    def __init__(self, *, sqlite_path: Path, provider_url: str, log_path: Path, **env: str) -> None:
        self.port = free_port()
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
            "DEBOUNCE_QUIET_S": "0.05",
            "DEBOUNCE_MAX_S": "0.3",
            "OUTBOX_POLL_S": "0.05",
            "TYPING_CHARS_PER_S": "1000",
            "LOG_FORMAT": "json",
            **env,
        }
        if os.environ.get("XXX_BOT_FAKETIME"):  # TEMPORARY experiment hook
            self.env.update(LD_PRELOAD="/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                            FAKETIME=_XXX_OFFSET, TZ="UTC",
                            FAKETIME_DONT_FAKE_MONOTONIC="1")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 20.0) -> None:
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

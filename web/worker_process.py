"""The turn worker: a child process that runs turns, deliveries and follow-ups.

`python main.py` acknowledges webhooks in one process and thinks in another. A turn
costs milliseconds of CPU (the model client, the graph, the store); on the process that
acknowledges webhooks those milliseconds would sit in front of every provider's request.
Split, acknowledgements never wait behind a turn and both cores work. The two share the
store exactly like two instances share Supabase: the worker finds stored messages with
the ready-contact poller and leases each lead's turn.

The parent supervises the child: restarts it if it dies, stops it on SIGTERM, and the
child dies with the parent (a SIGKILLed parent must not leave a bot answering alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from core.logging import get_logger
from runtime.notifier import ContactsRunner

log = get_logger(__name__)

MAIN = Path(__file__).resolve().parent.parent / "main.py"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """In the child: be killed when the parent dies, however it dies (Linux), or notice
    it within a second elsewhere (see `watch_parent`)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except OSError:
            pass


async def watch_parent(parent_pid: int) -> None:
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent_pid:
            log.error("worker_orphaned")
            os._exit(1)


WAKE = b"!wake"
# Prefix of a lead whose work is complete as stored (a filled form): no quiet window.
NOW = b"!now "
# Prefixes of a lead's message that ends a thought / is a fragment (the quiet window's
# length, runtime/quiet_window.py); a bare key is a message of unknown shape.
DONE = b"!done "
FRAGMENT = b"!frag "
# "!presence <state> <key>": the lead's chat presence, a hint for the quiet window.
PRESENCE = b"!presence "
_MAX_DATAGRAM = 512


class _Nudges(asyncio.DatagramProtocol):
    """In the worker: one datagram per stored message names the lead to debounce, so a
    turn starts as promptly as in one process; WAKE asks the dispatcher to look now.
    Lost datagrams cost nothing but latency: the ready-contact poller finds the rest."""

    def __init__(self, contacts: ContactsRunner, on_wake: Callable[[], None]) -> None:
        self.contacts = contacts
        self.on_wake = on_wake

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data == WAKE:
            self.on_wake()
            return
        if data.startswith(PRESENCE):
            state, _, key = data[len(PRESENCE) :].partition(b" ")
            if state and 0 < len(key) <= _MAX_DATAGRAM:
                with contextlib.suppress(UnicodeDecodeError):
                    self.contacts.presence(key.decode("utf-8"), state.decode("ascii"))
            return
        immediate = data.startswith(NOW)
        complete = True if data.startswith(DONE) else False if data.startswith(FRAGMENT) else None
        for prefix in (NOW, DONE, FRAGMENT):
            data = data.removeprefix(prefix)
        if 0 < len(data) <= _MAX_DATAGRAM:
            with contextlib.suppress(UnicodeDecodeError):
                self.contacts.notify(data.decode("utf-8"), immediate=immediate, complete=complete)


async def listen_for_nudges(
    port: int, contacts: ContactsRunner, on_wake: Callable[[], None]
) -> asyncio.DatagramTransport:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _Nudges(contacts, on_wake), local_addr=("127.0.0.1", port)
    )
    return transport


class WorkerSupervisor:
    def __init__(self, *, port: int, grace_s: float, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.grace_s = grace_s
        # The operator token when METRICS_TOKEN is set: the worker guards its views too.
        self.headers = headers or {}
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.setblocking(False)
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        # False until the worker first answers its parent: until then /api/health says
        # `starting`, not that the worker is down (web/health.py).
        self.reported = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def nudge(self, contact_key: str, immediate: bool = False, complete: bool | None = None) -> None:
        """A message of this lead was stored (a few microseconds; never blocks the ack)."""
        shape = b"" if complete is None else DONE if complete else FRAGMENT
        self._send((NOW if immediate else shape) + contact_key.encode("utf-8"))

    def presence(self, contact_key: str, state: str) -> None:
        """The lead's chat presence, for the worker's quiet window (lost: no harm)."""
        self._send(PRESENCE + state.encode("ascii") + b" " + contact_key.encode("utf-8"))

    def wake(self) -> None:
        """Something was enqueued outside a turn (a Chatwoot agent's reply...)."""
        self._send(WAKE)

    def _send(self, data: bytes) -> None:
        # Buffer full or worker restarting: the poller covers it.
        with contextlib.suppress(OSError):
            self._udp.sendto(data, ("127.0.0.1", self.port))

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(MAIN), "worker", "--port", str(self.port), "--parent", str(os.getpid())],
            env=os.environ.copy(),
        )
        log.info("worker_started", pid=self.proc.pid, port=self.port)

    @property
    def starting(self) -> bool:
        """The first start-up only: the first child is alive and has not answered yet.
        No child, a child that died, or one restarted after a crash is a failure."""
        if self.reported or self.restarts or self._stopping:
            return False
        return self.proc is not None and self.proc.poll() is None

    async def _watch(self) -> None:
        backoff = 0.5
        while not self._stopping:
            await asyncio.sleep(0.5)
            if self.proc is None or self.proc.poll() is None:
                backoff = 0.5
                continue
            if self._stopping:
                return
            log.error("worker_exited", code=self.proc.returncode, restart_in_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            self.restarts += 1
            self._spawn()

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        # The worker finishes its turns and delivers what is due within its grace period.
        deadline = asyncio.get_running_loop().time() + self.grace_s + 5
        while proc.poll() is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    async def ctx(self, _app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: the worker lives exactly as long as the web app."""
        self._spawn()
        self._task = asyncio.create_task(self._watch(), name="worker-supervisor")
        yield
        await self.stop()

    async def fetch(self, session: aiohttp.ClientSession, path: str) -> tuple[int, bytes] | None:
        """One loopback call to the worker (health, metrics); None when it does not answer."""
        try:
            async with session.get(
                f"{self.url}{path}", headers=self.headers, timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                answer = response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError):
            return None
        self.reported = True
        return answer

"""Serving the app until SIGTERM/SIGINT, with the socket open through the drain.

aiohttp's `run_app` closes the listening socket first thing on a signal, so for the
whole grace period providers saw "connection refused" instead of the documented
503 + Retry-After. Here the socket stays open while `drain` finishes the turns, and
closes only after. The port is bound before anything starts, so a taken port is one
clear line, not a worker started for nothing and a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket

from aiohttp import web

from core.logging import configure_logging, get_logger
from core.settings import Settings
from web.app import drain

log = get_logger(__name__)


class PortInUse(OSError):
    pass


def configure_process(settings: Settings) -> None:
    """Logging for the whole process, scrubbing every configured secret. `create_app`
    leaves it to its caller (a test builds many apps in one process), so each entry point
    (serve, worker, chat) calls this before building the app."""
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values())


def freeze_gc_once_started(app: web.Application) -> None:
    """Everything loaded at start (openai, langgraph, pydantic schemas) lives for the whole
    process: keep it out of the cyclic GC, whose full passes over those objects otherwise
    stall the loop for tens of milliseconds under load. Runs after every cleanup context
    has started (aiohttp runs them first), i.e. once the agent is loaded."""

    async def freeze(_app: web.Application) -> None:
        gc.collect()
        gc.freeze()

    app.on_startup.append(freeze)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or PortInUse naming the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


async def serve(
    app: web.Application, sock: socket.socket, *, shutdown_timeout: float, **log_fields: object
) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.SockSite(runner, sock).start()
        host, port = sock.getsockname()[:2]
        log.info("listening", host=host, port=port, **log_fields)
        await stop.wait()
        log.info("draining")
        await drain(app)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()

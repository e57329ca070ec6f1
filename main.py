"""CLI entry point.

python main.py                    serve webhooks and run the bot (default)
python main.py serve              same
python main.py chat               talk to the bot in the terminal (channel `cli`)
python main.py outbox stats       pending / in-flight / dead side effects, per integration
python main.py outbox list        recent side effects (--status dead, --kind piperun_sync)
python main.py outbox show ID     one side effect: payload, attempts, last error
python main.py outbox replay ID   resend one dead side effect (same idempotency key)
python main.py outbox replay --all-dead [--kind K]   resend every dead one
python main.py forget CONTACT     erase a lead everywhere (LGPD): phone, 123@lid, Instagram id
python main.py migrate [--apply]  print (or apply to DATABASE_URL) the Postgres schema
python main.py doctor             check every configured integration, print the webhook URLs
python main.py knowledge index    embed a big catalogue once (prompts/knowledge/.index/); `knowledge search Q` tries it
python main.py eval [--baseline R] grade the bot on simulated leads before a prompts/ change ships
python main.py help [COMMAND]     the same as --help, or one command's help

Any failure is one line on stderr (exit 1; a usage error exits 2); add --debug for the
traceback. The command line itself lives in cli/parser.py, the failure lines in cli/errors.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from cli.errors import run_guarded
from cli.forget import run_forget
from cli.migrate import run_migrate
from cli.outbox import run_outbox
from cli.parser import build_parser, show_help
from core.clock import utc_now
from core.logging import configure_logging, get_logger
from core.settings import Settings
from web.app import create_app, default_store
from web.operator_auth import operator_headers
from web.serve import PortInUse, bind, configure_process, freeze_gc_once_started, serve
from web.worker_process import WorkerSupervisor, die_with_parent, free_port, watch_parent


def _serve(settings: Settings) -> int:
    configure_process(settings)
    try:
        sock = bind(settings.host, settings.port)
    except PortInUse as exc:
        get_logger("main").error(
            "port_in_use",
            error=str(exc),
            hint=f"another process is listening on port {settings.port}: stop it, or set PORT to a free port",
        )
        return 1
    worker = None
    if settings.worker_process:
        worker = WorkerSupervisor(
            port=free_port(), grace_s=settings.shutdown_grace_s, headers=operator_headers(settings)
        )
    app = create_app(settings, role="web" if worker else "all", worker=worker, clock=utc_now)
    freeze_gc_once_started(app)
    asyncio.run(serve(app, sock, shutdown_timeout=settings.shutdown_grace_s, worker_process=bool(worker)))
    return 0


def _worker(settings: Settings, port: int, parent: int | None) -> int:
    """The child `python main.py` starts: turns, deliveries and follow-ups, with only
    health and metrics served on loopback for the parent."""
    die_with_parent()
    configure_process(settings)
    app = create_app(settings, role="worker", worker_port=port, clock=utc_now)
    freeze_gc_once_started(app)
    if parent is not None:

        async def orphan_watch(_app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(watch_parent(parent))
            yield
            task.cancel()

        app.cleanup_ctx.append(orphan_watch)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.shutdown_grace_s,
    )
    return 0


async def _outbox(settings: Settings, args: argparse.Namespace) -> int:
    return await run_outbox(default_store(settings), args)


async def _forget(settings: Settings, contact: str, channel: str) -> int:
    return await run_forget(default_store(settings), contact, channel)


def _migrate(settings: Settings, *, apply: bool) -> int:
    return run_migrate(settings, apply=apply)


async def _doctor(settings: Settings) -> int:
    """One session for every probe: the checks run at the same time."""
    from cli.doctor import run_doctor

    async with aiohttp.ClientSession() as session:
        return await run_doctor(settings, session, sys.stdout)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "help":
        return show_help(parser, args.topic)
    settings = Settings()
    if args.command == "worker":
        return _worker(settings, args.port, args.parent)
    if args.command == "chat":
        from cli.chat import _chat  # the terminal chat loads the agent in this process

        return _chat(settings, args.contact, args.fresh)
    if args.command == "migrate":
        return _migrate(settings, apply=args.apply)
    if args.command == "doctor":
        # Library warnings would interleave with the report; errors still show, scrubbed.
        configure_logging(level="ERROR", fmt=settings.log_format, secrets=settings.secret_values())
        return asyncio.run(_doctor(settings))
    if args.command == "knowledge":
        from cli.knowledge import run_knowledge  # the knowledge code and the OpenAI client, only here

        configure_logging(
            level=settings.log_level if args.debug else "WARNING",
            fmt=settings.log_format,
            secrets=settings.secret_values(),
        )
        return asyncio.run(run_knowledge(settings, args, sys.stdout))
    # An operator's command prints its own result or one failure line: the store's warnings
    # on the way (a retry, an unreachable host) would only repeat it, unless --debug.
    quiet = settings.log_level if args.debug else "ERROR"
    if args.command in ("forget", "outbox", "eval"):
        configure_logging(level=quiet, fmt=settings.log_format, secrets=settings.secret_values())
        return _operator_command(settings, args)
    return _serve(settings)


def _operator_command(settings: Settings, args: argparse.Namespace) -> int:
    """The commands that print their own result (logging already quiet)."""
    if args.command == "forget":
        return asyncio.run(_forget(settings, args.contact, args.channel))
    if args.command == "outbox":
        return asyncio.run(_outbox(settings, args))
    from cli.evaluation.command import run_eval  # the agent and its model client, only here

    return run_eval(settings, args, clock=utc_now)


def _secrets() -> list[str]:
    return Settings().secret_values()


def main(argv: list[str] | None = None) -> int:
    """Parse (a usage error exits 2 with one line), then run the command: any failure is
    one line on stderr and exit 1, or its traceback with --debug."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(lambda: _run(args, parser), debug=args.debug, secrets=_secrets)


if __name__ == "__main__":
    sys.exit(main())

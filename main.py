"""CLI entry point.

    python main.py                    serve webhooks and run the bot (default)
    python main.py serve              same
    python main.py outbox stats       pending / in-flight / dead side effects
    python main.py outbox replay      put dead side effects back in the queue
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web

from core.app import create_app, default_store
from core.logging import configure_logging, get_logger
from core.settings import Settings


def _serve(settings: Settings) -> int:
    app = create_app(settings)
    get_logger("main").info("listening", host=settings.host, port=settings.port)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.shutdown_grace_s,
    )
    return 0


async def _outbox(settings: Settings, action: str, kind: str | None) -> int:
    store = default_store(settings)
    await store.open()
    try:
        if action == "replay":
            count = await store.replay_dead(kind=kind)
            print(f"{count} dead item(s) put back in the queue; a running bot delivers them now.")
        else:
            stats = await store.outbox_stats()
            print(f"pending={stats.pending} inflight={stats.inflight} dead={stats.dead} done={stats.done}")
    finally:
        await store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python main.py", description="AI SDR bot")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve webhooks and run the bot (default)")
    outbox = sub.add_parser("outbox", help="inspect or replay side effects")
    outbox.add_argument("action", choices=["stats", "replay"])
    outbox.add_argument("--kind", help="only replay items of this kind (e.g. send_text)")
    args = parser.parse_args(argv)

    settings = Settings()
    if args.command == "outbox":
        configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values())
        return asyncio.run(_outbox(settings, args.action, args.kind))
    return _serve(settings)


if __name__ == "__main__":
    sys.exit(main())

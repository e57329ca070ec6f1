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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from cli.forget import run_forget
from cli.migrate import run_migrate
from core.clock import utc_now
from core.logging import configure_logging, get_logger
from core.records import OutboxItem
from core.settings import Settings
from store.base import Store
from web.app import create_app, default_store
from web.operator_auth import operator_headers
from web.serve import PortInUse, bind, configure_process, freeze_gc_once_started, serve
from web.worker_process import WorkerSupervisor, die_with_parent, free_port, watch_parent


def _serve(settings: Settings) -> int:
    configure_process(settings)
    try:
        sock = bind(settings.host, settings.port)
    except PortInUse as exc:
        get_logger("main").error("port_in_use", error=str(exc), hint="set PORT or stop the other process")
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
    store = default_store(settings)
    await store.open()
    try:
        return await _outbox_action(store, args)
    finally:
        await store.close()


async def _outbox_action(store: Store, args: argparse.Namespace) -> int:
    actions = {"stats": _outbox_stats, "list": _outbox_list, "show": _outbox_show, "replay": _outbox_replay}
    return await actions[args.action](store, args)


async def _outbox_stats(store: Store, _args: argparse.Namespace) -> int:
    stats = await store.outbox_stats()
    print(f"pending={stats.pending} inflight={stats.inflight} dead={stats.dead} done={stats.done}")
    for kind, per in sorted((await store.outbox_stats_by_kind()).items()):
        print(f"  {kind}: pending={per.pending} inflight={per.inflight} dead={per.dead}")
    return 0


async def _outbox_list(store: Store, args: argparse.Namespace) -> int:
    items = await store.list_outbox(status=args.status, kind=args.kind, limit=args.limit)
    if not items:
        print("no side effects match")
    for item in items:
        error = f"  last_error={item.last_error[:80]!r}" if item.last_error else ""
        when = item.updated_at.isoformat(timespec="seconds") if item.updated_at else "-"
        print(f"{item.id:>7}  {item.status:<8} {item.kind:<18} attempts={item.attempts}  {when}{error}")
    return 0


async def _outbox_show(store: Store, args: argparse.Namespace) -> int:
    if args.id is None:
        print("usage: python main.py outbox show ID", file=sys.stderr)
        return 2
    item = await store.get_outbox(args.id)
    if item is None:
        print(f"no side effect with id {args.id}", file=sys.stderr)
        return 1
    print(json.dumps(_item_view(item), ensure_ascii=False, indent=2, default=str))
    return 0


async def _outbox_replay(store: Store, args: argparse.Namespace) -> int:
    if args.id is not None:
        if await store.replay_outbox(args.id):
            print(
                f"item {args.id} is back in the queue (same idempotency key); a running bot delivers it now."
            )
            return 0
        item = await store.get_outbox(args.id)
        reason = "does not exist" if item is None else f"is {item.status}, not dead"
        print(f"item {args.id} {reason}: nothing replayed", file=sys.stderr)
        return 1
    if not args.all_dead:
        print("say which: python main.py outbox replay ID, or --all-dead [--kind K]", file=sys.stderr)
        return 2
    count = await store.replay_dead(kind=args.kind)
    print(f"{count} dead item(s) put back in the queue; a running bot delivers them now.")
    return 0


def _item_view(item: OutboxItem) -> dict[str, object]:
    return {
        "id": item.id,
        "kind": item.kind,
        "status": item.status,
        "attempts": item.attempts,
        "last_error": item.last_error,
        "order_key": item.order_key,
        "idempotency_key": item.idempotency_key,
        "next_attempt_at": item.next_attempt_at,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "payload": item.payload,
    }


async def _forget(settings: Settings, contact: str, channel: str) -> int:
    return await run_forget(default_store(settings), contact, channel)


def _migrate(settings: Settings, *, apply: bool) -> int:
    return run_migrate(settings, apply=apply)


async def _doctor(settings: Settings) -> int:
    """One session for every probe: the checks run at the same time."""
    from cli.doctor import run_doctor

    async with aiohttp.ClientSession() as session:
        return await run_doctor(settings, session, sys.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python main.py", description="AI SDR bot")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve webhooks and run the bot (default)")
    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--parent", type=int)
    chat = sub.add_parser(
        "chat",
        help="conversar com o bot no terminal (canal cli)",
        description="Conversa com o mesmo agente e o mesmo banco, sem WhatsApp: mostra a ficha "
        "do lead (dados, pontuação e temperatura) depois de cada resposta.",
    )
    chat.add_argument(
        "--contact",
        metavar="NOME",
        help="contato da conversa (padrão: terminal); o mesmo nome continua a conversa",
    )
    chat.add_argument("--fresh", action="store_true", help="começar uma conversa nova, com um contato novo")
    outbox = sub.add_parser("outbox", help="inspect or replay side effects (dead letters)")
    outbox.add_argument("action", choices=["stats", "list", "show", "replay"])
    outbox.add_argument("id", nargs="?", type=int, help="the item id (show, replay)")
    outbox.add_argument(
        "--status", choices=["pending", "inflight", "done", "dead"], help="list: only this status"
    )
    outbox.add_argument("--kind", help="only items of this kind (e.g. send_text, piperun_sync, meta_capi)")
    outbox.add_argument("--limit", type=int, default=50, help="list: how many, newest first")
    outbox.add_argument("--all-dead", action="store_true", help="replay: every dead item (of --kind)")
    forget = sub.add_parser(
        "forget",
        help="erase a lead everywhere (LGPD): store, Chatwoot, PipeRun, webhook subscribers",
        description="Apaga o lead do banco (e do WAL), descarta o que ainda chegar dele e leva a "
        "exclusão ao Chatwoot, ao PipeRun e aos webhooks de saída pela fila do bot.",
    )
    forget.add_argument(
        "contact",
        help="phone with country and area code (5511999999999), WhatsApp hidden id (123@lid), "
        "Instagram id (with --channel instagram) or a contact key (whatsapp:..., instagram:...)",
    )
    forget.add_argument(
        "--channel",
        default="whatsapp",
        help="whatsapp (Z-API, WAHA or Cloud API; default), instagram or cli",
    )
    migrate = sub.add_parser(
        "migrate", help="print the Supabase/Postgres schema SQL, or --apply it to DATABASE_URL"
    )
    migrate.add_argument("--apply", action="store_true", help="apply to DATABASE_URL instead of printing")
    sub.add_parser(
        "doctor",
        help="verificar cada integração configurada e mostrar as URLs de webhook",
        description="Faz uma chamada só de leitura a cada integração configurada e diz o que está "
        "errado (token, ID, URL) e o que fazer; depois mostra as URLs para colar em cada provedor.",
    )
    args = parser.parse_args(argv)

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
    if args.command == "forget":
        configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values())
        return asyncio.run(_forget(settings, args.contact, args.channel))
    if args.command == "outbox":
        configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values())
        return asyncio.run(_outbox(settings, args))
    return _serve(settings)


if __name__ == "__main__":
    sys.exit(main())

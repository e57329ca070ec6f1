"""The command line an operator types: `python main.py [--debug] COMMAND ...`.

One language (English) for every help text and message the CLI itself prints; the bot's
words to leads stay in pt-BR under prompts/. The internal `worker` command (the child
process `python main.py` starts) is accepted but listed nowhere: argparse would print it
as `==SUPPRESS==`, so the command list shown is a metavar naming only public commands.
Values with a closed set of answers are `choices`, so a typo is a usage error (exit 2)
that lists what is accepted, before anything is opened.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from cli.evaluation.options import add_eval
from cli.forget import FORGET_CHANNELS
from core.outbox import PAYLOADS

PROG = "python main.py"
# Accepted, never listed: the worker child process `python main.py` starts itself.
HIDDEN_COMMANDS = frozenset({"worker"})
OUTBOX_ACTIONS = ("stats", "list", "show", "replay")
OUTBOX_STATUSES = ("pending", "inflight", "done", "dead")
KNOWLEDGE_ACTIONS = ("index", "search")

_EPILOG = (
    "Run `python main.py help COMMAND` (or `python main.py COMMAND --help`) for one command. "
    "Add --debug before the command to see the full traceback of a failure."
)


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr (what is wrong, where to read more), exit 2:
    argparse's default repeats the whole usage block above it."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        more = f"{PROG} help {command}" if command else f"{PROG} help"
        self.exit(2, f"{self.prog}: error: {message} (see `{more}`)\n")

    def _check_value(self, action: argparse.Action, value: object) -> None:
        """An unknown command names only the public ones (argparse would list `worker`)."""
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            public = ", ".join(name for name in action.choices if name not in HIDDEN_COMMANDS)
            raise argparse.ArgumentError(None, f"no command {value!r}; choose from {public}")
        super()._check_value(action, value)


def _debug_flag() -> OneLineParser:
    """--debug before or after the command: SUPPRESS keeps a subcommand from resetting it."""
    common = OneLineParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on a failure, print the full traceback instead of one line",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _debug_flag()
    parser = OneLineParser(prog=PROG, description="AI SDR bot", epilog=_EPILOG)
    parser.add_argument(
        "--debug", action="store_true", help="on a failure, print the full traceback instead of one line"
    )
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    add = sub.add_parser  # every command also takes --debug after its name
    sub.add_parser = lambda name, **kw: add(name, parents=[common], **kw)  # type: ignore[method-assign]
    sub.add_parser("serve", help="serve webhooks and run the bot (the default with no command)")
    worker = sub.add_parser("worker")  # no help=: not listed (see HIDDEN_COMMANDS)
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--parent", type=int)
    _add_chat(sub)
    _add_outbox(sub)
    _add_forget(sub)
    _add_knowledge(sub)
    add_eval(sub)
    migrate = sub.add_parser(
        "migrate",
        help="print the Supabase/Postgres schema SQL, or --apply it to DATABASE_URL",
        description="Print the schema SQL, or apply it to DATABASE_URL (every file is re-runnable). "
        "--apply needs the postgres extra: pip install -e '.[postgres]'.",
    )
    migrate.add_argument("--apply", action="store_true", help="apply to DATABASE_URL instead of printing")
    sub.add_parser(
        "doctor",
        help="check every configured integration and print the webhook URLs",
        description="Make one read-only call to each configured integration, say what is wrong "
        "(token, id, URL) and what to do, then print the URLs to paste into each provider.",
    )
    help_cmd = sub.add_parser("help", help="show this help, or one command's help")
    help_cmd.add_argument("topic", nargs="?", metavar="COMMAND", help="the command to describe")
    _hide(sub, parser)
    return parser


def _add_chat(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    chat = sub.add_parser(
        "chat",
        help="talk to the bot in the terminal (channel cli)",
        description="Talk to the same agent with the same database, without WhatsApp: the lead "
        "card (details, score and temperature) is shown after every answer.",
    )
    chat.add_argument(
        "--contact",
        metavar="NAME",
        help="the conversation's contact (default: terminal); the same name resumes the conversation",
    )
    chat.add_argument("--fresh", action="store_true", help="start a new conversation with a new contact")


def _add_outbox(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    outbox = sub.add_parser(
        "outbox",
        help="inspect or replay side effects (dead letters)",
        description="stats: counts per integration; list: recent items; show ID: one item with "
        "its payload and last error; replay ID or replay --all-dead [--kind K]: resend dead items.",
    )
    outbox.add_argument("action", choices=OUTBOX_ACTIONS)
    outbox.add_argument("id", nargs="?", type=int, help="the item id (show, replay)")
    outbox.add_argument("--status", choices=OUTBOX_STATUSES, help="list: only this status")
    outbox.add_argument(
        "--kind",
        choices=sorted(PAYLOADS),
        metavar="KIND",
        help=f"only items of this kind: {', '.join(sorted(PAYLOADS))}",
    )
    outbox.add_argument("--limit", type=_positive_int, default=50, help="list: how many, newest first")
    outbox.add_argument("--all-dead", action="store_true", help="replay: every dead item (of --kind)")


def _add_forget(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    forget = sub.add_parser(
        "forget",
        help="erase a lead everywhere (LGPD): store, Chatwoot, PipeRun, webhook subscribers",
        description="Erase the lead from the database (and its WAL), drop whatever still arrives "
        "from them, and carry the erasure to Chatwoot, PipeRun and outgoing webhooks through the "
        "bot's queue.",
    )
    forget.add_argument(
        "contact",
        help="phone with country and area code (5511999999999), WhatsApp hidden id (123@lid), "
        "Instagram id (with --channel instagram) or a contact key (whatsapp:..., instagram:...)",
    )
    forget.add_argument(
        "--channel",
        default="whatsapp",
        type=str.lower,
        choices=sorted(FORGET_CHANNELS),
        help="whatsapp (Z-API, WAHA or Cloud API; the default), instagram or cli; "
        "zapi, waha and whatsapp_cloud mean whatsapp",
    )


def _add_knowledge(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    knowledge = sub.add_parser(
        "knowledge",
        help="build the catalogue's search index, or see what a question would find",
        description="index: embed the knowledge's chunks once and cache the vectors in "
        "prompts/knowledge/.index/ (only needed above KNOWLEDGE_MAX_TOKENS); search QUESTION: the "
        "chunks a lead's question brings into the prompt, and which search served it.",
    )
    knowledge.add_argument("action", choices=KNOWLEDGE_ACTIONS)
    knowledge.add_argument(
        "query", nargs="?", metavar="QUESTION", help="search: the question, as a lead writes it"
    )
    knowledge.add_argument(
        "--prompts-dir", metavar="DIR", help="the prompts folder whose knowledge/ is read (default: prompts/)"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _hide(sub: argparse._SubParsersAction[OneLineParser], parser: argparse.ArgumentParser) -> None:
    """List only the public commands: in the usage line, and in `help`'s own choices text."""
    public = [name for name in sub.choices if name not in HIDDEN_COMMANDS]
    sub.metavar = "{" + ",".join(public) + "}"
    parser.usage = f"{PROG} [-h] [--debug] {sub.metavar} ..."


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The public commands and their parsers."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {name: p for name, p in action.choices.items() if name not in HIDDEN_COMMANDS}
    return {}


def show_help(parser: argparse.ArgumentParser, topic: str | None) -> int:
    """`python main.py help [COMMAND]`: what --help prints, exit 0; an unknown command is a
    usage error (exit 2) naming the commands there are."""
    if topic is None:
        parser.print_help()
        return 0
    commands = _commands(parser)
    if topic not in commands:
        parser.error(f"no command {topic!r}; choose from {', '.join(commands)}")
    commands[topic].print_help()
    return 0

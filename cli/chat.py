"""`python main.py chat`: a seller talks to the real agent and store in a terminal.

Same graph, same store, channel `cli`; the lead card (profile, score, reasons) is
printed after every answer so prompt changes can be judged without WhatsApp.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import stat
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from aiohttp import web

from channels.cli import CliChannel
from core.clock import utc_now
from core.lead import LeadProfile, describe_lead, field_label, missing_fields
from core.models import InboundMessage, MessageKind
from core.records import LeadRecord, StoredMessage
from core.settings import Settings
from store.base import Store
from web.app import create_app
from web.keys import CHANNELS, RUNNER, STORE
from web.serve import configure_process

CHAT_DEFAULT_CONTACT = "terminal"
CHAT_PROMPT = "você> "
CHAT_REPLY_TIMEOUT_S = 180.0
CHAT_POLL_S = 0.02
EXIT_NO_OPENAI = 2
EXIT_INTERRUPTED = 130

NO_OPENAI_MESSAGE = (
    "O chat conversa com o modelo de verdade: defina OPENAI_API_KEY (no ambiente ou no "
    "arquivo .env) e rode de novo."
)


def chat_settings(settings: Settings) -> Settings:
    """The same configuration, tuned for a person typing: answer at once, log quietly."""
    update: dict[str, object] = {
        # One line is one turn: no point waiting for a burst that will not come.
        "debounce_quiet_s": 0.0,
        "debounce_max_s": 0.0,
        # A failed turn is retried soon, not minutes later, while the seller watches.
        "turn_retry_base_s": min(settings.turn_retry_base_s, 1.0),
        "turn_retry_max_s": min(settings.turn_retry_max_s, 5.0),
    }
    if "log_level" not in settings.model_fields_set:
        update["log_level"] = "WARNING"
    return settings.model_copy(update=update)


def chat_contact_id(contact: str | None = None, *, fresh: bool = False) -> str:
    base = (contact or "").strip() or CHAT_DEFAULT_CONTACT
    return f"{base}-{uuid.uuid4().hex[:8]}" if fresh else base


CARD_WIDTH = 60


def format_lead_card(lead: LeadRecord | None) -> str:
    """What a seller looks at after each turn: known data, score, temperature and why."""
    lines = ["--- Ficha do lead ".ljust(CARD_WIDTH, "-")]
    if lead is None:
        lines.append("Ainda não há dados deste lead.")
    else:
        profile = LeadProfile.model_validate(lead.profile)
        lines.extend(describe_lead(profile) or ["(nenhum dado informado ainda)"])
        missing = missing_fields(profile)
        if missing:
            lines.extend(
                textwrap.wrap(
                    "Falta saber: " + ", ".join(field_label(name) for name in missing),
                    width=CARD_WIDTH,
                    subsequent_indent="  ",
                    break_on_hyphens=False,
                )
            )
        lines.append(f"Pontuação: {lead.score}/100 | Temperatura: {lead.temperature}")
        if lead.score_reasons:
            lines.append("Motivos:")
            lines.extend(f"  - {reason}" for reason in lead.score_reasons)
        if lead.opted_out:
            lines.append("Pediu para não receber mais mensagens (opt-out).")
    lines.append("-" * CARD_WIDTH)
    return "\n".join(lines) + "\n"


class _LineReader:
    """Lines from stdin without blocking the event loop (the bot answers meanwhile).

    In-memory streams and regular files never block and are read directly. A terminal
    or pipe is read when the loop says it is readable, so Ctrl-C is never stuck behind
    a blocked `readline()` in a thread.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._fd: int | None = None
        try:
            fd = stream.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self._fd = fd
        except (AttributeError, OSError, ValueError):
            pass  # StringIO and friends: no descriptor
        encoding = getattr(stream, "encoding", None) or "utf-8"
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._buffer = ""
        self._eof = False

    async def readline(self) -> str:
        """The next line with its newline; "" at end of input."""
        if self._fd is None:
            return self._stream.readline()
        while "\n" not in self._buffer and not self._eof:
            chunk = await self._read_chunk(self._fd)
            if chunk:
                self._buffer += self._decoder.decode(chunk)
            else:
                self._eof = True
                self._buffer += self._decoder.decode(b"", final=True)
        line, newline, rest = self._buffer.partition("\n")
        self._buffer = rest
        return line + newline

    @staticmethod
    async def _read_chunk(fd: int) -> bytes:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()

        def ready() -> None:
            loop.remove_reader(fd)
            if future.done():
                return
            try:
                future.set_result(os.read(fd, 65536))
            except OSError as exc:
                future.set_exception(exc)

        try:
            loop.add_reader(fd, ready)
        except (NotImplementedError, ValueError, OSError):
            # A loop without add_reader (Windows): a daemon thread, so a pending read
            # never holds the process open after Ctrl-C.
            def work() -> None:
                try:
                    data = os.read(fd, 65536)
                except OSError as exc:
                    result: bytes | OSError = exc
                else:
                    result = data
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                    loop.call_soon_threadsafe(_settle, future, result)

            threading.Thread(target=work, name="chat-stdin", daemon=True).start()
            return await future
        try:
            return await future
        finally:
            loop.remove_reader(fd)


def _settle(future: asyncio.Future[bytes], result: bytes | OSError) -> None:
    if future.done():
        return
    if isinstance(result, OSError):
        future.set_exception(result)
    else:
        future.set_result(result)


class _Chat:
    def __init__(
        self,
        store: Store,
        notify: Callable[..., None],
        out: TextIO,
        *,
        contact_id: str,
        name: str | None,
        timeout_s: float,
    ) -> None:
        self.store = store
        self.notify = notify
        self.out = out
        self.contact_id = contact_id
        self.name = name
        self.key = f"cli:{contact_id}"
        self.timeout_s = timeout_s

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def show_card(self) -> None:
        self.say(format_lead_card(await self.store.get_lead(self.key)))

    async def last_message_id(self) -> int:
        recent = await self.store.recent_messages(self.key, 1)
        return recent[-1].id if recent else 0

    async def send(self, text: str) -> None:
        baseline = await self.last_message_id()
        message = InboundMessage(
            channel="cli",
            contact_id=self.contact_id,
            provider_message_id=f"cli-{uuid.uuid4().hex}",
            kind=MessageKind.TEXT,
            text=text,
            name=self.name,
        )
        await self.store.add_inbound(message)
        self.notify(message.contact_key, immediate=True)
        await self.wait_for_reply(baseline)

    async def wait_for_reply(self, baseline: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        reported_attempts = 0
        while True:
            pending = await self.store.pending_inbound(self.key)
            if pending:
                attempts = max(record.attempts for record in pending)
                if attempts > reported_attempts:
                    reported_attempts = attempts
                    self.say(
                        f"(o bot ainda não conseguiu responder, tentativa {attempts}; "
                        "tentando de novo... Ctrl-C encerra)"
                    )
            else:
                replies = [
                    m
                    for m in await self.store.recent_messages(self.key, 50)
                    if m.id > baseline and m.direction == "out"
                ]
                if await self._delivered(replies):
                    if not replies:
                        self.say("(o bot não respondeu a esta mensagem)")
                    return
            if loop.time() >= deadline:
                self.say(
                    f"(sem resposta em {self.timeout_s:.0f} s: a mensagem fica guardada e é "
                    "respondida assim que o bot conseguir)"
                )
                return
            await asyncio.sleep(CHAT_POLL_S)

    async def _delivered(self, replies: list[StoredMessage]) -> bool:
        if not any(m.status == "queued" for m in replies):
            return True
        # Still queued, but nothing will be delivered soon (dead after a broken
        # terminal, or only items scheduled for later): stop waiting for it.
        if (await self.store.outbox_stats()).inflight:
            return False
        due = await self.store.next_outbox_due()
        return due is None or (due - datetime.now(UTC)).total_seconds() > 5.0


async def run_chat(
    settings: Settings,
    *,
    contact: str | None = None,
    fresh: bool = False,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    reply_timeout_s: float = CHAT_REPLY_TIMEOUT_S,
) -> int:
    """A terminal conversation with the real agent and store; returns the exit code.

    Runs the app's runtime (store, turns, outbox dispatcher) without an HTTP server;
    the bot's replies reach the terminal through the `cli` channel's outbox deliveries,
    exactly as WhatsApp replies go through Z-API.
    """
    stdin = stdin if stdin is not None else sys.stdin
    out = stdout if stdout is not None else sys.stdout
    if not settings.openai_configured:
        print(NO_OPENAI_MESSAGE, file=sys.stderr)
        return EXIT_NO_OPENAI
    settings = chat_settings(settings)
    contact_id = chat_contact_id(contact, fresh=fresh)
    display_name = (contact or "").strip() or None

    configure_process(settings)  # create_app leaves the process's logging to its caller
    app = create_app(settings, clock=utc_now)
    channel = app[CHANNELS].get("cli")
    if not isinstance(channel, CliChannel):
        raise RuntimeError("the cli channel is not registered (channels.registry)")
    channel.output = out
    app_runner = web.AppRunner(app, handle_signals=False)
    await app_runner.setup()
    try:
        chat = _Chat(
            app[STORE],
            app[RUNNER].notify,
            out,
            contact_id=contact_id,
            name=display_name,
            timeout_s=reply_timeout_s,
        )
        await _chat_loop(chat, settings, _LineReader(stdin), echo=not _isatty(stdin))
    finally:
        await app_runner.cleanup()
    return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


async def _chat_loop(chat: _Chat, settings: Settings, reader: _LineReader, *, echo: bool) -> None:
    chat.say(f"Conversa de teste com o bot (canal cli, contato {chat.contact_id!r}).")
    chat.say(f"Banco: {settings.sqlite_path}")
    chat.say("Escreva como se fosse o lead. /perfil mostra a ficha do lead, /sair encerra.")
    lead = await chat.store.get_lead(chat.key)
    if lead is not None:
        chat.say("Continuando a conversa deste contato (use --fresh para começar do zero).")
        chat.say(format_lead_card(lead))
    if await chat.store.pending_inbound(chat.key):
        chat.say("(respondendo mensagens pendentes da sessão anterior...)")
        await chat.wait_for_reply(await chat.last_message_id())
        await chat.show_card()
    while True:
        chat.out.write(CHAT_PROMPT)
        chat.out.flush()
        raw = await reader.readline()
        if not raw:  # end of input (Ctrl-D)
            chat.say()
            break
        line = raw.strip()
        if echo:
            chat.say(line)
        if not line:
            continue
        command = line.lower()
        if command == "/sair":
            break
        if command == "/perfil":
            await chat.show_card()
            continue
        if command in ("/ajuda", "/help", "/?"):
            chat.say("/perfil mostra a ficha do lead; /sair (ou Ctrl-D) encerra. O resto vai para o bot.")
            continue
        await chat.send(line)
        await chat.show_card()
    chat.say("Até logo!")


def _chat(settings: Settings, contact: str | None, fresh: bool) -> int:
    try:
        return asyncio.run(run_chat(settings, contact=contact, fresh=fresh))
    except KeyboardInterrupt:
        print("\nAté logo!")
        return EXIT_INTERRUPTED

"""`python main.py chat`: a seller talks to the real agent and store in a terminal.

Same graph, same store, channel `cli`; the lead card is printed after every answer so
prompt changes can be judged without WhatsApp. chat's own lines are English; the bot's
words stay pt-BR. An unreachable model is named in one line (refused, timeout, bad key,
provider busy), chat gives up after a bounded wait, and `/sair` always ends it at once.
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
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from aiohttp import web

from channels.cli import CliChannel
from cli.model_failure import ModelFailure, ModelWatch
from core.clock import utc_now
from core.lead import LeadProfile, describe_lead, field_label, missing_fields
from core.models import InboundMessage, MessageKind
from core.records import LeadRecord, StoredMessage
from core.settings import Settings
from store.base import Store
from web.app import create_app
from web.keys import CHANNELS, LLM, RUNNER, STORE
from web.serve import configure_process

CHAT_DEFAULT_CONTACT = "terminal"
CHAT_PROMPT = "you> "
# A healthy but slow model may take this long; failures are bounded by CHAT_GIVE_UP_S.
CHAT_REPLY_TIMEOUT_S = 180.0
# How long chat keeps retrying a model it cannot reach before it hands the prompt back.
CHAT_GIVE_UP_S = 30.0
# A model that neither answers nor fails this long gets a line (OPENAI_TIMEOUT_S is 30 s).
CHAT_SLOW_NOTICE_S = 10.0
KEPT_FIX = "Your message is kept, not answered; fix this and run chat again."
KEPT_RETRIED = (
    "Your message is kept, not answered: the bot retries it in the background while chat runs, "
    "and the next chat session answers it."
)
CHAT_POLL_S = 0.02
EXIT_FAILED = 1
EXIT_NO_OPENAI = 2
EXIT_INTERRUPTED = 130
QUIT_COMMANDS = frozenset({"/sair", "/quit", "/exit"})
GOODBYE = "Bye."


def endpoint_line(settings: Settings) -> str:
    """Which model chat talks to, so a wrong OPENAI_BASE_URL is visible before the first turn."""
    return f"Model: {settings.openai_model} at {settings.openai_base_url} (OPENAI_MODEL, OPENAI_BASE_URL)"


def no_openai_message(settings: Settings) -> str:
    return (
        f"OPENAI_API_KEY is not set: chat talks to the real model ({settings.openai_model} at "
        f"{settings.openai_base_url}). Put OPENAI_API_KEY=sk-... in the environment or in .env "
        "and run chat again."
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
        # /sair must end chat at once: a turn still talking to the model is cut after ~1 s
        # and its message stays pending for the next session.
        "shutdown_grace_s": min(settings.shutdown_grace_s, 1.0),
    }
    if "log_level" not in settings.model_fields_set:
        # chat explains failures in its own one-line words; the log's warnings and
        # tracebacks would bury them (LOG_LEVEL=INFO brings the log back).
        update["log_level"] = "CRITICAL"
    return settings.model_copy(update=update)


def chat_contact_id(contact: str | None = None, *, fresh: bool = False) -> str:
    base = (contact or "").strip() or CHAT_DEFAULT_CONTACT
    return f"{base}-{uuid.uuid4().hex[:8]}" if fresh else base


CARD_WIDTH = 60


def format_lead_card(lead: LeadRecord | None) -> str:
    """What a seller looks at after each turn: known data, score, temperature and why; in
    pt-BR, the words of the handoff card the team reads in Chatwoot and PipeRun."""
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


Outcome = Literal["answered", "gave_up", "fatal", "quit"]


class _Input:
    """The operator's lines. In a terminal they are read while a turn runs, so `/sair`,
    `/quit` or Ctrl-D end chat at once even while the model is being retried; anything
    else typed meanwhile is kept for after the turn. Piped input is a script: read in
    turn, so `printf 'Oi\\n/sair\\n' | chat` still sees the reply before quitting."""

    def __init__(self, reader: _LineReader, *, concurrent: bool) -> None:
        self.reader = reader
        self.concurrent = concurrent
        self.typed_ahead: deque[str] = deque()
        self._next: asyncio.Future[str] | None = None

    def _pending_line(self) -> asyncio.Future[str]:
        if self._next is None:
            self._next = asyncio.ensure_future(self.reader.readline())
        return self._next

    async def readline(self) -> str:
        if self.typed_ahead:
            return self.typed_ahead.popleft()
        line = self._pending_line()
        try:
            return await line
        finally:
            self._next = None

    async def during(self, work: Awaitable[Outcome]) -> Outcome:
        if not self.concurrent:
            return await work
        job = asyncio.ensure_future(work)
        try:
            while True:
                line = self._pending_line()
                racing: set[asyncio.Future[Any]] = {job, line}
                done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
                if job in done:
                    return job.result()
                self._next = None
                raw = line.result()
                if not raw or raw.strip().lower() in QUIT_COMMANDS:
                    return "quit"
                self.typed_ahead.append(raw)
        finally:
            if not job.done():
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job

    async def close(self) -> None:
        if self._next is not None and not self._next.done():
            self._next.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._next


@dataclass(kw_only=True)
class _Chat:
    store: Store
    notify: Callable[..., None]
    out: TextIO
    watch: ModelWatch
    contact_id: str
    name: str | None
    timeout_s: float
    give_up_s: float
    slow_notice_s: float = CHAT_SLOW_NOTICE_S

    @property
    def key(self) -> str:
        return f"cli:{self.contact_id}"

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def show_card(self) -> None:
        self.say(format_lead_card(await self.store.get_lead(self.key)))

    async def last_message_id(self) -> int:
        recent = await self.store.recent_messages(self.key, 1)
        return recent[-1].id if recent else 0

    async def send(self, text: str) -> int:
        """Stores the line as the lead's message and wakes the runner; returns the id after
        which this turn's replies will be."""
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
        return baseline

    async def wait_for_reply(self, baseline: int) -> Outcome:
        """Until the reply is delivered, the configuration is wrong (fatal), or the model
        stayed unreachable for `give_up_s` since its first failure."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        notice_at: float | None = loop.time() + self.slow_notice_s
        give_up_at: float | None = None
        failures_before = self.watch.failures
        reported: str | None = None
        reported_attempts: int | None = None  # attempts already made before this wait are old news
        while True:
            pending = await self.store.pending_inbound(self.key)
            if not pending:
                replies = [
                    m
                    for m in await self.store.recent_messages(self.key, 50)
                    if m.id > baseline and m.direction == "out"
                ]
                if await self._delivered(replies):
                    if not replies:
                        self.say("(the bot did not reply to this message)")
                    return "answered"
            else:
                failure = self.watch.last if self.watch.failures > failures_before else None
                attempts = max(record.attempts for record in pending)
                if reported_attempts is None:
                    reported_attempts = attempts
                elif failure is None and attempts > reported_attempts:
                    reported_attempts = attempts
                    failure = ModelFailure(
                        f"the bot could not answer (attempt {attempts}); LOG_LEVEL=INFO shows why"
                    )
                if failure is not None:
                    give_up_at = give_up_at if give_up_at is not None else loop.time() + self.give_up_s
                    if failure.fatal:
                        self.say(f"chat: {failure.text}. {KEPT_FIX}")
                        return "fatal"
                    if failure.text != reported:
                        reported = failure.text
                        self.say(
                            f"chat: {reported}; retrying for up to {self.give_up_s:g} s (/sair ends chat)"
                        )
            now = loop.time()
            if give_up_at is None and notice_at is not None and now >= notice_at:
                notice_at = None
                self.say(f"chat: no answer yet after {self.slow_notice_s:g} s from {self.watch.endpoint()}")
            if give_up_at is not None and now >= give_up_at:
                self.say(f"chat: gave up after {self.give_up_s:g} s ({reported}). {KEPT_RETRIED}")
                return "gave_up"
            if now >= deadline:
                self.say(f"chat: no reply in {self.timeout_s:g} s. {KEPT_RETRIED}")
                return "gave_up"
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
    give_up_s: float = CHAT_GIVE_UP_S,
    slow_notice_s: float = CHAT_SLOW_NOTICE_S,
    interactive: bool | None = None,
) -> int:
    """A terminal conversation with the real agent and store; returns the exit code.

    Runs the app's runtime (store, turns, outbox dispatcher) without an HTTP server;
    the bot's replies reach the terminal through the `cli` channel's outbox deliveries,
    exactly as WhatsApp replies go through Z-API. `interactive` (default: stdin is a
    terminal) reads the operator's lines while a turn runs.
    """
    stdin = stdin if stdin is not None else sys.stdin
    out = stdout if stdout is not None else sys.stdout
    if not settings.openai_configured:
        print(no_openai_message(settings), file=sys.stderr)
        return EXIT_NO_OPENAI
    settings = chat_settings(settings)
    contact_id = chat_contact_id(contact, fresh=fresh)
    display_name = (contact or "").strip() or None
    concurrent = _isatty(stdin) if interactive is None else interactive

    configure_process(settings)  # create_app leaves the process's logging to its caller
    app = create_app(settings, clock=utc_now)
    channel = app[CHANNELS].get("cli")
    if not isinstance(channel, CliChannel):
        raise RuntimeError("the cli channel is not registered (channels.registry)")
    channel.output = out
    app_runner = web.AppRunner(app, handle_signals=False)
    await app_runner.setup()
    watch = ModelWatch(settings)
    watch.watch(app[LLM])
    lines = _Input(_LineReader(stdin), concurrent=concurrent)
    try:
        chat = _Chat(
            store=app[STORE],
            notify=app[RUNNER].notify,
            out=out,
            watch=watch,
            contact_id=contact_id,
            name=display_name,
            timeout_s=reply_timeout_s,
            give_up_s=give_up_s,
            slow_notice_s=slow_notice_s,
        )
        return await _chat_loop(chat, settings, lines, echo=not _isatty(stdin))
    finally:
        await lines.close()
        await app_runner.cleanup()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


HELP_LINE = "/perfil shows the lead card; /sair, /quit or Ctrl-D ends chat. Anything else goes to the bot as the lead."


async def _greet(chat: _Chat, settings: Settings, lines: _Input) -> Outcome:
    chat.say(f"Test conversation with the bot (channel cli, contact {chat.contact_id!r}).")
    chat.say(endpoint_line(settings))
    chat.say(f"Database: {settings.sqlite_path}")
    chat.say("Type as the lead would. " + HELP_LINE)
    lead = await chat.store.get_lead(chat.key)
    if lead is not None:
        chat.say("Continuing this contact's conversation (--fresh starts a new one).")
        chat.say(format_lead_card(lead))
    if not await chat.store.pending_inbound(chat.key):
        return "answered"
    chat.say("(answering the messages left from the last session...)")
    outcome = await lines.during(chat.wait_for_reply(await chat.last_message_id()))
    if outcome != "quit":
        await chat.show_card()
    return outcome


async def _chat_loop(chat: _Chat, settings: Settings, lines: _Input, *, echo: bool) -> int:
    """The conversation; returns the exit code (1 when the configuration stops it)."""
    outcome = await _greet(chat, settings, lines)
    while outcome not in ("quit", "fatal"):
        chat.out.write(CHAT_PROMPT)
        chat.out.flush()
        raw = await lines.readline()
        if not raw:  # end of input (Ctrl-D)
            chat.say()
            break
        line = raw.strip()
        if echo:
            chat.say(line)
        command = line.lower()
        if not line:
            continue
        if command in QUIT_COMMANDS:
            break
        if command in ("/perfil", "/profile"):
            await chat.show_card()
            continue
        if command in ("/ajuda", "/help", "/?"):
            chat.say(HELP_LINE)
            continue
        outcome = await lines.during(chat.wait_for_reply(await chat.send(line)))
        if outcome in ("answered", "gave_up"):
            await chat.show_card()
    if outcome == "quit":
        chat.say()
        chat.say(
            "chat: stopped waiting; your message is kept and answered the next time chat runs for this contact."
        )
    chat.say(GOODBYE)
    return EXIT_FAILED if outcome == "fatal" else 0


def _chat(settings: Settings, contact: str | None, fresh: bool) -> int:
    try:
        return asyncio.run(run_chat(settings, contact=contact, fresh=fresh))
    except KeyboardInterrupt:
        print("\n" + GOODBYE)
        return EXIT_INTERRUPTED

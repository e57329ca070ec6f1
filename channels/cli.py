"""Terminal channel: the bot's replies printed on a text stream (`python main.py chat`).

It lets a seller talk to the real agent, store and outbox without WhatsApp. Inbound
messages do not come from a webhook (the chat loop in `main.py` stores them itself), so
`authenticate` and `parse` refuse everything and there is no route for this channel.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import uuid
from collections.abc import Sequence
from typing import TextIO

import aiohttp
from aiohttp import web

from channels.base import ParsedWebhook, SentMessage
from channels.errors import ChannelRejected
from core.errors import WebhookRejected

BOT_PREFIX = "bot> "
_MIN_WIDTH = 40
_MAX_WIDTH = 100


class CliChannel:
    name = "cli"
    # A capability flag for whoever lists channels: this one has no webhook route.
    webhook = False
    window_hours: int | None = None
    rate_per_s = 1000.0

    def __init__(self, output: TextIO | None = None, *, width: int | None = None) -> None:
        # Nothing from the settings: a terminal needs no address, token or rate limit.
        # None means "the process's stdout at the time of writing", so a server that
        # happens to deliver a leftover terminal reply still has somewhere to put it.
        self.output = output
        self.width = width

    @property
    def configured(self) -> bool:
        return True

    @property
    def missing_webhook_secret(self) -> str | None:
        return None  # no webhook: the terminal is the channel

    # -- inbound --------------------------------------------------------------------

    def authenticate(self, request: web.Request, raw_body: bytes) -> None:
        raise WebhookRejected(401, "the cli channel has no webhook")

    def parse(self, payload: object) -> ParsedWebhook:
        raise WebhookRejected(400, "the cli channel does not accept webhook payloads")

    # -- outbound -------------------------------------------------------------------

    async def send_text(
        self,
        session: aiohttp.ClientSession,
        contact_id: str,
        text: str,
        *,
        typing_s: int,
        human_agent: bool = False,
        seen_message_ids: Sequence[str] = (),
    ) -> SentMessage:
        # `typing_s` is a WhatsApp nicety; in a terminal the seller wants the answer now.
        stream = self.output if self.output is not None else sys.stdout
        try:
            stream.write(format_bot_message(text, width=self._width()) + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:  # closed or broken stream: retrying cannot help
            raise ChannelRejected(f"cannot write to the terminal: {exc}") from exc
        return SentMessage(provider_message_id=f"cli-{uuid.uuid4().hex}")

    async def fetch_media(self, session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> bytes:
        raise ChannelRejected("the cli channel has no media to download")

    def _width(self) -> int:
        if self.width is not None:
            return self.width
        columns = shutil.get_terminal_size((80, 24)).columns
        return max(_MIN_WIDTH, min(columns, _MAX_WIDTH))


def format_bot_message(text: str, *, width: int = 80, prefix: str = BOT_PREFIX) -> str:
    """`bot> ` then the text wrapped to `width`, continuation lines aligned under it.

    The model's own line breaks (lists, paragraphs) are kept; only long lines are wrapped.
    """
    indent = " " * len(prefix)
    body_width = max(width - len(prefix), 20)
    lines: list[str] = []
    for raw in text.strip().splitlines() or [""]:
        wrapped = textwrap.wrap(raw, width=body_width, break_long_words=False, break_on_hyphens=False)
        lines.extend(wrapped or [""])
    out = [(prefix if i == 0 else indent) + line for i, line in enumerate(lines)]
    return "\n".join(line.rstrip() for line in out)


__all__ = ["BOT_PREFIX", "CliChannel", "format_bot_message"]

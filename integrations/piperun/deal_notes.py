"""One more note on the lead's deal (a quote request, a technical question), posted once.

The text is the caller's (already in pt-BR); it is written like the lead-card note (texts):
HTML-escaped, lines joined with `<br>`. Its last line carries our reference followed by
"/<key>": the erasure (LGPD) finds it by the reference like the card, the card's own
search skips it (sync.is_card_note), and a retry after a lost answer finds it by the key
([listar-notas] GET /notes?deal_id=) instead of posting it twice.
"""

from __future__ import annotations

import hashlib
import html

import structlog

from integrations.piperun.client import PipeRunClient
from integrations.piperun.schema import NoteCreate
from integrations.piperun.texts import NOTE_LINE_BREAK

log = structlog.get_logger(__name__)


def deal_note_marker(reference: str, key: str) -> str:
    """ "<reference>/<12 hex>": the key (an outbox idempotency key) hashed, so nothing of
    it is shown to the sellers."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"{reference}/{digest}"


def render_deal_note(text: str, *, marker: str) -> str:
    lines = [" ".join(line.split()) for line in text.strip().splitlines()]
    body = NOTE_LINE_BREAK.join(html.escape(line, quote=False) for line in lines)
    return f"{body}{NOTE_LINE_BREAK}{NOTE_LINE_BREAK}Ref. SDR: {marker}"


async def post_deal_note(client: PipeRunClient, deal_id: int, text: str, *, reference: str, key: str) -> int:
    """The id of the note carrying this key on the deal: the one already there, or a new one."""
    marker = deal_note_marker(reference, key)
    for note in await client.list_deal_notes(deal_id):
        if marker in (note.text or ""):
            log.info("piperun_deal_note_exists", deal_id=deal_id, note_id=note.id)
            return note.id
    note = await client.create_note(NoteCreate(text=render_deal_note(text, marker=marker), deal_id=deal_id))
    log.info("piperun_deal_note_created", deal_id=deal_id, note_id=note.id)
    return note.id


__all__ = ["deal_note_marker", "post_deal_note", "render_deal_note"]

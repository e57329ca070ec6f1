"""What reads as a whole message (a short quiet window) and what as a fragment, the
presence board's bounds, and the shared-store re-check of a burst's window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.models import InboundMessage, MessageKind
from runtime.presence import PresenceBoard
from runtime.quiet_window import ends_thought, text_ends_thought
from runtime.scheduler import ScheduleConfig

COMPLETE = [
    "Quanto custa o plano anual?",
    "Quero saber mais sobre o curso.",
    "Vocês entregam em Campinas!",
    "quanto custa? 🙏",
    "boa tarde vi o anuncio de voces no instagram e queria saber como funciona o plano",
]
FRAGMENTS = [
    "oi",
    "Oi!",
    "Olá 😊",
    "Bom dia!",
    "então",
    "Então,",
    "queria saber...",
    "quanto custa",
    "tenho uma dúvida:",
    "",
    "   ",
]


@pytest.mark.parametrize("text", COMPLETE)
def test_a_message_that_ends_a_thought(text: str) -> None:
    assert text_ends_thought(text)


@pytest.mark.parametrize("text", FRAGMENTS)
def test_a_fragment(text: str) -> None:
    assert not text_ends_thought(text)


def message(kind: MessageKind, **fields: str) -> InboundMessage:
    return InboundMessage(
        channel="zapi", contact_id="5511999999999", provider_message_id="m1", kind=kind, **fields
    )


@pytest.mark.parametrize(
    ("msg", "complete"),
    [
        (message(MessageKind.AUDIO, media_url="https://x/a.ogg"), True),
        (message(MessageKind.IMAGE, media_url="https://x/i.jpg", media_caption="Esse modelo tem?"), True),
        (message(MessageKind.IMAGE, media_url="https://x/i.jpg"), False),
        (message(MessageKind.STICKER, media_url="https://x/s.webp"), False),
        (message(MessageKind.TEXT, text="oi"), False),
        (message(MessageKind.TEXT, text="Qual o prazo de entrega?"), True),
    ],
)
def test_media_with_words_or_a_voice_note_is_whole(msg: InboundMessage, complete: bool) -> None:
    assert ends_thought(msg) is complete


def test_the_board_forgets_stale_phones_and_keeps_a_bounded_number() -> None:
    board = PresenceBoard(live_s=60.0, max_contacts=2)
    board.record("a", "typing", 0.0)
    assert board.get("a", 59.0) is not None
    assert board.get("a", 61.0) is None
    for key in ("a", "b", "c"):
        board.record(key, "paused", 100.0)
    assert len(board) == 2 and board.get("a", 100.0) is None


def test_the_board_remembers_when_the_lead_was_last_active() -> None:
    board = PresenceBoard()
    board.record("a", "recording", 0.0)
    board.record("a", "paused", 5.0)
    board.record("a", "online", 5.1)
    seen = board.get("a", 6.0)
    assert seen is not None and seen.active_at == 0.0
    board.record("a", "typing", 7.0)
    board.record("a", "paused", 8.0)
    seen = board.get("a", 8.0)
    assert seen is not None and seen.active_at == 7.0 and not seen.holding
    board.record("b", "online", 1.0)
    seen = board.get("b", 1.0)
    assert seen is not None and seen.active_at is None


def test_a_shared_burst_waits_the_window_of_its_last_message() -> None:
    config = ScheduleConfig(
        quiet_s=3.0,
        max_wait_s=15.0,
        max_concurrent=1,
        lease_s=5.0,
        retry_base_s=1.0,
        retry_max_s=1.0,
        poll_s=1.0,
        complete_s=1.0,
        presence_s=0.6,
    )
    just_now = [datetime.now(UTC) - timedelta(seconds=0.1)]
    # The local debounce may have waited on presence already: the shortest window counts.
    assert 0.3 < config.quiet_left(just_now, complete=True) <= 0.5
    assert 2.7 < config.quiet_left(just_now, complete=False) <= 2.9
    assert config.quiet_left([]) == 0.0

"""Whisper's billed seconds, read from a voice note's own headers (issue 20)."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import struct
import wave

from aiohttp.test_utils import TestClient

from agent import llm
from core.audio_length import audio_seconds
from runtime.late_parts import heard_seconds
from tests.conftest import zapi_message
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from web.keys import STORE


def ogg_page(granule: int, body: bytes) -> bytes:
    return b"OggS" + bytes([0, 0]) + struct.pack("<q", granule) + b"\0" * 12 + bytes([1, len(body)]) + body


def test_an_opus_voice_note_is_its_last_granule_less_the_pre_skip() -> None:
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HI", 312, 48000)
    note = ogg_page(0, head) + ogg_page(0, b"OpusTags") + ogg_page(48000 * 7 + 24000 + 312, b"audio")
    assert audio_seconds(note) == 7.5


def test_an_mp4_voice_note_is_its_movie_duration() -> None:
    mvhd = b"mvhd" + bytes([0, 0, 0, 0]) + b"\0" * 8 + struct.pack(">II", 1000, 4200)
    note = b"\0\0\0\x18ftypM4A " + b"\0" * 12 + b"\0\0\0\x6cmoov" + b"\0\0\0\x64" + mvhd
    assert audio_seconds(note) == 4.2


def test_a_wav_is_its_data_over_the_byte_rate_and_anything_else_is_unknown() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0" * 32000 * 3)
    assert audio_seconds(buffer.getvalue()) == 3.0
    assert audio_seconds(b"ID3\x03mp3 bytes") is None
    assert audio_seconds(b"OggS") is None  # cut short


async def test_seconds_heard_in_the_turn_s_tasks_reach_the_turn() -> None:
    async def node() -> None:  # a LangGraph node runs in a task with a copy of the context
        heard = llm._heard.get()
        assert heard is not None
        heard.append(2.5)

    with llm.count_transcription() as heard:
        await asyncio.create_task(node())
        await asyncio.create_task(node())
    assert heard_seconds(heard) == 5.0
    assert llm._heard.get() is None
    assert heard_seconds([]) == 0.0 and heard_seconds([None]) is None and heard_seconds([None, 1.0]) == 1.0


def test_the_token_counter_has_a_cached_direction() -> None:
    from core.metrics import Metrics

    metrics = Metrics()
    metrics.turn("agent", llm_s=1.0, own_s=0.01, tokens_in=3000, tokens_out=200, tokens_cached=1000)
    read = metrics.registry.get_sample_value
    assert read("sdr_llm_tokens_total", {"direction": "in"}) == 3000
    assert read("sdr_llm_tokens_total", {"direction": "cached"}) == 1000
    assert read("sdr_llm_tokens_total", {"direction": "out"}) == 200


def opus_note(seconds: float) -> bytes:
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HI", 312, 48000)
    return ogg_page(0, head) + ogg_page(0, b"OpusTags") + ogg_page(int(48000 * seconds) + 312, b"audio")


async def test_a_voice_note_turn_commits_its_tokens_model_and_whisper_seconds(
    bot: TestClient, http_mock, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    payload = zapi_message("received_audio_ptt.json")
    http_mock.get(payload["audio"]["audioUrl"], body=opus_note(7.5), content_type="audio/ogg")
    openai_fake.then(reply="Entendi!")
    assert (await bot.post("/webhooks/zapi", json=payload)).status == 200
    await settled(bot)

    assert openai_fake.transcription_requests == 1
    with sqlite3.connect(bot.app[STORE].path) as db:  # type: ignore[attr-defined]
        rows = db.execute(
            "SELECT model, prompt_tokens, cached_tokens, completion_tokens, transcription_seconds FROM turn_usage"
        ).fetchall()
    # tests/fixtures/openai/chat_completion_structured.json's usage and model.
    assert rows == [("gpt-4o-2024-08-06", 1117, 0, 46, 7.5)]

"""How long a voice note is, read from the file's own headers (Whisper bills by the
second of audio): no decoding, no dependency.

- Ogg (WhatsApp's voice notes: Opus; also Vorbis): the last page's granule position is
  the sample count (Opus: at 48 kHz, less the header's pre-skip);
- MP4/M4A (Instagram's voice notes, AAC): the movie header's duration and timescale;
- WAV: the data size over the byte rate.

Anything else (MP3, AMR, a truncated file): None, "not known", never a guess.
"""

from __future__ import annotations

OPUS_RATE = 48_000


def _u(data: bytes, start: int, size: int) -> int | None:
    chunk = data[start : start + size]
    return int.from_bytes(chunk, "big") if len(chunk) == size else None


def _ogg_seconds(data: bytes) -> float | None:
    last = data.rfind(b"OggS")
    if last < 0 or len(data) < last + 14:
        return None
    granule = int.from_bytes(data[last + 6 : last + 14], "little", signed=True)
    if (head := data.find(b"OpusHead")) >= 0 and len(data) >= head + 12:
        pre_skip = int.from_bytes(data[head + 10 : head + 12], "little")
        return max(granule - pre_skip, 0) / OPUS_RATE
    if (head := data.find(b"\x01vorbis")) >= 0 and len(data) >= head + 16:
        rate = int.from_bytes(data[head + 12 : head + 16], "little")
        return granule / rate if rate else None
    return None


def _mp4_seconds(data: bytes) -> float | None:
    box = data.find(b"mvhd")
    if box < 0 or len(data) < box + 5:
        return None
    if data[box + 4] == 1:
        timescale, duration = _u(data, box + 24, 4), _u(data, box + 28, 8)
    else:
        timescale, duration = _u(data, box + 16, 4), _u(data, box + 20, 4)
    return duration / timescale if timescale and duration is not None else None


def _wav_seconds(data: bytes) -> float | None:
    byte_rate = int.from_bytes(data[28:32], "little") if len(data) >= 32 else 0
    found = data.find(b"data", 12)
    if not byte_rate or found < 0 or len(data) < found + 8:
        return None
    return int.from_bytes(data[found + 4 : found + 8], "little") / byte_rate


def audio_seconds(data: bytes) -> float | None:
    """The length of an audio file in seconds, or None when its format does not say."""
    if data[:4] == b"OggS":
        seconds = _ogg_seconds(data)
    elif data[4:8] == b"ftyp":
        seconds = _mp4_seconds(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        seconds = _wav_seconds(data)
    else:
        seconds = None
    return round(seconds, 3) if seconds is not None else None

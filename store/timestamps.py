"""How both stores write an instant: UTC, microseconds, always with its offset.

One format for both backends, so a timestamp written by one compares as text and parses
back the same in the other (SQLite keeps them as TEXT and orders by the string).
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime) -> str:
    """A naive value is taken as UTC, never as the machine's local time."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")

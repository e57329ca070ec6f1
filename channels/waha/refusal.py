"""What WAHA says when it refuses a call, for an error message or a log line: the first
text it gives under one of its error shapes, the session's secrets scrubbed, capped.
Sending (channel.py) and presence subscriptions (presence.py) read refusals alike."""

from __future__ import annotations

from collections.abc import Sequence

from channels.provider_http import error_detail, scrub

DETAIL_MAX = 200
# Where WAHA's error bodies keep the human part: Nest errors carry `message` (string or
# list), the 500 filter nests it in `exception.message`, the 422 session error and file
# errors use `error`.
ERROR_PATHS = (("exception", "message"), ("message",), ("error",), ("error", "message"), ("detail",))


def refusal_detail(raw: str, secrets: Sequence[str]) -> str:
    return scrub(error_detail(raw, ERROR_PATHS, join_lists=True), list(secrets))[:DETAIL_MAX]

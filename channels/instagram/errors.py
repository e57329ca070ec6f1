"""What Meta's errors mean for an Instagram send: retry, fix the token, drop the
recipient, or answer as a person with the HUMAN_AGENT tag.

Order matters: code 10 means both "outside the window" (a lead-level, permanent fact) and
"permission denied" (the channel is broken), told apart by subcode.
Docs: .../messenger-platform/error-codes and .../graph-api/guides/error-handling.
"""

from __future__ import annotations

import re
from typing import Any

from channels import meta_common
from channels.meta_common import (
    MetaApiError,
    MetaAuthFailed,
    MetaInvalidRecipient,
    MetaRejected,
    MetaUnavailable,
    OutsideWindow,
)
from channels.provider_http import scrub
from channels.webhook_helpers import clean
from core.errors import is_retryable_status

_ERROR_DETAIL_MAX = 200

# Meta's "outside of allowed window" refusals: 10/2534022 is the Instagram one, 10/2018278
# the Messenger Platform's, 10/2018065 the news-messaging variant (error-codes page).
WINDOW_SUBCODES = frozenset({2534022, 2018278, 2018065})
# Throttling: 4 app, 17 user, 32 page, 341 application limit, 613 custom rate limit
# (613/2534040 "Calls to this api have exceeded the rate limit").
RATE_LIMIT_CODES = frozenset({4, 17, 32, 341, 613})
# "Temporary issue due to downtime. Wait and retry" (1, 2), Send API "Temporary send
# message failure" (1200) and "unexpected internal error" (-1).
TRANSIENT_CODES = frozenset({-1, 1, 2, 1200})
# The person cannot receive from us: 551 (blocked / unavailable), 200/1545041 and
# 10/2018108 ("can't receive your messages right now"), 100/2534014 ("No matching
# Instagram user") and 100/2018001 ("No matching user found").
_RECIPIENT_SUBCODES = frozenset({1545041, 2018108, 2534014, 2018001})
# Another app (or Meta's own inbox flow) owns the thread; 2018321 says to wait for it.
_THREAD_BUSY_CODES = frozenset({2018321})
# Another app controls the thread (2018300) or we are not its owner (100/2534037): the
# handover protocol decides, not a retry, and the credentials are fine.
_THREAD_OWNED_CODES = frozenset({2018300, 2534037})
# Page temporarily restricted for policy: retries would make it worse.
_POLICY_RESTRICTED = (10, 1893063)

_LEAVES: dict[str, type[MetaApiError]] = {
    "window": OutsideWindow,
    "auth": MetaAuthFailed,
    "recipient": MetaInvalidRecipient,
    "retryable": MetaUnavailable,
    "permanent": MetaRejected,
}


def int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        return int(value.strip())
    return None


def _classify(code: int | None, subcode: int | None, status: int, lowered: str, transient: bool) -> str:
    """window, auth, recipient, retryable or permanent (also the log's `error` field); the
    first rule that holds wins."""
    rules = (
        (code == 10 and (subcode in WINDOW_SUBCODES or "allowed window" in lowered), "window"),
        (code in (190, 102) or status == 401, "auth"),
        (code == 551 or subcode in _RECIPIENT_SUBCODES, "recipient"),
        (
            code in RATE_LIMIT_CODES
            or status == 429
            or code in _THREAD_BUSY_CODES
            or subcode in _THREAD_BUSY_CODES,
            "retryable",
        ),
        (code in _THREAD_OWNED_CODES or subcode in _THREAD_OWNED_CODES, "permanent"),
        (code in TRANSIENT_CODES or transient, "retryable"),
        ((code, subcode) == _POLICY_RESTRICTED, "permanent"),
        # Permission missing or revoked: the channel is broken.
        (code == 10 or (code is not None and 200 <= code <= 299) or code == 3 or status == 403, "auth"),
        ((code is None and is_retryable_status(status)) or status >= 500, "retryable"),
    )
    return next((kind for holds, kind in rules if holds), "permanent")


def send_error(
    status: int, data: dict[str, Any], raw: str, trace_header: str | None, secrets: list[str]
) -> tuple[MetaApiError, str]:
    """The leaf for a refused send, and its one-word kind for the log."""
    graph = meta_common.parse_graph_error(data, as_int=int_or_none)
    code, subcode = graph.code, graph.subcode
    meta_message = graph.message or "" if graph.present else raw.strip()
    trace = graph.fbtrace_id or clean(trace_header)
    if trace is not None:
        trace = scrub(trace, secrets)[:64]
    what = _classify(code, subcode, status, meta_message.lower(), graph.transient)

    if what == "window":
        text = "instagram send refused: outside the 24h messaging window"
    else:
        text = f"instagram send failed: HTTP {status}"
    if code is not None:
        text += f" (Meta error {code}" + (f"/{subcode}" if subcode is not None else "") + ")"
    detail = scrub(meta_message, secrets)[:_ERROR_DETAIL_MAX]
    if detail:
        text += f": {detail}"
    if trace:
        text += f" [fbtrace_id {trace}]"
    error = _LEAVES[what](text, status=status, code=code, subcode=subcode, fbtrace_id=trace)
    return error, what

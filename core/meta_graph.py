"""What Meta's Graph API refusals mean to an operator, for the doctor's probes.

The WhatsApp Cloud and Instagram channels and the Conversions API client all read Graph
nodes to check their setup; they sit side by side and may not import each other, so the
one wording of Graph's error codes lives here, on the ground floor (pure, no I/O).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.probe import ProbeIO, ProbeReply, ProbeResult, problem


def graph_probe_problem(
    io: ProbeIO, reply: ProbeReply, *, id_label: str, id_env: str, token_env: str, permission: str
) -> ProbeResult:
    """The doctor's verdict on a refused Graph read. Errors are `{"error": {message, type,
    code, error_subcode, fbtrace_id}}`; the code says who is at fault.
    https://developers.facebook.com/docs/graph-api/guides/error-handling"""
    error = reply.data.get("error") if isinstance(reply.data, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = error.get("code"), error.get("error_subcode")
    if code == 190 or reply.status == 401:
        return problem(
            "invalid token: Meta says the token expired or was revoked",
            f"generate a system user token (never expiring) in Business Manager and put it in {token_env}",
        )
    if (code == 100 and subcode == 33) or code == 803:
        # "Unsupported get request. Object with ID '…' does not exist, cannot be loaded
        # due to missing permissions, or does not support this operation" (400).
        return problem(
            f"wrong {id_label}, or the token has no access to it",
            f"check {id_env} and that the token in {token_env} was generated with access to this asset",
        )
    if code == 10 or (isinstance(code, int) and 200 <= code <= 299):
        return problem(
            "the token lacks permission to read this asset",
            f"give the token in {token_env} the permission {permission}",
        )
    if code in (4, 17, 32, 613):
        return problem("Meta's call limit reached", "wait a few minutes and run the doctor again")
    return io.unexpected(reply, ("error", "message"))


def graph_int(value: object) -> int | None:
    """A Graph id or code, sent as a number or a string of digits (never a bool)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def graph_text(value: object) -> str | None:
    return " ".join(value.split()) or None if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class GraphError:
    """Graph's `{"error": {message, code, error_subcode, is_transient, fbtrace_id}}`,
    read once for every client that calls Graph, as one line an operator can act on."""

    code: int | None
    subcode: int | None
    trace: str | None
    transient: bool
    detail: str

    def summary(self, head: str, status: int) -> str:
        """`<head>: HTTP 400, code 100/33: <Meta's words> (fbtrace_id X)`."""
        code_text = ""
        if self.code is not None:
            code_text = f", code {self.code}" + (f"/{self.subcode}" if self.subcode is not None else "")
        message = f"{head}: HTTP {status}{code_text}"
        if self.detail:
            message += f": {self.detail}"
        if self.trace:
            message += f" (fbtrace_id {self.trace})"
        return message


def read_graph_error(
    data: object,
    raw: str,
    *,
    header_trace: str | None,
    user_key: str,
    scrub: Callable[[str], str],
    max_detail: int = 300,
) -> GraphError:
    """`user_key`: the second text Meta adds for this API (`error_user_msg`,
    `error_user_title`); `scrub` takes the caller's token out of Meta's words. A body
    that is not Graph's JSON (a proxy's text) is quoted briefly; an HTML page never."""
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        err = {}
    parts = [p for p in (graph_text(err.get("message")), graph_text(err.get(user_key))) if p]
    if not err and raw.strip() and not raw.lstrip().startswith("<"):
        parts = [raw.strip()[:120]]
    return GraphError(
        code=graph_int(err.get("code")),
        subcode=graph_int(err.get("error_subcode")),
        trace=graph_text(err.get("fbtrace_id")) or header_trace,
        transient=err.get("is_transient") is True,
        detail=scrub(" - ".join(dict.fromkeys(parts)))[:max_detail],
    )

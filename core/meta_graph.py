"""What Meta's Graph API refusals mean to an operator, for the doctor's probes.

The WhatsApp Cloud and Instagram channels and the Conversions API client all read Graph
nodes to check their setup; they sit side by side and may not import each other, so the
one wording of Graph's error codes lives here, on the ground floor (pure, no I/O).
"""

from __future__ import annotations

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

"""What the doctor says about a Chatwoot configuration, from Chatwoot's own answers.

GET /api/v1/accounts/{account_id}/inboxes/{id} ("Get an inbox") or .../inboxes ("List
all inboxes", {"payload": [...]}) with the api_access_token header:
https://developers.chatwoot.com/api-reference/inboxes/get-an-inbox.md and
https://developers.chatwoot.com/api-reference/inboxes. An unknown account is a 404, an
account the token's user is not in a 401 "You are not authorized to access this account",
a bad token a 401 "Invalid Access Token" (chatwoot app/controllers/concerns/
ensure_current_account_helper.rb, access_token_auth_helper.rb). The texts are the
operator's, in pt-BR.
"""

from __future__ import annotations

from typing import Any

from core.probe import ProbeIO, ProbeReply, ProbeResult, ok, problem


def _inbox_list(data: Any) -> list[dict[str, Any]]:
    payload = data.get("payload") if isinstance(data, dict) else data
    return [i for i in payload if isinstance(i, dict)] if isinstance(payload, list) else []


def _api_inboxes(inboxes: list[dict[str, Any]]) -> str:
    names = [f"{i.get('id')} ({i.get('name')})" for i in inboxes if i.get("channel_type") == "Channel::Api"]
    return ", ".join(names) if names else "none; create one in Settings → Inboxes → API"


def _wrong_account(account: str | None) -> ProbeResult:
    return problem(
        f"wrong account ID: account {account} does not exist on this Chatwoot",
        "check CHATWOOT_ACCOUNT_ID (the number after /app/accounts/ in the Chatwoot URL)",
    )


def _refused(reply: ProbeReply, account: str | None) -> ProbeResult:
    """A 401: a foreign account, a suspended one, or a bad token."""
    said = reply.text.lower()
    if "not authorized to access this account" in said:
        return problem(
            f"wrong account ID: the token's user is not a member of account {account}",
            "check CHATWOOT_ACCOUNT_ID (the number after /app/accounts/ in the URL) and that the "
            "token belongs to a user of that account",
        )
    if "suspended" in said:
        return problem(f"account {account} is suspended on Chatwoot", "reactivate the account on Chatwoot")
    return problem(
        "invalid token: Chatwoot refused the access token",
        "copy the access token (Profile → Access Token) into CHATWOOT_API_TOKEN",
    )


async def _not_found(
    io: ProbeIO,
    reply: ProbeReply,
    *,
    account_url: str,
    headers: dict[str, str],
    account: str | None,
    inbox: str,
) -> ProbeResult:
    """A 404: not a Chatwoot at all, or the account, or the inbox? The list answers only
    if the account exists."""
    if not isinstance(reply.data, dict):
        return problem(
            "wrong URL: the address did not answer like a Chatwoot",
            "check CHATWOOT_API_URL (e.g. https://app.chatwoot.com)",
        )
    if not inbox:
        return _wrong_account(account)
    listing = await io.get(f"{account_url}/inboxes", headers=headers)
    if listing.status == 404:
        return _wrong_account(account)
    if listing.ok:
        return problem(
            f"wrong inbox ID: inbox {inbox} does not exist in account {account}",
            f"put in CHATWOOT_INBOX_ID an API-type inbox of this account: {_api_inboxes(_inbox_list(listing.data))}",
        )
    return io.unexpected(listing, ("error",), ("message",))


async def probe_inbox(
    io: ProbeIO, *, account_url: str, headers: dict[str, str], account: str | None, inbox: str
) -> ProbeResult:
    if inbox and not inbox.isdigit():
        return problem(
            "CHATWOOT_INBOX_ID is not a number",
            "use the number of the API-type inbox (it shows in its URL on Chatwoot)",
        )
    reply = await io.get(
        f"{account_url}/inboxes/{inbox}" if inbox else f"{account_url}/inboxes", headers=headers
    )
    if reply.status == 401:
        return _refused(reply, account)
    if reply.status == 404:
        return await _not_found(
            io, reply, account_url=account_url, headers=headers, account=account, inbox=inbox
        )
    if not reply.ok or not isinstance(reply.data, dict):
        return io.unexpected(reply, ("error",), ("message",))
    if not inbox:
        return problem(
            f"account {account} reachable, but CHATWOOT_INBOX_ID is missing (the bot creates the contacts in it)",
            f"put in CHATWOOT_INBOX_ID the ID of an API-type inbox: {_api_inboxes(_inbox_list(reply.data))}",
        )
    name, kind = reply.data.get("name"), reply.data.get("channel_type")
    if kind and kind != "Channel::Api":
        return problem(
            f"inbox {inbox} ('{name}') is of type {kind}, not API",
            "create an API-type inbox (Settings → Inboxes → API) and put its ID in CHATWOOT_INBOX_ID",
        )
    return ok(f"account {account}, inbox '{name}' ({inbox}, API)")


__all__ = ["probe_inbox"]

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
    return ", ".join(names) if names else "nenhuma; crie uma em Configurações → Caixas de entrada → API"


def _wrong_account(account: str | None) -> ProbeResult:
    return problem(
        f"ID da conta errado: a conta {account} não existe neste Chatwoot",
        "confira CHATWOOT_ACCOUNT_ID (o número depois de /app/accounts/ na URL do Chatwoot)",
    )


def _refused(reply: ProbeReply, account: str | None) -> ProbeResult:
    """A 401: a foreign account, a suspended one, or a bad token."""
    said = reply.text.lower()
    if "not authorized to access this account" in said:
        return problem(
            f"ID da conta errado: o usuário do token não faz parte da conta {account}",
            "confira CHATWOOT_ACCOUNT_ID (o número depois de /app/accounts/ na URL) e se o "
            "token é de um usuário dessa conta",
        )
    if "suspended" in said:
        return problem(f"a conta {account} está suspensa no Chatwoot", "reative a conta no Chatwoot")
    return problem(
        "token inválido: o Chatwoot recusou o token de acesso",
        "copie o token de acesso (Perfil → Token de acesso) para CHATWOOT_API_TOKEN",
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
            "URL errada: o endereço não respondeu como um Chatwoot",
            "confira CHATWOOT_API_URL (ex.: https://app.chatwoot.com)",
        )
    if not inbox:
        return _wrong_account(account)
    listing = await io.get(f"{account_url}/inboxes", headers=headers)
    if listing.status == 404:
        return _wrong_account(account)
    if listing.ok:
        return problem(
            f"ID da caixa de entrada errado: a caixa {inbox} não existe na conta {account}",
            f"ponha em CHATWOOT_INBOX_ID uma caixa do tipo API desta conta: {_api_inboxes(_inbox_list(listing.data))}",
        )
    return io.unexpected(listing, ("error",), ("message",))


async def probe_inbox(
    io: ProbeIO, *, account_url: str, headers: dict[str, str], account: str | None, inbox: str
) -> ProbeResult:
    if inbox and not inbox.isdigit():
        return problem(
            "CHATWOOT_INBOX_ID não é um número",
            "use o número da caixa de entrada do tipo API (aparece na URL dela no Chatwoot)",
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
            f"conta {account} acessível, mas falta CHATWOOT_INBOX_ID (o bot cria os contatos nela)",
            f"ponha em CHATWOOT_INBOX_ID o ID de uma caixa do tipo API: {_api_inboxes(_inbox_list(reply.data))}",
        )
    name, kind = reply.data.get("name"), reply.data.get("channel_type")
    if kind and kind != "Channel::Api":
        return problem(
            f"a caixa {inbox} ('{name}') é do tipo {kind}, não API",
            "crie uma caixa do tipo API (Configurações → Caixas de entrada → API) e use o ID dela em CHATWOOT_INBOX_ID",
        )
    return ok(f"conta {account}, caixa '{name}' ({inbox}, API)")


__all__ = ["probe_inbox"]

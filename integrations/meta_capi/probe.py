"""What the doctor says about a Meta CAPI configuration, from Graph's own answer.

GET /{version}/{ads-pixel-id}?fields=name (bearer): the Ads Pixel (dataset) node,
read-only (https://developers.facebook.com/docs/marketing-api/reference/ads-pixel/).
Graph errors are `{"error": {message, type, code, error_subcode, fbtrace_id}}`; the code
says who is at fault (https://developers.facebook.com/docs/graph-api/guides/error-handling).
The texts are the operator's, in pt-BR.
"""

from __future__ import annotations

from core.probe import ProbeIO, ProbeReply, ProbeResult, ok, problem

_TOKEN_ENV = "META_ACCESS_TOKEN"


def _graph_problem(io: ProbeIO, reply: ProbeReply) -> ProbeResult:
    error = reply.data.get("error") if isinstance(reply.data, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = error.get("code"), error.get("error_subcode")
    if code == 190 or reply.status == 401:
        return problem(
            "token inválido: a Meta diz que o token expirou ou foi revogado",
            f"gere um token de usuário do sistema (sem validade) no Business Manager e coloque em {_TOKEN_ENV}",
        )
    if (code == 100 and subcode == 33) or code == 803:
        # "Unsupported get request. Object with ID '…' does not exist, cannot be loaded
        # due to missing permissions, or does not support this operation" (400).
        return problem(
            "ID do pixel (conjunto de dados) errado, ou o token não tem acesso a ele",
            f"confira META_PIXEL_ID e se o token de {_TOKEN_ENV} foi gerado com acesso a esse ativo",
        )
    if code == 10 or (isinstance(code, int) and 200 <= code <= 299):
        return problem(
            "token sem permissão para ler este ativo",
            f"dê ao token de {_TOKEN_ENV} a permissão ads_management (ou acesso ao pixel no Business Manager)",
        )
    if code in (4, 17, 32, 613):
        return problem("limite de chamadas da Meta atingido", "espere alguns minutos e rode o doctor de novo")
    return io.unexpected(reply, ("error", "message"))


async def probe_pixel(io: ProbeIO, *, node_url: str, headers: dict[str, str]) -> ProbeResult:
    reply = await io.get(node_url, params={"fields": "name"}, headers=headers)
    data = reply.data if isinstance(reply.data, dict) else {}
    if not reply.ok:
        return _graph_problem(io, reply)
    if "name" not in data and "id" not in data:
        return io.unexpected(reply)
    return ok(f"pixel '{data.get('name') or data.get('id')}'")


__all__ = ["probe_pixel"]

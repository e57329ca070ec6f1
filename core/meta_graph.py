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
            "token inválido: a Meta diz que o token expirou ou foi revogado",
            f"gere um token de usuário do sistema (sem validade) no Business Manager e coloque em {token_env}",
        )
    if (code == 100 and subcode == 33) or code == 803:
        # "Unsupported get request. Object with ID '…' does not exist, cannot be loaded
        # due to missing permissions, or does not support this operation" (400).
        return problem(
            f"{id_label} errado, ou o token não tem acesso a ele",
            f"confira {id_env} e se o token de {token_env} foi gerado com acesso a esse ativo",
        )
    if code == 10 or (isinstance(code, int) and 200 <= code <= 299):
        return problem(
            "token sem permissão para ler este ativo",
            f"dê ao token de {token_env} a permissão {permission}",
        )
    if code in (4, 17, 32, 613):
        return problem("limite de chamadas da Meta atingido", "espere alguns minutos e rode o doctor de novo")
    return io.unexpected(reply, ("error", "message"))

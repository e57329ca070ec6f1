"""What the doctor says about a PipeRun configuration, from PipeRun's own answers.

[ver-detalhes-do-funil] GET /pipelines/{id} and [ver-detalhes-da-etapa-de-funil]
GET /stages/{stage_id}, auth header `token`; `data` is the record (a one-item list in the
examples), the stage carries its `pipeline_id`; 404 {"success": false, "message": "Not
Found"}. The texts are the operator's, in pt-BR.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.probe import ProbeIO, ProbeReply, ProbeResult, ok, problem


def _record(data: Any) -> dict[str, Any] | None:
    """PipeRun wraps a record in `data`, sometimes as a one-item list."""
    inner = data.get("data") if isinstance(data, dict) else None
    if isinstance(inner, list):
        inner = inner[0] if inner else None
    return inner if isinstance(inner, dict) else None


async def probe_pipeline(
    io: ProbeIO, *, base: str, headers: dict[str, str], pipeline_id: int | None, stage_id: int | None
) -> ProbeResult:
    answers = await asyncio.gather(
        io.get(f"{base}/pipelines/{pipeline_id}", headers=headers),
        io.get(f"{base}/stages/{stage_id}", headers=headers),
        return_exceptions=True,
    )
    replies: list[ProbeReply] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer  # the pipeline's first: the doctor's verdict for a timeout or a bad host
        replies.append(answer)
    pipeline_reply, stage_reply = replies
    refused = _refused(pipeline_reply, stage_reply, pipeline_id, stage_id)
    if refused is not None:
        return refused
    pipeline, stage = _record(pipeline_reply.data), _record(stage_reply.data)
    if not pipeline_reply.ok or pipeline is None:
        return io.unexpected(pipeline_reply, ("message",))
    if not stage_reply.ok or stage is None:
        return io.unexpected(stage_reply, ("message",))
    pname, sname = pipeline.get("name") or "?", stage.get("name") or "?"
    owner = stage.get("pipeline_id")
    if owner is not None and str(owner) != str(pipeline_id):
        return problem(
            f"a etapa {stage_id} ('{sname}') é do funil {owner}, não do funil {pipeline_id} ('{pname}')",
            f"use em PIPERUN_STAGE_ID uma etapa do funil {pipeline_id}, ou corrija PIPERUN_PIPELINE_ID",
        )
    return ok(f"funil '{pname}' ({pipeline_id}), etapa '{sname}' ({stage_id})")


def _refused(
    pipeline_reply: ProbeReply, stage_reply: ProbeReply, pipeline_id: int | None, stage_id: int | None
) -> ProbeResult | None:
    """The verdict when PipeRun refused the token or does not know an id, else None."""
    statuses = (pipeline_reply.status, stage_reply.status)
    if 401 in statuses:
        return problem(
            "token inválido: o PipeRun recusou o token da API",
            "copie o token da API (PipeRun → Meu perfil → Token) para PIPERUN_API_TOKEN",
        )
    if 403 in statuses:
        return problem(
            "o usuário do token não pode ver este funil ou etapa",
            "dê ao usuário do token acesso ao funil no PipeRun, ou use o token de outro usuário",
        )
    wrong: list[str] = []
    if pipeline_reply.status == 404:
        wrong.append(f"ID do funil errado ({pipeline_id} não existe)")
    if stage_reply.status == 404:
        wrong.append(f"ID da etapa errado ({stage_id} não existe)")
    if wrong:
        return problem(
            "; ".join(wrong),
            "confira PIPERUN_PIPELINE_ID e PIPERUN_STAGE_ID (PipeRun → Configurações → Funis)",
        )
    return None


__all__ = ["probe_pipeline"]

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
            f"stage {stage_id} ('{sname}') belongs to pipeline {owner}, not to pipeline {pipeline_id} ('{pname}')",
            f"put in PIPERUN_STAGE_ID a stage of pipeline {pipeline_id}, or fix PIPERUN_PIPELINE_ID",
        )
    return ok(f"pipeline '{pname}' ({pipeline_id}), stage '{sname}' ({stage_id})")


def _refused(
    pipeline_reply: ProbeReply, stage_reply: ProbeReply, pipeline_id: int | None, stage_id: int | None
) -> ProbeResult | None:
    """The verdict when PipeRun refused the token or does not know an id, else None."""
    statuses = (pipeline_reply.status, stage_reply.status)
    if 401 in statuses:
        return problem(
            "invalid token: PipeRun refused the API token",
            "copy the API token (PipeRun → My profile → Token) into PIPERUN_API_TOKEN",
        )
    if 403 in statuses:
        return problem(
            "the token's user may not see this pipeline or stage",
            "give the token's user access to the pipeline in PipeRun, or use another user's token",
        )
    wrong: list[str] = []
    if pipeline_reply.status == 404:
        wrong.append(f"wrong pipeline ID ({pipeline_id} does not exist)")
    if stage_reply.status == 404:
        wrong.append(f"wrong stage ID ({stage_id} does not exist)")
    if wrong:
        return problem(
            "; ".join(wrong),
            "check PIPERUN_PIPELINE_ID and PIPERUN_STAGE_ID (PipeRun → Settings → Pipelines)",
        )
    return None


__all__ = ["probe_pipeline"]

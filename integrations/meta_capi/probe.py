"""What the doctor says about a Meta CAPI configuration, from Graph's own answer.

GET /{version}/{ads-pixel-id}?fields=name (bearer): the Ads Pixel (dataset) node,
read-only (https://developers.facebook.com/docs/marketing-api/reference/ads-pixel/).
Graph errors are `{"error": {message, type, code, error_subcode, fbtrace_id}}`; the code
says who is at fault (https://developers.facebook.com/docs/graph-api/guides/error-handling).
The texts are the operator's, in pt-BR.
"""

from __future__ import annotations

from core.meta_graph import graph_probe_problem
from core.probe import ProbeIO, ProbeResult, ok

_TOKEN_ENV = "META_ACCESS_TOKEN"


async def probe_pixel(io: ProbeIO, *, node_url: str, headers: dict[str, str]) -> ProbeResult:
    reply = await io.get(node_url, params={"fields": "name"}, headers=headers)
    data = reply.data if isinstance(reply.data, dict) else {}
    if not reply.ok:
        return graph_probe_problem(
            io,
            reply,
            id_label="pixel (dataset) ID",
            id_env="META_PIXEL_ID",
            token_env=_TOKEN_ENV,
            permission="ads_management (or access to the pixel in Business Manager)",
        )
    if "name" not in data and "id" not in data:
        return io.unexpected(reply)
    return ok(f"pixel '{data.get('name') or data.get('id')}'")


__all__ = ["probe_pixel"]

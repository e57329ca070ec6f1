"""What the doctor says about the Lead Ads token, from Graph's own answer.

GET /{version}/me?fields=id,name (bearer): for a Page access token, `me` is the Page
(https://developers.facebook.com/docs/pages-api/overview). Whether the token may read
leads (leads_retrieval) shows only when a lead is read; a refused token, a missing
permission or throttling are worded by core.meta_graph.
"""

from __future__ import annotations

from core.meta_graph import graph_probe_problem
from core.probe import ProbeIO, ProbeResult, ok, problem
from integrations.meta_leads.errors import TOKEN_ENV


async def probe_page(io: ProbeIO, *, base_url: str, token: str | None) -> ProbeResult:
    if not token:
        return problem(
            f"{TOKEN_ENV} is not set: Lead Ads leads cannot be read",
            f"put a Page access token with the leads_retrieval permission in {TOKEN_ENV}",
        )
    reply = await io.get(
        f"{base_url}/me", params={"fields": "id,name"}, headers={"Authorization": f"Bearer {token}"}
    )
    data = reply.data if isinstance(reply.data, dict) else {}
    if not reply.ok:
        return graph_probe_problem(
            io,
            reply,
            id_label="Page",
            id_env=TOKEN_ENV,
            token_env=TOKEN_ENV,
            permission="leads_retrieval (and pages_show_list, pages_read_engagement, ads_management)",
        )
    if "name" not in data and "id" not in data:
        return io.unexpected(reply)
    return ok(f"Page '{data.get('name') or data.get('id')}' (leads_retrieval is checked when a lead is read)")


__all__ = ["probe_page"]

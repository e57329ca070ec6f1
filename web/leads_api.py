"""Placeholder while the intake is being written (issue 16): refuses everything."""

from __future__ import annotations

from aiohttp import web

from web.middlewares import json_error


async def handle_leads_api(request: web.Request) -> web.Response:
    return json_error(503, "not available yet")

"""A bare aiohttp webhook handler: the yardstick for our acknowledge latency.

It does what any webhook endpoint must (read the body, decode JSON, answer JSON) and
nothing else, so `ack.py` can report our overhead as a ratio to it on the same machine.
"""

from __future__ import annotations

import json
import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    payload = json.loads(await request.read())
    return web.json_response({"status": "ok", "id": payload.get("messageId")})


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks/zapi", handle)
    app.router.add_get("/api/health", lambda _r: web.json_response({"status": "healthy"}))
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()

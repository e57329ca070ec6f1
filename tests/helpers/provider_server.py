"""A real HTTP server on loopback that plays OpenAI and Z-API.

aioresponses only fakes HTTP inside the test process; a bot running as a separate
process (to be killed with SIGKILL, or driven by a benchmark) needs a fake it can reach
over the network. Responses come from the same fixture files as the in-process fakes.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.helpers.fakes import load_fixture


@dataclass
class ProviderState:
    llm_delay_s: float = 0.0
    llm_hang: asyncio.Event | None = None  # when set to an unset Event, chat calls block on it
    llm_hang_texts: set[str] | None = None  # block only turns whose last message is one of these
    send_hang: asyncio.Event | None = None
    send_fail_first: int = 0  # answer this many sends with 500 before accepting
    reply_prefix: str = "Resposta para"
    chat_calls: int = 0
    chat_started: int = 0
    send_started: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)


class ProviderServer:
    def __init__(self, state: ProviderState | None = None) -> None:
        self.state = state or ProviderState()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._completion = load_fixture("openai/chat_completion_structured.json")
        self._send_ok = load_fixture("zapi/send_text_response.json")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        app.router.add_post("/instances/{instance}/token/{token}/send-text", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.Response:
        self.state.chat_started += 1
        body = await request.json()
        last_user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        if self.state.llm_hang is not None and (
            self.state.llm_hang_texts is None or last_user in self.state.llm_hang_texts
        ):
            await self.state.llm_hang.wait()
        if self.state.llm_delay_s:
            await asyncio.sleep(self.state.llm_delay_s)
        self.state.chat_calls += 1
        completion = copy.deepcopy(self._completion)
        content = {
            "reply": f"{self.state.reply_prefix}: {last_user}",
            "lead": {},
            "tool_calls": [],
            "summary": "Conversa em andamento.",
            "image_description": None,
        }
        completion["choices"][0]["message"]["content"] = json.dumps(content, ensure_ascii=False)
        return web.json_response(completion)

    async def _transcribe(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(load_fixture("openai/transcription.json"))

    async def _send(self, request: web.Request) -> web.Response:
        self.state.send_started += 1
        body = await request.json()
        if self.state.send_fail_first > 0:
            self.state.send_fail_first -= 1
            return web.json_response({"error": "Internal error"}, status=500)
        if self.state.send_hang is not None:
            await self.state.send_hang.wait()
        self.state.sent.append(body)
        response = dict(self._send_ok)
        response["messageId"] = f"3EB0{len(self.state.sent):016X}"
        return web.json_response(response)

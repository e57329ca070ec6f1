"""Fake providers at the HTTP boundary (aioresponses), built from the fixture files.

Each fake records what the bot sent and answers from a script, so a test can say
"OpenAI fails with 500 once, then answers" and assert what the lead received.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioresponses import CallbackResult, aioresponses

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_fixture(relative: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / relative).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data.pop("_source", None)
    return data


def _body(kwargs: dict[str, Any]) -> Any:
    data = kwargs.get("data")
    if data is None and "json" in kwargs:
        return kwargs["json"]
    if isinstance(data, (bytes, bytearray)):
        try:
            return json.loads(data)
        except ValueError:
            return data
    if isinstance(data, str):
        return json.loads(data)
    return data


@dataclass
class Step:
    status: int = 200
    reply: str | None = None
    lead: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    # Answer only once this is set: the test decides when the model call ends.
    hold: asyncio.Event | None = None
    exception: BaseException | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    summary: str = "Lead iniciou contato pelo WhatsApp."
    image_description: str | None = None
    raw_content: str | None = None  # send this content verbatim (malformed output tests)


class FakeOpenAI:
    """Chat completions answer with the scripted reply + lead update; Whisper with a transcript."""

    def __init__(self, mock: aioresponses, base_url: str = "https://api.openai.com/v1") -> None:
        self.chat_requests: list[dict[str, Any]] = []
        self.transcription_requests = 0
        self.script: deque[Step] = deque()
        self.transcript_script: deque[Step] = deque()
        self.default_reply = "Olá! Sou da Seleto Industrial. Qual é o seu nome e de qual cidade você fala?"
        self.calls_started = 0
        mock.post(f"{base_url}/chat/completions", callback=self._chat, repeat=True)
        mock.post(f"{base_url}/audio/transcriptions", callback=self._transcribe, repeat=True)

    def then(self, **step: Any) -> FakeOpenAI:
        self.script.append(Step(**step))
        return self

    @property
    def chat_calls(self) -> int:
        return len(self.chat_requests)

    def user_contents(self, index: int = -1) -> list[str]:
        return [m["content"] for m in self.chat_requests[index]["messages"] if m["role"] == "user"]

    async def _chat(self, url: Any, **kwargs: Any) -> CallbackResult:
        self.calls_started += 1
        step = self.script.popleft() if self.script else Step()
        if step.hold is not None:
            await step.hold.wait()
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.exception is not None:
            raise step.exception
        self.chat_requests.append(_body(kwargs))
        if step.status != 200:
            name = {429: "error_429.json", 400: "error_400.json"}.get(step.status, "error_500.json")
            return CallbackResult(status=step.status, payload=load_fixture(f"openai/{name}"))
        completion = copy.deepcopy(load_fixture("openai/chat_completion_structured.json"))
        content = {
            "reply": step.reply if step.reply is not None else self.default_reply,
            "lead": step.lead,
            "tool_calls": step.tools,
            "summary": step.summary,
            "image_description": step.image_description,
        }
        completion["choices"][0]["message"]["content"] = (
            step.raw_content if step.raw_content is not None else json.dumps(content, ensure_ascii=False)
        )
        return CallbackResult(status=200, payload=completion)

    async def _transcribe(self, url: Any, **kwargs: Any) -> CallbackResult:
        self.transcription_requests += 1
        step = self.transcript_script.popleft() if self.transcript_script else Step()
        if step.status != 200:
            return CallbackResult(status=step.status, payload=load_fixture("openai/error_500.json"))
        return CallbackResult(status=200, payload=load_fixture("openai/transcription.json"))


class FakeZapi:
    """Z-API send-text: records deliveries, fails on demand."""

    def __init__(
        self,
        mock: aioresponses,
        *,
        base_url: str = "https://api.z-api.io",
        instance_id: str = "3C01A9F0E1B2C3D4",
        instance_token: str = "F0E1D2C3B4A5968778695A4B",
    ) -> None:
        self.sent: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts = 0
        self.script: deque[Step] = deque()
        self._counter = 0
        mock.post(
            f"{base_url}/instances/{instance_id}/token/{instance_token}/send-text",
            callback=self._send,
            repeat=True,
        )

    def then(self, **step: Any) -> FakeZapi:
        self.script.append(Step(**step))
        return self

    def texts_to(self, phone: str) -> list[str]:
        return [s["message"] for s in self.sent if s["phone"] == phone]

    async def _send(self, url: Any, **kwargs: Any) -> CallbackResult:
        self.attempts += 1
        step = self.script.popleft() if self.script else Step()
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.exception is not None:
            raise step.exception
        if step.status != 200:
            return CallbackResult(
                status=step.status, payload={"error": "Internal error", "message": "try later"}
            )
        body = _body(kwargs)
        self.sent.append(body)
        self.headers.append(dict(kwargs.get("headers") or {}))
        self._counter += 1
        response = load_fixture("zapi/send_text_response.json")
        response["messageId"] = f"3EB0{self._counter:016X}"
        return CallbackResult(status=200, payload=response)


async def eventually(predicate: Any, *, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Wait until `predicate()` is true; the pipeline is asynchronous by design."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)

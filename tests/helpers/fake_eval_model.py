"""One fake OpenAI for `python main.py eval`: the bot, the simulated lead and the judge.

All three call the same chat completions endpoint; the fake tells them apart by the
structured output they ask for (the `response_format` schema name: AgentTurnOutput,
LeadMove, JudgeVerdicts) and answers each from its own script. An empty script gives a
harmless default: the bot greets, the lead says "ok", the judge passes every criterion
it was asked about (read from the "- [id]" lines of its prompt).
"""

from __future__ import annotations

import copy
import json
import re
from collections import deque
from typing import Any

from aioresponses import CallbackResult, aioresponses

from tests.helpers.fakes import _body, load_fixture

BOT, LEAD, JUDGE = "AgentTurnOutput", "LeadMove", "JudgeVerdicts"
_CRITERION = re.compile(r"^- \[([^\]]+)\]", re.MULTILINE)


class FakeEvalModel:
    def __init__(self, mock: aioresponses, base_url: str = "https://api.openai.com/v1") -> None:
        self.scripts: dict[str, deque[dict[str, Any] | int]] = {BOT: deque(), LEAD: deque(), JUDGE: deque()}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        mock.post(f"{base_url}/chat/completions", callback=self._chat, repeat=True)

    def bot(
        self, reply: str, *, lead: dict[str, Any] | None = None, tools: list[dict[str, Any]] | None = None
    ) -> FakeEvalModel:
        content = {
            "reply": reply,
            "lead": lead or {},
            "tool_calls": tools or [],
            "summary": "Resumo.",
            "image_description": None,
        }
        self.scripts[BOT].append(content)
        return self

    def lead(self, message: str, *, voice: bool = False, end: bool = False) -> FakeEvalModel:
        self.scripts[LEAD].append({"message": message, "voice_note": voice, "end": end})
        return self

    def lead_ends(self) -> FakeEvalModel:
        return self.lead("", end=True)

    def judge(self, verdicts: dict[str, tuple[bool, str]]) -> FakeEvalModel:
        self.scripts[JUDGE].append(
            {"verdicts": [{"criterion": k, "passed": ok, "reason": why} for k, (ok, why) in verdicts.items()]}
        )
        return self

    def fail(self, who: str, status: int, times: int = 1) -> FakeEvalModel:
        self.scripts[who].extend([status] * times)
        return self

    def calls(self, who: str) -> list[dict[str, Any]]:
        return [body for name, body in self.requests if name == who]

    def _default(self, who: str, body: dict[str, Any]) -> dict[str, Any]:
        if who == BOT:
            return {
                "reply": "Olá! Como posso ajudar?",
                "lead": {},
                "tool_calls": [],
                "summary": "Resumo.",
                "image_description": None,
            }
        if who == LEAD:
            return {"message": "ok", "voice_note": False, "end": False}
        criteria = _CRITERION.findall(body["messages"][0]["content"])
        return {"verdicts": [{"criterion": c, "passed": True, "reason": f"{c}: fine"} for c in criteria]}

    async def _chat(self, url: Any, **kwargs: Any) -> CallbackResult:
        body = _body(kwargs)
        who = body["response_format"]["json_schema"]["name"]
        self.requests.append((who, body))
        script = self.scripts[who]
        step = script.popleft() if script else self._default(who, body)
        if isinstance(step, int):
            name = {429: "error_429.json", 400: "error_400.json"}.get(step, "error_500.json")
            payload = load_fixture(f"openai/{name}")
            if step == 401:  # OpenAI's words for a wrong key quote part of it
                payload = {
                    "error": {
                        "message": "Incorrect API key provided: sk-test-****a0.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                }
            return CallbackResult(status=step, payload=payload)
        completion = copy.deepcopy(load_fixture("openai/chat_completion_structured.json"))
        completion["choices"][0]["message"]["content"] = json.dumps(step, ensure_ascii=False)
        completion["usage"]["prompt_tokens"], completion["usage"]["completion_tokens"] = 1000, 100
        return CallbackResult(status=200, payload=completion)

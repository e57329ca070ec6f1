"""OpenAI's embeddings endpoint faked at the HTTP boundary (aioresponses).

Answers in the shape of tests/fixtures/openai/embeddings_create.json, one vector per
input, made from the input's words (hashed into a few dimensions) so that texts sharing
words are near each other and a search behaves like a search. A script of statuses or
exceptions makes it fail on demand (429, 500, a timeout).
"""

from __future__ import annotations

import copy
import hashlib
from collections import deque
from typing import Any

from aioresponses import CallbackResult, aioresponses

from agent.knowledge.lexical import terms
from tests.helpers.fakes import _body, load_fixture

DIMS = 64


def word_vector(text: str) -> list[float]:
    row = [0.0] * DIMS
    for term in terms(text):
        digest = hashlib.blake2b(term.encode(), digest_size=4).digest()
        row[int.from_bytes(digest[:3], "little") % DIMS] += 1.0 if digest[3] & 1 else -1.0
    return row if any(row) else [1.0] + [0.0] * (DIMS - 1)


class FakeEmbeddings:
    def __init__(self, mock: aioresponses, base_url: str = "https://api.openai.com/v1") -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, Any]] = []
        self.script: deque[int | BaseException] = deque()
        mock.post(f"{base_url}/embeddings", callback=self._embed, repeat=True)

    def fail_next(self, *outcomes: int | BaseException) -> FakeEmbeddings:
        self.script.extend(outcomes)
        return self

    @property
    def inputs(self) -> list[str]:
        return [text for request in self.requests for text in request["input"]]

    async def _embed(self, url: Any, **kwargs: Any) -> CallbackResult:
        outcome = self.script.popleft() if self.script else 200
        if isinstance(outcome, BaseException):
            raise outcome
        body = _body(kwargs)
        self.requests.append(body)
        self.headers.append({str(k).lower(): v for k, v in dict(kwargs.get("headers") or {}).items()})
        if outcome != 200:
            name = "error_429.json" if outcome == 429 else "error_500.json"
            return CallbackResult(status=outcome, payload=load_fixture(f"openai/{name}"))
        answer = copy.deepcopy(load_fixture("openai/embeddings_create.json"))
        template = answer["data"][0]
        answer["data"] = [
            {**template, "index": i, "embedding": word_vector(text)} for i, text in enumerate(body["input"])
        ]
        answer["model"] = body["model"]
        return CallbackResult(status=200, payload=answer)

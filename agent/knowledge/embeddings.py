"""OpenAI embeddings for the knowledge chunks and for a lead's turn.

The same client as the chat (agent/llm.py): the SDK's aiohttp backend on the app's one
ClientSession, its own retries off. The index build follows OpenAI's retry policy
(OPENAI_MAX_ATTEMPTS, jittered backoff): it runs once, off the lead's path. A turn's
query gets one short attempt and no retry: a lead must not wait out a backoff for
what BM25 answers offline (agent/knowledge/search.py falls back to it).

POST {base}/embeddings {"model", "input": [text, ...], "encoding_format": "float"}
answers {"object": "list", "data": [{"object": "embedding", "index": i, "embedding":
[...]}], "model", "usage": {"prompt_tokens", "total_tokens"}}; an input list holds at
most 2048 items and 300,000 tokens summed.
https://platform.openai.com/docs/api-reference/embeddings/create
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import aiohttp
import numpy as np
import numpy.typing as npt
import openai

from agent.budget import count_tokens
from agent.llm import LLMConfig, _unavailable, openai_client, openai_retry_policy
from core.logging import get_logger

log = get_logger(__name__)

Vectors = npt.NDArray[np.float32]

DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
MAX_INPUTS_PER_REQUEST = 2048
# OpenAI's cap is 300,000 tokens per request; o200k counts stand in for the model's own
# tokenizer (cl100k), so a margin keeps a batch under it either way.
MAX_TOKENS_PER_REQUEST = 200_000
# A lead's turn waits at most this for its query vector; then BM25 answers.
QUERY_TIMEOUT_S = 3.0


class EmbeddingsUnavailable(Exception):
    """No vectors now (no key, a malformed answer): search falls back to BM25. Not an
    `LLMUnavailable`: a missing key is not worth a retry, and no turn waits on it."""


class Embedder(Protocol):
    """What the index and the search need: L2-normalised float32 rows, one per text."""

    @property
    def model(self) -> str: ...

    async def embed(self, texts: Sequence[str]) -> Vectors: ...

    async def embed_query(self, text: str) -> Vectors: ...


def normalise(rows: npt.ArrayLike) -> Vectors:
    matrix = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: Vectors = matrix / norms
    return normalised


def batches(texts: Sequence[str]) -> list[list[str]]:
    """Consecutive batches within both of OpenAI's per-request limits."""
    out: list[list[str]] = []
    current: list[str] = []
    tokens = 0
    for text in texts:
        cost = count_tokens(text)
        if current and (len(current) >= MAX_INPUTS_PER_REQUEST or tokens + cost > MAX_TOKENS_PER_REQUEST):
            out.append(current)
            current, tokens = [], 0
        current.append(text)
        tokens += cost
    if current:
        out.append(current)
    return out


class OpenAIEmbedder:
    def __init__(self, config: LLMConfig, model: str, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self._model = model
        self._client = openai_client(config, session)

    @property
    def model(self) -> str:
        return self._model

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def _once(self, texts: list[str], timeout: float) -> Vectors:
        if self._client is None:
            raise EmbeddingsUnavailable("OPENAI_API_KEY is not set")
        try:
            response = await self._client.embeddings.create(
                model=self._model, input=texts, encoding_format="float", timeout=timeout
            )
        except openai.OpenAIError as exc:
            raise _unavailable("embeddings", exc) from exc
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts) or len({len(r.embedding) for r in rows}) != 1:
            raise EmbeddingsUnavailable(f"embeddings: {len(rows)} vectors for {len(texts)} inputs")
        return normalise([row.embedding for row in rows])

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Every text, in batches, each batch retried like the chat (the index build)."""
        if self._client is None:
            raise EmbeddingsUnavailable("OPENAI_API_KEY is not set")
        parts: list[Vectors] = []
        for batch in batches(texts):
            async for attempt in openai_retry_policy(self.config):
                with attempt:
                    parts.append(await self._once(batch, self.config.timeout_s))
            log.info("knowledge_embedded", inputs=len(batch), model=self._model)
        stacked: Vectors = np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        return stacked

    async def embed_query(self, text: str) -> Vectors:
        """One attempt, QUERY_TIMEOUT_S at most: the lead is waiting."""
        rows = await self._once([text], min(QUERY_TIMEOUT_S, self.config.timeout_s))
        row: Vectors = rows[0]
        return row


__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "Embedder",
    "EmbeddingsUnavailable",
    "OpenAIEmbedder",
    "Vectors",
    "batches",
    "normalise",
]

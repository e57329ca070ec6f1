"""Which chunks of the catalogue a turn needs: cosine over the cached vectors and BM25.

The catalogue is the company's, not the lead's: a few thousand vectors in one numpy
matrix answer a query in well under a millisecond, so there is no vector database.
When the index is built and the query can be embedded, the cosine ranking and BM25's
are fused (reciprocal rank fusion): embeddings find "máquina de hambúrguer" for
"formadora", BM25 finds the exact model code a lead types ("mb145"), which embeddings
blur; a chunk whose heading names a code the lead wrote comes first whatever the
fusion says. Otherwise (no key, a 429, a timeout, the index still building) BM25 alone serves
the same turn. The log says which did (`knowledge_retrieved served_by=hybrid|lexical`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.knowledge.chunking import Chunk
from agent.knowledge.embeddings import Embedder, Vectors
from agent.knowledge.lexical import Bm25, codes
from agent.llm import transport_cause
from core.logging import get_logger

log = get_logger(__name__)

# After a failed query embedding, BM25 alone serves this long: a key out of credit must
# not cost every turn a round trip (and its log line).
EMBEDDINGS_COOL_DOWN_S = 60.0
# The turn's words plus the lead's previous message ("quanto custa?" needs the product
# named before), cut to this.
MAX_QUERY_CHARS = 1500
RELEVANT_HEADER = "# Trechos do catálogo para esta conversa"
# Reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009): each ranking gives a chunk
# 1 / (RRF_K + rank); 60 is the paper's constant. Each ranking is read FUSION_DEPTH x k deep.
RRF_K = 60
FUSION_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Retrieved:
    chunks: list[Chunk]
    served_by: str  # "hybrid" (embeddings fused with BM25) or "lexical" (BM25 alone)
    seconds: float

    def render(self) -> str:
        """The per-turn `{relevant_knowledge}`: the chunks, each under its heading path."""
        if not self.chunks:
            return ""
        return "\n\n".join([RELEVANT_HEADER, *(chunk.text for chunk in self.chunks)])


def fuse(rankings: Sequence[Sequence[int]], k: int) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, index in enumerate(ranking, 1):
            scores[index] = scores.get(index, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores, key=lambda index: (-scores[index], index))[:k]


def turn_query(
    lead_texts: Sequence[str], earlier_lead_texts: Sequence[str] = (), summary: str | None = None
) -> str:
    """What a turn searches with: its own words first, then the lead's last message
    before it; a follow-up with neither searches with the conversation summary."""
    parts = [t for t in lead_texts if t.strip()]
    parts += [t for t in list(earlier_lead_texts)[-1:] if t.strip()]
    if not parts and summary:
        parts = [summary]
    return "\n".join(parts)[:MAX_QUERY_CHARS]


class KnowledgeSearch:
    def __init__(
        self,
        chunks: list[Chunk],
        *,
        top_k: int,
        embedder: Embedder | None = None,
        vectors: Vectors | None = None,
    ) -> None:
        self.chunks = chunks
        self.top_k = max(1, top_k)
        self.embedder = embedder
        self.vectors = vectors
        self.bm25 = Bm25([chunk.text for chunk in chunks])
        self._by_code: dict[str, list[int]] = {}
        for index, chunk in enumerate(chunks):
            for code in codes(chunk.label):
                self._by_code.setdefault(code, []).append(index)
        self._cooling_until = 0.0

    @property
    def has_vectors(self) -> bool:
        return self.vectors is not None and self.vectors.shape[0] == len(self.chunks)

    def attach(self, vectors: Vectors) -> None:
        """Vectors built after start (a background build): used from the next query on."""
        self.vectors = vectors

    def lexical(self, query: str, k: int) -> list[int]:
        return [index for index, _ in self.bm25.top(query, k)]

    def named(self, query: str) -> list[int]:
        """Chunks whose heading names a model code the query writes ("mb145" -> MB-145)."""
        return sorted({i for code in codes(query) for i in self._by_code.get(code, ())})

    def semantic(self, query_vector: Vectors, k: int) -> list[int]:
        assert self.vectors is not None
        scores = self.vectors @ query_vector
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        return [int(i) for i in best[np.argsort(-scores[best], kind="stable")]]

    async def _semantic_or_none(self, query: str, k: int) -> list[int] | None:
        if self.embedder is None or not self.has_vectors or time.monotonic() < self._cooling_until:
            return None
        try:
            query_vector = await self.embedder.embed_query(query)
        except Exception as exc:  # any failure: the lead still gets an answer, from BM25
            self._cooling_until = time.monotonic() + EMBEDDINGS_COOL_DOWN_S
            log.warning(
                "knowledge_embeddings_failed",
                error=transport_cause(exc),
                fallback="lexical",
                cool_down_s=EMBEDDINGS_COOL_DOWN_S,
            )
            return None
        return self.semantic(query_vector, k)

    def hybrid(self, query: str, semantic: list[int], k: int) -> list[int]:
        """The chunks a model code in `query` names, then the embeddings' ranking (`semantic`,
        FUSION_DEPTH × k deep) fused with BM25's: what `search` serves when it can embed."""
        depth = k * FUSION_DEPTH
        fused = fuse([semantic, self.lexical(query, depth)], depth)
        named = self.named(query)
        return (named + [i for i in fused if i not in named])[:k]

    async def search(self, query: str, k: int | None = None) -> Retrieved:
        k = k or self.top_k
        started = time.perf_counter()
        if not query.strip() or not self.chunks:
            return Retrieved([], "none", 0.0)
        semantic = await self._semantic_or_none(query, k * FUSION_DEPTH)
        if semantic is None:
            found, served_by = self.lexical(query, k), "lexical"
        else:
            found, served_by = self.hybrid(query, semantic, k), "hybrid"
        seconds = time.perf_counter() - started
        log.info(
            "knowledge_retrieved",
            served_by=served_by,
            chunks=[self.chunks[i].label for i in found],
            ms=round(seconds * 1000, 2),
        )
        return Retrieved([self.chunks[i] for i in found], served_by, seconds)


__all__ = ["RELEVANT_HEADER", "KnowledgeSearch", "Retrieved", "fuse", "turn_query"]

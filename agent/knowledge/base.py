"""Whole knowledge or retrieval: decided once at start from the knowledge's size.

Knowledge that fits KNOWLEDGE_MAX_TOKENS goes whole into the static, cacheable part of
the system prompt, as it always has: no chunking, no embeddings call, nothing per turn.
Above it, the static part keeps only the overview (company.md: who the company is,
which the model needs on every turn) and each turn gets the catalogue's top-k chunks
for what the lead just said, in the per-turn part of the prompt.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.budget import count_tokens
from agent.knowledge.chunking import DEFAULT_MAX_CHUNK_TOKENS, Chunk, chunk_documents
from agent.knowledge.embeddings import DEFAULT_EMBEDDING_MODEL, Embedder
from agent.knowledge.index_file import IndexFile, index_file, load_vectors, save_vectors
from agent.knowledge.search import KnowledgeSearch
from agent.knowledge.sources import Document, read_documents
from core.logging import get_logger

log = get_logger(__name__)

# Told to the model, in the static part, when only part of the catalogue is in view.
RETRIEVAL_NOTE = (
    "O catálogo completo é grande: a cada mensagem, os trechos dele mais relevantes para a "
    'conversa aparecem mais abaixo, em "Trechos do catálogo para esta conversa". Se o produto '
    "ou o dado pedido não estiver nesses trechos, não invente: diga que vai confirmar com o time."
)


@dataclass(frozen=True, slots=True)
class KnowledgeConfig:
    """KNOWLEDGE_MAX_TOKENS, KNOWLEDGE_TOP_K, EMBEDDING_MODEL (web/configs/agent.py)."""

    max_tokens: int = 3000
    top_k: int = 3
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    max_chunk_tokens: int = DEFAULT_MAX_CHUNK_TOKENS
    # Files that stay whole in the static part when retrieval is on.
    overview: tuple[str, ...] = ("company.md",)


@dataclass
class KnowledgeBase:
    static_text: str  # what `{knowledge}` holds: everything, or the overview and the note
    total_tokens: int  # of the whole knowledge, as it would go whole
    search: KnowledgeSearch | None  # None: the knowledge went whole, nothing to retrieve
    index: IndexFile | None = None
    chunks: list[Chunk] = field(default_factory=list)
    _indexing: asyncio.Task[None] | None = None

    @property
    def retrieval(self) -> bool:
        return self.search is not None


def whole_text(docs: list[Document]) -> str:
    return "\n\n".join(doc.text for doc in docs)


def prepare_knowledge(
    knowledge_dir: Path, config: KnowledgeConfig, embedder: Embedder | None = None
) -> KnowledgeBase:
    """Read the folder and decide; with retrieval, the cached vectors are loaded when
    they match the files (else BM25 serves until `build_index` has run)."""
    docs = read_documents(knowledge_dir)
    whole = whole_text(docs)
    total = count_tokens(whole)
    if total <= config.max_tokens:
        return KnowledgeBase(static_text=whole, total_tokens=total, search=None)
    overview = [doc for doc in docs if doc.name in config.overview]
    catalogue = [doc for doc in docs if doc.name not in config.overview]
    chunks = chunk_documents(catalogue, config.max_chunk_tokens)
    index = index_file(knowledge_dir, embedder.model if embedder is not None else config.embedding_model)
    vectors = load_vectors(index, chunks) if embedder is not None else None
    search = KnowledgeSearch(chunks, top_k=config.top_k, embedder=embedder, vectors=vectors)
    log.info(
        "knowledge_retrieval_on",
        tokens=total,
        budget=config.max_tokens,
        chunks=len(chunks),
        vectors="cached" if vectors is not None else "none (lexical until indexed)",
    )
    static = whole_text(overview) + "\n\n" + RETRIEVAL_NOTE if overview else RETRIEVAL_NOTE
    return KnowledgeBase(static_text=static, total_tokens=total, search=search, index=index, chunks=chunks)


@dataclass(frozen=True, slots=True)
class IndexReport:
    chunks: int
    tokens: int
    model: str
    path: Path | None
    built: bool  # False: the cached file already matched
    seconds: float
    saved: bool


async def build_index(base: KnowledgeBase, embedder: Embedder) -> IndexReport:
    """Embed every chunk (batched, retried) and cache the vectors; a matching cache is kept."""
    started = time.perf_counter()
    tokens = sum(count_tokens(chunk.text) for chunk in base.chunks)
    search, index = base.search, base.index
    if search is None or index is None:
        return IndexReport(0, 0, embedder.model, None, built=False, seconds=0.0, saved=False)
    if search.has_vectors:
        return IndexReport(len(base.chunks), tokens, index.model, index.path, False, 0.0, saved=True)
    vectors = await embedder.embed([chunk.text for chunk in base.chunks])
    saved = save_vectors(index, vectors, base.chunks)
    search.attach(vectors)
    seconds = time.perf_counter() - started
    log.info(
        "knowledge_indexed",
        chunks=len(base.chunks),
        model=index.model,
        path=str(index.path),
        seconds=round(seconds, 2),
    )
    return IndexReport(len(base.chunks), tokens, index.model, index.path, True, seconds, saved)


def start_indexing(base: KnowledgeBase, embedder: Embedder) -> None:
    """At start, off the lead's path: BM25 serves until the vectors are in. A failure
    is logged and leaves BM25 serving; `python main.py knowledge index` retries it."""
    if base.search is None or base.search.has_vectors or base._indexing is not None:
        return

    async def run() -> None:
        try:
            await build_index(base, embedder)
        except Exception as exc:
            log.warning(
                "knowledge_index_failed", error=type(exc).__name__, detail=str(exc)[:200], fallback="lexical"
            )

    base._indexing = asyncio.get_running_loop().create_task(run(), name="knowledge-index")


__all__ = [
    "RETRIEVAL_NOTE",
    "IndexReport",
    "KnowledgeBase",
    "KnowledgeConfig",
    "build_index",
    "prepare_knowledge",
    "start_indexing",
]

"""The company's knowledge at catalogue scale (issue 18): read, chunked, indexed, searched.

sources (.md/.txt/.pdf) -> chunking (heading paths) -> embeddings (OpenAI) and
index_file (cached beside the knowledge) -> search (numpy cosine, BM25 fallback);
base decides at start between the whole knowledge and retrieval.
"""

from agent.knowledge.base import (
    IndexReport,
    KnowledgeBase,
    KnowledgeConfig,
    build_index,
    prepare_knowledge,
    start_indexing,
)
from agent.knowledge.search import KnowledgeSearch, Retrieved, turn_query

__all__ = [
    "IndexReport",
    "KnowledgeBase",
    "KnowledgeConfig",
    "KnowledgeSearch",
    "Retrieved",
    "build_index",
    "prepare_knowledge",
    "start_indexing",
    "turn_query",
]

"""Whole knowledge while it fits the budget; above it, the overview stays static and each
turn gets only its top-k chunks, the right product's among them."""

from __future__ import annotations

from pathlib import Path

from agent.budget import count_tokens
from agent.knowledge.base import RETRIEVAL_NOTE, KnowledgeConfig, prepare_knowledge
from agent.knowledge.search import RELEVANT_HEADER, fuse, turn_query
from agent.prompts import DEFAULT_PROMPTS_DIR
from tests.agent.knowledge.catalogue import BUDGET, COMPANY, write_catalogue


def test_the_shipped_knowledge_goes_whole_with_the_default_budget() -> None:
    base = prepare_knowledge(DEFAULT_PROMPTS_DIR / "knowledge", KnowledgeConfig(), embedder=None)
    assert base.search is None and not base.retrieval
    for name in ("company.md", "products.md", "faq.md"):
        text = (DEFAULT_PROMPTS_DIR / "knowledge" / name).read_text(encoding="utf-8").strip()
        assert text in base.static_text
    assert base.total_tokens <= KnowledgeConfig().max_tokens


async def test_a_big_catalogue_keeps_the_overview_static_and_retrieves_the_rest(tmp_path: Path) -> None:
    codes = write_catalogue(tmp_path)
    base = prepare_knowledge(tmp_path, KnowledgeConfig(max_tokens=BUDGET, top_k=3), embedder=None)
    assert base.search is not None and base.total_tokens > BUDGET
    assert base.static_text == COMPANY.strip() + "\n\n" + RETRIEVAL_NOTE
    assert not any(code in base.static_text for code in codes)

    for code in ("MB-17", "SF-124", "CM-345", "ZX-900"):
        found = await base.search.search(f"Qual a garantia do {code}?")
        assert len(found.chunks) == 3
        assert any(code in chunk.label for chunk in found.chunks), code
        rendered = found.render()
        assert rendered.startswith(RELEVANT_HEADER)
        assert count_tokens(rendered) < count_tokens("\n".join(c.text for c in base.chunks)) / 5


def test_the_query_carries_the_product_named_before() -> None:
    assert turn_query(["quanto custa?"], ["Oi", "vi o moedor MB-22"]) == "quanto custa?\nvi o moedor MB-22"
    assert turn_query([], [], summary="Lead quer a SF-160.") == "Lead quer a SF-160."


def test_fusion_keeps_what_either_ranking_is_sure_of() -> None:
    # BM25 is sure of chunk 7 (an exact model code); the embeddings rank it lower.
    assert fuse([[1, 2, 3, 7], [7, 9, 1]], 2) == [1, 7]
    assert fuse([[4], []], 3) == [4]

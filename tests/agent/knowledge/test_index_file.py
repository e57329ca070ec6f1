"""The vectors are computed once: cached beside the knowledge, reused at the next start,
rebuilt when a knowledge file changes."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses

from agent.knowledge.base import KnowledgeConfig, build_index, prepare_knowledge, start_indexing
from agent.knowledge.embeddings import OpenAIEmbedder
from tests.agent.knowledge.catalogue import BUDGET, write_catalogue
from tests.conftest import fast_settings
from tests.helpers.fake_embeddings import FakeEmbeddings
from web.configs.agent import llm_config

CONFIG = KnowledgeConfig(max_tokens=BUDGET, top_k=3)


@pytest.fixture
def embeddings(http_mock: aioresponses) -> FakeEmbeddings:
    return FakeEmbeddings(http_mock)


async def test_the_index_is_cached_reused_and_rebuilt_on_change(
    tmp_path: Path, embeddings: FakeEmbeddings
) -> None:
    knowledge = tmp_path / "knowledge"
    write_catalogue(knowledge)
    async with aiohttp.ClientSession() as session:
        embedder = OpenAIEmbedder(llm_config(fast_settings(tmp_path)), "text-embedding-3-small", session)
        first = prepare_knowledge(knowledge, CONFIG, embedder)
        report = await build_index(first, embedder)
        assert report.built and report.path is not None and report.path.parent == knowledge / ".index"
        assert len(embeddings.inputs) == len(first.chunks)

        # A restart: the cached file matches, nothing is embedded again.
        second = prepare_knowledge(knowledge, CONFIG, embedder)
        assert second.search is not None and second.search.has_vectors
        assert not (await build_index(second, embedder)).built
        assert len(embeddings.requests) == 1

        # A datasheet is edited: a new key, a rebuild, and the old file is gone.
        (knowledge / "catalogo-mb.md").write_text(
            "# Moedores\n\n## MB-999 — moedor novo\n- 5 cv.\n", encoding="utf-8"
        )
        third = prepare_knowledge(knowledge, CONFIG, embedder)
        assert third.search is not None and not third.search.has_vectors
        rebuilt = await build_index(third, embedder)
        assert rebuilt.built and rebuilt.path != report.path
        assert sorted(p.name for p in (knowledge / ".index").iterdir()) == [rebuilt.path.name]


async def test_a_model_change_is_a_different_index(tmp_path: Path, embeddings: FakeEmbeddings) -> None:
    knowledge = tmp_path / "knowledge"
    write_catalogue(knowledge)
    async with aiohttp.ClientSession() as session:
        small = OpenAIEmbedder(llm_config(fast_settings(tmp_path)), "text-embedding-3-small", session)
        await build_index(prepare_knowledge(knowledge, CONFIG, small), small)
        large = OpenAIEmbedder(llm_config(fast_settings(tmp_path)), "text-embedding-3-large", session)
        base = prepare_knowledge(knowledge, CONFIG, large)
    assert base.search is not None and not base.search.has_vectors


async def test_a_read_only_folder_keeps_the_vectors_in_memory(
    tmp_path: Path, embeddings: FakeEmbeddings
) -> None:
    knowledge = tmp_path / "knowledge"
    write_catalogue(knowledge)
    (knowledge / ".index").write_text("not a folder")  # mkdir fails like a read-only mount
    async with aiohttp.ClientSession() as session:
        embedder = OpenAIEmbedder(llm_config(fast_settings(tmp_path)), "text-embedding-3-small", session)
        base = prepare_knowledge(knowledge, CONFIG, embedder)
        report = await build_index(base, embedder)
    assert report.built and not report.saved
    assert base.search is not None and base.search.has_vectors


async def test_a_missing_index_is_built_in_the_background_at_start(
    tmp_path: Path, embeddings: FakeEmbeddings
) -> None:
    knowledge = tmp_path / "knowledge"
    write_catalogue(knowledge)
    async with aiohttp.ClientSession() as session:
        embedder = OpenAIEmbedder(llm_config(fast_settings(tmp_path)), "text-embedding-3-small", session)
        base = prepare_knowledge(knowledge, CONFIG, embedder)
        start_indexing(base, embedder)
        assert base.search is not None and not base.search.has_vectors  # BM25 serves meanwhile
        assert base._indexing is not None
        await base._indexing
    assert base.search.has_vectors
    assert len(list((knowledge / ".index").glob("*.npz"))) == 1

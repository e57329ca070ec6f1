"""The embeddings request as OpenAI documents it, and what happens when it fails:
the index build retries like the chat; a turn's search falls back to BM25, says so in
the log, and never fails the turn."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses
from structlog.testing import capture_logs

from agent.knowledge.base import KnowledgeConfig, build_index, prepare_knowledge
from agent.knowledge.embeddings import MAX_INPUTS_PER_REQUEST, OpenAIEmbedder, batches
from core.errors import LLMUnavailable
from tests.agent.knowledge.catalogue import BUDGET, write_catalogue
from tests.conftest import OPENAI_KEY, fast_settings
from tests.helpers.fake_embeddings import FakeEmbeddings
from web.configs.agent import llm_config

CONFIG = KnowledgeConfig(max_tokens=BUDGET, top_k=3)


@pytest.fixture
def embeddings(http_mock: aioresponses) -> FakeEmbeddings:
    return FakeEmbeddings(http_mock)


def _embedder(tmp_path: Path, session: aiohttp.ClientSession, **overrides: object) -> OpenAIEmbedder:
    return OpenAIEmbedder(llm_config(fast_settings(tmp_path, **overrides)), "text-embedding-3-small", session)


async def test_the_request_matches_the_documented_contract(
    tmp_path: Path, embeddings: FakeEmbeddings
) -> None:
    async with aiohttp.ClientSession() as session:
        vectors = await _embedder(tmp_path, session).embed(["moedor MB-22", "serra fita SF-160"])
    (request,) = embeddings.requests
    assert request == {
        "model": "text-embedding-3-small",
        "input": ["moedor MB-22", "serra fita SF-160"],
        "encoding_format": "float",
    }
    assert embeddings.headers[0]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert vectors.shape == (2, 64)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-5  # rows normalised for cosine


def test_batches_keep_within_the_per_request_limits() -> None:
    texts = [f"produto {i}" for i in range(MAX_INPUTS_PER_REQUEST + 5)]
    sizes = [len(b) for b in batches(texts)]
    assert sizes == [MAX_INPUTS_PER_REQUEST, 5]


async def test_the_index_build_retries_a_500_and_a_429(tmp_path: Path, embeddings: FakeEmbeddings) -> None:
    write_catalogue(tmp_path / "knowledge")
    embeddings.fail_next(500, 429)
    async with aiohttp.ClientSession() as session:
        embedder = _embedder(tmp_path, session)
        base = prepare_knowledge(tmp_path / "knowledge", CONFIG, embedder)
        report = await build_index(base, embedder)
    assert report.built and report.saved
    assert base.search is not None and base.search.has_vectors


async def test_the_index_build_gives_up_after_the_attempts(
    tmp_path: Path, embeddings: FakeEmbeddings
) -> None:
    write_catalogue(tmp_path / "knowledge")
    embeddings.fail_next(*[500] * 4)
    async with aiohttp.ClientSession() as session:
        embedder = _embedder(tmp_path, session, openai_max_attempts=2)
        base = prepare_knowledge(tmp_path / "knowledge", CONFIG, embedder)
        with pytest.raises(LLMUnavailable):
            await build_index(base, embedder)
    assert base.search is not None and not base.search.has_vectors  # BM25 keeps serving


@pytest.mark.parametrize("failure", [429, 500, TimeoutError("read timed out")], ids=["429", "500", "timeout"])
async def test_a_failed_query_embedding_falls_back_to_bm25(
    tmp_path: Path, embeddings: FakeEmbeddings, failure: int | BaseException
) -> None:
    write_catalogue(tmp_path / "knowledge")
    async with aiohttp.ClientSession() as session:
        embedder = _embedder(tmp_path, session)
        base = prepare_knowledge(tmp_path / "knowledge", CONFIG, embedder)
        await build_index(base, embedder)
        assert base.search is not None
        served = await base.search.search("quanto pesa o SF-124?")
        assert served.served_by == "hybrid"
        assert "SF-124" in served.chunks[0].label  # the code the lead wrote comes first
        embeddings.fail_next(failure)
        with capture_logs() as logs:
            found = await base.search.search("quanto pesa o SF-124?")
            again = await base.search.search("e o SF-131?")
    assert found.served_by == "lexical"
    assert "SF-124" in found.chunks[0].label
    failed = [e for e in logs if e["event"] == "knowledge_embeddings_failed"]
    assert len(failed) == 1 and failed[0]["fallback"] == "lexical"
    # The next turns do not knock again at once: BM25 serves during the cool-down.
    assert again.served_by == "lexical" and "SF-131" in again.chunks[0].label
    assert [e["served_by"] for e in logs if e["event"] == "knowledge_retrieved"] == ["lexical", "lexical"]


async def test_without_a_key_bm25_serves_and_nothing_is_sent(
    tmp_path: Path, embeddings: FakeEmbeddings
) -> None:
    write_catalogue(tmp_path / "knowledge")
    async with aiohttp.ClientSession() as session:
        embedder = _embedder(tmp_path, session, openai_api_key=None)
        assert not embedder.configured
        base = prepare_knowledge(tmp_path / "knowledge", CONFIG, None)
        assert base.search is not None
        found = await base.search.search("vocês têm a esteira ZX-900?")
    assert found.served_by == "lexical"
    assert found.chunks[0].path[0] == "ficha-ZX-900.pdf"
    assert embeddings.requests == []

"""A turn's prompt: the shipped knowledge whole and static with no search at all; a big
catalogue as the overview (static) plus this turn's top-k chunks after it."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from agent.graph import AgentDeps, SdrAgent, TurnInput
from agent.knowledge.base import KnowledgeConfig, build_index, prepare_knowledge
from agent.knowledge.embeddings import OpenAIEmbedder
from agent.knowledge.search import RELEVANT_HEADER
from agent.llm import LLMClient
from agent.prompts import load_prompt_bundle
from agent.scoring import load_scoring_rules
from core.lead import LeadProfile
from core.models import InboundMessage, MessageKind
from tests.agent.knowledge.catalogue import BUDGET, write_catalogue
from tests.conftest import fast_settings
from tests.helpers.fake_embeddings import FakeEmbeddings
from tests.helpers.fakes import FakeOpenAI
from web.configs.agent import llm_config
from web.optional_parts import prompts_and_knowledge

NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def _turn(words: str) -> TurnInput:
    message = InboundMessage(
        channel="zapi",
        contact_id="5511999990000",
        provider_message_id=f"3EB0{abs(hash(words)) % 10**12:012d}",
        kind=MessageKind.TEXT,
        text=words,
        phone="5511999990000",
    )
    return TurnInput(
        contact_key="zapi:5511999990000",
        inbound=[message],
        profile=LeadProfile(),
        history=[],
        lead_message_count=0,
        now=NOW,
    )


def _system_texts(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "system"]


@pytest.fixture
def embeddings(http_mock: aioresponses) -> FakeEmbeddings:
    return FakeEmbeddings(http_mock)


async def test_the_shipped_knowledge_goes_whole_and_nothing_is_searched(
    tmp_path: Path, openai_fake: FakeOpenAI, embeddings: FakeEmbeddings
) -> None:
    settings = fast_settings(tmp_path)
    async with aiohttp.ClientSession() as session:
        prompts, search = prompts_and_knowledge(settings, session)
        assert search is None
        assert prompts.knowledge == load_prompt_bundle().knowledge
        deps = AgentDeps(
            llm=LLMClient(llm_config(settings), session),
            fetch_media=_no_media,
            prompts=prompts,
            rules=load_scoring_rules(),
            knowledge=search,
        )
        await SdrAgent(deps).run(_turn("Qual a capacidade da FB300?"))
    system = _system_texts(openai_fake.chat_requests[0])
    assert prompts.knowledge in system[0]  # whole, in the static first system message
    assert not any(RELEVANT_HEADER in text for text in system)
    assert embeddings.requests == []


async def _no_media(_: InboundMessage) -> bytes:
    raise AssertionError("no media in these turns")


@pytest.mark.parametrize("indexed", [True, False], ids=["embeddings", "bm25"])
async def test_a_big_catalogue_sends_the_overview_static_and_the_turns_chunks_after_it(
    tmp_path: Path, openai_fake: FakeOpenAI, embeddings: FakeEmbeddings, indexed: bool
) -> None:
    prompts_dir = tmp_path / "prompts"
    prompts_dir.mkdir()
    for name in ("system.md", "company.toml", "messages.toml"):
        (prompts_dir / name).write_bytes((load_prompt_bundle().prompts_dir / name).read_bytes())
    codes = write_catalogue(prompts_dir / "knowledge")
    settings = fast_settings(tmp_path)
    async with aiohttp.ClientSession() as session:
        embedder = OpenAIEmbedder(llm_config(settings), "text-embedding-3-small", session)
        base = prepare_knowledge(
            prompts_dir / "knowledge", KnowledgeConfig(max_tokens=BUDGET, top_k=3), embedder
        )
        if indexed:
            await build_index(base, embedder)
        deps = AgentDeps(
            llm=LLMClient(llm_config(settings), session),
            fetch_media=_no_media,
            prompts=replace(load_prompt_bundle(prompts_dir), knowledge=base.static_text),
            rules=load_scoring_rules(),
            knowledge=base.search,
        )
        agent = SdrAgent(deps)
        await agent.run(_turn("Qual a garantia do SF-124?"))
        await agent.run(_turn("e o cilindro CM-345, tem em 220?"))
    first, second = (_system_texts(r) for r in openai_fake.chat_requests)
    # The static part is the same bytes on both turns, and holds no product.
    static = os.path.commonprefix(["\n".join(first), "\n".join(second)])
    assert base.static_text in static
    assert not any(code in static for code in codes)
    # Each turn's own chunks come after it: the right product among the top 3.
    assert RELEVANT_HEADER in "\n".join(first) and "SF-124" in "\n".join(first).split(RELEVANT_HEADER)[1]
    assert "CM-345" in "\n".join(second).split(RELEVANT_HEADER)[1]
    assert "SF-124" not in "\n".join(second)
    assert len(embeddings.requests) == (1 + 2 if indexed else 0)  # the index, then one query per turn

"""`python main.py knowledge index|search` on a prompts folder of the operator's choosing."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from aioresponses import aioresponses

from cli.errors import CliError
from cli.knowledge import run_knowledge
from cli.parser import build_parser
from tests.agent.knowledge.catalogue import BUDGET, write_catalogue
from tests.conftest import fast_settings
from tests.helpers.fake_embeddings import FakeEmbeddings


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["knowledge", *argv])


async def test_index_builds_then_finds_it_up_to_date(tmp_path: Path, http_mock: aioresponses) -> None:
    embeddings = FakeEmbeddings(http_mock)
    write_catalogue(tmp_path / "prompts" / "knowledge")
    settings = fast_settings(tmp_path, knowledge_max_tokens=BUDGET)
    out = io.StringIO()
    assert await run_knowledge(settings, _args("index", "--prompts-dir", str(tmp_path / "prompts")), out) == 0
    text = out.getvalue()
    assert f"over KNOWLEDGE_MAX_TOKENS ({BUDGET})" in text
    assert "chunks embedded with text-embedding-3-small" in text
    written = list((tmp_path / "prompts" / "knowledge" / ".index").glob("*.npz"))
    assert len(written) == 1 and str(written[0]) in text
    assert len(embeddings.requests) == 1

    again = io.StringIO()
    assert (
        await run_knowledge(settings, _args("index", "--prompts-dir", str(tmp_path / "prompts")), again) == 0
    )
    assert "index: up to date" in again.getvalue()
    assert len(embeddings.requests) == 1


async def test_search_shows_the_chunks_and_what_served(tmp_path: Path, http_mock: aioresponses) -> None:
    FakeEmbeddings(http_mock)
    write_catalogue(tmp_path / "prompts" / "knowledge")
    settings = fast_settings(tmp_path, knowledge_max_tokens=BUDGET, openai_api_key=None)
    out = io.StringIO()
    args = _args("search", "qual a garantia do SF-124?", "--prompts-dir", str(tmp_path / "prompts"))
    assert await run_knowledge(settings, args, out) == 0
    lines = out.getvalue().splitlines()
    assert "served by: lexical" in lines[2]
    assert "SF-124" in lines[3]


async def test_index_without_a_key_says_what_serves_instead(tmp_path: Path) -> None:
    write_catalogue(tmp_path / "prompts" / "knowledge")
    settings = fast_settings(tmp_path, knowledge_max_tokens=BUDGET, openai_api_key=None)
    with pytest.raises(CliError, match="OPENAI_API_KEY is not set; the bot searches by words"):
        await run_knowledge(
            settings, _args("index", "--prompts-dir", str(tmp_path / "prompts")), io.StringIO()
        )


async def test_small_knowledge_needs_no_index(tmp_path: Path) -> None:
    (tmp_path / "prompts" / "knowledge").mkdir(parents=True)
    (tmp_path / "prompts" / "knowledge" / "company.md").write_text("# A empresa\nFazemos moedores.\n")
    out = io.StringIO()
    settings = fast_settings(tmp_path)
    assert await run_knowledge(settings, _args("index", "--prompts-dir", str(tmp_path / "prompts")), out) == 0
    assert "goes whole into every prompt" in out.getvalue()
    assert not (tmp_path / "prompts" / "knowledge" / ".index").exists()

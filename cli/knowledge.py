"""`python main.py knowledge index|search`: the catalogue's search index, for operators.

`index` embeds every chunk once and caches the vectors beside the knowledge (the bot
also builds a missing index at start, in the background; this does it now, and says
what it cost). `search "<question>"` shows which chunks a lead's question would bring
into the prompt, and which search served it, so an operator can check a new datasheet
is found before a lead asks.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

import aiohttp

from agent.budget import count_tokens
from agent.knowledge.base import KnowledgeBase, build_index, prepare_knowledge
from agent.knowledge.embeddings import OpenAIEmbedder
from agent.prompts import DEFAULT_PROMPTS_DIR
from cli.errors import CliError
from core.settings import Settings
from web.configs.agent import knowledge_config, llm_config


def _describe(base: KnowledgeBase, budget: int, out: TextIO) -> None:
    if base.search is None:
        out.write(
            f"knowledge: {base.total_tokens} tokens, within KNOWLEDGE_MAX_TOKENS ({budget}): it goes whole "
            "into every prompt, nothing is searched and no index is needed\n"
        )
        return
    chunk_tokens = sum(count_tokens(chunk.text) for chunk in base.chunks)
    out.write(
        f"knowledge: {base.total_tokens} tokens, over KNOWLEDGE_MAX_TOKENS ({budget}): each turn gets its "
        f"{base.search.top_k} most relevant chunks\n"
        f"chunks: {len(base.chunks)} ({chunk_tokens} tokens); always in the prompt: "
        f"{count_tokens(base.static_text)} tokens\n"
    )


async def _index(base: KnowledgeBase, embedder: OpenAIEmbedder, out: TextIO) -> int:
    if base.search is None:
        return 0
    if not embedder.configured:
        raise CliError(
            "knowledge index: OPENAI_API_KEY is not set; the bot searches by words (BM25) meanwhile, "
            "which needs no index"
        )
    report = await build_index(base, embedder)
    where = str(report.path) if report.saved else f"{report.path} (NOT saved: the folder is not writable)"
    if not report.built:
        out.write(f"index: up to date ({report.model}) at {where}\n")
    else:
        out.write(
            f"index: {report.chunks} chunks embedded with {report.model} in {report.seconds:.1f} s -> {where}\n"
        )
    return 0 if report.saved else 1


async def _search(base: KnowledgeBase, query: str | None, out: TextIO) -> int:
    if not query or not query.strip():
        raise CliError('knowledge search: give the question, e.g. knowledge search "quanto pesa o MB-22?"', 2)
    if base.search is None:
        return 0
    found = await base.search.search(query)
    out.write(f"served by: {found.served_by} ({found.seconds * 1000:.1f} ms)\n")
    for rank, chunk in enumerate(found.chunks, 1):
        first = chunk.body.strip().splitlines()[0][:100] if chunk.body.strip() else ""
        out.write(f"{rank}. {chunk.label} ({count_tokens(chunk.text)} tokens)\n   {first}\n")
    if not found.chunks:
        out.write("no chunk shares a word with the question\n")
    return 0


async def run_knowledge(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    prompts_dir = Path(args.prompts_dir) if args.prompts_dir is not None else DEFAULT_PROMPTS_DIR
    knowledge_dir = prompts_dir / "knowledge"
    if not knowledge_dir.is_dir():
        raise CliError(f"knowledge: no folder {knowledge_dir}")
    config = knowledge_config(settings)
    async with aiohttp.ClientSession() as session:
        embedder = OpenAIEmbedder(llm_config(settings), config.embedding_model, session)
        base = prepare_knowledge(knowledge_dir, config, embedder if embedder.configured else None)
        _describe(base, config.max_tokens, out)
        if args.action == "index":
            return await _index(base, embedder, out)
        return await _search(base, args.query, out)

"""Knowledge cut into chunks the size of an answer: a product, a FAQ entry, a datasheet page.

A chunk is what retrieval puts in front of the model, so it must make sense alone: each
keeps its heading path ("products.md › Moedores › MB-22") and is cut at a heading, then
at blank lines, then at line ends, never mid-sentence unless one line is itself too
long. A section that fits `max_tokens` stays whole, so one product is one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from agent.budget import count_tokens
from agent.knowledge.sources import Document

# Part of the index key: chunks cut differently need their vectors computed again.
CHUNKER_VERSION = "1"
DEFAULT_MAX_CHUNK_TOKENS = 450
PATH_SEPARATOR = " › "
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?;])\s+")
# A plain document's first line names it when it is short (a datasheet's title).
_MAX_TITLE_CHARS = 90


@dataclass(frozen=True, slots=True)
class Chunk:
    path: tuple[str, ...]  # the file name, then the headings above the text
    body: str

    @property
    def label(self) -> str:
        return PATH_SEPARATOR.join(self.path)

    @property
    def text(self) -> str:
        """What the model reads and what is indexed: the path says where it comes from."""
        return f"[{self.label}]\n{self.body}"


def _sections(doc: Document) -> Iterator[tuple[tuple[str, ...], str]]:
    """(heading path, body) for each heading's own text, in document order."""
    if not doc.markdown:
        first = doc.text.split("\n", 1)[0].strip()
        title = (first,) if 0 < len(first) <= _MAX_TITLE_CHARS else ()
        yield (doc.name, *title), doc.text
        return
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    for line in doc.text.splitlines():
        match = _HEADING_RE.match(line)
        if match is None:
            body.append(line)
            continue
        yield (doc.name, *(title for _, title in stack)), "\n".join(body).strip()
        body = []
        level = len(match.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, match.group(2).strip()))
    yield (doc.name, *(title for _, title in stack)), "\n".join(body).strip()


def _pieces(text: str, max_tokens: int) -> Iterator[str]:
    """`text` in consecutive pieces of at most `max_tokens`, cut at the widest break."""
    if count_tokens(text) <= max_tokens:
        yield text
        return
    for pattern in ("\n\n", "\n", _SENTENCE_END_RE):
        parts = re.split(pattern, text) if isinstance(pattern, re.Pattern) else text.split(pattern)
        joiner = " " if isinstance(pattern, re.Pattern) else pattern
        parts = [p.strip() for p in parts if p.strip()]
        if len(parts) > 1:
            yield from _pack(parts, joiner, max_tokens)
            return
    # One unbreakable run (a table row, a URL list): cut by words.
    words = text.split()
    half = max(1, len(words) // 2)
    yield from _pieces(" ".join(words[:half]), max_tokens)
    yield from _pieces(" ".join(words[half:]), max_tokens)


def _pack(parts: list[str], joiner: str, max_tokens: int) -> Iterator[str]:
    current: list[str] = []
    for part in parts:
        candidate = joiner.join([*current, part])
        if current and count_tokens(candidate) > max_tokens:
            yield from _pieces(joiner.join(current), max_tokens)
            current = [part]
        else:
            current.append(part)
    if current:
        yield from _pieces(joiner.join(current), max_tokens)


def chunk_document(doc: Document, max_tokens: int = DEFAULT_MAX_CHUNK_TOKENS) -> list[Chunk]:
    chunks: list[Chunk] = []
    for path, body in _sections(doc):
        if body:
            chunks.extend(Chunk(path, piece) for piece in _pieces(body, max_tokens))
    return chunks


def chunk_documents(docs: list[Document], max_tokens: int = DEFAULT_MAX_CHUNK_TOKENS) -> list[Chunk]:
    return [chunk for doc in docs for chunk in chunk_document(doc, max_tokens)]


__all__ = ["CHUNKER_VERSION", "DEFAULT_MAX_CHUNK_TOKENS", "Chunk", "chunk_document", "chunk_documents"]

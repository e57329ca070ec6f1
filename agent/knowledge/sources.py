"""The company's knowledge files as plain text: Markdown, text and PDF datasheets.

A company drops its catalogue into `prompts/knowledge/` as it has it: pages written
for the bot (.md), exports (.txt) and the datasheets it already sends customers (.pdf).
PDFs are read with pypdf (pure Python, no system library); a PDF with no text layer
(a scan) gives no text and is named in the log rather than silently missing.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from core.logging import get_logger

log = get_logger(__name__)

# Knowledge files in the order they read best; any other file a user adds comes after.
KNOWLEDGE_ORDER: tuple[str, ...] = ("company.md", "products.md", "faq.md")
SUFFIXES: tuple[str, ...] = (".md", ".txt", ".pdf")


@dataclass(frozen=True, slots=True)
class Document:
    name: str  # the file name, which the chunks' heading paths start with
    text: str
    markdown: bool  # headings (#, ##...) structure it; .txt and .pdf are plain paragraphs


def knowledge_files(knowledge_dir: Path) -> list[Path]:
    """Every readable knowledge file, in reading order (hidden files and folders aside)."""
    files = (
        [
            p
            for p in knowledge_dir.iterdir()
            if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
        ]
        if knowledge_dir.is_dir()
        else []
    )
    return sorted(
        files,
        key=lambda p: (
            KNOWLEDGE_ORDER.index(p.name) if p.name in KNOWLEDGE_ORDER else len(KNOWLEDGE_ORDER),
            p.name,
        ),
    )


def content_hash(files: list[Path], *extra: str) -> str:
    """What the cached index is keyed by: every file's name and bytes, plus `extra`
    (the embedding model, the chunker's version). A changed file changes the key."""
    digest = hashlib.sha256()
    for part in extra:
        digest.update(part.encode() + b"\0")
    for path in files:
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1024)
def _read_pdf(path: Path, _mtime_ns: int, _size: int) -> str:
    # Keyed by mtime and size too: the prompt bundle and the index both read the folder
    # at start, and a big PDF is parsed once, yet a changed file is read again.
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except (PdfReadError, ValueError, OSError) as exc:
        log.warning("knowledge_pdf_unreadable", file=path.name, error=type(exc).__name__)
        return ""
    text = "\n\n".join(page for page in pages if page)
    if not text:
        log.warning(
            "knowledge_pdf_without_text", file=path.name, hint="a scan has no text layer: OCR it first"
        )
    return text


def read_document(path: Path) -> Document:
    if path.suffix.lower() == ".pdf":
        stat = path.stat()
        return Document(path.name, _read_pdf(path, stat.st_mtime_ns, stat.st_size), markdown=False)
    text = path.read_text(encoding="utf-8").strip()
    return Document(path.name, text, markdown=path.suffix.lower() == ".md")


def read_documents(knowledge_dir: Path) -> list[Document]:
    """The knowledge folder's documents that have any text, in reading order."""
    docs = [read_document(path) for path in knowledge_files(knowledge_dir)]
    return [doc for doc in docs if doc.text]


__all__ = [
    "KNOWLEDGE_ORDER",
    "Document",
    "content_hash",
    "knowledge_files",
    "read_document",
    "read_documents",
]

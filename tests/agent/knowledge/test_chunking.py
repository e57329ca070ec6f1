"""Chunks make sense alone: each keeps the headings above it and fits its size."""

from __future__ import annotations

from agent.budget import count_tokens
from agent.knowledge.chunking import chunk_document
from agent.knowledge.sources import Document

PRODUCTS = """# Produtos
Intro geral.

## Moedores

### MB-22 — moedor de carne
- Boca 22; motor de 1,5 cv.

### MB-98 — moedor industrial
- Boca 98; motor de 7,5 cv.

## Serras
### SF-160
Serra fita de 1,60 m.
"""


def test_each_chunk_keeps_its_heading_path() -> None:
    chunks = chunk_document(Document("products.md", PRODUCTS, markdown=True))
    assert [c.path for c in chunks] == [
        ("products.md", "Produtos"),
        ("products.md", "Produtos", "Moedores", "MB-22 — moedor de carne"),
        ("products.md", "Produtos", "Moedores", "MB-98 — moedor industrial"),
        ("products.md", "Produtos", "Serras", "SF-160"),
    ]
    mb22 = chunks[1]
    assert mb22.body == "- Boca 22; motor de 1,5 cv."
    assert mb22.text.startswith("[products.md › Produtos › Moedores › MB-22 — moedor de carne]\n")


def test_a_long_section_is_cut_at_paragraphs_and_each_piece_keeps_the_path() -> None:
    paragraphs = [
        f"Parágrafo {i}: " + "o moedor tritura carne com segurança e higiene. " * 12 for i in range(12)
    ]
    doc = Document("manual.md", "## Manual do MB-22\n\n" + "\n\n".join(paragraphs), markdown=True)
    chunks = chunk_document(doc, max_tokens=200)
    assert len(chunks) > 3
    assert all(c.path == ("manual.md", "Manual do MB-22") for c in chunks)
    assert all(count_tokens(c.body) <= 200 for c in chunks)
    # Nothing lost, nothing cut mid-paragraph.
    assert "\n\n".join(c.body for c in chunks) == "\n\n".join(p.strip() for p in paragraphs)


def test_a_plain_document_is_named_by_its_first_line() -> None:
    doc = Document("ficha.pdf", "Ficha técnica SF-160\nLâmina de 1,60 m.", markdown=False)
    (chunk,) = chunk_document(doc)
    assert chunk.path == ("ficha.pdf", "Ficha técnica SF-160")

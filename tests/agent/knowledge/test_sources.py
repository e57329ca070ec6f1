"""The knowledge folder as the company fills it: Markdown, text and PDF datasheets."""

from __future__ import annotations

from pathlib import Path

from agent.knowledge.sources import content_hash, knowledge_files, read_documents
from tests.helpers.pdf import text_pdf


def test_a_pdf_datasheet_is_read_as_text(tmp_path: Path) -> None:
    pdf = text_pdf([["Ficha técnica MB-22", "Motor: 1,5 cv; produção 300 kg/h"], ["Garantia: 12 meses"]])
    (tmp_path / "ficha-mb22.pdf").write_bytes(pdf)
    (doc,) = read_documents(tmp_path)
    assert doc.name == "ficha-mb22.pdf" and not doc.markdown
    assert "Ficha técnica MB-22" in doc.text
    assert "produção 300 kg/h" in doc.text
    assert "Garantia: 12 meses" in doc.text


def test_files_read_in_the_house_order_and_others_ignored(tmp_path: Path) -> None:
    for name in ("faq.md", "zeta.txt", "company.md", "alpha.md", "products.md", "notes.docx", ".hidden.md"):
        (tmp_path / name).write_text(f"texto de {name}", encoding="utf-8")
    (tmp_path / ".index").mkdir()
    names = [p.name for p in knowledge_files(tmp_path)]
    assert names == ["company.md", "products.md", "faq.md", "alpha.md", "zeta.txt"]


def test_a_broken_pdf_is_skipped_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "company.md").write_text("A empresa.", encoding="utf-8")
    (tmp_path / "quebrado.pdf").write_bytes(b"%PDF-1.4 not really")
    assert [d.name for d in read_documents(tmp_path)] == ["company.md"]


def test_the_content_hash_follows_the_bytes_and_the_model(tmp_path: Path) -> None:
    (tmp_path / "products.md").write_text("MB-22", encoding="utf-8")
    files = knowledge_files(tmp_path)
    first = content_hash(files, "text-embedding-3-small")
    assert content_hash(files, "text-embedding-3-small") == first
    assert content_hash(files, "text-embedding-3-large") != first
    (tmp_path / "products.md").write_text("MB-23", encoding="utf-8")
    assert content_hash(files, "text-embedding-3-small") != first

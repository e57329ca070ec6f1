"""A small catalogue over a small budget: what the knowledge tests search."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.pdf import text_pdf

COMPANY = "# A empresa\nA Equipa fabrica equipamentos para açougues e padarias em Caxias do Sul (RS).\n"
KINDS = (
    ("moedor de carne", "MB", "kg por hora"),
    ("serra fita", "SF", "cortes por hora"),
    ("fatiador de frios", "FT", "fatias por minuto"),
    ("cilindro para massas", "CM", "kg de massa por hora"),
)
# Tests read this budget: the catalogue below is several times over it.
BUDGET = 400


def product_section(kind: str, code: str, unit: str, n: int) -> str:
    return (
        f"## {code} — {kind} {code}\n"
        f"- Capacidade: {100 + n * 13} {unit}.\n"
        f"- Motor de {1 + n % 4} cv; {'220 V' if n % 2 else '380 V trifásico'}.\n"
        f"- Garantia de {6 + n % 3 * 6} meses; peso {20 + n} kg.\n"
    )


def write_catalogue(knowledge: Path, per_kind: int = 6) -> list[str]:
    """company.md, one file per kind of product and a PDF datasheet; returns the codes."""
    knowledge.mkdir(parents=True, exist_ok=True)
    (knowledge / "company.md").write_text(COMPANY, encoding="utf-8")
    codes: list[str] = []
    for k, (kind, prefix, unit) in enumerate(KINDS):
        sections = []
        for i in range(per_kind):
            code = f"{prefix}-{10 + k * 100 + i * 7}"
            codes.append(code)
            sections.append(product_section(kind, code, unit, k * per_kind + i))
        text = f"# {kind.capitalize()}\n\n" + "\n".join(sections)
        (knowledge / f"catalogo-{prefix.lower()}.md").write_text(text, encoding="utf-8")
    (knowledge / "ficha-ZX-900.pdf").write_bytes(
        text_pdf([["Ficha técnica ZX-900 — esteira de resfriamento", "Comprimento: 4,5 m; ruído 61 dB"]])
    )
    return [*codes, "ZX-900"]

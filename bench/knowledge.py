"""Knowledge at catalogue scale: tokens per turn and retrieval recall on a generated catalogue.

    python bench/knowledge.py [--products 300] [--seed 18] [--keep DIR]

Generates a deterministic catalogue of food-service equipment (one Markdown file per
category, one section per product, plus PDF and text datasheets for some of them) and a
question set where each question has one right product: half name the model code (as a
lead types it: "mb145", "MB-145", "o MB 145"), half describe it by use and capacity
only. Then it measures, through the bot's own code (agent/knowledge/):

- knowledge tokens per turn: the whole catalogue in the prompt vs the overview (static)
  plus the retrieved chunks (per turn);
- index build time (read + chunk + BM25; embeddings), search time per query;
- recall@k (k = 1, 3, 5): the right product's chunk among the first k, for BM25 (the
  offline fallback) and for embeddings.

Without OPENAI_API_KEY there is no OpenAI here: the embedding path then runs on a
deterministic local stand-in (feature hashing of words and character trigrams) behind
the same interface, and the output says so. Its recall says nothing about
text-embedding-3-small; the honest offline figure is BM25's. With a key, the real
embeddings are used (one index build, one query embedding per question: a few cents).

Needs the dev extra (`pip install -e '.[dev]'`): datasheets are written with the tests'
PDF helper.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from agent.budget import count_tokens  # noqa: E402
from agent.knowledge.base import KnowledgeConfig, build_index, prepare_knowledge  # noqa: E402
from agent.knowledge.embeddings import Vectors, normalise  # noqa: E402
from agent.knowledge.lexical import fold, terms  # noqa: E402
from agent.knowledge.search import FUSION_DEPTH  # noqa: E402
from agent.knowledge.sources import read_documents  # noqa: E402
from tests.helpers.pdf import text_pdf  # noqa: E402

KS = (1, 3, 5)


@dataclass(frozen=True)
class Category:
    slug: str
    singular: str
    prefix: str
    unit: str
    base: int
    step: int
    uses: tuple[str, ...]


CATEGORIES = (
    Category(
        "moedores", "moedor de carne", "MB", "kg por hora", 80, 7, ("açougue", "frigorífico", "restaurante")
    ),
    Category(
        "serras-fita",
        "serra fita para ossos",
        "SF",
        "cortes por hora",
        200,
        11,
        ("açougue", "casa de carnes", "supermercado"),
    ),
    Category(
        "formadoras",
        "formadora de hambúrguer",
        "FH",
        "hambúrgueres por hora",
        300,
        23,
        ("hamburgueria", "açougue", "fábrica de congelados"),
    ),
    Category(
        "embutideiras",
        "embutideira de linguiça",
        "EL",
        "kg de linguiça por hora",
        40,
        5,
        ("açougue", "charcutaria", "frigorífico"),
    ),
    Category(
        "misturadeiras",
        "misturadeira de carne",
        "MX",
        "litros de cuba",
        20,
        3,
        ("fábrica de embutidos", "açougue", "frigorífico"),
    ),
    Category(
        "fatiadores",
        "fatiador de frios",
        "FT",
        "fatias por minuto",
        30,
        2,
        ("padaria", "delicatessen", "supermercado"),
    ),
    Category(
        "amaciadores",
        "amaciador de bifes",
        "AB",
        "bifes por minuto",
        10,
        1,
        ("restaurante", "açougue", "cozinha industrial"),
    ),
    Category(
        "seladoras",
        "seladora a vácuo",
        "SV",
        "ciclos por hora",
        60,
        4,
        ("charcutaria", "fábrica de congelados", "empório"),
    ),
    Category(
        "cilindros",
        "cilindro para massas",
        "CM",
        "kg de massa por hora",
        25,
        3,
        ("padaria", "pizzaria", "confeitaria"),
    ),
    Category(
        "batedeiras",
        "batedeira planetária",
        "BP",
        "litros de bacia",
        5,
        1,
        ("confeitaria", "padaria", "cozinha industrial"),
    ),
    Category(
        "fornos", "forno turbo", "FV", "assadeiras por fornada", 4, 1, ("padaria", "restaurante", "pizzaria")
    ),
    Category(
        "picadores",
        "picador de legumes",
        "PL",
        "kg de legumes por hora",
        50,
        6,
        ("restaurante", "cozinha industrial", "hospital"),
    ),
)
VOLTAGES = ("127 V monofásico", "220 V monofásico", "220/380 V trifásico")
MATERIALS = (
    "aço inox AISI 304",
    "aço inox AISI 430",
    "alumínio fundido com partes em inox",
    "aço carbono pintado",
)
FEATURES = (
    "sensor de segurança na tampa",
    "botão de emergência",
    "pés reguláveis",
    "desmontagem sem ferramentas para limpeza",
    "motor com proteção térmica",
    "painel digital",
    "rodízios com trava",
    "reversão de rotação",
)
TERMS = ("à vista com desconto", "em até 10x no cartão", "pelo BNDES/Finame", "boleto em 30/60/90 dias")


@dataclass(frozen=True)
class Product:
    code: str
    category: Category
    capacity: int
    name: str
    section: str
    datasheet: list[str] | None


def _product(category: Category, i: int, rng: random.Random) -> Product:
    number = category.base + i * category.step
    code = f"{category.prefix}-{number}"
    capacity = category.base * 3 + i * category.step * 2 + rng.randint(0, 1)
    name = f"{category.singular.capitalize()} {code} {rng.choice(('Inox', 'Pro', 'Plus', 'Max', 'Compacto'))}"
    motor = rng.choice(("0,5", "0,75", "1", "1,5", "2", "3", "5"))
    features = rng.sample(FEATURES, 3)
    weight = rng.randint(12, 380)
    warranty = rng.choice((6, 12, 18, 24))
    lead_time = rng.choice(
        ("pronta entrega", f"fabricação sob encomenda em {rng.choice((15, 20, 30, 45))} dias úteis")
    )
    uses = ", ".join(rng.sample(category.uses, 2))
    body = [
        f"- Capacidade: {capacity} {category.unit}.",
        f"- Motor de {motor} cv; {rng.choice(VOLTAGES)}.",
        f"- Estrutura em {rng.choice(MATERIALS)}; peso {weight} kg.",
        f"- Itens: {', '.join(features)}.",
        f"- Indicado para {uses}.",
        f"- Garantia de {warranty} meses; {lead_time}.",
        f"- Preço sob consulta com o time comercial; pagamento {rng.choice(TERMS)}.",
    ]
    section = f"## {code} — {name}\n" + "\n".join(body)
    datasheet = None
    if i % 10 == 3:  # about one product in ten also has a datasheet file
        datasheet = [
            f"Ficha técnica {code} — {name}",
            f"Capacidade nominal: {capacity} {category.unit}",
            f"Nível de ruído: {rng.randint(58, 82)} dB(A); grau de proteção IP{rng.choice((54, 55, 65))}",
            f"Embalagem: {rng.randint(40, 120)} x {rng.randint(40, 120)} x {rng.randint(40, 160)} cm",
            f"Certificação: NR-12; registro {rng.randint(10000, 99999)}",
        ]
    return Product(code, category, capacity, name, section, datasheet)


COMPANY = """# A empresa
A Equipa Food Service fabrica equipamentos para açougues, padarias, restaurantes e
indústrias de alimentos desde 1994, em Caxias do Sul (RS), e vende para todo o Brasil.

## Atendimento comercial
Orçamentos, prazos e fretes são confirmados pelo time comercial; assistência técnica
própria nas capitais do Sul e Sudeste e rede autorizada no resto do país.
"""


def generate(folder: Path, count: int, seed: int) -> list[Product]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "company.md").write_text(COMPANY, encoding="utf-8")
    per_category = -(-count // len(CATEGORIES))
    products: list[Product] = []
    for category in CATEGORIES:
        mine = [_product(category, i, rng) for i in range(per_category)][: max(0, count - len(products))]
        products += mine
        intro = f"# {category.singular.capitalize()}s\nLinha de {category.singular}s da Equipa.\n\n"
        (folder / f"catalogo-{category.slug}.md").write_text(
            intro + "\n\n".join(p.section for p in mine) + "\n", encoding="utf-8"
        )
        for n, p in enumerate(q for q in mine if q.datasheet):
            assert p.datasheet is not None
            if n % 2 == 0:
                (folder / f"ficha-{p.code}.pdf").write_bytes(text_pdf([p.datasheet]))
            else:
                (folder / f"ficha-{p.code}.txt").write_text("\n".join(p.datasheet), encoding="utf-8")
    return products


def questions(products: list[Product], seed: int) -> list[tuple[str, str, str]]:
    """(question, right code, kind): one naming the code, one describing the product."""
    rng = random.Random(seed + 1)
    out: list[tuple[str, str, str]] = []
    for p in products:
        prefix, number = p.code.split("-")
        code = rng.choice((p.code, f"{prefix}{number}".lower(), f"{prefix} {number}", p.code.lower()))
        named = rng.choice(
            (
                f"Qual a potência do motor do {code}?",
                f"O {code} funciona em 220?",
                f"quanto pesa o {code}",
                f"Qual a garantia da {code} e tem pronta entrega?",
                f"Me passa o preço do {code} por favor",
            )
        )
        use = rng.choice(p.category.uses)
        described = rng.choice(
            (
                f"Preciso de um {p.category.singular} para {p.capacity} {p.category.unit}, qual modelo vocês têm?",
                f"Tenho um(a) {use} e queria um {p.category.singular} de uns {p.capacity} {p.category.unit}",
                f"vcs tem {p.category.singular} que faz {p.capacity} {p.category.unit}?",
            )
        )
        out += [(named, p.code, "code"), (described, p.code, "described")]
    return out


class HashingEmbedder:
    """A deterministic local stand-in for OpenAI's embeddings (no network): words and
    character trigrams hashed into 1,024 dimensions. Same interface, not the same quality."""

    model = "local-hashing-stand-in"
    DIMS = 1024

    def _vector(self, text: str) -> np.ndarray:
        row = np.zeros(self.DIMS, dtype=np.float32)
        features = terms(text)
        for word in fold(text).split():
            features += [word[i : i + 3] for i in range(max(1, len(word) - 2))]
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.DIMS
            row[bucket] += 1.0 if digest[4] & 1 else -1.0
        return row

    async def embed(self, texts: list[str]) -> Vectors:
        return normalise([self._vector(t) for t in texts])

    async def embed_query(self, text: str) -> Vectors:
        row: Vectors = normalise([self._vector(text)])[0]
        return row


def _real_embedder() -> object | None:
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        return None
    from pydantic import SecretStr

    from agent.knowledge.embeddings import OpenAIEmbedder
    from agent.llm import LLMConfig

    config = LLMConfig(
        api_key=SecretStr(key),
        base_url=os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
        model="gpt-4o",
        transcribe_model="whisper-1",
        timeout_s=30.0,
        max_attempts=4,
        backoff_base_s=1.0,
    )
    return OpenAIEmbedder(config, os.environ.get("EMBEDDING_MODEL", "text-embedding-3-small"))


def _hit(chunks: list, code: str) -> bool:
    return any(code in chunk.label or code in chunk.body for chunk in chunks)


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"mean {statistics.mean(values) * 1000:.3f} ms, p95 {p95 * 1000:.3f} ms"


async def _ranked(search, question: str, mode: str) -> tuple[list, float]:
    """The first max(KS) chunks for `question` and the seconds the search itself took
    (the query embedding is timed apart: it is a network call with OpenAI)."""
    query_vector = None if mode == "lexical" else await search.embedder.embed_query(question)
    started = time.perf_counter()
    if mode == "lexical":
        found = search.lexical(question, max(KS))
    elif mode == "embeddings":
        found = search.semantic(query_vector, max(KS))
    else:  # what KnowledgeSearch.search serves when it can embed the query
        found = search.hybrid(question, search.semantic(query_vector, max(KS) * FUSION_DEPTH), max(KS))
    return [search.chunks[i] for i in found], time.perf_counter() - started


async def _recall(search, qs, mode: str) -> tuple[dict[str, dict[int, float]], list[float], list[int]]:
    hits = {kind: dict.fromkeys(KS, 0) for kind in ("code", "described", "all")}
    counts = {"code": 0, "described": 0, "all": 0}
    seconds: list[float] = []
    tokens: list[int] = []
    for question, code, kind in qs:
        found, took = await _ranked(search, question, mode)
        seconds.append(took)
        tokens.append(count_tokens("\n\n".join(c.text for c in found[: search.top_k])))
        for name in (kind, "all"):
            counts[name] += 1
            for k in KS:
                hits[name][k] += _hit(found[:k], code)
    recall = {kind: {k: hits[kind][k] / counts[kind] for k in KS} for kind in hits if counts[kind]}
    return recall, seconds, tokens


def _print_recall(title: str, recall: dict[str, dict[int, float]]) -> None:
    print(f"  {title}")
    for kind in ("all", "code", "described"):
        cells = "  ".join(f"@{k} {recall[kind][k]:.3f}" for k in KS)
        print(f"    {kind:<10} {cells}")


async def run(count: int, seed: int, folder: Path) -> None:
    products = generate(folder, count, seed)
    qs = questions(products, seed)
    docs = read_documents(folder)
    whole_tokens = count_tokens("\n\n".join(d.text for d in docs))
    print(
        f"catalogue: {len(products)} products, {len(docs)} files ({sum(1 for p in folder.glob('*.pdf'))} PDF), seed {seed}"
    )
    print(f"questions: {len(qs)} ({len(qs) // 2} naming the code, {len(qs) // 2} describing the product)")

    real = _real_embedder()
    embedder = real or HashingEmbedder()
    config = KnowledgeConfig()
    started = time.perf_counter()
    base = prepare_knowledge(folder, config, embedder)  # read (PDFs too), chunk, BM25
    prepare_s = time.perf_counter() - started
    assert base.search is not None, "the generated catalogue must be over the budget"
    search = base.search
    started = time.perf_counter()
    report = await build_index(base, embedder)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    reloaded = prepare_knowledge(folder, config, embedder)
    reload_s = time.perf_counter() - started
    assert reloaded.search is not None and reloaded.search.has_vectors, "the cached index was not reused"

    static_tokens = count_tokens(base.static_text)
    print()
    print("knowledge tokens in the prompt, per turn")
    print(f"  whole catalogue (static):          {whole_tokens} tokens")
    print(f"  retrieval: static overview + note: {static_tokens} tokens (cacheable prefix)")

    lex_recall, lex_s, lex_tokens = await _recall(search, qs, "lexical")
    print(
        f"  retrieval: top-{config.top_k} chunks (per turn): mean {statistics.mean(lex_tokens):.0f}, max {max(lex_tokens)} tokens (BM25)"
    )
    print()
    print("index")
    print(f"  chunks: {len(base.chunks)} ({report.tokens} tokens), KNOWLEDGE_MAX_TOKENS {config.max_tokens}")
    print(
        f"  read + chunk + BM25 at start: {prepare_s * 1000:.0f} ms; restart with the cached index: {reload_s * 1000:.0f} ms"
    )
    label = embedder.model if real else f"{embedder.model} (NOT OpenAI: no OPENAI_API_KEY)"
    print(
        f"  embeddings build ({label}): {build_s * 1000:.0f} ms, {report.path.stat().st_size // 1024} KiB on disk"
    )
    print()
    print("search time per query")
    print(f"  BM25:                 {_ms(lex_s)}")
    vec_recall, vec_s, vec_tokens = await _recall(search, qs, "embeddings")
    print(f"  numpy cosine top-k:   {_ms(vec_s)} (query embedding apart)")
    hyb_recall, hyb_s, hyb_tokens = await _recall(search, qs, "hybrid")
    print(f"  hybrid (cosine + BM25, fused): {_ms(hyb_s)} (query embedding apart)")
    print()
    print("recall@k (the right product's chunk among the first k)")
    _print_recall("BM25 (offline fallback; the honest figure without a key)", lex_recall)
    if real:
        _print_recall(f"embeddings alone ({embedder.model})", vec_recall)
        _print_recall(f"hybrid, what the bot serves with a key ({embedder.model} + BM25)", hyb_recall)
    else:
        stand_in = "LOCAL STAND-IN (hashing), not OpenAI: no OPENAI_API_KEY set"
        _print_recall(f"embeddings alone: {stand_in}", vec_recall)
        _print_recall(f"hybrid (stand-in + BM25): {stand_in}", hyb_recall)
    print(
        f"  top-{config.top_k} tokens per turn: embeddings {statistics.mean(vec_tokens):.0f}, "
        f"hybrid {statistics.mean(hyb_tokens):.0f} (mean)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--keep", type=Path, help="write the catalogue here and keep it")
    args = parser.parse_args()
    if args.keep is not None:
        asyncio.run(run(args.products, args.seed, args.keep))
        return
    with tempfile.TemporaryDirectory(prefix="knowledge-bench-") as tmp:
        asyncio.run(run(args.products, args.seed, Path(tmp) / "knowledge"))


if __name__ == "__main__":
    main()

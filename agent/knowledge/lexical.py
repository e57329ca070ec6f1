"""BM25 over the chunks: the search that needs no network.

Without an OpenAI key, or while the embeddings endpoint fails, the bot must still
answer from the right product: model codes ("FB-300", "SE3000") and the words a lead
uses are exactly what a term index finds. Portuguese words are folded (accents, case,
plural endings) so "moedores" finds "Moedor" and "ação" finds "acao".
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

_WORD_RE = re.compile(r"[a-z0-9]+")
# A product code as written ("FB-300", "SE 3000", "MB22"): also indexed as one token.
_CODE_RE = re.compile(r"\b([a-z]{1,5})[\s\-./]?(\d{1,5}[a-z]?)\b")
_STOPWORD_TEXT = (
    "a o as os um uma uns umas de da do das dos em na no nas nos por para pra pro com sem "
    "e ou que se ao aos the of and me te voce voces vcs eu ele ela eles elas nos isso essa esse "
    "esta este tem ter qual quais quanto quanta como onde quando mais menos muito muita ja nao sim "
    "sou e foi ser estou estao seu sua seus suas meu minha gostaria queria quero saber vi oi ola "
    "bom boa dia tarde noite obrigado obrigada favor"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
K1 = 1.5
B = 0.75


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _stem(word: str) -> str:
    """Just the plural: "moedores" -> "moedor", "opcoes" -> "opcao", "fornos" -> "forno"."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, replacement in (("oes", "ao"), ("aes", "ao"), ("res", "r"), ("zes", "z"), ("is", "l")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)] + replacement
    return word[:-1] if word.endswith("s") else word


def codes(text: str) -> set[str]:
    """The model codes in `text`, written one way: "FB-300", "fb 300" and "FB300" are "fb300"."""
    return {letters + digits for letters, digits in _CODE_RE.findall(fold(text))}


def terms(text: str) -> list[str]:
    folded = fold(text)
    words = [_stem(w) for w in _WORD_RE.findall(folded) if w not in _STOPWORDS]
    codes = [letters + digits for letters, digits in _CODE_RE.findall(folded)]
    return words + codes


class Bm25:
    """Okapi BM25 with the usual k1 = 1.5, b = 0.75; a few thousand chunks answer in
    well under a millisecond (postings walked only for the query's terms)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.size = len(texts)
        self._postings: dict[str, list[tuple[int, int]]] = {}
        lengths: list[int] = []
        for index, text in enumerate(texts):
            counts = Counter(terms(text))
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self._postings.setdefault(term, []).append((index, tf))
        average = (sum(lengths) / len(lengths)) if lengths else 1.0
        self._norm = [K1 * (1 - B + B * length / (average or 1.0)) for length in lengths]
        self._idf = {
            term: math.log(1 + (self.size - len(p) + 0.5) / (len(p) + 0.5))
            for term, p in self._postings.items()
        }

    def scores(self, query: str) -> dict[int, float]:
        scores: dict[int, float] = {}
        for term in set(terms(query)):
            postings = self._postings.get(term)
            if postings is None:
                continue
            idf = self._idf[term]
            for index, tf in postings:
                scores[index] = scores.get(index, 0.0) + idf * tf * (K1 + 1) / (tf + self._norm[index])
        return scores

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The `k` best chunks that share a term with `query`, best first (ties: first written)."""
        ranked = sorted(self.scores(query).items(), key=lambda item: (-item[1], item[0]))
        return ranked[:k]


__all__ = ["Bm25", "codes", "fold", "terms"]

"""Pieces the rules are made of: what a number is counting, what follows it, and whether
the clause affirms it or defers it."""

from __future__ import annotations

import re

NUM = r"(?<![\w.,/])\d+(?:[.,]\d+)*(?![\d/])"
_NUM_RE = re.compile(NUM)

# Words that say what a number counts: with one of these after it, a number is a fact.
_COUNT_EXACT = {
    "g",
    "gr",
    "l",
    "ml",
    "m",
    "mm",
    "cm",
    "v",
    "w",
    "kw",
    "hz",
    "h",
    "un",
    "und",
    "t",
    "cv",
    "hp",
    "kg",
    "km",
    "rpm",
    "bar",
    "psi",
    "min",
    "x",
    "vez",
    "vezes",
    "dia",
    "dias",
    "mes",
    "meses",
    "ano",
    "anos",
    "item",
    "itens",
    "lotes",
}
_COUNT_PREFIXES = (
    "hamburguer",
    "burger",
    "unidade",
    "peca",
    "ciclo",
    "espeto",
    "bife",
    "cubo",
    "tira",
    "file",
    "linguica",
    "lanche",
    "porc",
    "refeic",
    "prato",
    "cliente",
    "pessoa",
    "funcionari",
    "colaborador",
    "operador",
    "loja",
    "filia",
    "lugar",
    "mesa",
    "turno",
    "quilo",
    "kilo",
    "grama",
    "tonelada",
    "litro",
    "metro",
    "volt",
    "watt",
    "grau",
    "velocidade",
    "bico",
    "lamina",
    "molde",
    "modelo",
    "maquina",
    "equipamento",
    "formadora",
    "misturadeira",
    "embutideira",
    "cortador",
    "opc",
    "tamanho",
    "batelada",
    "caixa",
    "pacote",
    "saco",
    "produto",
    "semana",
    "hora",
    "minuto",
    "segundo",
    "lote",
    "receita",
    "carne",
    "frango",
    "cabeca",
    "animal",
    "bandeja",
    "empregado",
    "fornada",
    "kilo",
    "informac",
    "pergunta",
    "operac",
    "espessura",
    "diametro",
    "ordinal",
)
_RATE_WORDS = {"hora", "h", "dia", "turno", "mes", "semana", "minuto", "min", "ano", "batelada", "vez"}
# After a number, these make it a price whatever came before.
_PRICE_FOLLOWER = re.compile(
    r"(?:a vista|avista|no pix|via pix|no boleto|no cartao|a prazo|parcelad[oa]|cada\b|a unidade|"
    r"por unidade|a peca|por peca|mais frete|\+ ?frete|com frete|sem frete|fob\b|cif\b|reais|real\b|"
    r"de entrada|de sinal|a mais\b|a menos\b|no total|ao todo|por visita|certinho|redondo)"
)


# Plural words after a number that do not make it a count ("45 mil mais frete").
_NOT_COUNTED = {
    "reais",
    "mais",
    "menos",
    "apenas",
    "depois",
    "antes",
    "juros",
    "pelos",
    "pelas",
    "todos",
    "todas",
    "voces",
    "seus",
    "suas",
    "nos",
    "nas",
    "dos",
    "das",
    "aos",
    "os",
    "as",
    "somos",
    "temos",
    "fazemos",
    "fechamos",
    "damos",
    "deixamos",
    "vendemos",
    "cobramos",
    "conseguimos",
    "dolares",
    "euros",
    "libras",
    "contos",
    "pilas",
    "parcelas",
    "prestacoes",
    "mensalidades",
    "pagamentos",
    "boletos",
}


def _is_count_word(word: str) -> bool:
    if word in _COUNT_EXACT or (len(word) >= 3 and word.startswith(_COUNT_PREFIXES)):
        return True
    # "50 mil habitantes", "30 mil seguidores": a plural noun counts something.
    return len(word) >= 4 and word.endswith("s") and word not in _NOT_COUNTED


_RANGE_NEXT = re.compile(rf"(?:a|e|ou|-|ate)\s*{NUM}")
_LOOK = 120  # characters around a number that can say what it is


def _after(text: str, end: int) -> str:
    return text[end : end + _LOOK]


def follower(after: str) -> str:
    """What the text right after a number makes of it: "price", "count", "percent" or "neutral"."""
    for _ in range(6):  # "de 300 a 350 hambúrgueres": what follows the last number decides
        after = re.sub(r"^\s*(?:mil\b)?\s*", "", after)
        rng = _RANGE_NEXT.match(after)
        if rng is None:
            break
        after = after[rng.end() :]
    if after.startswith("%"):
        return "percent"
    if _PRICE_FOLLOWER.match(after):
        return "price"
    word = re.match(r"(?:(?:de|do|da)\s+)?([a-z°]+)", after)
    if word and _is_count_word(word.group(1)):
        return "count"
    rate = re.match(r"(por|ao|a|na|no|num|numa|em um|em uma|/)\s*([a-z]+)", after)
    if rate and (
        rate.group(2) in _RATE_WORDS or (rate.group(1) in ("por", "/") and _is_count_word(rate.group(2)))
    ):
        return "count"
    return "neutral"


def _tail(text: str, end: int, words: int = 6) -> str:
    """The last few words before `end`: where a cue for the number at `end` would be."""
    return " ".join(text[max(0, end - _LOOK) : end].split()[-words:])


_NEGATION_OR_DEFERRAL = re.compile(
    r"\b(nao|nem|nunca|jamais|sem|sobre|quem|verific\w*|confirm\w*|avali\w*|consult\w*|chec\w*|"
    r"saber|pergunt\w*|existe|negoci\w*|analis\w*|ver se|se (?:tem|ha|existe|rola|da|consegue|conseguimos|"
    r"e possivel|houver|sai))\b"
)
_DEFERRED_AFTER = re.compile(
    r"^[^.!?]{0,20}\b(?:quem (?:confirma|define|passa|informa|apresenta|explica|decide)|"
    r"nao (?:consigo|posso|temos|tenho|da))\b"
)


def _affirmed(clause: str, match: re.Match[str]) -> bool:
    """A promise phrase said as a promise: not "não temos", "se tem", "sobre ... quem confirma"."""
    if _NEGATION_OR_DEFERRAL.search(_tail(clause, match.start(), 6)):
        return False
    return not _DEFERRED_AFTER.search(_after(clause, match.end()))

"""Prices, discounts, payment plans and delivery deadlines in a reply, however worded.

The system prompt forbids them; this is the check that the model obeyed. A model that
gives in to a lead writes the figure any way it likes ("R$ 12.000", "mil e quinhentos
reais", "45 mil", "doze vezes sem juros", fullwidth digits, a zero-width space inside
"R$"), so the reply is first brought to one form (NFKC, invisible characters dropped,
lower case, no accents, number words as digits via text2num) and then read by rules that
ask what each number *is*. A number followed by "hambúrgueres", "kg" or "por hora" is a
product fact and passes untouched; one after "custa", before "reais" or "à vista", with
"%" next to "desconto", before "parcelas", or a duration next to "entrega"/"pronta" is a
commercial promise.

Phone numbers, postcodes, business hours ("de segunda a sexta, das 8h às 18h") and the
lead's own words repeated back ("você mencionou que precisa em 15 dias") are not
promises; they are taken out or recognised before the rules run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from agent.commercial_terms.deadlines import _deadlines
from agent.commercial_terms.money import _discounts, _plans, _prices
from agent.commercial_terms.normalise import normalise

_CLAUSE_END = re.compile(r"([!?;\n…]+|\.(?!\d)|,?\s+mas\s+|,?\s+porem\s+)")


def clauses(normalised: str) -> list[str]:
    """Sentences and "mas"-halves, each keeping its end mark (a "?" changes what it means)."""
    parts = _CLAUSE_END.split(normalised)
    out: list[str] = []
    for index in range(0, len(parts), 2):
        text = parts[index] + (parts[index + 1] if index + 1 < len(parts) else "")
        if text.strip(" ,.;!?\n"):
            out.append(text.strip())
    return out


_CLAUSE_RULES: tuple[Callable[[str], Iterator[str]], ...] = (_prices, _discounts, _plans)


def commercial_promise(reply: str) -> str | None:
    """The first price, discount, payment plan or deadline the reply states, or None."""
    if not reply or not reply.strip():
        return None
    parts = clauses(normalise(reply))
    asked = ""
    for clause in parts:
        # "Quanto custa? 990.": a figure answering the reply's own question is read with it.
        text = f"{asked} {clause}" if asked.endswith("?") else clause
        asked = clause
        for rule in _CLAUSE_RULES:
            for found in rule(text):
                return found.strip()
    for found in _deadlines(parts):
        return found.strip()
    return None

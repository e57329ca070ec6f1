"""Prices, discounts and payment plans in one clause."""

from __future__ import annotations

import re
from collections.abc import Iterator

from agent.commercial_terms.normalise import _CUR
from agent.commercial_terms.numbers import _NUM_RE, NUM, _affirmed, _after, _tail, follower

_CURRENCY_WORDS = r"(?:reais|real|dolar|dolares|euro|euros|libras?|contos?|pilas?|brl|usd|eur|gbp)\b"
_CURRENCY_BEFORE = re.compile(rf"(?:{_CUR}|\b(?:brl|usd|eur|gbp)\b)\s*{NUM}")
_CURRENCY_AFTER = re.compile(rf"{NUM}\s*(?:mil\s*)?(?:{_CUR}|(?:de\s+)?{_CURRENCY_WORDS})")
_MONEY_FORMAT = re.compile(r"(?<![\w.,])\d{1,3}(?:\.\d{3})*,\d{2}(?![\d%])")
_SHORTHAND_AMOUNT = re.compile(rf"{NUM}\s*mil\b")
_BIG_NUMBER = re.compile(r"(?<![\w.,/])(?:\d{1,3}(?:\.\d{3})+|\d{5,})(?:,\d+)?(?![\d/])(?!\s*mil\b)")
_PRICE_CUE = re.compile(
    r"\b(custa\w*|custo|sai|saem|saindo|sairia|sairiam|saia|fica|ficam|ficaria|ficou|ficando|"
    r"esta|estao|ta|tao|valor\w*|preco\w*|investimento|por apenas|por so|partir de|tabela|"
    r"cobr\w+|pag\w+|entrada|sinal|deu|deixo|deixamos|faco|fazemos|faz por|vendo|vendemos|"
    r"casa dos|faixa de|orcamento|volta de|diferenca)\b"
)
_COUNT_CUE = re.compile(
    r"\b(produz\w*|produc\w*|fazem|faz|fazer|capacidade|volume|rend\w*|hamburguer\w*|"
    r"unidades|ciclos|espetos|por dia|por hora|por mes|por turno|diari\w*|mensa\w*)\b"
)


_SAID_AS_PRICE = re.compile(
    r"\b(?:custa\w*|sai|saem|saindo|sairia|fica|ficaria|ficou|faco|fazemos|faz|deixo|deixamos|fecho|"
    r"fechamos|vendo|vendemos|esta|ta)\s+(?:por|a|em|de)?\s*(?:uns|umas|so|apenas|cerca de)?\s*$"
)


def _moneyish(number: str, after: str) -> bool:
    digits = re.sub(r"\D", "", number)
    return len(digits) >= 3 or bool(re.search(r"[.,]", number)) or after.lstrip().startswith("mil")


def _prices(clause: str) -> Iterator[str]:
    for pattern in (_CURRENCY_BEFORE, _CURRENCY_AFTER):
        for m in pattern.finditer(clause):
            yield m.group(0)
    for m in _MONEY_FORMAT.finditer(clause):
        if follower(_after(clause, m.end())) not in ("count", "percent"):
            yield m.group(0)
    count_cue = _COUNT_CUE.search(clause)
    for pattern in (_SHORTHAND_AMOUNT, _BIG_NUMBER):
        for m in pattern.finditer(clause):
            kind = follower(_after(clause, m.end()))
            if kind in ("count", "percent"):
                continue
            counted_before = count_cue is not None and count_cue.start() < m.start()
            if kind == "price" or _PRICE_CUE.search(_tail(clause, m.start())) or not counted_before:
                yield m.group(0)
    for m in _NUM_RE.finditer(clause):
        number, after = m.group(0), _after(clause, m.end())
        kind = follower(after)
        if kind in ("count", "percent"):
            continue
        if _moneyish(number, after):
            cue = _PRICE_CUE.search(_tail(clause, m.start(), 5)) or _tail(clause, m.start(), 1) == "por"
            if kind == "price" or cue:
                yield number
        # "Te faço por 25": right after "faço por", "custa", "sai a", even "25" is a price.
        elif len(number) >= 2 and _SAID_AS_PRICE.search(_tail(clause, m.start(), 4)):
            yield number


# --------------------------------------------------------------------------------------

_PERCENT = re.compile(rf"-?\s*{NUM}\s*%")
_DISCOUNT_CUE = re.compile(
    r"\b(desconto\w*|descontinho|abat\w+|off|cashback|barat\w+|menos|abaixo|tabela|promo\w*|"
    r"reduc\w*|tir[oa]r?|tiramos|vista|pix|boleto|cartao|entrada|sinal|juros|parcel\w*|pagamento|"
    r"pagando|pagar|paga|preco|valor|cupom|oferta|condic\w+|consigo|conseguimos|dou|damos|faco|"
    r"fazemos|libero|liberei|liberamos|aplico|aplicamos|aprovo|garanto|garantimos|ganha\w*|economi\w+)\b"
)
_OFF = re.compile(r"(?<!on/)(?<!on )(?<!on-)\boff\b")
_DISCOUNT_PHRASES = re.compile(
    r"abaixo d[ao] (?:tabela|preco|valor)|preco de (?:custo|fabrica)|preco (?:especial|promocional|camarada)|"
    r"precinho|em promocao|\bbrinde|de cortesia|de graca|\bgratis\b|\bgratuit[oa]s?\b|\bsem custo\b|"
    r"desconto (?:progressivo|especial|exclusivo|a vista|no pix|de fabrica|para pagamento|para quem)|"
    r"frete (?:gratis|gratuito|free|incluso|incluido|por nossa conta|cif|pago)|por nossa conta|"
    r"\b(?:consigo|conseguimos|consegui|dou|damos|faco|fazemos|libero|liberei|liberamos|ofereco|"
    r"oferecemos|temos|tem|rola|garanto|garantimos|aplico|aplicamos|ganha|ganham|vai ter|tera)\s+"
    r"(?:[a-z0-9]+\s+){0,3}?(?:desconto|descontinho|abatimento|condicao especial|preco especial|bonificacao)\b"
)


_FREE_QUOTE = re.compile(r"\borcamento (?:e |eh )?(?:gratis|gratuito|sem custo)")


def _discounts(clause: str) -> Iterator[str]:
    discount_cue = _DISCOUNT_CUE.search(clause) is not None
    for m in _PERCENT.finditer(clause):
        if discount_cue or m.group(0).lstrip().startswith("-"):
            yield m.group(0)
    for m in _OFF.finditer(clause):
        yield m.group(0)
    for m in _DISCOUNT_PHRASES.finditer(clause):
        if _FREE_QUOTE.search(clause[max(0, m.start() - 20) : m.end()]):
            continue  # "o orçamento é gratuito" is no discount
        if _affirmed(clause, m):
            yield m.group(0)


# --------------------------------------------------------------------------------------

_TIMES_X = re.compile(r"(?<![\w.,])(\d{1,2})\s*x(?![\w])")
_NOT_A_PLAN_AFTER = re.compile(
    r"\s*(?:mais|menos|maior|melhor|a producao|o volume|por (?:dia|semana|hora|turno)|ao dia)\b"
)
_DIMENSIONS_AFTER = re.compile(rf"\s*{NUM}\s*(?:x\s*{NUM}\s*)?(?:mm|cm|m|metros?)\b")
_VEZES = re.compile(rf"{NUM}\s*vezes\b")
_PAY_CUE = re.compile(
    r"\b(juros|cartao|boleto|cheque|pix|iguais|mensais|parcel\w*|pagamento|pagar|paga|pague|"
    r"divid\w*|divisao|acrescimo|entrada|credito)\b|\$"
)
_GROWTH = re.compile(r"\b(aument\w*|multiplic\w*|dobr\w*|triplic\w*|produc\w*|rapid\w*)\b")
_PLAN_PATTERNS = re.compile(
    rf"{NUM}\s*(?:parcelas|prestacoes|mensalidades|pagamentos|boletos)\b"
    rf"|\b(?:parcelas?|prestac\w+|mensalidades?) (?:de|no valor de)\s*(?:{_CUR}\s*)?{NUM}"
    rf"|\bparcel\w*\s+(?:[a-z]+\s+){{0,3}}?(?:em|ate)\s+(?:ate\s+)?{NUM}"
    rf"|\b(?:entrada|sinal)\s+(?:de\s+)?(?:{_CUR}\s*)?{NUM}"
    rf"|\bcarencia de\s+{NUM}"
    r"|\bmetade\b.{0,40}\bmetade\b"
    rf"|\b(?:boleto|cheque|pagamento|pagar|paga|vencimento|primeira(?: parcela)?)\s+(?:[a-z]+\s+){{0,2}}?"
    rf"(?:para|pra|em|com|de|a)\s+{NUM}\s*(?:dias|dd|ddl)\b"
)
_PLAN_PHRASES = re.compile(
    r"\bsem (?:juros|acrescimo)\b|\b(?:da|de) (?:pra|para) (?:parcelar|dividir|financiar)\b"
    r"|\b(?:pode|podemos|consigo|conseguimos|posso) (?:parcelar|dividir|financiar)\b"
    r"|\b(?:parcelamos|financiamos|dividimos)\b"
    r"|\baceitamos\s+(?:[a-z]+[, ]+){0,3}?(?:pix|boleto|cartao|cheque)\b"
    r"|\b(?:bndes|finame)\b"
)
_PAYMENT_TERM = re.compile(rf"{NUM}\s*(?:dias|dd|ddl)\b")
_INSTALMENT_SERIES = re.compile(r"(?<![\d/.,])(\d{1,3}(?:/\d{1,3})+)(?![\d/])(\s*(?:dias|dd|ddl)\b)?")


def _plans(clause: str) -> Iterator[str]:
    for m in _TIMES_X.finditer(clause):
        after = _after(clause, m.end())
        if _NOT_A_PLAN_AFTER.match(after) or _DIMENSIONS_AFTER.match(after):
            continue
        yield m.group(0)
    pay_cue = _PAY_CUE.search(clause) is not None
    growth = _GROWTH.search(clause) is not None
    for m in _VEZES.finditer(clause):
        after = _after(clause, m.end())
        if _NOT_A_PLAN_AFTER.match(after):
            continue
        prefixed = re.search(r"\b(?:em|ate)\s*$", clause[max(0, m.start() - 10) : m.start()])
        if pay_cue or (prefixed and not growth):
            yield m.group(0)
    for m in _PLAN_PATTERNS.finditer(clause):
        yield m.group(0)
    for m in _PLAN_PHRASES.finditer(clause):
        if _affirmed(clause, m):
            yield m.group(0)
    if pay_cue:  # "boleto para 28 dias", "pago em 30, 60 e 90 dias"
        for m in _PAYMENT_TERM.finditer(clause):
            yield m.group(0)
    for m in _INSTALMENT_SERIES.finditer(clause):
        parts = [int(p) for p in m.group(1).split("/")]
        ascending = all(a < b for a, b in zip(parts, parts[1:], strict=False))
        is_date = len(parts) <= 3 and parts[0] <= 31 and parts[1] <= 12
        if ascending and max(parts) <= 180 and not is_date and (len(parts) >= 3 or m.group(2)):
            yield m.group(0)


# --------------------------------------------------------------------------------------

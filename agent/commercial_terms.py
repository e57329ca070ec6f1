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
import unicodedata
from collections.abc import Callable, Iterator

from text_to_num import alpha2digit

from core.lead import fold as fold_accents

# --------------------------------------------------------------------------------------
# One form for every way of writing the same thing
# --------------------------------------------------------------------------------------

# Every currency sign of the Basic Multilingual Plane (R$, US$, €, £, ¥, ₹...); NFKC has
# already turned the fullwidth "＄" into "$".
_CURRENCY_SYMBOLS = "".join(chr(code) for code in range(0x10000) if unicodedata.category(chr(code)) == "Sc")
_CUR = f"[{re.escape(_CURRENCY_SYMBOLS)}]"

# "SE 3000" and "FB-300" are model names, not 3.000 or 300 of anything.
_MODEL_CODE = re.compile(
    r"\b(?!(?:BRL|USD|EUR|GBP|CEP|CPF|EM|DE|DO|DA|DOS|DAS|POR|ATE|COM|SEM|SAO|PARA|PRA|OU|AS|OS|NO|NA|NOS|NAS|"
    r"SAI|FICA|DIA|SO|MAIS|UNS|CADA|TEM|SAEM|UMAS|APOS)\b)([A-Z]{2,4})[ -](\d{3,5})\b(?![.,]\d)"
)
# text2num reads accented words only; a model sometimes drops the accents.
_UNACCENTED_NUMBER_WORDS = {
    "tres": "três",
    "milhao": "milhão",
    "milhoes": "milhões",
    "bilhao": "bilhão",
    "bilhoes": "bilhões",
    "virgula": "vírgula",
}
_UNACCENTED_RE = re.compile(r"\b(" + "|".join(_UNACCENTED_NUMBER_WORDS) + r")\b")
# "45 mil", "1,2 milhão", "30k": one shorthand token, kept away from text2num, which would
# turn "45 mil" into "45 1000".
_SHORTHAND = re.compile(r"(\d)\s*(?:mil|milhão|milhões|mi|bi|bilhão|bilhões|k)\b")
_PERCENT_WORDS = re.compile(r"\bpor\s*cento\b")
_WEEKDAY_NAMES = (
    r"(?:segunda|terça|terca|quarta|quinta|sexta|sábado|sabado|domingo|seg|ter|qua|qui|sex|sáb|sab|dom)"
)
# "de segunda a sexta" is when the team works, not a delivery date.
_WEEKDAY_RANGE = re.compile(
    rf"\b{_WEEKDAY_NAMES}(?:-feira)?s?\s+(?:a|à|até|ate|e)\s+{_WEEKDAY_NAMES}(?:-feira)?s?\b"
)
_WEEKEND_HOURS = re.compile(r"\baos\s+(?:sábados|sabados|domingos|feriados)\b")
# A bare "quinta" after "na"/"até" is Thursday; text2num would read it as "5ª".
_BARE_WEEKDAY = re.compile(
    r"\b(na|nesta|nessa|próxima|proxima|até|ate|dia|pra|para|toda|desde|já na|ja na)\s+"
    r"(segunda|terça|terca|quarta|quinta|sexta)\b(?!-)"
)
_ORDINAL = re.compile(r"(?<!\d)\d+[ªº]")

# Contact details and identifiers: digits that are never a price or a deadline.
_IDENTIFIERS = re.compile(
    r"(?<!\S)[^\s@]+@\S+|https?://\S+|www\.\S+"
    r"|\+?55\s*\(?\d{2}\)?\s*9?\s?\d{4}[-\s.]?\d{4}"
    r"|\(\d{2}\)\s*9?\s?\d{4}[-\s.]?\d{4}"
    r"|\b\d{2}\s9?\d{4}-\d{4}\b|\b9?\d{4}-\d{4}\b"
    r"|\b0800[\s-]?\d{3}[\s-]?\d{4}\b|\b0300[\s-]?\d{3}[\s-]?\d{4}\b"
    r"|\b\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}\b|\b\d{3}\.\d{3}\.\d{3}-\d{2}\b"
    r"|\bcep:?\s*\d{5}-?\d{3}\b|\b\d{5}-\d{3}\b"
)
# Clock times and opening hours ("das 8h às 18h", "às 14h30", "08:00-18:00").
_CLOCK = r"\d{1,2}(?::\d{2}|\s?h\s?\d{0,2}|\s?hs\b|\s?horas\b)?"
_CLOCK_MARKED = r"\d{1,2}(?::\d{2}|\s?h\s?\d{0,2}|\s?hs\b|\s?horas\b)"
_HOURS = re.compile(
    rf"\b(?:das|a partir das|ate as|as)\s+{_CLOCK}\s*(?:as|a|ate|-)\s*{_CLOCK}"
    rf"|\bde\s+{_CLOCK_MARKED}\s*(?:as|a|ate|-)\s*{_CLOCK_MARKED}"
    rf"|\b(?:a partir das|ate as|as|das)\s+{_CLOCK_MARKED}"
    rf"|\b\d{{1,2}}:\d{{2}}(?:\s*-\s*\d{{1,2}}:\d{{2}})?"
    r"|\bhorario (?:comercial|de atendimento)"
)
_DIGIT_LETTER = re.compile(r"(\d)([a-z])")


def normalise(text: str) -> str:
    """The reply in one form: lower case, no accents, digits for numbers, no identifiers."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = _MODEL_CODE.sub(r"\1\2", text)
    text = text.lower()
    text = _IDENTIFIERS.sub(" ", text)
    text = _UNACCENTED_RE.sub(lambda m: _UNACCENTED_NUMBER_WORDS[m.group(1)], text)
    text = _PERCENT_WORDS.sub("%", text)
    text = _SHORTHAND.sub(r"\1 kmil", text)
    text = _WEEKDAY_RANGE.sub(" horario ", text)
    text = _WEEKEND_HOURS.sub(" horario ", text)
    text = _BARE_WEEKDAY.sub(r"\1 \2-feira", text)
    try:
        text = alpha2digit(text, "pt", threshold=0)
    except ValueError:  # an unusual sequence of number words: read the text as written
        pass
    text = _ORDINAL.sub(" ordinal ", text)
    text = fold_accents(text).replace("kmil", "mil")
    text = _HOURS.sub(" horario ", text)
    text = _DIGIT_LETTER.sub(r"\1 \2", text)
    return re.sub(r"[ \t\r\f\v]+", " ", text).strip()


# --------------------------------------------------------------------------------------
# Pieces the rules are made of
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------

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
# Discounts
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
# Payment plans
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
# Deadlines
# --------------------------------------------------------------------------------------

_MONTHS = r"(?:janeiro|fevereiro|marco|abril|maio|junho|julho|agosto|setembro|outubro|novembro|dezembro)"
_TIME_EXPRESSIONS = re.compile(
    rf"(?:{NUM}|\b(?:uns|umas|alguns|algumas|poucos|poucas|meia))(?:\s*(?:a|e|ou|-)\s*{NUM})?(?:\s*e\s+poucos)?"
    r"\s*(?:dias?|semanas?|meses|mes|horas?|h|hrs?|quinzenas?|dd)\b(?:\s*(?:uteis|corridos))?"
    r"|\b(?:amanha|depois de amanha|hoje|mesmo dia|semana que vem|proxima semana|mes que vem|proximo mes|"
    r"ano que vem|(?:esta|essa|nesta|nessa) semana|(?:este|esse|neste|nesse) mes|imediat\w+|quinzena)\b"
    rf"|\b(?:fim|final|inicio|comeco|meados) d[oae]s? (?:mes|semana|ano|{_MONTHS})\b"
    r"|\b(?:segunda|terca|quarta|quinta|sexta)-feira\b|\b(?:sabado|domingo)\b"
    rf"|\b(?:3[01]|[12]\d|0?[1-9])/(?:1[0-2]|0?[1-9])(?:/\d{{2,4}})?(?![\d/])"
    rf"|\bdia {NUM}|{NUM} de {_MONTHS}\b"
    rf"|\b(?:em|ate|para|pra|antes de|depois de|a partir de) {_MONTHS}\b"
    r"|\b(?:antes|depois) d[oa] (?:natal|carnaval|pascoa|ano novo|feriado)\b|\bate o (?:natal|carnaval|feriado)\b"
)
_DELIVERY = re.compile(
    r"\b(entreg\w*|prazo\w*|pront\w*|despach\w*|embarc\w*|fabric(?:amos|acao|ar|ada|ado|ando)|"
    r"instal\w*|montag\w*|frete|sai da fabrica|em maos|(?:esta|ta|estara|vai estar|chega|chegar) ai|"
    r"(?:esta|estara|vai estar|estarao) (?:funcionando|rodando|operando|instalad[ao])|"
    r"(?:esta|estara|estarao|ta|vai estar|chega|chegam|chegara) (?:na|no|em) (?:sua|seu|suas|seus))\b"
)
# Weak: "chega", "envia" are deliveries, unless it is the quote or a call that arrives.
_DELIVERY_WEAK = re.compile(
    r"\b(envi(?:o|a|amos|ar|ado|ada|aremos)|mand(?:amos|o|ar|aremos)|"
    r"cheg(?:a|am|ara|arao|aria|ue|uem|ando)|receb(?:e|em|era|erao|ido|ida|er)|"
    r"sai|saem|saira|sair|disponiv\w*|liberad[oa]|leva|levam)\b"
)
_REACHES = re.compile(r"cheg\w* a (?:uns |umas |cerca de |ate )?\d")
_ABOUT_CONTACT = re.compile(
    r"\b(orcamento|proposta|retorno|contato|resposta|mensagem|catalogo|material|video|e-?mail|"
    r"ligacao|consultor|especialista|vendedor|time|equipe|engenharia)\b"
)
_CONTACT = re.compile(
    r"\b(chama\w*|lig\w+|retorn\w*|fal\w+|respond\w*|contat\w*|atend\w*|volt\w*|abre|abrimos)\b"
)
# The lead's own need, said back to them, is not a promise ...
_ECHO = re.compile(
    r"\b(?:anotei|anotado|registrei|entendi|entendo)\b"
    r"|\bvoces? (?:\w+ )?(?:precis\w+|quer\w*|gostari\w+|pretend\w+|planej\w+|mencion\w+|coment\w+|diss\w+|"
    r"fal\w+|pedi\w+|pergunt\w+)\b|\bseu prazo\b|\bsua urgencia\b"
)
_ECHO_QUESTION = re.compile(r"\b(precis\w+|seria|seriam|quer\w*)\b")
_DEFERRED_PROMISE = re.compile(
    r"\bnao (?:consigo|posso|conseguimos|podemos|tenho como|temos como|da para|da pra) (?:\w+ ){0,2}?"
    r"(?:garantir|prometer|confirmar|informar|passar|dizer|afirmar)\b"
)
# ... unless the reply commits to it.
_COMMIT = re.compile(
    r"\b(entregamos|entrego|consigo|conseguimos|garanto|garantimos|despachamos|despacho|enviamos|"
    r"mandamos|fabricamos|instalamos|da tempo|cumprimos|chega|chegam|fica pront[oa]s?|ficam pront[oa]s)\b"
)
_READY_NOW = re.compile(r"\bpront[oa]s?[- ](?:para |pra )?entrega\b|\bentrega imediata\b|\bem estoque\b")


def _committed(text: str) -> bool:
    return any(
        not re.search(r"\bnao\s*$", text[max(0, m.start() - 10) : m.start()]) for m in _COMMIT.finditer(text)
    )


def _deadlines(clauses: list[str]) -> Iterator[str]:
    echoed_time = False
    previous = ""
    for clause in clauses:
        asked, previous = previous, clause
        question = clause.rstrip().endswith("?")
        echo = bool(_ECHO.search(clause) or (question and _ECHO_QUESTION.search(clause)))
        if echo and not _committed(clause):
            echoed_time = echoed_time or bool(_TIME_EXPRESSIONS.search(clause))
            continue
        if _DEFERRED_PROMISE.search(clause):
            continue
        for m in _READY_NOW.finditer(clause):
            if _affirmed(clause, m):
                yield m.group(0)
        times = list(_TIME_EXPRESSIONS.finditer(clause))
        if not times:
            continue
        if asked.endswith("?") and _DELIVERY.search(asked) and not _DELIVERY.search(clause):
            clause = f"{asked} {clause}"  # "A entrega? Em 15 dias!": the answer to its own question
            times = list(_TIME_EXPRESSIONS.finditer(clause))
        about_contact = bool(_ABOUT_CONTACT.search(clause))
        deliveries = [m.start() for m in _DELIVERY.finditer(clause)]
        contacts = [m.start() for m in _CONTACT.finditer(clause)]
        for m in _DELIVERY_WEAK.finditer(clause):
            if _REACHES.match(clause, m.start()):  # "chega a 700 por hora": a capacity
                continue
            (contacts if about_contact else deliveries).append(m.start())
        for t in times:
            near_delivery = min((abs(p - t.start()) for p in deliveries), default=None)
            near_contact = min((abs(p - t.start()) for p in contacts), default=None)
            if near_delivery is None or near_delivery > 80:
                continue
            if near_contact is None or near_delivery <= near_contact:
                yield t.group(0)
    if echoed_time and any(_committed(c) for c in clauses):
        yield "prazo confirmado"


# --------------------------------------------------------------------------------------

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

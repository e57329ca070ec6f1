"""Delivery deadlines: a duration next to "entrega"/"pronta" that the reply commits to,
not the lead's own words repeated back."""

from __future__ import annotations

import re
from collections.abc import Iterator

from agent.commercial_terms.numbers import NUM, _affirmed

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
        text = clause
        if asked.endswith("?") and _DELIVERY.search(asked) and not _DELIVERY.search(clause):
            text = f"{asked} {clause}"  # "A entrega? Em 15 dias!": the answer to its own question
            times = list(_TIME_EXPRESSIONS.finditer(text))
        about_contact = bool(_ABOUT_CONTACT.search(text))
        deliveries = [m.start() for m in _DELIVERY.finditer(text)]
        contacts = [m.start() for m in _CONTACT.finditer(text)]
        for m in _DELIVERY_WEAK.finditer(text):
            if _REACHES.match(text, m.start()):  # "chega a 700 por hora": a capacity
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

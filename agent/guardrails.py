"""Rules enforced in code, where code can enforce them.

The prompt asks the model to behave; these checks make sure it did, whatever a lead
wrote to it ("ignore your instructions", "give me 90% off"): an opt-out is honoured
without asking the model, and an answer that names a price, a discount, a payment
condition or a delivery deadline never reaches the lead.
"""

from __future__ import annotations

import re

from agent.lead import fold as fold_accents


def fold(text: str) -> str:
    """`agent.lead.fold` (case and accents), plus punctuation to spaces, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", fold_accents(text.casefold())).split())


# A message that is only one of these words is an opt-out ("SAIR", "Parar!", "stop").
_OPT_OUT_WORDS = {
    "sair", "parar", "pare", "para", "stop", "cancelar", "descadastrar", "unsubscribe",
    "remover", "chega", "basta",
}
# Phrases that are an opt-out wherever they appear in the message.
_OPT_OUT_PHRASES = (
    "nao quero mais receber",
    "parar de receber",
    "sair da lista",
    "me remove da lista",
    "me remova",
    "remove meu numero",
    "pare de mandar",
    "parem de mandar",
    "para de mandar",
    "nao quero receber mais",
    "nao quero mais mensagens",
    "nao quero receber mensagens",
    "nao me mande mais",
    "nao me mandem mais",
    "nao mande mais mensagem",
    "nao mandem mais mensagem",
    "nao me envie mais",
    "nao me enviem mais",
    "para de me mandar",
    "pare de me mandar",
    "parem de me mandar",
    "pare de enviar",
    "parem de enviar",
    "para de enviar",
    "me tira da lista",
    "me tire da lista",
    "me remova da lista",
    "remova meu numero",
    "remover meu numero",
    "tirar meu numero",
    "descadastrar meu numero",
    "quero sair da lista",
    "quero me descadastrar",
    "nao entre mais em contato",
    "nao me contate mais",
    "stop messages",
)


# Words right after an opt-out phrase that show it is about something else.
_NOT_ABOUT_MESSAGES = {
    "ligacao", "ligacoes", "ligarem", "telefonema", "email", "emails", "visita", "visitas",
    "boleto", "catalogo", "fisico", "carta", "espera",
}


def is_opt_out(text: str | None) -> bool:
    if not text:
        return False
    folded = fold(text)
    if not folded:
        return False
    if folded in _OPT_OUT_WORDS:
        return True
    words = folded.split()
    # "Sair por favor", "STOP STOP" — but not "Para já!" (= right away: an urgent lead).
    filler = {"por", "favor", "pf", "pfv"} | ({"agora", "ja"} if words[0] != "para" else set())
    if len(words) <= 3 and words[0] in _OPT_OUT_WORDS and all(w in _OPT_OUT_WORDS | filler for w in words):
        return True
    for phrase in _OPT_OUT_PHRASES:
        index = folded.find(phrase)
        if index < 0:
            continue
        after = folded[index + len(phrase) :].split()
        # "não quero mais receber ligação" / "sair da lista de espera" are not opt-outs.
        if any(word in _NOT_ABOUT_MESSAGES for word in after[:2]):
            continue
        return True
    return False


_COMMERCIAL_PROMISES = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"r\$\s*\d",                                              # R$ 12.000
        r"\b\d[\d.,]*\s*(mil\s+)?(reais|real)\b",                 # 12 mil reais
        r"\b\d[\d.,]*\s*k\s*(reais)?\b(?=.*(pre[cç]o|valor|custa))",  # 12k ... preço
        r"\b\d{1,3}\s*(%|por\s*cento)\s*(de\s+)?(desconto|off|abatimento)",  # 10% / 10 por cento
        r"\bpor\s+cento\s+de\s+(desconto|abatimento)",            # noventa por cento de desconto
        r"\bdesconto\s+de\s+\d",                                  # desconto de 10
        r"\b\d{1,2}\s*(x|vezes)\s*(sem\s+juros|de\s+r?\$?\s*\d)",  # 10x / 10 vezes sem juros
        r"\b(em|parcelad[oa]s?\s+em|parcelamos\s+em)\s+(at[eé]\s+)?\d{1,2}\s*(x|vezes)\b",  # em 10 vezes
        r"\b(custa|custam|sai|saem|sairia|ficaria|fica\s+por|valor|pre[cç]o|investimento)\b"
        r"[^.!?\n]{0,25}?\b\d[\d.,]*\s*(mil|k)\b",                  # sai por 12 mil / preço: 12k
        r"\b(custa|custam|sai|saem|sairia|ficaria|fica\s+por|valor|pre[cç]o|investimento)\b"
        r"[^.!?\n]{0,25}?\b\d{1,3}(\.\d{3})+",                        # sai por 12.000
        r"\b\d{1,3}(\.\d{3})+,\d{2}\b",                             # 12.000,00
        r"\b\d[\d.,]*\s*(mil|k)?\s*(reais\s+)?(à|a)\s+vista\b",        # 12 mil à vista
        r"\b(entrega|entregamos|prazo|chega|fica pronta?)\b[^.!?\n]{0,40}?\b\d+\s*(dias|semanas|meses)\b",
        r"\b\d+\s*(dias|semanas)\s*(uteis|úteis)\b",              # 15 dias úteis
        r"\bfrete\s+(gr[aá]tis|gratuito)\b",
    )
]


def commercial_promise(reply: str) -> str | None:
    """The first price/discount/deadline the reply states, or None."""
    for pattern in _COMMERCIAL_PROMISES:
        match = pattern.search(reply)
        if match:
            return match.group(0)
    return None


MAX_QUESTIONS = 2


def limit_questions(reply: str, max_questions: int = MAX_QUESTIONS) -> str:
    """Keep the reply up to its second question: a lead answers two questions, not five.

    Everything after the last allowed "?" is dropped, so the message still ends on the
    question the lead should answer.
    """
    count = 0
    for index, char in enumerate(reply):
        if char == "?":
            count += 1
            if count == max_questions:
                rest = reply[index + 1 :]
                if "?" in rest:
                    return reply[: index + 1].rstrip()
                return reply
    return reply

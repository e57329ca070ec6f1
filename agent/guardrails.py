"""Rules enforced in code, where code can enforce them.

The prompt asks the model to behave; these checks make sure it did, whatever a lead
wrote to it ("ignore your instructions", "give me 90% off"): an opt-out is honoured
without asking the model, an answer that names a price, a discount, a payment
condition or a delivery deadline (`agent.commercial_terms`) or repeats the instructions
(`agent.prompt_echo`) never reaches the lead, and a lead is asked two questions at most.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from agent.commercial_terms import commercial_promise
from agent.prompt_echo import repeated_instructions
from agent.prompts import PromptBundle
from core.lead_fields import fold as fold_accents

__all__ = [
    "MAX_QUESTIONS",
    "Screened",
    "commercial_promise",
    "fold",
    "is_opt_out",
    "limit_questions",
    "screen_reply",
]


def fold(text: str) -> str:
    """`agent.lead.fold` (case and accents), plus punctuation to spaces, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", fold_accents(text.casefold())).split())


# A message that is only one of these words is an opt-out ("SAIR", "Parar!", "stop").
_OPT_OUT_WORDS = {
    "sair",
    "parar",
    "pare",
    "para",
    "stop",
    "cancelar",
    "descadastrar",
    "unsubscribe",
    "remover",
    "chega",
    "basta",
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
    "ligacao",
    "ligacoes",
    "ligarem",
    "telefonema",
    "email",
    "emails",
    "visita",
    "visitas",
    "boleto",
    "catalogo",
    "fisico",
    "carta",
    "espera",
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


@dataclass(frozen=True, slots=True)
class Screened:
    """A reply that must not reach the lead: which rule caught it and what goes instead."""

    rule: str  # "prompt_echo" | "commercial_promise"
    matched: str  # for the log: the figure found, or how much of the instructions
    replacement: str


def screen_reply(reply: str, prompts: PromptBundle) -> Screened | None:
    """The rule the reply breaks, or None when it may be sent as written.

    Repeating the instructions comes first: a dumped prompt also names "90% de desconto",
    and the lead should hear that the rules are private, not a line about prices.
    """
    repeated = repeated_instructions(reply, prompts)
    if repeated:
        replacement = prompts.messages.get("instructions_guard") or prompts.message("commercial_guard")
        return Screened("prompt_echo", f"{repeated} words of the instructions", replacement)
    promise = commercial_promise(reply)
    if promise is not None:
        return Screened("commercial_promise", promise, prompts.message("commercial_guard"))
    return None


MAX_QUESTIONS = 2


def limit_questions(reply: str, max_questions: int = MAX_QUESTIONS) -> str:
    """Keep the reply up to its second question: a lead answers two questions, not five.

    Everything after the last allowed "?" is dropped, so the message still ends on the
    question the lead should answer.
    """
    count = 0
    for index, char in enumerate(reply):
        count += question_marks(char)
        if count >= max_questions:
            rest = reply[index + 1 :]
            if any(question_marks(c) for c in rest):
                return reply[: index + 1].rstrip()
            return reply
    return reply


def question_marks(text: str) -> int:
    """Question marks however they are written (fullwidth "？", small "﹖", "⁇" is two): NFKC knows."""
    return unicodedata.normalize("NFKC", text).count("?")

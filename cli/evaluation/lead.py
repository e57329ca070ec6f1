"""The simulated lead: a model plays the persona, one WhatsApp message per call.

It sees the conversation from the lead's side (the bot's messages as the other party),
and says when the lead would stop talking (`end`), so a conversation ends the way a
real one does rather than always at the turn limit. One structured call per lead turn,
on the same OpenAI client (and the same aiohttp pool and retry policy) as the bot.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.llm import LLMClient
from cli.evaluation.personas import Persona
from cli.evaluation.transcript import Tokens, Transcript, tokens_of

# Low enough that a baseline and the next run meet similar leads, not zero: a lead who
# always says the same thing would grade one conversation, not a persona.
LEAD_TEMPERATURE = 0.3
LEAD_MAX_TOKENS = 400
NO_REPLY = "(o assistente não respondeu)"
START = "(A conversa ainda não começou. Escreva a sua primeira mensagem para a empresa.)"

_VOICE = {
    "never": "Você escreve por texto (voice_note sempre false).",
    "always": (
        "Você só manda áudio (voice_note sempre true): escreva a fala como a transcrição de um "
        "áudio, oral, com hesitações e pouca pontuação."
    ),
    "sometimes": (
        "Às vezes você manda áudio em vez de texto: marque voice_note=true quando esta mensagem for "
        "um áudio e escreva a fala como a transcrição dele."
    ),
}


class LeadMove(BaseModel):
    """The lead's next message, or the end of the conversation."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="A próxima mensagem do lead, como ele escreveria; vazia se end=true.")
    voice_note: bool = Field(description="true se esta mensagem é um áudio (a fala transcrita).")
    end: bool = Field(
        description="true quando o lead não escreveria mais nada: objetivo atingido, atendimento passado "
        "a uma pessoa e nada mais a dizer, ou desistência."
    )


def lead_system_prompt(persona: Persona, company: str) -> str:
    facts = "\n".join(f"- {fact}" for fact in persona.facts) or "- (nada além do que está acima)"
    return (
        f"Você está interpretando um lead (um possível cliente) que conversa pelo WhatsApp com o "
        f"assistente comercial da {company}. Você NÃO é um assistente: escreva só o que esse lead "
        f"escreveria, na primeira pessoa.\n\n"
        f"Quem você é e como escreve:\n{persona.description.strip()}\n\n"
        f"O que você quer nesta conversa:\n{persona.goal.strip()}\n\n"
        f"O que você sabe (revele cada coisa só como indicado):\n{facts}\n\n"
        "Regras:\n"
        "- Uma mensagem por vez, do tamanho de uma mensagem de WhatsApp, em português do Brasil, "
        "no seu jeito de escrever.\n"
        "- Responda ao que o assistente disse; não invente fatos importantes além dos listados. Se "
        "perguntarem algo que não está aqui, responda de forma plausível e coerente com quem você é.\n"
        "- Marque end=true (com message vazia) quando você pararia de escrever: conseguiu o que "
        "queria, foi passado para uma pessoa e não há mais o que dizer, ou desistiu.\n"
        f"- {_VOICE[persona.voice_notes]}\n"
        "- Nunca diga que isto é uma simulação ou um teste."
    )


def lead_messages(persona: Persona, company: str, transcript: Transcript) -> list[dict[str, Any]]:
    """The talk from the lead's side: their own messages are the assistant role here."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": lead_system_prompt(persona, company)}]
    if not transcript.turns:
        messages.append({"role": "user", "content": START})
    for turn in transcript.turns:
        messages.append({"role": "assistant", "content": turn.lead})
        messages.append({"role": "user", "content": turn.reply.strip() or NO_REPLY})
    return messages


class SimulatedLead:
    def __init__(self, llm: LLMClient, persona: Persona, company: str) -> None:
        self.llm = llm
        self.persona = persona
        self.company = company

    async def next_move(self, transcript: Transcript) -> tuple[LeadMove, Tokens]:
        """The persona's opening line is said as written (no call); then the model speaks."""
        if not transcript.turns and self.persona.opening:
            voice = self.persona.voice_notes == "always"
            return LeadMove(message=self.persona.opening, voice_note=voice, end=False), Tokens()
        messages = lead_messages(self.persona, self.company, transcript)
        async for attempt in self.llm.retry_policy():
            with attempt:
                move, usage = await self.llm.structured(
                    messages, LeadMove, temperature=LEAD_TEMPERATURE, max_completion_tokens=LEAD_MAX_TOKENS
                )
        if self.persona.voice_notes != "sometimes":
            move = move.model_copy(update={"voice_note": self.persona.voice_notes == "always"})
        if not move.message.strip():
            move = move.model_copy(update={"end": True})
        return move, tokens_of(usage)

"""The tools the model may call, their argument schemas, and their execution.

The model asks for tools inside its one structured answer (`tool_calls`), so a turn
still costs one completion. The tools node validates each call and turns it into an
effect the runtime commits atomically with the turn; a call that fails validation is
reported back to the model (one repair call) and logged, never crashing the turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.logging import get_logger
from core.records import Handoff, QuoteRequest, TechnicalQuestion

log = get_logger(__name__)

# What one turn may create for the team at most. A lead (or a model going in circles)
# asking for fifty quotes in one message would open fifty CRM deals and fifty tasks;
# beyond the cap a call is dropped and logged, not sent back to the model to argue about.
MAX_QUOTES_PER_TURN = 3
MAX_TECHNICAL_QUESTIONS_PER_TURN = 3

HandoffReason = Literal["pediu_humano", "lead_quente", "nao_consigo_ajudar", "outro"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The schema below is sent, and billed, on every call: descriptions say only what the
# field's name and the system prompt's "Ações" section (when to call each tool, what to
# tell the lead) do not. The tools are told apart by `tool`; the classes carry no
# docstring because pydantic would send it as the tool's description.


class RequestQuote(_Strict):
    tool: Literal["request_quote"]
    products: list[str] = Field(description="Como o lead falou (ex.: FB300).")
    quantity: str | None
    summary: str = Field(description="Para o vendedor: necessidade, volume, urgência, cidade/UF.")


class RegisterTechnicalQuestion(_Strict):
    tool: Literal["register_technical_question"]
    question: str = Field(description="Com as palavras do lead.")
    context: str | None = Field(description="Para o engenheiro.")


class HandoffToHuman(_Strict):
    tool: Literal["handoff_to_human"]
    reason: HandoffReason
    summary: str = Field(description="Para o vendedor: o lead e o que quer agora.")


class OptOut(_Strict):
    tool: Literal["opt_out"]
    confirmed: bool = Field(description="true se o lead pediu claramente para sair.")


# The meeting tools: the note that offers the numbered times says when to call which
# (prompts/meetings.toml, options_note and existing_note).
class BookMeeting(_Strict):
    tool: Literal["book_meeting"]
    option: int


class RescheduleMeeting(_Strict):
    tool: Literal["reschedule_meeting"]
    option: int


class CancelMeeting(_Strict):
    tool: Literal["cancel_meeting"]
    confirmed: bool = Field(description="true se o lead pediu claramente para desmarcar.")


# The tools of any turn, and those that only make sense when the turn carries meeting
# times (the schema sent without them is 131 tokens shorter: agent/graph.py).
LeadToolCall = RequestQuote | RegisterTechnicalQuestion | HandoffToHuman | OptOut
ToolCall = LeadToolCall | BookMeeting | RescheduleMeeting | CancelMeeting
TOOL_NAMES = (
    "request_quote",
    "register_technical_question",
    "handoff_to_human",
    "opt_out",
    "book_meeting",
    "reschedule_meeting",
    "cancel_meeting",
)


class ToolError(ValueError):
    """A call the model made that cannot be carried out as asked."""


@dataclass
class ToolEffects:
    """What the tools decided, committed atomically with the turn."""

    quotes: list[QuoteRequest] = field(default_factory=list)
    technical_questions: list[TechnicalQuestion] = field(default_factory=list)
    handoff: Handoff | None = None
    opt_out: bool = False
    # The option the lead chose among the meeting times given this turn (booked by the
    # runtime before the turn commits).
    meeting_option: int | None = None
    reschedule_option: int | None = None
    cancel_meeting: bool = False
    called: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def apply_tool(call: ToolCall, effects: ToolEffects) -> None:
    """Validate one call and record its effect; raise ToolError with a reason the model can act on."""
    if isinstance(call, RequestQuote):
        products = [p.strip() for p in call.products if p and p.strip()]
        if not products:
            raise ToolError("request_quote precisa de ao menos um produto de interesse")
        summary = _text(call.summary)
        if summary is None:
            raise ToolError("request_quote precisa de um resumo para o vendedor")
        effects.quotes.append(QuoteRequest(products=products, quantity=_text(call.quantity), summary=summary))
    elif isinstance(call, RegisterTechnicalQuestion):
        question = _text(call.question)
        if question is None:
            raise ToolError("register_technical_question precisa da pergunta do lead")
        effects.technical_questions.append(TechnicalQuestion(question=question, context=_text(call.context)))
    elif isinstance(call, HandoffToHuman):
        summary = _text(call.summary)
        if summary is None:
            raise ToolError("handoff_to_human precisa de um resumo para o vendedor")
        if effects.handoff is None:
            effects.handoff = Handoff(reason=call.reason, summary=summary)
    elif isinstance(call, OptOut):
        if call.confirmed:
            effects.opt_out = True
    elif isinstance(call, (BookMeeting, RescheduleMeeting, CancelMeeting)):
        _apply_meeting(call, effects)
    else:  # pragma: no cover - the union is closed
        raise ToolError(f"ferramenta desconhecida: {call!r}")
    effects.called.append(call.tool)


def _apply_meeting(call: BookMeeting | RescheduleMeeting | CancelMeeting, effects: ToolEffects) -> None:
    """Meetings: the first choice of the turn counts (the runtime books or moves it)."""
    if isinstance(call, CancelMeeting):
        effects.cancel_meeting = effects.cancel_meeting or call.confirmed
        return
    if call.option < 1:
        raise ToolError(f"{call.tool} precisa do número de uma das opções oferecidas (1, 2, 3...)")
    if isinstance(call, BookMeeting):
        effects.meeting_option = effects.meeting_option or call.option
    else:
        effects.reschedule_option = effects.reschedule_option or call.option


def _over_cap(call: ToolCall, effects: ToolEffects) -> bool:
    if isinstance(call, RequestQuote):
        return len(effects.quotes) >= MAX_QUOTES_PER_TURN
    if isinstance(call, RegisterTechnicalQuestion):
        return len(effects.technical_questions) >= MAX_TECHNICAL_QUESTIONS_PER_TURN
    return False


def run_tools(calls: Sequence[ToolCall]) -> ToolEffects:
    effects = ToolEffects()
    dropped: dict[str, int] = {}
    for call in calls:
        if _over_cap(call, effects):
            dropped[call.tool] = dropped.get(call.tool, 0) + 1
            continue
        try:
            apply_tool(call, effects)
        except ToolError as exc:
            effects.failures.append(f"{call.tool}: {exc}")
    if dropped:
        log.warning("tool_calls_over_cap", dropped=dropped)
    return effects

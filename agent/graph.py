"""The SDR turn as a LangGraph graph: think (perceive, model, tools) -> decide (qualify, guard).

One text turn costs exactly one chat completion: the model returns the reply, the lead
update, the tools it wants and a rolling summary together as one structured object.
Scoring and the commercial rules are deterministic code. A second call happens only
when a tool call the model made is invalid (it is told why and answers again).
The graph is compiled once per agent (once per process) with the process-wide
dependencies bound; the turn is its only input, so it holds no request state.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, TypedDict, TypeVar

import openai
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict, Field

from agent.billing import format_tokens
from agent.budget import warm as warm_token_counter
from agent.guardrails import limit_questions, screen_reply
from agent.knowledge.search import KnowledgeSearch, turn_query
from agent.llm import LLMClient, LLMTruncated, Usage
from agent.prompts import MAX_SUMMARY_CHARS, PromptBundle
from agent.request import build_messages, build_prompt
from agent.scoring import ScoreResult, ScoringRules, score_lead
from agent.tools import LeadToolCall, ToolCall, ToolEffects, run_tools
from core.lead import LeadProfile, LeadUpdate, describe_lead, field_label, merge_lead
from core.logging import get_logger
from core.models import InboundMessage, MessageKind
from core.records import Handoff, StoredMessage

T = TypeVar("T")

# The defaults of LEAD_MESSAGE_MAX_CHARS and PROMPT_MAX_TOKENS (core/settings.py says the
# same; tests/agent/test_graph_rules.py holds the two together).
DEFAULT_LEAD_MESSAGE_MAX_CHARS = 4000
DEFAULT_PROMPT_MAX_TOKENS = 12000
# Tokens of history a prompt carries at most, behind the rolling summary: every one of
# them is billed again on each later turn (at the cached price when the prefix holds).
DEFAULT_HISTORY_MAX_TOKENS = 2000

log = get_logger(__name__)

MediaFetcher = Callable[[InboundMessage], Awaitable[bytes]]
# Images go to the model inline; beyond this they are described as "not viewable".
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Told to the model when its answer hit the completion limit and was cut mid-JSON.
TRUNCATED_RETRY_NOTE = (
    "Sua resposta anterior passou do limite de tamanho e foi cortada. Responda de novo, mais curto: "
    "reply com no máximo três frases, summary com no máximo seis frases e só as ferramentas necessárias."
)


class MediaUnusable(Exception):
    """The media can never be processed (too large, gone): described, not retried."""


class OpeningHours(Protocol):
    def is_open(self, at: datetime) -> bool: ...
    def handoff_promise(self, at: datetime) -> str | None: ...
    def describe_next_opening(self, at: datetime) -> str: ...
    def next_opening(self, at: datetime) -> datetime: ...


class AgentTurnOutput(BaseModel):
    """What the model returns for a turn, in one structured call.

    The descriptions are sent (and billed) on every call, so they say only what the
    field's name and the system prompt do not (agent/compact_schema.py drops the rest).
    """

    model_config = ConfigDict(extra="forbid")

    reply: str = Field(description="Para o lead. Uma linha em branco separa mensagens do WhatsApp.")
    lead: LeadUpdate = Field(description="Só o que o lead disse na conversa; null no resto.")
    tool_calls: Sequence[ToolCall]
    summary: str = Field(
        description="Resumo atualizado da conversa inteira, até 6 frases: o que o lead quer, o que foi "
        "respondido, combinados, pendências."
    )
    image_description: str | None = Field(description="A imagem enviada neste turno, em uma frase.")


class AgentTurnOutputWithoutMeetings(AgentTurnOutput):
    """The schema sent on a turn that offers no meeting times: the meeting tools cannot be
    called without them, and would cost their tokens on every call of every conversation
    (meetings are off by default). The answer is still read as an `AgentTurnOutput`."""

    tool_calls: Sequence[LeadToolCall]


@dataclass
class TurnInput:
    contact_key: str
    inbound: list[InboundMessage]
    profile: LeadProfile
    history: list[StoredMessage]
    lead_message_count: int
    # Always the runtime's clock, never the machine's: the opening-hours sentence and
    # the holiday rules must follow "now" as the caller (or a test) defines it.
    now: datetime
    summary: str | None = None
    handed_off: bool = False
    # Set for a follow-up turn: the lead went silent and the bot writes first.
    nudge: str | None = None
    # The seller's free meeting times (or booking link), numbered for `book_meeting`.
    meeting_note: str | None = None
    # Transcripts by provider message id, shared with the runtime: a run that yielded to
    # the lead's late messages leaves its transcripts here, so the run that answers the
    # whole burst does not pay Whisper (nor wait for it) twice. None: nothing kept.
    transcripts: dict[str, str] | None = None


@dataclass
class TurnResult:
    reply: str
    lead_texts: list[str]
    profile: LeadProfile
    changed_fields: list[str]
    score: ScoreResult
    usage: Usage
    llm_seconds: float
    effects: ToolEffects
    summary: str
    guarded: str | None = None
    llm_calls: int = 1


@dataclass
class AgentDeps:
    llm: LLMClient
    fetch_media: MediaFetcher
    prompts: PromptBundle
    rules: ScoringRules
    hours: OpeningHours | None = None
    # Bounds on what one prompt may hold (LEAD_MESSAGE_MAX_CHARS, PROMPT_MAX_TOKENS).
    lead_message_max_chars: int = DEFAULT_LEAD_MESSAGE_MAX_CHARS
    prompt_max_tokens: int = DEFAULT_PROMPT_MAX_TOKENS
    history_max_tokens: int = DEFAULT_HISTORY_MAX_TOKENS
    # MEDIA_MAX_CONCURRENCY slots shared by every turn: a download and its transcription
    # hold one together, so a burst of voice notes never holds more than that many bodies.
    media_slots: asyncio.Semaphore | None = None
    # A catalogue over KNOWLEDGE_MAX_TOKENS is searched per turn (agent/knowledge/); None:
    # the knowledge went whole into the static prompt and nothing is searched.
    knowledge: KnowledgeSearch | None = None


@dataclass
class Draft:
    """What the model made of the turn: the `think` node's output, `decide`'s input."""

    lead_texts: list[str]
    output: AgentTurnOutput
    usage: Usage
    llm_seconds: float
    effects: ToolEffects
    llm_calls: int = 1


class TurnState(TypedDict, total=False):
    # Few channels on purpose: LangGraph copies and versions every channel on every step.
    turn: TurnInput
    draft: Draft
    result: TurnResult


_KIND_LABEL = {
    MessageKind.IMAGE: "[o lead enviou uma imagem]",
    MessageKind.DOCUMENT: "[o lead enviou um documento — avise que o time vai analisar]",
    MessageKind.VIDEO: "[o lead enviou um vídeo]",
    MessageKind.STICKER: "[o lead enviou uma figurinha]",
    MessageKind.AUDIO: "[o lead enviou um áudio]",
}


_FORM_ORIGINS = {
    "meta_lead_ads": "anúncio de cadastro do Facebook/Instagram",
    "api": "formulário do site",
    "rdstation": "formulário (RD Station)",
}


def describe_form(msg: InboundMessage) -> str:
    """A filled form as the model and the history see it: the lead's answers, as data."""
    form = msg.form
    if form is None:
        return "[o lead preencheu um formulário]"
    lines = [f"[o lead preencheu um {_FORM_ORIGINS.get(form.source.value, 'formulário')}; respostas:]"]
    lines += [f"{field_label(name)}: {value}" for name, value in form.profile.items() if value.strip()]
    lines += [f"{a.question}: {a.answer}" for a in form.answers if a.answer.strip()]
    if form.message and form.message.strip():
        lines.append(f"Mensagem: {form.message.strip()}")
    return "\n".join(lines)


def describe_inbound(msg: InboundMessage, transcript: str | None = None) -> str:
    """The text the model (and the stored history) sees for one inbound message."""
    if msg.kind is MessageKind.FORM:
        return describe_form(msg)
    if msg.kind is MessageKind.AUDIO:
        if transcript:
            return f"[áudio transcrito] {transcript}"
        return "[o lead enviou um áudio que não pôde ser transcrito]"
    if msg.kind in _KIND_LABEL:
        parts = [_KIND_LABEL[msg.kind]]
        if msg.file_name:
            parts.append(f"arquivo: {msg.file_name}")
        if msg.media_caption or msg.text:
            parts.append(f"legenda: {msg.media_caption or msg.text}")
        return " ".join(parts)
    return (msg.text or "").strip() or "[mensagem sem texto]"


_AUDIO_EXTENSIONS = {
    "ogg": "ogg",
    "opus": "ogg",
    "mpeg": "mp3",
    "mp3": "mp3",
    "mp4": "mp4",
    "m4a": "m4a",
    "aac": "m4a",
    "wav": "wav",
    "webm": "webm",
    "amr": "amr",
}


def audio_file_name(mime: str | None, audio: bytes) -> tuple[str, str]:
    """Whisper picks the decoder from the file name: WhatsApp sends Ogg/Opus, Instagram
    MP4/AAC without saying so, so the bytes decide when the provider gave no type."""
    if mime:
        subtype = mime.split(";")[0].split("/")[-1].strip().lower()
        ext = _AUDIO_EXTENSIONS.get(subtype, "ogg")
        return f"audio.{ext}", mime.split(";")[0].strip()
    if audio[:4] == b"OggS":
        return "audio.ogg", "audio/ogg"
    if audio[4:8] == b"ftyp":
        return "audio.mp4", "audio/mp4"
    if audio[:3] == b"ID3" or audio[:2] == b"\xff\xfb":
        return "audio.mp3", "audio/mpeg"
    if audio[:4] == b"RIFF":
        return "audio.wav", "audio/wav"
    return "audio.ogg", "audio/ogg"


async def with_model_retries(deps: AgentDeps, call: Callable[[], Awaitable[T]]) -> T:
    """A model call as the turn makes it: the client tries once, the turn applies OpenAI's
    retry policy (declared once, in agent/llm.py) to `LLMUnavailable`."""
    async for attempt in deps.llm.retry_policy():
        with attempt:
            return await call()
    raise AssertionError("the retry policy re-raises the last error")  # pragma: no cover


async def perceive(deps: AgentDeps, turn: TurnInput) -> tuple[list[str], list[str]]:
    """Voice notes become text (Whisper); images are fetched for the model to see."""
    texts: list[str] = []
    images: list[str] = []
    for msg in turn.inbound:
        transcript: str | None = None
        kept = turn.transcripts if turn.transcripts is not None else {}
        if msg.kind is MessageKind.AUDIO and msg.provider_message_id in kept:
            transcript = kept[msg.provider_message_id]
        elif msg.kind is MessageKind.AUDIO and msg.media_url:
            try:
                async with deps.media_slots or contextlib.nullcontext():
                    audio = await deps.fetch_media(msg)
                    filename, mime = audio_file_name(msg.media_mime, audio)
                    transcript = await with_model_retries(
                        deps, functools.partial(deps.llm.transcribe, audio, filename=filename, mime=mime)
                    )
                if transcript and turn.transcripts is not None:
                    turn.transcripts[msg.provider_message_id] = transcript
            except MediaUnusable as exc:
                log.warning("audio_unusable", error=str(exc))
            except openai.APIStatusError as exc:
                # Whisper rejected these bytes (corrupt, unsupported): retrying the same
                # audio would block this lead forever, so the turn goes on without it.
                log.warning("audio_rejected", status=exc.status_code)
        elif msg.kind is MessageKind.IMAGE and msg.media_url:
            try:
                async with deps.media_slots or contextlib.nullcontext():
                    image = await deps.fetch_media(msg)
                if len(image) <= MAX_IMAGE_BYTES:
                    mime = (msg.media_mime or "image/jpeg").split(";")[0]
                    images.append(f"data:{mime};base64,{base64.b64encode(image).decode()}")
            except MediaUnusable as exc:
                log.warning("image_unusable", error=str(exc))
        texts.append(describe_inbound(msg, transcript))
    return texts, images


def response_schema(turn: TurnInput) -> type[AgentTurnOutput]:
    """What the turn sends as its response format: the meeting tools only with meeting times."""
    return AgentTurnOutput if turn.meeting_note is not None else AgentTurnOutputWithoutMeetings


async def ask_model(
    deps: AgentDeps, messages: list[dict[str, Any]], sent: type[AgentTurnOutput] = AgentTurnOutput
) -> tuple[AgentTurnOutput, Usage, int]:
    """One structured answer, and the number of calls it took.

    An answer cut at the completion limit is never half used: the model is asked once
    more for a shorter one; cut again, the turn fails (retried later, then the fixed
    apology) rather than sending the lead a broken reply.
    """
    try:
        output, usage = await with_model_retries(
            deps, lambda: deps.llm.structured(messages, AgentTurnOutput, sent_as=sent)
        )
        return output, usage, 1
    except LLMTruncated as exc:
        log.warning("llm_output_truncated", completion_tokens=exc.usage.completion_tokens)
        shorter = messages + [{"role": "system", "content": TRUNCATED_RETRY_NOTE}]
        output, usage = await with_model_retries(
            deps, lambda: deps.llm.structured(shorter, AgentTurnOutput, sent_as=sent)
        )
        return output, exc.usage + usage, 2


async def with_relevant_knowledge(deps: AgentDeps, turn: TurnInput, lead_texts: list[str]) -> AgentDeps:
    """The turn's deps with the catalogue's chunks for what the lead said in its prompt
    bundle (`{relevant_knowledge}`); the same deps, and no search, when the knowledge
    went whole into the static prompt."""
    if deps.knowledge is None:
        return deps
    earlier = [p.text for p in turn.history if p.direction == "in" and p.text]
    found = await deps.knowledge.search(turn_query(lead_texts, earlier, turn.summary))
    return replace(deps, prompts=replace(deps.prompts, relevant_knowledge=found.render()))


async def think(deps: AgentDeps, turn: TurnInput, lead_texts: list[str], images: list[str]) -> Draft:
    """One structured call; an invalid tool call goes back to the model once."""
    deps = await with_relevant_knowledge(deps, turn, lead_texts)
    prompt = build_prompt(deps, turn, lead_texts, images)
    messages = prompt.messages
    sent = response_schema(turn)
    started = time.perf_counter()
    output, usage, calls = await ask_model(deps, messages, sent)
    llm_seconds = time.perf_counter() - started
    name = None if sent is AgentTurnOutput else AgentTurnOutput.__name__  # as `structured` sends it
    schema_tokens = format_tokens(deps.llm.response_format(sent, name=name))
    # Our count of what OpenAI bills (agent/billing.py) next to its own: the prefix the
    # next turn may reuse, and what this call was actually served from the cache.
    log.info(
        "llm_tokens",
        prompt_tokens_estimated=schema_tokens + prompt.tokens,
        cacheable_tokens=schema_tokens + prompt.prefix_tokens,
        prompt_tokens=usage.prompt_tokens,
        cached_tokens=usage.cached_tokens,
    )
    effects = run_tools(output.tool_calls)
    if not effects.failures:
        return Draft(lead_texts, output, usage, llm_seconds, effects, llm_calls=calls)
    log.warning("tool_calls_failed", failures=effects.failures)
    repair = messages + [
        {"role": "assistant", "content": output.model_dump_json()},
        {
            "role": "system",
            "content": "Algumas ferramentas falharam: "
            + "; ".join(effects.failures)
            + ". Corrija as chamadas (ou remova-as) e ajuste a resposta ao lead para não prometer o que falhou.",
        },
    ]
    started = time.perf_counter()
    fixed, retry_usage, retry_calls = await ask_model(deps, repair, sent)
    retry_effects = run_tools(fixed.tool_calls)
    if retry_effects.failures:
        log.error("tool_calls_dropped", failures=retry_effects.failures)
    return Draft(
        lead_texts,
        fixed,
        usage + retry_usage,
        llm_seconds + time.perf_counter() - started,
        retry_effects,
        llm_calls=calls + retry_calls,
    )


def qualify(deps: AgentDeps, turn: TurnInput, lead: LeadUpdate) -> tuple[LeadProfile, list[str], ScoreResult]:
    source_id = turn.inbound[-1].provider_message_id if turn.inbound else None
    profile, changed = merge_lead(turn.profile, lead, message_id=source_id, at=turn.now)
    score = score_lead(
        profile, lead_message_count=turn.lead_message_count + len(turn.inbound), rules=deps.rules
    )
    return profile, changed, score


def guard(
    deps: AgentDeps, turn: TurnInput, draft: Draft, profile: LeadProfile, score: ScoreResult
) -> tuple[str, str | None]:
    """Commercial rules and handoff promises, enforced whatever the model wrote."""
    effects = draft.effects
    reply = draft.output.reply.strip()
    guarded: str | None = None
    screened = screen_reply(reply, deps.prompts)
    if screened is not None:
        log.warning("reply_guarded", rule=screened.rule, matched=screened.matched)
        reply = screened.replacement
        guarded = screened.rule
    limited = limit_questions(reply)
    if limited != reply:
        log.info("reply_trimmed", rule="max_two_questions")
        reply = limited
    model_handed_off = effects.handoff is not None
    if effects.handoff is None and not turn.handed_off and score.temperature == "quente":
        # A hot lead goes to a person even when the model forgot to say so.
        summary = draft.output.summary.strip() or "; ".join(describe_lead(profile))
        effects.handoff = Handoff(reason="lead_quente", summary=summary)
        effects.called.append("handoff_to_human(auto)")
    if effects.handoff is not None and not turn.handed_off:
        promise_text = deps.hours.handoff_promise(turn.now) if deps.hours is not None else None
        if promise_text:
            reply = f"{reply}\n\n{promise_text}" if reply else promise_text
        elif not model_handed_off:
            reply = (
                f"{reply}\n\n{deps.prompts.message('handoff_now')}"
                if reply
                else deps.prompts.message("handoff_now")
            )
    return reply, guarded


def decide(deps: AgentDeps, turn: TurnInput, draft: Draft) -> TurnResult:
    """Deterministic code after the model: lead merge, score, commercial rules, the result."""
    output = draft.output
    profile, changed, score = qualify(deps, turn, output.lead)
    reply, guarded = guard(deps, turn, draft, profile, score)
    lead_texts = draft.lead_texts
    if output.image_description:
        lead_texts = [
            f"{text} — {output.image_description.strip()}" if msg.kind is MessageKind.IMAGE else text
            for msg, text in zip(turn.inbound, lead_texts, strict=True)
        ]
    return TurnResult(
        reply=reply,
        lead_texts=list(lead_texts),
        profile=profile,
        changed_fields=changed,
        score=score,
        usage=draft.usage,
        llm_seconds=draft.llm_seconds,
        effects=draft.effects,
        summary=output.summary.strip()[:MAX_SUMMARY_CHARS],
        guarded=guarded,
        llm_calls=draft.llm_calls,
    )


def build_graph(deps: AgentDeps) -> Any:
    """think -> decide, compiled once per agent with its (process-wide) dependencies bound.

    Two nodes, not one per stage: with no checkpointer, retry policy or branching, a
    node boundary buys nothing at run time and costs LangGraph 0.12-0.25 ms of CPU per
    turn (a task, its callbacks and config, channel writes, a loop hop; measured with
    bench/turn_cpu.py). The stages stay separate functions above: perceive and think
    (model + tools) in `think`, qualify and guard in `decide`. Dependencies are bound
    here rather than passed in a per-turn run config.
    """

    async def think_node(state: TurnState) -> TurnState:
        turn = state["turn"]
        lead_texts, images = await perceive(deps, turn)
        return {"draft": await think(deps, turn, lead_texts, images)}

    async def decide_node(state: TurnState) -> TurnState:
        return {"result": decide(deps, state["turn"], state["draft"])}

    graph = StateGraph(TurnState)
    graph.add_node("think", think_node)
    graph.add_node("decide", decide_node)
    graph.add_edge(START, "think")
    graph.add_edge("think", "decide")
    graph.add_edge("decide", END)
    return graph.compile()


class SdrAgent:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self._graph = build_graph(deps)
        warm_token_counter()  # once per process, at start rather than on a lead's first turn

    async def run(self, turn: TurnInput) -> TurnResult:
        # Stream only the output channel: `ainvoke` would also stream every node's update
        # and copy the whole state after each step, to keep just the last copy.
        result: TurnResult | None = None
        async for chunk in self._graph.astream({"turn": turn}, stream_mode="values", output_keys="result"):
            result = chunk
        if result is None:  # pragma: no cover - `decide` always writes it
            raise RuntimeError("the turn graph ended without a result")
        return result


__all__ = [
    "AgentDeps",
    "AgentTurnOutput",
    "SdrAgent",
    "TurnInput",
    "TurnResult",
    "build_messages",
    "describe_inbound",
]

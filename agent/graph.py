"""The SDR turn as a LangGraph graph: transcribe -> think -> qualify.

One turn costs exactly one chat completion: the model returns the reply and the lead
update together as one structured object, and scoring is deterministic code. The graph
is compiled once per process; per-turn dependencies travel in the run config so the
compiled graph holds no request state.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypedDict

import openai
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict, Field

from agent.lead import LeadProfile, LeadUpdate, merge_lead, missing_fields
from agent.llm import LLMClient, Usage, is_retryable_openai_error
from agent.prompts import PromptBundle, render_system_prompt
from agent.scoring import ScoreResult, ScoringRules, score_lead
from core.logging import get_logger
from core.models import InboundMessage, MessageKind
from integrations.store.base import StoredMessage

log = get_logger(__name__)

MediaFetcher = Callable[[InboundMessage], Awaitable[bytes]]


class MediaUnusable(Exception):
    """The media can never be processed (too large, gone): described, not retried."""


class AgentTurnOutput(BaseModel):
    """What the model returns for a turn, in one structured call."""

    model_config = ConfigDict(extra="forbid")

    reply: str = Field(
        description="Mensagem para o lead, em português do Brasil, no tom do WhatsApp. "
        "Parágrafos separados por linha em branco viram mensagens separadas."
    )
    lead: LeadUpdate = Field(
        description="Dados do lead ditos nesta conversa; null para o que não foi dito."
    )


@dataclass
class TurnInput:
    contact_key: str
    inbound: list[InboundMessage]
    profile: LeadProfile
    history: list[StoredMessage]
    lead_message_count: int
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class TurnResult:
    reply: str
    lead_texts: list[str]
    profile: LeadProfile
    changed_fields: list[str]
    score: ScoreResult
    usage: Usage
    llm_seconds: float


@dataclass
class AgentDeps:
    llm: LLMClient
    fetch_media: MediaFetcher
    prompts: PromptBundle
    rules: ScoringRules


class TurnState(TypedDict, total=False):
    turn: TurnInput
    lead_texts: list[str]
    output: AgentTurnOutput
    usage: Usage
    llm_seconds: float
    profile: LeadProfile
    changed: list[str]
    score: ScoreResult


def _deps(config: RunnableConfig) -> AgentDeps:
    return config["configurable"]["deps"]


_KIND_LABEL = {
    MessageKind.IMAGE: "[o lead enviou uma imagem]",
    MessageKind.DOCUMENT: "[o lead enviou um documento]",
    MessageKind.VIDEO: "[o lead enviou um vídeo]",
    MessageKind.STICKER: "[o lead enviou uma figurinha]",
    MessageKind.AUDIO: "[o lead enviou um áudio]",
}


def describe_inbound(msg: InboundMessage, transcript: str | None = None) -> str:
    """The text the model (and the stored history) sees for one inbound message."""
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


async def transcribe_node(state: TurnState, config: RunnableConfig) -> TurnState:
    deps = _deps(config)
    texts: list[str] = []
    for msg in state["turn"].inbound:
        transcript: str | None = None
        if msg.kind is MessageKind.AUDIO and msg.media_url:
            try:
                audio = await deps.fetch_media(msg)
                transcript = await deps.llm.transcribe(
                    audio, filename="audio.ogg", mime=msg.media_mime or "audio/ogg"
                )
            except MediaUnusable as exc:
                log.warning("audio_unusable", error=str(exc))
            except openai.APIStatusError as exc:
                if is_retryable_openai_error(exc):
                    raise
                # Whisper rejected these bytes (corrupt, unsupported): retrying the same
                # audio would block this lead forever, so the turn goes on without it.
                log.warning("audio_rejected", status=exc.status_code)
        texts.append(describe_inbound(msg, transcript))
    return {"lead_texts": texts}


def build_messages(
    bundle: PromptBundle, turn: TurnInput, lead_texts: list[str]
) -> list[dict[str, Any]]:
    """System prompt (bounded: knowledge + known profile), the window, then this turn."""
    system = render_system_prompt(
        bundle, profile=turn.profile, missing=missing_fields(turn.profile), now=turn.now
    )
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for past in turn.history:
        if not past.text:
            continue
        messages.append(
            {"role": "user" if past.direction == "in" else "assistant", "content": past.text}
        )
    messages.append({"role": "user", "content": "\n".join(lead_texts)})
    return messages


async def think_node(state: TurnState, config: RunnableConfig) -> TurnState:
    deps = _deps(config)
    messages = build_messages(deps.prompts, state["turn"], state["lead_texts"])
    started = time.perf_counter()
    output, usage = await deps.llm.structured(messages, AgentTurnOutput)
    return {"output": output, "usage": usage, "llm_seconds": time.perf_counter() - started}


async def qualify_node(state: TurnState, config: RunnableConfig) -> TurnState:
    deps = _deps(config)
    turn = state["turn"]
    source_id = turn.inbound[-1].provider_message_id if turn.inbound else None
    profile, changed = merge_lead(turn.profile, state["output"].lead, message_id=source_id, at=turn.now)
    score = score_lead(
        profile, lead_message_count=turn.lead_message_count + len(turn.inbound), rules=deps.rules
    )
    return {"profile": profile, "changed": changed, "score": score}


def build_graph() -> Any:
    graph = StateGraph(TurnState)
    graph.add_node("transcribe", transcribe_node)
    graph.add_node("think", think_node)
    graph.add_node("qualify", qualify_node)
    graph.add_edge(START, "transcribe")
    graph.add_edge("transcribe", "think")
    graph.add_edge("think", "qualify")
    graph.add_edge("qualify", END)
    return graph.compile()


class SdrAgent:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self._graph = build_graph()

    async def run(self, turn: TurnInput) -> TurnResult:
        state: TurnState = await self._graph.ainvoke(
            {"turn": turn}, config={"configurable": {"deps": self.deps}}
        )
        return TurnResult(
            reply=state["output"].reply.strip(),
            lead_texts=state["lead_texts"],
            profile=state["profile"],
            changed_fields=state["changed"],
            score=state["score"],
            usage=state["usage"],
            llm_seconds=state["llm_seconds"],
        )

"""The turn loop: the simulated lead speaks, the real agent answers, until one of them ends it.

What the runtime decides before or around the model is reproduced here in its smallest
form, so the agent is asked only what production asks it: a keyword opt-out ("SAIR",
"não quero mais receber") is confirmed with the fixed message without the model
(runtime/turn.py), an opted-out lead gets no more answers (the talk ends there), and a
handed-off lead is passed on as handed off. Time is the persona's `now`, a few minutes
further for each message, never the machine's clock. Any failure of one persona (a
429 the retries did not outlast, a refusal) ends that persona as errored, not the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import openai

from agent.graph import SdrAgent, TurnInput, TurnResult
from agent.guardrails import is_opt_out
from cli.evaluation.bot import VOICE_MIME, VoiceNotes
from cli.evaluation.lead import LeadMove, SimulatedLead
from cli.evaluation.personas import Persona
from cli.evaluation.transcript import Transcript, Turn, tokens_of
from core.lead import LeadProfile
from core.models import InboundMessage, MessageKind
from core.records import StoredMessage
from core.settings import Settings

TURN_GAP = timedelta(minutes=2)
# The window of past messages a turn sees, as the runtime keeps it (HISTORY_WINDOW).
HISTORY_WINDOW = Settings.model_fields["history_window"].default
KEYWORD_OPT_OUT = "opt_out(keyword)"


@dataclass
class _Lead:
    """What the store would hold about the lead between turns."""

    profile: LeadProfile = field(default_factory=LeadProfile)
    history: list[StoredMessage] = field(default_factory=list)
    summary: str | None = None
    count: int = 0
    handed_off: bool = False

    def remember(self, kind: str, lead_text: str, reply: str, at: datetime) -> None:
        self.history.append(
            StoredMessage(id=len(self.history), direction="in", kind=kind, text=lead_text, created_at=at)
        )
        if reply:
            self.history.append(
                StoredMessage(id=len(self.history), direction="out", kind="text", text=reply, created_at=at)
            )
        self.count += 1


def one_line(exc: BaseException) -> str:
    """The failure as the report keeps it. OpenAI's own error bodies are left out: a 401
    quotes part of the key ("Incorrect API key provided: sk-..."), and reports get shared."""
    if isinstance(exc, openai.APIStatusError):
        return f"{type(exc).__name__}: HTTP {exc.status_code}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class Conversation:
    """One persona against the agent; `play` returns its transcript, whatever happens."""

    def __init__(self, persona: Persona, agent: SdrAgent, voices: VoiceNotes, lead: SimulatedLead) -> None:
        self.persona = persona
        self.agent = agent
        self.voices = voices
        self.lead = lead
        self.state = _Lead()

    async def play(self, max_turns: int) -> Transcript:
        transcript = Transcript(persona=self.persona.name)
        try:
            await self._loop(transcript, max_turns)
        except Exception as exc:  # reported in the transcript; the other personas go on
            transcript.end_reason = "errored"
            transcript.error = one_line(exc)
        state = self.state
        transcript.profile = state.profile.model_dump(mode="json", exclude={"provenance"})
        transcript.summary = state.summary
        return transcript

    async def _loop(self, transcript: Transcript, max_turns: int) -> None:
        for index in range(max_turns):
            move, tokens = await self.lead.next_move(transcript)
            transcript.harness_tokens += tokens
            if move.end:
                transcript.end_reason = "lead_ended"
                return
            turn = await self._turn(index, move)
            transcript.turns.append(turn)
            transcript.bot_tokens += turn.tokens
            if turn.score is not None:
                transcript.score, transcript.temperature = turn.score, turn.temperature
            if turn.opted_out:
                transcript.end_reason = "opted_out"
                return
        transcript.end_reason = "turn_limit"

    def _message(self, index: int, move: LeadMove, at: datetime) -> InboundMessage:
        name = self.persona.name
        base = {
            "channel": self.persona.channel,
            "contact_id": f"eval-{name}",
            "provider_message_id": f"eval-{name}-{index}",
            "timestamp": at,
        }
        if not move.voice_note:
            return InboundMessage(kind=MessageKind.TEXT, text=move.message, **base)
        url = f"eval://voice/{name}/{index}"
        self.voices.record(url, move.message)
        return InboundMessage(kind=MessageKind.AUDIO, media_url=url, media_mime=VOICE_MIME, **base)

    async def _turn(self, index: int, move: LeadMove) -> Turn:
        at = self.persona.now + index * TURN_GAP
        message = self._message(index, move, at)
        state = self.state
        if message.kind is MessageKind.TEXT and is_opt_out(message.text):
            goodbye = self.agent.deps.prompts.message("opt_out_confirmation")
            state.remember(message.kind.value, move.message, goodbye, at)
            return Turn(
                index=index, lead=move.message, reply=goodbye, tools=[KEYWORD_OPT_OUT], opted_out=True
            )
        result = await self.agent.run(
            TurnInput(
                contact_key=message.contact_key,
                inbound=[message],
                profile=state.profile,
                history=state.history[-HISTORY_WINDOW:],
                lead_message_count=state.count,
                summary=state.summary,
                now=at,
                handed_off=state.handed_off,
            )
        )
        return self._record(index, move, message, result)

    def _record(self, index: int, move: LeadMove, message: InboundMessage, result: TurnResult) -> Turn:
        state = self.state
        state.profile, state.summary = result.profile, result.summary
        handoff = result.effects.handoff
        state.handed_off = state.handed_off or handoff is not None
        state.remember(message.kind.value, result.lead_texts[0], result.reply, message.timestamp)
        return Turn(
            index=index,
            lead=move.message,
            voice_note=move.voice_note,
            reply=result.reply,
            tools=list(result.effects.called),
            guarded=result.guarded,
            opted_out=result.effects.opt_out,
            handoff=handoff.reason if handoff is not None else None,
            score=result.score.score,
            temperature=result.score.temperature,
            tokens=tokens_of(result.usage),
        )

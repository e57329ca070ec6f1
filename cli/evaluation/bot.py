"""The bot under evaluation: the real agent graph, built as the app builds it.

Same prompts/, scoring rules, business hours and prompt bounds as `python main.py`,
only without a store or a channel: nothing is stored and nothing is sent. A simulated
voice note is an audio message like a real one; its "audio" is the lead's words, and
the transcription step hands them back, so the agent sees exactly what it sees after
Whisper ("[áudio transcrito] ...") without paying for synthetic speech.
"""

from __future__ import annotations

import aiohttp

from agent.business_hours import load_business_hours
from agent.graph import AgentDeps, SdrAgent
from agent.llm import LLMClient
from agent.prompts import load_prompt_bundle
from agent.scoring import load_scoring_rules
from core.models import InboundMessage
from core.settings import Settings
from web.configs.agent import llm_config

VOICE_MIME = "audio/ogg"


class VoiceNotes:
    """The words of each simulated voice note, by its media URL."""

    def __init__(self) -> None:
        self._words: dict[str, str] = {}

    def record(self, url: str, words: str) -> None:
        self._words[url] = words

    async def fetch(self, message: InboundMessage) -> bytes:
        return self._words.get(message.media_url or "", "").encode("utf-8")


class SpokenWordsLLM(LLMClient):
    """The bot's own client, except that a voice note's bytes already are its words."""

    async def transcribe(self, audio: bytes, *, filename: str, mime: str) -> str:
        return audio.decode("utf-8").strip()


def build_bot(settings: Settings, session: aiohttp.ClientSession) -> tuple[SdrAgent, VoiceNotes]:
    voices = VoiceNotes()
    agent = SdrAgent(
        AgentDeps(
            llm=SpokenWordsLLM(llm_config(settings), session),
            fetch_media=voices.fetch,
            prompts=load_prompt_bundle(),
            rules=load_scoring_rules(),
            hours=load_business_hours(),
            lead_message_max_chars=settings.lead_message_max_chars,
            prompt_max_tokens=settings.prompt_max_tokens,
        )
    )
    return agent, voices

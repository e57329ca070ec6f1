"""Settings -> the agent's own configs (the OpenAI client, the prompt bounds, the knowledge)."""

from __future__ import annotations

from agent.knowledge.base import KnowledgeConfig
from agent.llm import LLMConfig
from core.settings import Settings


def llm_config(settings: Settings) -> LLMConfig:
    return LLMConfig(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        transcribe_model=settings.openai_transcribe_model,
        timeout_s=settings.openai_timeout_s,
        max_attempts=settings.openai_max_attempts,
        backoff_base_s=settings.openai_backoff_base_s,
    )


def knowledge_config(settings: Settings) -> KnowledgeConfig:
    return KnowledgeConfig(
        max_tokens=settings.knowledge_max_tokens,
        top_k=settings.knowledge_top_k,
        embedding_model=settings.embedding_model,
    )

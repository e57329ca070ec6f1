"""The runtime's optional parts, built from the settings when a company turns them on:
meetings on the sellers' calendars (MEETINGS_ENABLED), Meta Lead Ads
(META_PAGE_ACCESS_TOKEN) and a catalogue searched per turn (over KNOWLEDGE_MAX_TOKENS).
Kept beside the app factory, which only calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from agent.business_hours import load_business_hours
from core.clock import Clock
from core.form_fields import FormFieldMap
from core.settings import Settings
from integrations.google_calendar import GoogleCalendarClient
from integrations.meta_leads import MetaLeadsClient
from runtime.lead_ads import LeadAdsIntake
from runtime.meeting_reminders import MeetingReminders
from runtime.meeting_rules import load_meeting_rules
from runtime.meetings import MeetingDesk, MeetingTexts
from runtime.sellers import load_sellers
from runtime.turns import TurnRunner
from store.base import Store
from web.configs.integrations import google_calendar_config, meta_leads_config, seller_refresh_tokens
from web.keys import MEETING_REMINDERS, SETTINGS, STORE

if TYPE_CHECKING:
    from agent.knowledge.search import KnowledgeSearch
    from agent.prompts import PromptBundle


def meeting_desk(
    settings: Settings, session: aiohttp.ClientSession, store: Store, clock: Clock
) -> MeetingDesk | None:
    """MEETINGS_ENABLED: the sellers, rules and texts read at start (a broken file stops
    the start), the calendar reached over the app's session."""
    if not settings.meetings_enabled:
        return None
    config = google_calendar_config(settings)
    return MeetingDesk(
        store=store,
        calendar=GoogleCalendarClient(config, session),
        config=config,
        sellers=load_sellers(),
        rules=load_meeting_rules(),
        hours=load_business_hours(),
        texts=MeetingTexts.load(),
        clock=clock,
        refresh_tokens=seller_refresh_tokens(settings),
    )


def meeting_reminders(
    app: web.Application, clock: Clock, wake: Callable[[], None]
) -> MeetingReminders | None:
    """MEETINGS_ENABLED: the 24 h and 1 h reminders, polled as often as the follow-ups."""
    settings = app[SETTINGS]
    if not settings.meetings_enabled:
        return None
    poll_s = settings.follow_up_poll_s
    app[MEETING_REMINDERS] = MeetingReminders.from_files(app[STORE], clock=clock, poll_s=poll_s, wake=wake)
    return app[MEETING_REMINDERS]


def lead_ads_intake(
    settings: Settings, session: aiohttp.ClientSession, store: Store, forms: FormFieldMap, runner: TurnRunner
) -> LeadAdsIntake | None:
    if settings.meta_page_access_token is None:
        return None
    return LeadAdsIntake(
        MetaLeadsClient(meta_leads_config(settings), session),
        store,
        forms,
        channel=settings.lead_first_touch_channel,
        # A form is complete as it arrives: its turn starts without a quiet window.
        notify=lambda key: runner.notify(key, immediate=True),
    )


def prompts_and_knowledge(
    settings: Settings, session: aiohttp.ClientSession
) -> tuple[PromptBundle, KnowledgeSearch | None]:
    """The prompt files and the knowledge, read at start. Under KNOWLEDGE_MAX_TOKENS the
    knowledge goes whole into the bundle and there is nothing to search. Above it the
    bundle keeps the overview, and the search starts on the cached vectors, or on BM25
    while a missing index is built in the background (with an OpenAI key)."""
    from dataclasses import replace

    from agent.knowledge.base import prepare_knowledge, start_indexing
    from agent.knowledge.embeddings import OpenAIEmbedder
    from agent.prompts import load_prompt_bundle
    from web.configs.agent import knowledge_config, llm_config

    bundle = load_prompt_bundle()
    config = knowledge_config(settings)
    embedder = OpenAIEmbedder(llm_config(settings), config.embedding_model, session)
    usable = embedder if embedder.configured else None
    knowledge = prepare_knowledge(bundle.prompts_dir / "knowledge", config, usable)
    if knowledge.search is not None and usable is not None:
        start_indexing(knowledge, usable)
    return replace(bundle, knowledge=knowledge.static_text), knowledge.search

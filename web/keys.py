"""Typed keys for what the app factory stores on the aiohttp application."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from core.clock import Clock
from core.form_fields import FormFieldMap
from core.settings import Settings
from runtime.breaker import BreakerRegistry
from runtime.channel_health import ChannelHealth
from runtime.dispatcher import OutboxDispatcher
from runtime.followups import FollowUpScheduler
from runtime.lifecycle import Lifecycle
from runtime.meeting_reminders import MeetingReminders
from runtime.notifier import Notifier
from runtime.turns import TurnRunner
from store.base import Store
from web.worker_process import WorkerSupervisor

if TYPE_CHECKING:  # openai is loaded only in the process that runs turns
    from agent.llm import LLMClient

SETTINGS = web.AppKey("settings", Settings)
HTTP = web.AppKey("http", aiohttp.ClientSession)
STORE: web.AppKey[Store] = web.AppKey("store")
CHANNELS = web.AppKey("channels", dict)
LLM: web.AppKey[LLMClient] = web.AppKey("llm")
# The runtime itself: only in the processes that run turns (`all`, `worker`).
RUNNER = web.AppKey("runner", TurnRunner)
DISPATCHER = web.AppKey("dispatcher", OutboxDispatcher)
FOLLOW_UPS = web.AppKey("follow_ups", FollowUpScheduler)
# MEETINGS_ENABLED only: the 24 h and 1 h reminders of booked meetings.
MEETING_REMINDERS = web.AppKey("meeting_reminders", MeetingReminders)
# What the webhooks need of the runtime, in every role: how to say there is work, what
# time it is (the runner's clock where it runs), and the lifecycle's outbox items.
NOTIFIER: web.AppKey[Notifier] = web.AppKey("notifier")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
CHANNEL_HEALTH = web.AppKey("channel_health", ChannelHealth)
BREAKERS = web.AppKey("breakers", BreakerRegistry)
ROLE = web.AppKey("role", str)
# prompts/lead_forms.toml, for the form webhooks of every role (RD Station's).
FORM_FIELDS = web.AppKey("form_fields", FormFieldMap)
WORKER = web.AppKey("worker", WorkerSupervisor)
# Finishes turns and due deliveries (or the worker child's), once; see web/app.py drain().
STOP_RUNTIME: web.AppKey[Callable[[], Awaitable[None]]] = web.AppKey("stop_runtime")

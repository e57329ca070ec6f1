"""create_app builds an application and nothing else: the process (logging, the GC) is
its caller's, and every text file the runtime renders from is read while it builds."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

import integrations.piperun.texts as piperun_texts
from integrations.piperun import PipeRunTextsError
from runtime import handoff_card
from runtime.handoff_card import HandoffCardError
from tests.conftest import fast_settings
from tests.helpers.clock import TestClock
from web.app import create_app
from web.keys import RUNNER
from web.serve import freeze_gc_once_started


async def test_building_and_starting_an_app_leaves_logging_and_the_gc_alone(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    processors = structlog.get_config()["processors"]
    handlers = logging.getLogger().handlers[:]
    frozen = gc.get_freeze_count()
    settings = fast_settings(tmp_path, log_format="json", log_level="DEBUG")
    await aiohttp_client(create_app(settings, clock=TestClock()))
    assert structlog.get_config()["processors"] is processors
    assert logging.getLogger().handlers == handlers
    assert gc.get_freeze_count() == frozen


async def test_the_gc_is_frozen_once_the_runtime_has_started(
    aiohttp_client: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(fast_settings(tmp_path), clock=TestClock())
    freeze_gc_once_started(app)
    seen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: seen.append(RUNNER in app))
    await aiohttp_client(app)
    assert seen == [True]  # once, with the agent and the runner already loaded


def _broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text("title = [unterminated\n", encoding="utf-8")
    return path


def test_a_broken_handoff_card_stops_the_build_not_the_first_handoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handoff_card, "DEFAULT_PATH", _broken(tmp_path))
    with pytest.raises(HandoffCardError):
        create_app(fast_settings(tmp_path), clock=TestClock())
    # The web process of a split deployment renders nothing: it does not read it.
    create_app(fast_settings(tmp_path), clock=TestClock(), role="web")


def test_broken_piperun_texts_stop_the_build_when_the_sync_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(piperun_texts, "DEFAULT_TEXTS_PATH", _broken(tmp_path))
    create_app(fast_settings(tmp_path), clock=TestClock())  # no PipeRun: not read
    piperun = fast_settings(tmp_path, piperun_api_token="pr-token", piperun_pipeline_id=1, piperun_stage_id=2)
    with pytest.raises(PipeRunTextsError):
        create_app(piperun, clock=TestClock())

"""Sales conversations as data: every file in `data/` is played against the whole bot.

Each scenario scripts what the model answers and checks what code guarantees around
it: the profile merge, the score, the tools' rows, the commercial guard, opt-out,
business hours and follow-ups. See `runner.py` for the file format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from core.settings import Settings
from tests.conftest import fast_settings
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.scenarios.runner import Scenario, scenario_files


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The scenarios run the follow-up scheduler themselves, at the clock they set.
    return fast_settings(tmp_path, follow_up_poll_s=3600)


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
async def test_scenario(path: Path, bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi) -> None:
    spec = json.loads(path.read_text(encoding="utf-8"))
    await Scenario(bot, openai_fake, zapi_fake, name=path.stem).play(spec)


def test_every_scenario_file_reads_as_a_titled_conversation() -> None:
    files = scenario_files()
    assert len(files) >= 10
    for path in files:
        spec = json.loads(path.read_text(encoding="utf-8"))
        assert spec.get("title") and spec.get("steps"), path.name

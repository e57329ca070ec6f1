"""What the turn's stored error and log line say when the model cannot be reached: the
real cause, not the aiohttp transport's label (it calls a refused connection a timeout)."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest
from pydantic import BaseModel

from agent.llm import LLMClient
from core.errors import LLMUnavailable
from tests.conftest import fast_settings
from web.configs.agent import llm_config


class Reply(BaseModel):
    reply: str


def closed_port_url() -> str:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def test_a_refused_connection_is_named_as_such(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, openai_base_url=closed_port_url())
    async with aiohttp.ClientSession() as session:
        client = LLMClient(llm_config(settings), session)
        with pytest.raises(LLMUnavailable, match="connection refused"):
            await client.structured([{"role": "user", "content": "Oi"}], Reply)

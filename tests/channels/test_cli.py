"""The terminal channel: replies printed for a seller, never a webhook."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from channels.cli import BOT_PREFIX, CliChannel, format_bot_message
from channels.registry import build_channels
from channels.zapi import ZapiChannel
from core.errors import ProviderError, WebhookRejected
from core.settings import Settings
from tests.helpers.clock import TestClock
from web.app import create_app
from web.configs.channels import channels_config


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None)


async def send(channel: CliChannel, text: str) -> Any:
    async with aiohttp.ClientSession() as session:
        return await channel.send_text(session, "terminal", text, typing_s=5)


async def test_send_text_writes_the_reply_to_the_stream_with_a_bot_prefix() -> None:
    out = io.StringIO()
    channel = CliChannel(output=out)
    sent = await send(channel, "Olá! Sou da Seleto Industrial. Qual é o seu nome?")
    assert out.getvalue() == "bot> Olá! Sou da Seleto Industrial. Qual é o seu nome?\n"
    assert sent.provider_message_id and sent.provider_message_id.startswith("cli-")
    again = await send(channel, "Outra")
    assert again.provider_message_id != sent.provider_message_id


async def test_long_replies_are_wrapped_and_line_breaks_kept() -> None:
    out = io.StringIO()
    channel = CliChannel(output=out, width=40)
    text = (
        "Temos moedores e formadoras de hambúrguer para vários volumes de produção diária.\n"
        "- Moedor M-98\n- Formadora F-200"
    )
    await send(channel, text)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(BOT_PREFIX)
    assert all(len(line) <= 40 for line in lines)
    assert all(line.startswith(" " * len(BOT_PREFIX)) for line in lines[1:])
    assert [line.strip() for line in lines[-2:]] == ["- Moedor M-98", "- Formadora F-200"]
    # No word is lost or cut by the wrapping.
    assert " ".join(line[len(BOT_PREFIX) :].strip() for line in lines) == text.replace("\n", " ")


def test_format_keeps_blank_lines_between_paragraphs() -> None:
    assert format_bot_message("Oi!\n\nTudo bem?", width=80) == "bot> Oi!\n\n     Tudo bem?"


async def test_without_a_stream_it_writes_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    await send(CliChannel(), "Bom dia!")
    assert capsys.readouterr().out == "bot> Bom dia!\n"


async def test_a_closed_stream_is_a_permanent_send_error() -> None:
    out = io.StringIO()
    out.close()
    with pytest.raises(ProviderError) as info:
        await send(CliChannel(output=out), "Oi")
    assert info.value.retryable is False


def test_webhooks_are_rejected() -> None:
    channel = CliChannel()
    request = make_mocked_request("POST", "/webhooks/cli", headers={"Authorization": "Bearer x"})
    with pytest.raises(WebhookRejected) as auth:
        channel.authenticate(request, b"{}")
    assert auth.value.status == 401
    with pytest.raises(WebhookRejected) as parse:
        channel.parse({"text": "oi"})
    assert 400 <= parse.value.status < 500


async def test_there_is_no_media_to_fetch() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as info:
            await CliChannel().fetch_media(session, "file:///etc/passwd", max_bytes=10)
    assert info.value.retryable is False


def test_always_configured_even_with_no_environment() -> None:
    assert CliChannel().configured is True
    assert CliChannel().name == "cli"


def test_registry_has_every_channel_and_cli(settings: Settings) -> None:
    channels = build_channels(channels_config(settings))
    assert {"zapi", "waha", "whatsapp_cloud", "cli"} <= set(channels)
    assert isinstance(channels["zapi"], ZapiChannel)
    assert isinstance(channels["cli"], CliChannel)
    assert all(name == channel.name for name, channel in channels.items())


async def test_no_webhook_route_for_the_cli_channel(
    aiohttp_client: Any, tmp_path: Path, clock: TestClock
) -> None:
    settings = Settings(_env_file=None, sqlite_path=tmp_path / "x.sqlite3", shutdown_grace_s=0.2)
    client = await aiohttp_client(create_app(settings, clock=clock))
    for path in ("/webhooks/cli", "/webhook/cli"):
        response = await client.post(path, json={"text": "oi"})
        assert response.status in (404, 405), path

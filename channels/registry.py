"""The channels this build knows. Adding a channel = one module + one line here."""

from __future__ import annotations

from channels.base import Channel
from channels.cli import CliChannel
from channels.instagram import InstagramChannel
from channels.waha import WahaChannel
from channels.whatsapp_cloud import WhatsAppCloudChannel
from channels.zapi import ZapiChannel
from core.settings import Settings


def build_channels(settings: Settings) -> dict[str, Channel]:
    channels: list[Channel] = [
        ZapiChannel(settings),
        WahaChannel(settings),
        WhatsAppCloudChannel(settings),
        InstagramChannel(settings),
        # No webhook: `python main.py chat` stores the seller's lines itself and points
        # this channel at its terminal; the dispatcher delivers `cli` replies through it.
        CliChannel(settings),
    ]
    return {channel.name: channel for channel in channels}

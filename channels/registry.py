"""The channels this build knows. Adding a channel = one module, one config field, one line here."""

from __future__ import annotations

from dataclasses import dataclass

from channels.base import Channel
from channels.cli import CliChannel
from channels.instagram import InstagramChannel, InstagramConfig
from channels.waha import WahaChannel, WahaConfig
from channels.whatsapp_cloud import WhatsAppCloudChannel, WhatsAppCloudConfig
from channels.zapi import ZapiChannel, ZapiConfig


@dataclass(frozen=True, slots=True)
class ChannelsConfig:
    """One config per provider, so the composition root maps Settings once and every
    adapter still sees only its own values. The terminal channel needs none."""

    zapi: ZapiConfig
    waha: WahaConfig
    whatsapp_cloud: WhatsAppCloudConfig
    instagram: InstagramConfig


def build_channels(config: ChannelsConfig) -> dict[str, Channel]:
    channels: list[Channel] = [
        ZapiChannel(config.zapi),
        WahaChannel(config.waha),
        WhatsAppCloudChannel(config.whatsapp_cloud),
        InstagramChannel(config.instagram),
        # No webhook: `python main.py chat` stores the seller's lines itself and points
        # this channel at its terminal; the dispatcher delivers `cli` replies through it.
        CliChannel(),
    ]
    return {channel.name: channel for channel in channels}

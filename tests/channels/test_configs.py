"""The mapping Settings -> channel configs (web/configs/channels.py): each setting an
adapter reads reaches the field of the adapter that reads it, and no other."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import SecretStr

from channels.registry import ChannelsConfig, build_channels
from core.settings import Settings
from web.configs.channels import channels_config

# Each setting gets a value no other setting has, so a swapped or forgotten field shows.
VALUES: dict[str, Any] = {
    "zapi_base_url": "https://zapi.example.com",
    "zapi_instance_id": "ZAPI-ID",
    "zapi_instance_token": "ZAPI-INSTANCE-TOKEN",
    "zapi_client_token": "ZAPI-CLIENT-TOKEN",
    "zapi_webhook_secret": "ZAPI-WEBHOOK-SECRET",
    "zapi_rate_per_s": 1.5,
    "waha_url": "http://waha.example.com:3000",
    "waha_api_key": "WAHA-API-KEY",
    "waha_session": "WAHA-SESSION",
    "waha_webhook_hmac_key": "WAHA-HMAC-KEY",
    "waha_webhook_secret": "WAHA-WEBHOOK-SECRET",
    "waha_rate_per_s": 2.5,
    "waha_presence_subscribe": False,
    "meta_graph_url": "https://graph.example.com",
    "meta_graph_version": "v77.0",
    "meta_app_secret": "META-APP-SECRET",
    "whatsapp_phone_number_id": "WA-PHONE-ID",
    "whatsapp_access_token": "WA-ACCESS-TOKEN",
    "whatsapp_template_language": "es_MX",
    "whatsapp_rate_per_s": 3.5,
    "instagram_account_id": "IG-ACCOUNT-ID",
    "instagram_access_token": "IG-ACCESS-TOKEN",
    "instagram_rate_per_s": 4.5,
    "http_timeout_s": 5.5,
    "media_trusted_origins": ["https://files.example.com"],
}

# Where each value must land: (provider config, field) pairs, media origins included.
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "zapi_base_url": {("zapi", "base_url"), ("media", "zapi_base_url")},
    "zapi_instance_id": {("zapi", "instance_id")},
    "zapi_instance_token": {("zapi", "instance_token")},
    "zapi_client_token": {("zapi", "client_token")},
    "zapi_webhook_secret": {("zapi", "webhook_secret")},
    "zapi_rate_per_s": {("zapi", "rate_per_s")},
    "waha_url": {("waha", "url"), ("media", "waha_url")},
    "waha_api_key": {("waha", "api_key")},
    "waha_session": {("waha", "session")},
    "waha_webhook_hmac_key": {("waha", "webhook_hmac_key")},
    "waha_webhook_secret": {("waha", "webhook_secret")},
    "waha_rate_per_s": {("waha", "rate_per_s")},
    "waha_presence_subscribe": {("waha", "presence_subscribe")},
    "meta_graph_url": {
        ("whatsapp_cloud", "graph_url"),
        ("instagram", "graph_url"),
        ("media", "meta_graph_url"),
    },
    "meta_graph_version": {("whatsapp_cloud", "graph_version"), ("instagram", "graph_version")},
    "meta_app_secret": {("whatsapp_cloud", "app_secret"), ("instagram", "app_secret")},
    "whatsapp_phone_number_id": {("whatsapp_cloud", "phone_number_id")},
    "whatsapp_access_token": {("whatsapp_cloud", "access_token")},
    "whatsapp_template_language": {("whatsapp_cloud", "template_language")},
    "whatsapp_rate_per_s": {("whatsapp_cloud", "rate_per_s")},
    "instagram_account_id": {("instagram", "account_id")},
    "instagram_access_token": {("instagram", "access_token")},
    "instagram_rate_per_s": {("instagram", "rate_per_s")},
    "http_timeout_s": {(name, "http_timeout_s") for name in ("zapi", "waha", "whatsapp_cloud", "instagram")},
    "media_trusted_origins": {("media", "trusted_origins")},
}


def _leaves(config: ChannelsConfig) -> dict[tuple[str, str], Any]:
    """(provider, field) -> plain value; every adapter's media config must be the same one."""
    leaves: dict[tuple[str, str], Any] = {}
    medias = set()
    for provider in dataclasses.fields(config):
        sub = getattr(config, provider.name)
        for field in dataclasses.fields(sub):
            value = getattr(sub, field.name)
            if field.name == "media":
                medias.add(value)
                for media_field in dataclasses.fields(value):
                    leaves["media", media_field.name] = getattr(value, media_field.name)
                continue
            leaves[provider.name, field.name] = (
                value.get_secret_value() if isinstance(value, SecretStr) else value
            )
    assert len(medias) == 1
    return leaves


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize("setting", sorted(VALUES))
def test_each_channel_setting_reaches_the_fields_that_read_it(setting: str) -> None:
    leaves = _leaves(channels_config(Settings(_env_file=None, **VALUES)))
    landed = {key for key, value in leaves.items() if value == _plain(VALUES[setting])}
    assert landed == EXPECTED[setting]


def test_every_config_field_is_fed_by_some_setting() -> None:
    leaves = _leaves(channels_config(Settings(_env_file=None, **VALUES)))
    assert set(leaves) == set().union(*EXPECTED.values())


def test_blank_ids_leave_the_channels_unconfigured_and_closed() -> None:
    """`.env.example` copied as-is leaves `KEY=`: with the token set, a blank id alone
    must still read as "not configured", as it did when the adapters held Settings."""
    values = {
        "zapi_instance_id": " ",
        "zapi_instance_token": "ZAPI-INSTANCE-TOKEN",
        "waha_url": "",
        "whatsapp_phone_number_id": "",
        "whatsapp_access_token": "WA-ACCESS-TOKEN",
        "instagram_account_id": "  ",
        "instagram_access_token": "IG-ACCESS-TOKEN",
        "zapi_webhook_secret": "",
        "meta_app_secret": " ",
    }
    channels = build_channels(channels_config(Settings(_env_file=None, **values)))
    assert {name for name, channel in channels.items() if channel.configured} == {"cli"}
    assert channels["zapi"].missing_webhook_secret == "ZAPI_WEBHOOK_SECRET"
    assert channels["instagram"].missing_webhook_secret == "META_APP_SECRET"


def test_configs_are_frozen() -> None:
    config = channels_config(Settings(_env_file=None))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.zapi.base_url = "https://elsewhere.example.com"  # type: ignore[misc]

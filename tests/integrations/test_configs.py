"""Settings -> each integration's config (web/configs/integrations.py): every environment
value reaches the field the client reads, "configured" means what the settings meant by
it, and a config cannot be edited once built."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import SecretStr

from core.settings import Settings
from web.configs.integrations import chatwoot_config, meta_capi_config, piperun_config


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def test_chatwoot_config_carries_every_chatwoot_value_and_the_http_timeout() -> None:
    config = chatwoot_config(
        settings(
            chatwoot_api_url="https://chat.example.com",
            chatwoot_api_token="cw-token",
            chatwoot_account_id="7",
            chatwoot_inbox_id="3",
            chatwoot_webhook_secret="cw-hook-secret",
            http_timeout_s=4.5,
        )
    )
    assert (config.api_url, config.account_id, config.inbox_id, config.timeout_s) == (
        "https://chat.example.com",
        "7",
        "3",
        4.5,
    )
    assert (secret(config.api_token), secret(config.webhook_secret)) == ("cw-token", "cw-hook-secret")


def test_piperun_config_carries_every_piperun_value_and_the_http_timeout() -> None:
    config = piperun_config(
        settings(
            piperun_api_url="https://piperun.example.com/v1",
            piperun_api_token="pr-token",
            piperun_pipeline_id=11,
            piperun_stage_id=22,
            http_timeout_s=4.5,
        )
    )
    assert (config.api_url, config.pipeline_id, config.stage_id, config.timeout_s) == (
        "https://piperun.example.com/v1",
        11,
        22,
        4.5,
    )
    assert secret(config.token) == "pr-token"


def test_meta_capi_config_carries_every_meta_value_and_keeps_its_own_30_s() -> None:
    config = meta_capi_config(
        settings(
            meta_graph_url="https://graph.example.com",
            meta_graph_version="v99.0",
            meta_pixel_id="123",
            meta_access_token="EAA-token",
            meta_test_event_code="TEST1",
            http_timeout_s=4.5,
        )
    )
    assert (config.graph_url, config.version, config.pixel_id, config.test_event_code) == (
        "https://graph.example.com",
        "v99.0",
        "123",
        "TEST1",
    )
    assert secret(config.access_token) == "EAA-token"
    # The CAPI timeout was never HTTP_TIMEOUT_S.
    assert config.timeout_s == 30.0


CHATWOOT_FULL = {
    "chatwoot_api_url": "https://chat.example.com",
    "chatwoot_api_token": "cw-token",
    "chatwoot_account_id": "7",
}
PIPERUN_FULL = {"piperun_api_token": "pr-token", "piperun_pipeline_id": 11, "piperun_stage_id": 22}
META_FULL = {"meta_pixel_id": "123", "meta_access_token": "EAA-token"}


def _all_but_one(full: dict[str, Any]) -> list[dict[str, Any]]:
    return [full, *({k: v for k, v in full.items() if k != missing} for missing in full)]


@pytest.mark.parametrize("values", _all_but_one(CHATWOOT_FULL))
def test_chatwoot_configured_as_the_settings_say(values: dict[str, Any]) -> None:
    s = settings(**values)
    assert chatwoot_config(s).configured is s.chatwoot_configured


@pytest.mark.parametrize("values", _all_but_one(PIPERUN_FULL))
def test_piperun_can_sync_when_the_settings_say_it_is_configured(values: dict[str, Any]) -> None:
    s = settings(**values)
    assert piperun_config(s).can_sync is s.piperun_configured


@pytest.mark.parametrize("values", _all_but_one(META_FULL))
def test_meta_capi_configured_as_the_settings_say(values: dict[str, Any]) -> None:
    s = settings(**values)
    assert meta_capi_config(s).configured is s.meta_capi_configured


def test_every_config_is_frozen() -> None:
    s = settings(**CHATWOOT_FULL, **PIPERUN_FULL, **META_FULL)
    for config, field in (
        (chatwoot_config(s), "api_url"),
        (piperun_config(s), "api_url"),
        (meta_capi_config(s), "graph_url"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, field, "https://elsewhere.example.com")

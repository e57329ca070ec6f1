"""web/configs/runtime.py: each setting reaches the runtime config that reads it."""

from __future__ import annotations

import socket
from pathlib import Path

from runtime.policies import OutboxKnobs
from tests.conftest import fast_settings
from web.configs.runtime import (
    crm_sync_config,
    lifecycle_config,
    outbox_knobs,
    route_config,
    runner_config,
)

PIPERUN = {"piperun_api_token": "pr-token", "piperun_pipeline_id": 11, "piperun_stage_id": 22}


def test_the_lease_owner_is_the_instance_id_else_the_host_name(tmp_path: Path) -> None:
    assert runner_config(fast_settings(tmp_path)).owner == socket.gethostname()
    assert runner_config(fast_settings(tmp_path, instance_id="sdr-a")).owner == "sdr-a"


def test_the_crm_sync_is_routed_only_when_piperun_can_create_deals(tmp_path: Path) -> None:
    assert crm_sync_config(fast_settings(tmp_path, piperun_api_token="pr-token")) is None
    assert route_config(fast_settings(tmp_path, piperun_api_token="pr-token")).erasure.piperun
    config = crm_sync_config(fast_settings(tmp_path, **PIPERUN, piperun_owner_id=5))
    assert config is not None
    assert (config.pipeline_id, config.stage_id, config.owner_id) == (11, 22, 5)


def test_each_channel_lands_in_its_own_piperun_origin(tmp_path: Path) -> None:
    plain = crm_sync_config(fast_settings(tmp_path, **PIPERUN, piperun_origin_id=1))
    assert plain is not None and plain.origin_for("instagram") == plain.origin_for("whatsapp") == 1
    split = crm_sync_config(
        fast_settings(
            tmp_path,
            **PIPERUN,
            piperun_origin_id=1,
            piperun_origin_id_instagram=2,
            piperun_origin_id_whatsapp=3,
        )
    )
    assert split is not None
    assert (split.origin_for("instagram"), split.origin_for("whatsapp"), split.origin_for("cli")) == (2, 3, 3)


def test_unconfigured_integrations_get_no_route_config(tmp_path: Path) -> None:
    bare = route_config(fast_settings(tmp_path))
    assert (bare.mirror, bare.crm, bare.capi) == (None, None, None)
    assert not bare.erasure.chatwoot and not bare.erasure.piperun
    lifecycle = lifecycle_config(fast_settings(tmp_path))
    assert not lifecycle.piperun and not lifecycle.meta_capi


def test_the_outbox_knobs_are_the_operators_or_the_tables(tmp_path: Path) -> None:
    assert outbox_knobs(fast_settings(tmp_path, outbox_backoff_base_s=None, outbox_backoff_max_s=None)) == (
        OutboxKnobs()
    )
    set_ = outbox_knobs(
        fast_settings(tmp_path, outbox_max_attempts=9, outbox_backoff_base_s=0.5, outbox_backoff_max_s=1.0)
    )
    assert set_ == OutboxKnobs(max_attempts=9, backoff_base_s=0.5, backoff_max_s=1.0)

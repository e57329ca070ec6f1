"""Settings -> the runtime's configs: the one place that knows which environment
variable feeds which turn, delivery or outbox knob, so the runtime never reads Settings."""

from __future__ import annotations

import socket
from datetime import timedelta

from core.settings import Settings
from runtime.capi_delivery import CapiConfig
from runtime.chatwoot_mirror import MirrorConfig
from runtime.commit import CommitConfig
from runtime.crm_sync import CrmSyncConfig
from runtime.delivery import DeliveryConfig
from runtime.erasure import ErasureConfig
from runtime.first_touch import FirstTouchConfig
from runtime.followups import FollowUpConfig
from runtime.lifecycle import LifecycleConfig
from runtime.policies import OutboxKnobs
from runtime.routes import RouteConfig
from runtime.scheduler import ScheduleConfig
from runtime.turn import TurnConfig
from runtime.turns import RunnerConfig


def outbox_knobs(settings: Settings) -> OutboxKnobs:
    return OutboxKnobs(
        max_attempts=settings.outbox_max_attempts,
        backoff_base_s=settings.outbox_backoff_base_s,
        backoff_max_s=settings.outbox_backoff_max_s,
    )


def lifecycle_config(settings: Settings) -> LifecycleConfig:
    return LifecycleConfig(
        piperun=settings.piperun_configured,
        piperun_sync_on=frozenset(settings.piperun_sync_on),
        meta_capi=settings.meta_capi_configured,
        meta_capi_events=frozenset(settings.meta_capi_events),
    )


def schedule_config(settings: Settings) -> ScheduleConfig:
    return ScheduleConfig(
        quiet_s=settings.debounce_quiet_s,
        max_wait_s=settings.debounce_max_s,
        max_concurrent=settings.max_concurrent_turns,
        lease_s=settings.turn_lease_s,
        retry_base_s=settings.turn_retry_base_s,
        retry_max_s=settings.turn_retry_max_s,
        poll_s=settings.pending_poll_s,
        complete_s=settings.debounce_complete_s,
        presence_s=settings.debounce_presence_s,
        typing_s=settings.debounce_typing_s,
    )


def commit_config(settings: Settings) -> CommitConfig:
    return CommitConfig(
        reply_max_parts=settings.reply_max_parts,
        typing_chars_per_s=settings.typing_chars_per_s,
        typing_max_s=settings.typing_max_s,
        chatwoot=settings.chatwoot_configured,
        follow_up_delays_h=tuple(settings.follow_up_delays_h),
    )


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(
        schedule=schedule_config(settings),
        commit=commit_config(settings),
        turn=TurnConfig(
            history_window=settings.history_window,
            session_idle_hours=settings.session_idle_hours,
            max_failures=settings.turn_max_failures,
        ),
        follow_up=FollowUpConfig(history_window=settings.history_window),
        owner=settings.instance_id or socket.gethostname(),
        first_touch=FirstTouchConfig(
            max_age=timedelta(minutes=settings.lead_first_touch_max_age_min),
            active_within=timedelta(hours=settings.session_idle_hours),
        ),
    )


def delivery_config(settings: Settings) -> DeliveryConfig:
    return DeliveryConfig(
        reengage_template=settings.whatsapp_reengage_template,
        template_language=settings.whatsapp_template_language,
        chatwoot=settings.chatwoot_configured,
    )


def erasure_config(settings: Settings) -> ErasureConfig:
    return ErasureConfig(
        chatwoot=settings.chatwoot_configured,
        piperun=settings.piperun_api_token is not None,
        piperun_forget=settings.piperun_forget,
    )


def mirror_config(settings: Settings) -> MirrorConfig:
    return MirrorConfig(
        reopen_resolved=settings.chatwoot_reopen_resolved,
        handoff_team_id=settings.chatwoot_handoff_team_id,
        media_max_bytes=settings.media_max_bytes,
    )


def crm_sync_config(settings: Settings) -> CrmSyncConfig | None:
    """None unless PipeRun sync is configured (token, pipeline and stage)."""
    if not settings.piperun_configured:
        return None
    assert settings.piperun_pipeline_id is not None and settings.piperun_stage_id is not None
    return CrmSyncConfig(
        pipeline_id=settings.piperun_pipeline_id,
        stage_id=settings.piperun_stage_id,
        owner_id=settings.piperun_owner_id,
        origin_id=settings.piperun_origin_id,
        origin_id_instagram=settings.piperun_origin_id_instagram,
        origin_id_whatsapp=settings.piperun_origin_id_whatsapp,
        chatwoot_api_url=settings.chatwoot_api_url,
        chatwoot_account_id=settings.chatwoot_account_id,
    )


def capi_config(settings: Settings) -> CapiConfig:
    return CapiConfig(
        instagram_account_id=settings.instagram_account_id,
        qualified_event=settings.meta_capi_qualified_event,
    )


def route_config(settings: Settings) -> RouteConfig:
    return RouteConfig(
        outbox=outbox_knobs(settings),
        erasure=erasure_config(settings),
        mirror=mirror_config(settings) if settings.chatwoot_configured else None,
        crm=crm_sync_config(settings),
        capi=capi_config(settings) if settings.meta_capi_configured else None,
    )

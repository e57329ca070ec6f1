"""Which CRM, ads and webhook side effects a turn produces, from what it changed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.records import Handoff, LeadRecord, NewMessage, TurnCommit
from runtime.lifecycle import CAPI_KIND, PIPERUN_KIND, WEBHOOK_KIND, Lifecycle, Subscription
from tests.conftest import fast_settings
from web.configs.runtime import lifecycle_config

KEY = "whatsapp:5511987654321"
AT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def settings(tmp_path: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    values: dict[str, Any] = {
        "piperun_api_token": "pr-token-0001",
        "piperun_pipeline_id": 10,
        "piperun_stage_id": 20,
        "meta_pixel_id": "123456789012345",
        "meta_access_token": "EAAB-test-token",
    }
    values.update(overrides)
    return fast_settings(tmp_path, **values)


def lead(**fields: Any) -> LeadRecord:
    values: dict[str, Any] = {
        "id": 1,
        "contact_key": KEY,
        "channel": "zapi",
        "contact_id": "5511987654321",
        "phone": "5511987654321",
        "name": "Maria",
        "profile": {"name": "Maria"},
        "score": 10,
        "temperature": "frio",
        "score_reasons": [],
        "lead_message_count": 1,
        "opted_out": False,
        "created_at": AT,
        "updated_at": AT,
    }
    values.update(fields)
    return LeadRecord(**values)


def commit(**fields: Any) -> TurnCommit:
    values: dict[str, Any] = {
        "turn_id": "t1",
        "contact_key": KEY,
        "channel": "zapi",
        "contact_id": "5511987654321",
        "phone": "5511987654321",
        "name": "Maria",
        "inbound_ids": [1],
        "messages": [NewMessage("in", "text", "Oi"), NewMessage("out", "text", "Olá, Maria!")],
        "profile": {"name": "Maria"},
        "score": 10,
        "temperature": "frio",
        "score_reasons": [],
        "lead_messages_added": 1,
        "at": AT,
    }
    values.update(fields)
    return TurnCommit(**values)


def kinds(items: list) -> list[tuple[str, str]]:
    return [
        (i.kind, i.payload.get("stage") or i.payload.get("event") or i.payload.get("reason")) for i in items
    ]


def test_a_first_contact_is_a_lead_event_for_the_ads_and_nothing_for_the_crm(tmp_path: Path) -> None:
    items = Lifecycle(lifecycle_config(settings(tmp_path))).items_for(None, commit())
    assert kinds(items) == [(CAPI_KIND, "Lead")]
    assert items[0].idempotency_key == f"capi:{KEY}:Lead"
    assert items[0].payload["event_time"] == int(AT.timestamp())


def test_a_lead_turning_hot_goes_to_the_crm_and_counts_as_qualified(tmp_path: Path) -> None:
    items = Lifecycle(lifecycle_config(settings(tmp_path))).items_for(
        lead(), commit(temperature="quente", score=80)
    )
    assert kinds(items) == [(PIPERUN_KIND, "hot"), (CAPI_KIND, "QualifiedLead")]
    assert items[0].order_key == f"crm:{KEY}"


def test_a_hot_lead_staying_hot_is_not_counted_twice_but_its_changes_update_the_crm(tmp_path: Path) -> None:
    before = lead(temperature="quente", score=80, crm_deal_id=777)
    items = Lifecycle(lifecycle_config(settings(tmp_path))).items_for(
        before, commit(temperature="quente", score=85, profile={"name": "Maria", "city": "Curitiba"})
    )
    assert kinds(items) == [(PIPERUN_KIND, "update")]
    # Nothing changed: nothing to say to anyone.
    same = commit(temperature="quente", score=80, profile=before.profile)
    assert Lifecycle(lifecycle_config(settings(tmp_path))).items_for(before, same) == []


def test_handoff_reaches_the_crm_only_when_configured(tmp_path: Path) -> None:
    handoff = commit(handoff=Handoff(reason="pediu_humano", summary="Quer falar com vendedor"))
    assert kinds(Lifecycle(lifecycle_config(settings(tmp_path))).items_for(lead(), handoff)) == [
        (PIPERUN_KIND, "handoff"),
        (CAPI_KIND, "QualifiedLead"),
    ]
    only_hot = settings(tmp_path, piperun_sync_on=["hot"])
    assert kinds(Lifecycle(lifecycle_config(only_hot)).items_for(lead(), handoff)) == [
        (CAPI_KIND, "QualifiedLead")
    ]


def test_opting_out_is_a_lost_lead_once(tmp_path: Path) -> None:
    items = Lifecycle(lifecycle_config(settings(tmp_path))).items_for(lead(), commit(opt_out=True))
    assert kinds(items) == [(CAPI_KIND, "lead_lost")]
    assert (
        Lifecycle(lifecycle_config(settings(tmp_path))).items_for(lead(opted_out=True), commit(opt_out=True))
        == []
    )


def test_events_switched_off_or_unconfigured_integrations_produce_nothing(tmp_path: Path) -> None:
    no_lead_event = settings(tmp_path, meta_capi_events=["QualifiedLead"])
    assert Lifecycle(lifecycle_config(no_lead_event)).items_for(None, commit()) == []
    bare = fast_settings(tmp_path)
    assert Lifecycle(lifecycle_config(bare)).items_for(lead(), commit(temperature="quente")) == []


def test_webhook_subscribers_get_the_events_they_asked_for_with_stable_delivery_ids(tmp_path: Path) -> None:
    subs = [Subscription("crm1", frozenset({"lead.hot"})), Subscription("all", frozenset({"*"}))]
    life = Lifecycle(lifecycle_config(fast_settings(tmp_path)), subs)
    items = life.items_for(lead(), commit(temperature="quente", score=80))
    by_endpoint = [(i.payload["endpoint_id"], i.payload["event"]) for i in items if i.kind == WEBHOOK_KIND]
    assert ("crm1", "lead.hot") in by_endpoint
    assert [e for ep, e in by_endpoint if ep == "crm1"] == ["lead.hot"]
    assert [e for ep, e in by_endpoint if ep == "all"] == [
        "lead.updated",
        "lead.qualified",
        "lead.hot",
        "message.received",
        "message.sent",
    ]
    hot = next(i for i in items if i.payload["endpoint_id"] == "crm1")
    assert hot.payload["data"]["lead"]["temperature"] == "quente"
    again = life.items_for(lead(), commit(temperature="quente", score=80))
    assert [i.idempotency_key for i in again] == [i.idempotency_key for i in items]


def test_a_crm_reporting_a_won_deal_is_a_purchase_with_value(tmp_path: Path) -> None:
    [item] = Lifecycle(lifecycle_config(settings(tmp_path))).external_event(
        lead(), "Purchase", at=AT, value=15990.0, currency="brl"
    )
    assert item.payload["stage"] == "Purchase"
    assert (item.payload["value"], item.payload["currency"]) == (15990.0, "BRL")

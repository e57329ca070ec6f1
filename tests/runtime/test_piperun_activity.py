"""A turn's meeting becomes a `piperun_activity` item in the lead's CRM lane, owned by the
seller's PipeRun user; CrmSync.activity puts it on the deal, or a note, or nothing."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aioresponses import CallbackResult, aioresponses
from pydantic import SecretStr

from core.outbox import PipeRunActivity
from core.records import LeadRecord, MeetingRecord, lane_key
from integrations.piperun import PipeRunClient, PipeRunConfig, load_piperun_texts
from runtime.crm_sync import CrmSync, CrmSyncConfig
from runtime.lifecycle import Lifecycle, LifecycleConfig, piperun_owners
from runtime.sellers import Seller, Sellers
from tests.helpers.fake_piperun import BASE
from tests.runtime.test_lifecycle import KEY, commit, lead

DEAL = 777
MEETING = MeetingRecord(
    event_id="sdr0a1b2c3d4e5f",
    contact_key=KEY,
    seller_key="ana",
    calendar_id="ana@acme.com.br",
    starts_at=datetime(2026, 5, 4, 17, 0, tzinfo=UTC),
    ends_at=datetime(2026, 5, 4, 17, 30, tzinfo=UTC),
    meet_url="https://meet.google.com/abc-defg-hij",
)
SELLERS = Sellers((Seller(key="ana", name="Ana", email="ana@acme.com.br", piperun_user_id=1001),))
PIPERUN = LifecycleConfig(piperun=True, piperun_sync_on=frozenset({"hot"}))


def test_a_booked_meeting_is_an_activity_item_in_the_crm_lane_owned_by_the_seller() -> None:
    items = Lifecycle(PIPERUN, seller_owner=piperun_owners(SELLERS)).items_for(
        lead(), commit(meeting=MEETING)
    )

    [item] = [i for i in items if i.kind == "piperun_activity"]
    assert item.order_key == lane_key("crm", KEY)
    assert item.idempotency_key == f"piperun-activity:{MEETING.event_id}:scheduled:2026-05-04T17:00:00+00:00"
    payload = PipeRunActivity.parse(item.payload)
    assert (payload.title, payload.owner_id, payload.status) == ("Reunião com Maria", 1001, "scheduled")
    assert payload.meet_url == MEETING.meet_url and payload.event_id == MEETING.event_id


def test_a_cancel_is_its_own_item_and_without_the_composition_no_owner_is_named() -> None:
    cancelled = replace(MEETING, status="cancelled")
    [item] = [
        i
        for i in Lifecycle(PIPERUN).items_for(lead(), commit(meeting=cancelled))
        if i.kind == "piperun_activity"
    ]
    assert item.idempotency_key.startswith(f"piperun-activity:{MEETING.event_id}:cancelled:")
    assert PipeRunActivity.parse(item.payload).owner_id is None
    # A seller who left prompts/sellers.toml owns nothing; PipeRun not configured: no item.
    assert piperun_owners(SELLERS)("gone") is None
    assert [i.kind for i in Lifecycle(LifecycleConfig()).items_for(lead(), commit(meeting=MEETING))] == []


class Leads:
    def __init__(self, record: LeadRecord | None) -> None:
        self.record = record

    async def get_lead(self, contact_key: str) -> LeadRecord | None:
        return self.record


async def deliver(
    record: LeadRecord | None, payload: PipeRunActivity, *, owner_id: int | None = None
) -> list[tuple[str, str, Any]]:
    calls: list[tuple[str, str, Any]] = []

    def answer(method: str, data: Any) -> Any:
        async def callback(url: Any, **kwargs: Any) -> CallbackResult:
            calls.append((method, str(url.path).removeprefix("/v1"), kwargs.get("json")))
            return CallbackResult(payload={"success": True, "data": data})

        return callback

    item = payload.item(order_key=lane_key("crm", KEY), idempotency_key="piperun-activity:x")
    item.id = 1
    with aioresponses() as mocked:
        any_query = r"(\?.*)?$"
        mocked.get(
            re.compile(rf"{re.escape(BASE)}/activityTypes{any_query}"),
            callback=answer("GET", [{"id": 9, "name": "Reunião", "active": 1}]),
            repeat=True,
        )
        mocked.get(
            re.compile(rf"{re.escape(BASE)}/activities{any_query}"), callback=answer("GET", []), repeat=True
        )
        mocked.post(
            re.compile(rf"{re.escape(BASE)}/activities$"),
            callback=answer("POST", {"id": 55, "deal_id": DEAL}),
            repeat=True,
        )
        mocked.get(
            re.compile(rf"{re.escape(BASE)}/notes{any_query}"), callback=answer("GET", []), repeat=True
        )
        mocked.post(
            re.compile(rf"{re.escape(BASE)}/notes$"),
            callback=answer("POST", {"id": 66, "deal_id": DEAL}),
            repeat=True,
        )
        async with aiohttp.ClientSession() as session:
            client = PipeRunClient(PipeRunConfig(token=SecretStr("pr-token")), session)
            crm = CrmSync(client, Leads(record), CrmSyncConfig(1, 2, owner_id=owner_id), load_piperun_texts())  # type: ignore[arg-type]
            await crm.activity(item, payload)
    return calls


def activity_payload(**changes: Any) -> PipeRunActivity:
    values: dict[str, Any] = {
        "contact_key": KEY,
        "title": "Reunião com Maria",
        "starts_at": MEETING.starts_at.isoformat(),
        "ends_at": MEETING.ends_at.isoformat(),
        "owner_id": 1001,
        "meet_url": MEETING.meet_url,
        "event_id": MEETING.event_id,
        "status": "scheduled",
    }
    return PipeRunActivity(**{**values, **changes})


async def test_the_activity_lands_on_the_leads_deal_with_the_sellers_owner() -> None:
    calls = await deliver(lead(crm_deal_id=DEAL), activity_payload())
    [(_, path, body)] = [c for c in calls if c[0] == "POST"]
    assert path == "/activities"
    assert (body["deal_id"], body["owner_id"], body["activity_type_id"]) == (DEAL, 1001, 9)


async def test_without_any_owner_the_meeting_is_a_deal_note_and_the_deal_owner_is_the_fallback() -> None:
    calls = await deliver(lead(crm_deal_id=DEAL), activity_payload(owner_id=None))
    [(_, path, body)] = [c for c in calls if c[0] == "POST"]
    assert path == "/notes" and "reunião agendada pelo bot SDR" in body["text"]
    assert "04/05/2026 14:00" in body["text"]  # Brasília time

    calls = await deliver(lead(crm_deal_id=DEAL), activity_payload(owner_id=None), owner_id=42)
    [(_, path, body)] = [c for c in calls if c[0] == "POST"]
    assert path == "/activities" and body["owner_id"] == 42


async def test_no_deal_or_an_erased_lead_sends_nothing() -> None:
    assert await deliver(lead(), activity_payload()) == []
    assert await deliver(None, activity_payload()) == []


def test_a_meeting_with_a_lead_not_yet_in_the_crm_syncs_the_deal_before_the_activity() -> None:
    # A warm lead books a meeting: the sync ("meeting") goes first in the CRM lane, so
    # the activity that follows finds the deal.
    items = Lifecycle(PIPERUN, seller_owner=piperun_owners(SELLERS)).items_for(
        lead(), commit(meeting=MEETING)
    )
    crm = [i for i in items if i.order_key == lane_key("crm", KEY)]
    assert [i.kind for i in crm] == ["piperun_sync", "piperun_activity"]
    assert crm[0].payload["reason"] == "meeting"

    # Already in the CRM: no extra sync for the meeting.
    with_deal = replace(lead(), crm_deal_id=DEAL)
    kinds = [i.kind for i in Lifecycle(PIPERUN).items_for(with_deal, commit(meeting=MEETING))]
    assert "piperun_activity" in kinds
    assert all(
        i.payload.get("reason") != "meeting"
        for i in Lifecycle(PIPERUN).items_for(with_deal, commit(meeting=MEETING))
    )

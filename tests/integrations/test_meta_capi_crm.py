"""Conversions API for CRM: every stage of a Meta Lead Ads lead goes the Conversion Leads
way (`system_generated`, `user_data.lead_id` = the leadgen id, `custom_data.event_source`
"crm" and `lead_event_source` = the CRM's name), from its Lead to its Purchase; leads that
came otherwise (click-to-WhatsApp, Instagram, a website) keep their events as they were.

Meta's published example (tests/fixtures/meta_capi/crm_conversion_leads_payload_example.json,
from conversion-leads-integration/payload-specification) is what the models must accept.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs
from yarl import URL

from core.models import AdReferral
from core.outbox import CapiEvent as CapiItem
from core.records import LeadRecord, OutboxItem
from integrations.meta_capi import (
    CRM_EVENT_SOURCE,
    DEFAULT_LEAD_EVENT_SOURCE,
    CapiCustomData,
    CapiEvent,
    CapiUserData,
    MetaCapiClient,
    MetaCapiConfig,
    build_event,
    crm_lead_id,
    sha256_hex,
)
from runtime.capi_delivery import CapiConfig, CapiDelivery

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "meta_capi"
GRAPH = "https://graph.facebook.com"
VERSION = "v21.0"
PIXEL = "1202835294532393"
TOKEN = "EAAGm0PX4ZCpsBO-capi-SECRET-token-crm"
EVENTS_URL = f"{GRAPH}/{VERSION}/{PIXEL}/events"

PHONE = "5511987654321"
EMAIL = "maria@exemplo.com.br"
LEADGEN_ID = "1234567890123456"
EVENT_TIME = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FORM_REFERRAL = AdReferral(
    source_id="120210000000000001",
    source_type="lead_ads",
    headline="Formulário Boi Bom",
    leadgen_id=LEADGEN_ID,
    form_id="987654321098765",
    campaign_id="120210000000000000",
).model_dump()
CTWA_REFERRAL = {
    "source_type": "ad",
    "source_id": "120210000000000002",
    "ctwa_clid": "Afc3nYt4TTydumlFFsatFz8bR2yHCtVA92Veu_zDE4DgAI",
}
STAGES = ["lead", "qualified", "scheduled", "won", "lost"]


def published_example() -> dict[str, Any]:
    data = json.loads((FIXTURES / "crm_conversion_leads_payload_example.json").read_text(encoding="utf-8"))
    data.pop("_source")
    return data


def event(stage: Any, referral: Any = FORM_REFERRAL, **overrides: Any) -> CapiEvent:
    values: dict[str, Any] = {
        "contact_key": f"zapi:{PHONE}",
        "channel": "zapi",
        "event_time": EVENT_TIME,
        "phone": PHONE,
        "email": EMAIL,
        "referral": referral,
        "value": 1500 if stage == "won" else None,
    }
    values.update(overrides)
    return build_event(stage, **values)


# --- Meta's published parameters ------------------------------------------------------


def test_the_published_example_is_a_valid_event_once_it_has_an_id() -> None:
    example = published_example()
    parsed = CapiEvent(**example, event_id="sdr-example")
    assert parsed.user_data.lead_id == 1234567890123456
    assert parsed.custom_data is not None and parsed.custom_data.crm
    payload = parsed.payload()
    for key in ("event_name", "event_time", "user_data", "action_source", "custom_data"):
        assert payload[key] == example[key]


@pytest.mark.parametrize(
    "lead_id",
    ["1234567890123456", 123456789012345678, 12345678901234, 0, -123456789012345, True, 1.234567890123456e15],
)
def test_lead_id_is_an_integer_of_15_to_17_digits(lead_id: Any) -> None:
    with pytest.raises(ValidationError):
        CapiUserData(lead_id=lead_id)


@pytest.mark.parametrize("lead_id", [123456789012345, 1234567890123456, 12345678901234567])
def test_lead_ids_of_15_to_17_digits_are_taken(lead_id: int) -> None:
    assert CapiUserData(lead_id=lead_id).lead_id == lead_id


@pytest.mark.parametrize(
    "custom",
    [
        {"event_source": "crm"},
        {"lead_event_source": "SDR Agent"},
        {"event_source": "website", "lead_event_source": "SDR Agent"},
        {"event_source": "crm", "lead_event_source": "  "},
    ],
)
def test_crm_custom_data_comes_whole(custom: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CapiCustomData(**custom)


def test_a_crm_event_is_system_generated_and_lead_id_needs_the_crm_shape() -> None:
    base = published_example()
    with pytest.raises(ValidationError, match="system_generated"):
        CapiEvent(**{**base, "action_source": "website"}, event_id="x")
    with pytest.raises(ValidationError, match="lead_id"):
        CapiEvent(**{**base, "custom_data": None}, event_id="x")


# --- a Lead Ads lead: every stage the CRM way -------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_of_a_form_lead_has_the_crm_shape(stage: Any) -> None:
    payload = event(stage).payload()
    assert payload["action_source"] == "system_generated"
    assert "messaging_channel" not in payload
    assert payload["user_data"]["lead_id"] == int(LEADGEN_ID)
    assert payload["user_data"]["ph"] == [sha256_hex(PHONE)]
    assert payload["user_data"]["em"] == [sha256_hex(EMAIL)]
    assert payload["custom_data"]["event_source"] == CRM_EVENT_SOURCE == "crm"
    assert payload["custom_data"]["lead_event_source"] == DEFAULT_LEAD_EVENT_SOURCE == "SDR Agent"


def test_lead_and_purchase_carry_the_same_lead_id() -> None:
    lead, purchase = event("lead").payload(), event("won").payload()
    assert lead["event_name"] == "Lead" and purchase["event_name"] == "Purchase"
    assert lead["user_data"]["lead_id"] == purchase["user_data"]["lead_id"] == int(LEADGEN_ID)
    assert purchase["custom_data"] == {
        "value": 1500.0,
        "currency": "BRL",
        "event_source": "crm",
        "lead_event_source": "SDR Agent",
    }
    assert lead["custom_data"] == {"event_source": "crm", "lead_event_source": "SDR Agent"}


def test_the_crm_name_is_the_callers() -> None:
    payload = event("qualified", lead_event_source="PipeRun").payload()
    assert payload["custom_data"]["lead_event_source"] == "PipeRun"


def test_a_form_lead_never_rides_on_business_messaging() -> None:
    # A Lead Ads referral with a click id too (a hand-made one): the CRM shape still wins,
    # and click ids mean nothing outside business_messaging.
    referral = {**FORM_REFERRAL, "ctwa_clid": CTWA_REFERRAL["ctwa_clid"]}
    payload = event("lead", referral=referral, whatsapp_business_account_id="102290129340398").payload()
    assert payload["event_name"] == "Lead"
    assert payload["action_source"] == "system_generated"
    assert "ctwa_clid" not in payload["user_data"]
    assert "whatsapp_business_account_id" not in payload["user_data"]


def test_a_stored_numeric_leadgen_id_is_read_too() -> None:
    assert crm_lead_id({"leadgen_id": int(LEADGEN_ID)}) == int(LEADGEN_ID)
    assert crm_lead_id({"leadgen_id": f" {LEADGEN_ID} "}) == int(LEADGEN_ID)
    assert crm_lead_id(AdReferral(leadgen_id=LEADGEN_ID)) == int(LEADGEN_ID)
    assert crm_lead_id(None) is None and crm_lead_id({}) is None


@pytest.mark.parametrize("leadgen_id", ["lead-abc-123", "12345", "0123456789012345", "123456789012345678"])
def test_a_leadgen_id_that_is_not_metas_is_not_sent_as_lead_id(leadgen_id: str) -> None:
    with capture_logs() as logs:
        payload = event("won", referral={**FORM_REFERRAL, "leadgen_id": leadgen_id}).payload()
    assert "lead_id" not in payload["user_data"]
    # The event still goes, matched on what else there is, the CRM way.
    assert payload["user_data"]["ph"] == [sha256_hex(PHONE)]
    assert payload["user_data"]["em"] == [sha256_hex(EMAIL)]
    assert payload["action_source"] == "system_generated"
    assert payload["custom_data"]["event_source"] == "crm"
    assert leadgen_id not in json.dumps(logs)
    assert [e["event"] for e in logs] == ["meta_capi_lead_id_dropped"]


# --- other leads: unchanged ------------------------------------------------------------


def test_a_ctwa_leads_events_are_unchanged() -> None:
    lead = event("lead", referral=CTWA_REFERRAL).payload()
    assert lead["event_name"] == "LeadSubmitted"
    assert lead["action_source"] == "business_messaging"
    assert lead["messaging_channel"] == "whatsapp"
    assert lead["user_data"]["ctwa_clid"] == CTWA_REFERRAL["ctwa_clid"]
    assert "custom_data" not in lead
    purchase = event("won", referral=CTWA_REFERRAL).payload()
    assert purchase["action_source"] == "business_messaging"
    assert purchase["custom_data"] == {"value": 1500.0, "currency": "BRL"}
    schedule = event("scheduled", referral=CTWA_REFERRAL).payload()
    assert schedule["action_source"] == "system_generated" and "custom_data" not in schedule
    for payload in (lead, purchase, schedule):
        assert "lead_id" not in payload["user_data"]


@pytest.mark.parametrize("referral", [None, {"source_type": "ad", "source_id": "1"}, {"leadgen_id": None}])
def test_leads_without_a_leadgen_id_send_no_crm_fields(referral: Any) -> None:
    payload = event("lead", referral=referral).payload()
    assert payload["action_source"] == "system_generated"
    assert "lead_id" not in payload["user_data"]
    assert "custom_data" not in payload


# --- through the outbox handler ----------------------------------------------------------


class OneLeadStore:
    def __init__(self, lead: LeadRecord) -> None:
        self.lead = lead

    async def get_lead(self, contact_key: str) -> LeadRecord | None:
        return self.lead if contact_key == self.lead.contact_key else None


def lead_record(referral: dict[str, Any] | None) -> LeadRecord:
    return LeadRecord(
        id=1,
        contact_key=f"zapi:{PHONE}",
        channel="zapi",
        contact_id=PHONE,
        phone=PHONE,
        name="Maria Souza",
        profile={"email": EMAIL},
        score=80,
        temperature="hot",
        score_reasons=[],
        lead_message_count=1,
        opted_out=False,
        created_at=EVENT_TIME,
        updated_at=EVENT_TIME,
        referral=referral,
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def deliver(
    session: aiohttp.ClientSession, referral: dict[str, Any] | None, stages: list[str], **config: Any
) -> list[dict[str, Any]]:
    client = MetaCapiClient(
        MetaCapiConfig(
            graph_url=GRAPH, version=VERSION, pixel_id=PIXEL, access_token=SecretStr(TOKEN), **config
        ),
        session,
    )
    lead = lead_record(referral)
    delivery = CapiDelivery(client, OneLeadStore(lead), CapiConfig())  # type: ignore[arg-type]
    with aioresponses() as mock:
        mock.post(EVENTS_URL, status=200, payload={"events_received": 1, "fbtrace_id": "AbC"}, repeat=True)
        for stage in stages:
            priced = {"value": 1500.0, "currency": "BRL"} if stage == "Purchase" else {}
            item = CapiItem(
                contact_key=lead.contact_key, stage=stage, event_time=int(EVENT_TIME.timestamp()), **priced
            )
            await delivery.event(_item(), item)
        calls = mock.requests[("POST", URL(EVENTS_URL))]
    return [call.kwargs["json"]["data"][0] for call in calls]


def _item() -> OutboxItem:
    return None  # type: ignore[return-value]  # CapiDelivery.event does not read the item


async def test_the_handler_sends_a_form_leads_stages_the_crm_way(session: aiohttp.ClientSession) -> None:
    sent = await deliver(session, FORM_REFERRAL, ["Lead", "QualifiedLead", "Purchase"])
    assert [e["event_name"] for e in sent] == ["Lead", "QualifiedLead", "Purchase"]
    assert {e["user_data"]["lead_id"] for e in sent} == {int(LEADGEN_ID)}
    assert all(e["action_source"] == "system_generated" for e in sent)
    assert all(e["custom_data"]["event_source"] == "crm" for e in sent)
    assert all(e["custom_data"]["lead_event_source"] == "SDR Agent" for e in sent)


async def test_the_crm_name_comes_from_the_capi_config(session: aiohttp.ClientSession) -> None:
    [sent] = await deliver(session, FORM_REFERRAL, ["lead_lost"], lead_event_source="RD Station CRM")
    assert sent["custom_data"]["lead_event_source"] == "RD Station CRM"
    [blank] = await deliver(session, FORM_REFERRAL, ["lead_lost"], lead_event_source="   ")
    assert blank["custom_data"]["lead_event_source"] == DEFAULT_LEAD_EVENT_SOURCE


async def test_the_handler_leaves_a_ctwa_lead_as_it_was(session: aiohttp.ClientSession) -> None:
    lead, purchase = await deliver(session, CTWA_REFERRAL, ["Lead", "Purchase"])
    assert lead["event_name"] == "LeadSubmitted" and lead["action_source"] == "business_messaging"
    assert purchase["action_source"] == "business_messaging"
    assert "lead_id" not in lead["user_data"] and "event_source" not in purchase["custom_data"]

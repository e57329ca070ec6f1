"""A lead as the lead panel inside Chatwoot shows it, written through the store's own
API (a turn, the Chatwoot link, the PipeRun deal, a meeting); shared by the panel's API
and browser tests (not collected: no test_ prefix)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from core.models import contact_key_for
from core.records import MeetingRecord, NewMessage, QuoteRequest, TechnicalQuestion, TurnCommit
from core.settings import Settings
from store.base import Store
from tests.conftest import fast_settings
from tests.helpers.clock import WEEKDAY_IN_HOURS
from tests.helpers.fakes import load_fixture
from tests.helpers.leads import HOT_LEAD

PANEL_TOKEN = "cw-panel-9d2f7a41c8e35b60aa17"
CHATWOOT_ORIGIN = "https://chatwoot.agrosouza.com.br"
PHONE = "5544999999999"
KEY = contact_key_for("zapi", PHONE)
# The ids of tests/fixtures/chatwoot/dashboard_app_frame_app_context.json.
CONVERSATION_ID = 318
CONTACT_ID = 1042
DEAL_ID = 88123
FORM_ID = "form:meta_lead_ads:1204417790313711"
ASKED = "Preciso de um orçamento da FB300 para 3.000 hambúrgueres por dia"
QUOTE_SUMMARY = "FB300 para 3.000 hambúrgueres/dia, entrega em Londrina"


def panel_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "chatwoot_panel_token": PANEL_TOKEN,
        "chatwoot_frontend_url": CHATWOOT_ORIGIN,
        **overrides,
    }
    return fast_settings(tmp_path, **values)


def app_context() -> dict[str, Any]:
    """What Chatwoot posts into the panel, without the fixture's `_source`."""
    fixture = load_fixture("chatwoot/dashboard_app_frame_app_context.json")
    return {k: v for k, v in fixture.items() if k != "_source"}


def _profile() -> dict[str, Any]:
    said = WEEKDAY_IN_HOURS - timedelta(minutes=20)
    chat = {"message_id": "3EB0CW0000000002", "at": said.isoformat()}
    form = {"message_id": FORM_ID, "at": (said - timedelta(days=1)).isoformat()}
    provenance = {name: {**chat, "value": value} for name, value in HOT_LEAD.items()}
    for name in ("company", "city", "state"):
        provenance[name] = {**form, "value": HOT_LEAD[name]}
    return {**HOT_LEAD, "provenance": provenance}


def hot_turn() -> TurnCommit:
    return TurnCommit(
        turn_id="turn0001",
        contact_key=KEY,
        channel="zapi",
        contact_id=PHONE,
        phone=PHONE,
        name=HOT_LEAD["name"],
        inbound_ids=[],
        messages=[
            NewMessage(direction="in", kind="text", text=ASKED, provider_message_id="3EB0CW0000000002"),
            NewMessage(direction="out", kind="text", text="Perfeito, Maria! Já passo para o time."),
        ],
        profile=_profile(),
        score=82,
        temperature="quente",
        score_reasons=["decisor: +20", "urgência imediata: +25", "volume de 3.000/dia: +20"],
        lead_messages_added=3,
        quotes=[QuoteRequest(products=["FB300"], quantity="3.000/dia", summary=QUOTE_SUMMARY)],
        technical_questions=[
            TechnicalQuestion(question="A FB300 trabalha com carne de frango?", context=None)
        ],
        summary="Frigorífico em Londrina quer a FB300 já; decisora.",
        at=WEEKDAY_IN_HOURS,
    )


async def seed_hot_lead(store: Store) -> None:
    """Maria, hot, linked to Chatwoot conversation 318 / contact 1042 and PipeRun deal 88123."""
    await store.commit_turn(hot_turn())
    await store.save_chatwoot_link(
        KEY, contact_id=CONTACT_ID, source_id="8f3c2a71", conversation_id=CONVERSATION_ID
    )
    await store.save_crm_link(KEY, person_id=501, company_id=None, deal_id=DEAL_ID)
    starts = WEEKDAY_IN_HOURS + timedelta(days=1, hours=3, minutes=30)  # Thursday 14:00
    await store.save_meeting(
        MeetingRecord(
            event_id="sdr0a1b2c3d4",
            contact_key=KEY,
            seller_key="carlos",
            calendar_id="carlos@agrosouza.com.br",
            starts_at=starts,
            ends_at=starts + timedelta(minutes=30),
            meet_url="https://meet.google.com/abc-defg-hij",
        )
    )

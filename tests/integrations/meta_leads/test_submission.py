"""From Meta's webhook and the Graph lead to the `FormSubmission` the form intake takes:
answers sorted by prompts/lead_forms.toml, attribution from both, and the doctor's probe."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr

from core.form_fields import DEFAULT_PATH, FormFieldMap, load_form_field_map
from core.form_inbound import form_inbound
from core.forms import FormAttribution, FormSource
from core.lead import LeadProfile
from integrations.meta_leads import (
    GraphLead,
    MetaLeadsClient,
    MetaLeadsConfig,
    graph_lead_submission,
    parse_leadgen_webhook,
)
from tests.helpers.fakes import load_fixture
from tests.integrations.probe_io import FakeProbeIO

TOKEN = "EAAGm0PX4ZCpsBO-page-SECRET-token-91c2d7e4"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


def client(session: aiohttp.ClientSession, token: str | None = TOKEN) -> MetaLeadsClient:
    config = MetaLeadsConfig(page_access_token=SecretStr(token) if token else None)
    return MetaLeadsClient(config, session)


async def test_webhook_then_fetch_then_submission_from_meta_samples(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    [event] = parse_leadgen_webhook(load_fixture("meta_leads/webhooks_for_leadgen_sample.json"))
    mock.get(
        re.compile(r"^https://graph\.facebook\.com/v21\.0/123123123123\?"),
        payload=load_fixture("meta_leads/retrieving_leads_lead.json"),
    )
    lead = await client(session).fetch_lead(event.leadgen_id)
    submission = graph_lead_submission(lead, event, load_form_field_map(DEFAULT_PATH))

    assert submission.source is FormSource.META_LEAD_ADS
    assert submission.external_id == "123123123123"
    assert submission.submitted_at == datetime(2015, 2, 28, 8, 49, 14, tzinfo=UTC)
    assert submission.profile == {"name": "Joe Example", "email": "joe@example.com"}
    assert submission.phone is None  # Meta's sample form asks no phone
    assert [(a.question, a.answer) for a in submission.answers] == [
        ("Car make", "Honda"),
        ("Selected dealer", "99213450"),
    ]
    assert submission.attribution == FormAttribution(
        leadgen_id="123123123123",
        form_id="12312312312",
        ad_id="12312312312",
        page_id="123123123",
    )


def test_brazilian_lead_with_company_rules_becomes_a_whatsapp_first_touch(tmp_path: Path) -> None:
    path = tmp_path / "lead_forms.toml"
    path.write_text(
        '[campos]\nqual_o_seu_segmento = "segmento"\naceita_receber_novidades = "ignorar"\n\n'
        '[formularios."555000111222333"]\nnome = "Orçamento moedores"\n\n'
        '[formularios."555000111222333".rotulos]\nquais_equipamentos_procura = "Equipamentos de interesse"\n',
        encoding="utf-8",
    )
    lead = GraphLead.model_validate(load_fixture("meta_leads/retrieving_leads_lead_all_fields_br.json"))
    submission = graph_lead_submission(lead, None, load_form_field_map(path))

    assert submission.profile == {
        "name": "Maria Souza",
        "email": "maria@agrosouza.com.br",
        "company": "Agro Souza",
        "city": "Campinas",
        "state": "São Paulo",
        "segment": "frigorífico",
    }
    assert [(a.question, a.answer) for a in submission.answers] == [
        ("Cargo", "Gerente de compras"),
        ("Equipamentos de interesse", "moedor, serra_fita"),
    ]
    assert submission.attribution == FormAttribution(
        leadgen_id="920184736501234",
        form_id="555000111222333",
        form_name="Orçamento moedores",
        ad_id="120210000000000001",
        ad_name="Moedores industriais - junho",
        adgroup_id="120210000000000002",
        campaign_id="120210000000000003",
        campaign_name="Leads equipamentos 2025",
        platform="ig",
        is_organic=False,
    )
    # What the runtime does next: the lead is reachable on WhatsApp and its profile is valid.
    inbound = form_inbound(submission, channel="whatsapp")
    assert inbound.contact_id == "5511987654321"
    assert inbound.provider_message_id == "form:meta_lead_ads:920184736501234"
    assert LeadProfile.model_validate(submission.profile).state == "SP"


def test_webhook_fills_what_the_graph_node_lacks() -> None:
    [event] = parse_leadgen_webhook(load_fixture("meta_leads/webhooks_for_leadgen_sample.json"))
    # A token without ads_management gets no ad fields on the node.
    lead = GraphLead.model_validate(
        {"id": "123123123123", "created_time": "2015-02-28T08:49:14+0000", "field_data": []}
    )
    attribution = graph_lead_submission(lead, event, FormFieldMap()).attribution
    assert (attribution.form_id, attribution.ad_id, attribution.page_id) == (
        "12312312312",
        "12312312312",
        "123123123",
    )


async def test_probe_reads_the_pages_own_node(session: aiohttp.ClientSession, mock: aioresponses) -> None:
    mock.get(
        re.compile(r"^https://graph\.facebook\.com/v21\.0/me\?"),
        payload={"id": "153125381133", "name": "Seleto"},
    )
    io = FakeProbeIO(session, secrets=(TOKEN,))
    result = await client(session).probe(io)
    assert result.ok and "Seleto" in result.detail
    [(url, headers, params)] = io.calls
    assert url == "https://graph.facebook.com/v21.0/me"
    assert headers == {"Authorization": f"Bearer {TOKEN}"}
    assert TOKEN not in url and TOKEN not in str(params)


async def test_probe_says_what_to_do_with_an_expired_token_or_none(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    body = load_fixture("meta_leads/graph_error_190_token_expired.json")
    status = body.pop("_http_status")
    mock.get(re.compile(r"^https://graph\.facebook\.com/v21\.0/me\?"), status=status, payload=body)
    expired = await client(session).probe(FakeProbeIO(session))
    assert not expired.ok and "META_PAGE_ACCESS_TOKEN" in expired.hint

    unset = await client(session, token=None).probe(FakeProbeIO(session))
    assert not unset.ok and "META_PAGE_ACCESS_TOKEN is not set" in unset.detail

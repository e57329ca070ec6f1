"""POST /webhooks/rdstation: RD Station Marketing's conversion webhook. The published
example is stored as the lead's first message; RD resending it changes nothing; a lead
without a phone is skipped without failing the batch; unauthenticated calls store nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.errors import StoreUnavailable
from core.form_fields import parse_form_field_map
from core.forms import FormSource
from core.models import MessageKind
from tests.conftest import fast_settings
from tests.helpers.clock import TestClock
from tests.helpers.fakes import load_fixture
from tests.web.support import error_body
from web.app import create_app
from web.keys import STORE

SECRET = "rd-hook-secret-8c2d4f6a"
URL = f"/webhooks/rdstation?token={SECRET}"
PUBLISHED_LEAD = "whatsapp:5548999999999"  # "mobile_phone": "48 999999999"
LANDING_LEAD = "whatsapp:5511987654321"  # the form's "celular": "(11) 98765-4321"


def published() -> dict[str, Any]:
    return load_fixture("rdstation/conversion_published_example.json")


def landing_page() -> dict[str, Any]:
    return load_fixture("rdstation/conversion_landing_page.json")


@pytest.fixture
async def rd(aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock) -> TestClient:
    # The web role: forms are stored and nobody answers them, so what is stored stays readable.
    settings = fast_settings(tmp_path, rdstation_webhook_secret=SECRET)
    return await aiohttp_client(create_app(settings, clock=clock, role="web"))


async def test_the_published_example_is_stored_as_the_leads_first_message(rd: TestClient) -> None:
    response = await rd.post(URL, json=published())
    assert response.status == 200
    assert await response.json() == {"status": "ok", "accepted": 1, "duplicates": 0, "skipped": 0}
    [record] = await rd.app[STORE].pending_inbound(PUBLISHED_LEAD)
    assert record.message.kind is MessageKind.FORM
    assert record.message.name == "Lead Name"
    form = record.message.form
    assert form is not None
    assert form.source is FormSource.RDSTATION
    assert form.external_id == "c2f3d2b3-......-eef38be32f7f:2012-06-04T15:31:35-03:00"
    assert form.submitted_at == datetime(2012, 6, 4, 18, 31, 35, tzinfo=UTC)  # when the lead converted
    assert form.profile == {
        "name": "Lead Name",
        "email": "email@email.com",
        "company": "Company Name",
        "city": "Florianópolis",
        "state": "SC",
    }
    assert [(a.question, a.answer) for a in form.answers] == [("Cargo", "Job")]
    assert form.attribution.conversion_identifier == "webinar-abc"


async def test_the_company_s_lead_forms_rules_are_applied(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if prompts/lead_forms.toml said: quantos_pedidos_por_mes = "volume".
    import web.app

    rules = parse_form_field_map({"campos": {"quantos_pedidos_por_mes": "volume"}})
    monkeypatch.setattr(web.app, "load_form_field_map", lambda: rules)
    settings = fast_settings(tmp_path, rdstation_webhook_secret=SECRET)
    client = await aiohttp_client(create_app(settings, clock=clock, role="web"))
    assert (await client.post(URL, json=landing_page())).status == 200
    [record] = await client.app[STORE].pending_inbound(LANDING_LEAD)
    assert record.message.form is not None and record.message.form.profile["volume"] == "30 a 50"


async def test_rd_resending_the_same_conversion_is_a_duplicate(rd: TestClient) -> None:
    assert (await rd.post(URL, json=published())).status == 200
    again = await rd.post(URL, json=published())
    assert again.status == 200
    assert await again.json() == {"status": "ok", "accepted": 0, "duplicates": 1, "skipped": 0}
    assert len(await rd.app[STORE].pending_inbound(PUBLISHED_LEAD)) == 1


async def test_a_new_conversion_of_the_same_person_is_a_second_form_for_the_same_lead(rd: TestClient) -> None:
    assert (await rd.post(URL, json=published())).status == 200
    later = published()
    later["leads"][0]["last_conversion"]["created_at"] = "2012-06-05T09:00:00-03:00"
    later["leads"][0]["last_conversion"]["content"]["identificador"] = "orcamento"
    response = await rd.post(URL, json=later)
    assert (await response.json())["accepted"] == 1
    records = await rd.app[STORE].pending_inbound(PUBLISHED_LEAD)
    identifiers = [r.message.form.attribution.conversion_identifier for r in records if r.message.form]
    assert identifiers == ["webinar-abc", "orcamento"]


async def test_a_lead_without_a_phone_is_skipped_and_the_batch_is_still_accepted(rd: TestClient) -> None:
    response = await rd.post(URL, json=landing_page())
    assert response.status == 200
    assert await response.json() == {"status": "ok", "accepted": 1, "duplicates": 0, "skipped": 1}
    assert await rd.app[STORE].pending_contacts() == [LANDING_LEAD]
    [record] = await rd.app[STORE].pending_inbound(LANDING_LEAD)
    form = record.message.form
    assert form is not None
    assert form.profile["cnpj"] == "11.222.333/0001-81"
    assert form.message == "Quero uma cotação para entrega semanal."
    attribution = form.attribution
    assert (attribution.utm_source, attribution.utm_medium, attribution.utm_campaign) == (
        "google",
        "cpc",
        "black-friday-atacado",
    )
    assert attribution.conversion_identifier == "lp-black-friday-atacado"
    assert form.submitted_at == datetime(2026, 12, 2, 13, 14, 5, tzinfo=UTC)  # 10:14:05 in São Paulo
    assert [a.question for a in form.answers] == [
        "Cargo",
        "Quantos pedidos por mes",
        "Produtos de interesse",
    ]


async def test_a_malformed_phone_is_skipped_too(rd: TestClient) -> None:
    payload = published()
    payload["leads"][0]["mobile_phone"] = payload["leads"][0]["personal_phone"] = "9999"
    response = await rd.post(URL, json=payload)
    assert await response.json() == {"status": "ok", "accepted": 0, "duplicates": 0, "skipped": 1}
    assert await rd.app[STORE].pending_contacts() == []


async def test_the_secret_is_also_accepted_in_a_header(rd: TestClient) -> None:
    response = await rd.post("/webhooks/rdstation", json=published(), headers={"X-Webhook-Secret": SECRET})
    assert response.status == 200 and (await response.json())["accepted"] == 1


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/webhooks/rdstation", {}),
        ("/webhooks/rdstation?token=guess", {}),
        ("/webhooks/rdstation?token=", {}),
        ("/webhooks/rdstation", {"X-Webhook-Secret": "guess"}),
        (f"/webhooks/rdstation?token={SECRET}x", {}),
    ],
    ids=["no-token", "wrong-token", "empty-token", "wrong-header", "longer-token"],
)
async def test_no_or_a_wrong_token_gets_401_and_stores_nothing(
    rd: TestClient, url: str, headers: dict[str, str]
) -> None:
    response = await rd.post(url, json=published(), headers=headers)
    assert response.status == 401
    assert SECRET not in (await error_body(response))["error"]
    assert await rd.app[STORE].pending_contacts() == []


async def test_without_a_configured_secret_the_route_is_closed(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    client = await aiohttp_client(create_app(fast_settings(tmp_path), clock=clock, role="web"))
    response = await client.post("/webhooks/rdstation?token=anything", json=published())
    assert response.status == 403
    assert "RDSTATION_WEBHOOK_SECRET" in (await error_body(response))["error"]


@pytest.mark.parametrize(
    ("data", "status"),
    [(b"{not json", 400), (b"[]", 422), (b'{"contact": {}}', 422), (b'{"leads": "x"}', 422)],
    ids=["bad-json", "a-list", "new-api-shape", "leads-not-a-list"],
)
async def test_a_body_that_is_not_rd_stations_is_refused(rd: TestClient, data: bytes, status: int) -> None:
    response = await rd.post(URL, data=data, headers={"Content-Type": "application/json"})
    assert response.status == status
    await error_body(response)


async def test_an_empty_batch_is_acknowledged(rd: TestClient) -> None:
    response = await rd.post(URL, json={"leads": []})
    assert await response.json() == {"status": "ok", "accepted": 0, "duplicates": 0, "skipped": 0}


async def test_the_store_down_gets_503_and_rds_retry_of_the_whole_post_is_accepted(
    rd: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unavailable(*_a: Any, **_kw: Any) -> bool:
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(rd.app[STORE], "add_inbound", unavailable)
    response = await rd.post(URL, json=landing_page())
    assert response.status == 503
    assert response.headers["Retry-After"] == "10"
    await error_body(response)
    monkeypatch.undo()
    retry = await rd.post(URL, json=landing_page())
    assert await retry.json() == {"status": "ok", "accepted": 1, "duplicates": 0, "skipped": 1}

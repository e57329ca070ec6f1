"""POST /api/leads: a website form or an automation tool hands the bot a lead. Only an
authenticated, well-formed lead with a WhatsApp number is stored, once, as the lead's
first message; everything else is refused with a status and a message that say why."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from core.errors import StoreUnavailable
from core.forms import FormSource, FormSubmission
from core.models import MessageKind
from tests.conftest import fast_settings
from tests.helpers.clock import WEEKDAY_IN_HOURS, TestClock
from tests.helpers.fakes import load_fixture
from tests.web.support import error_body
from web.app import create_app
from web.keys import STORE

KEY = "leads-api-key-3f9c1e7a5b"
LEAD_ID = "whatsapp:5511912345678"
BEARER = {"Authorization": f"Bearer {KEY}"}


def website_form() -> dict[str, Any]:
    return load_fixture("leads_api/website_form.json")


def signed(body: bytes, key: str = KEY) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock) -> TestClient:
    # The web role: forms are stored and nobody answers them, so what is stored stays readable.
    settings = fast_settings(tmp_path, leads_api_key=KEY)
    return await aiohttp_client(create_app(settings, clock=clock, role="web"))


async def stored_forms(api: TestClient, lead_id: str = LEAD_ID) -> list[FormSubmission]:
    records = await api.app[STORE].pending_inbound(lead_id)
    assert all(r.message.kind is MessageKind.FORM and r.message.form is not None for r in records)
    return [r.message.form for r in records if r.message.form is not None]


# --- accepted -------------------------------------------------------------------------


async def test_a_website_form_is_stored_as_the_leads_first_message(api: TestClient) -> None:
    response = await api.post("/api/leads", json=website_form(), headers=BEARER)
    assert response.status == 202
    assert await response.json() == {"status": "accepted", "lead_id": LEAD_ID}
    [record] = await api.app[STORE].pending_inbound(LEAD_ID)
    assert record.message.channel == "zapi"  # LEAD_FIRST_TOUCH_CHANNEL
    assert record.message.text == "Vocês entregam em Campinas?"
    assert record.message.name == "Carla Mendes"
    form = record.message.form
    assert form is not None
    assert form.source is FormSource.API
    # The app's clock, not the machine's: the test clock starts on a weekday morning.
    assert WEEKDAY_IN_HOURS <= form.submitted_at < WEEKDAY_IN_HOURS + timedelta(minutes=1)
    assert form.phone == "+55 (11) 91234-5678"
    assert form.profile == {
        "name": "Carla Mendes",
        "email": "carla@mercadinhobomdia.com.br",
        "company": "Mercadinho Bom Dia",
        "city": "Campinas",
        "state": "SP",
        "cnpj": "11.222.333/0001-81",
        "segment": "varejo alimentar",
        "product_interest": "embalagens",
        "volume": "2 mil unidades por mês",
    }
    assert [(a.question, a.answer) for a in form.answers] == [
        ("Quantas lojas você tem?", "3"),
        ("Já compra de distribuidor?", "sim"),
        ("Funcionários", "12"),
    ]
    attribution = form.attribution
    assert attribution.form_name == "landing-black-friday"
    assert attribution.page_url == "https://www.exemplo.com.br/black-friday?utm_source=instagram"
    assert (attribution.utm_source, attribution.utm_medium, attribution.utm_campaign) == (
        "instagram",
        "paid_social",
        "black-friday-2026",
    )
    assert (attribution.utm_term, attribution.utm_content) == ("embalagens atacado", "stories-video-1")
    assert form.external_id.startswith("body:")  # no key given: the body's hash


async def test_a_body_signed_with_the_key_is_accepted(api: TestClient) -> None:
    body = json.dumps({"phone": "11 91234-5678", "name": "Ana"}).encode()
    response = await api.post("/api/leads", data=body, headers=signed(body))
    assert response.status == 202
    [form] = await stored_forms(api)
    assert form.profile == {"name": "Ana"}


async def test_a_minimal_lead_is_only_a_phone_and_numbers_are_read_as_text(api: TestClient) -> None:
    response = await api.post("/api/leads", json={"phone": 11912345678, "volume": 500}, headers=BEARER)
    assert response.status == 202
    [form] = await stored_forms(api)
    assert (form.phone, form.profile) == ("11912345678", {"volume": "500"})


# --- idempotency ----------------------------------------------------------------------


async def test_the_same_idempotency_key_is_one_lead(api: TestClient) -> None:
    headers = {**BEARER, "Idempotency-Key": "form-7f3a9c"}
    first = await api.post("/api/leads", json=website_form(), headers=headers)
    edited = {**website_form(), "message": "retry with another text"}
    again = await api.post("/api/leads", json=edited, headers=headers)
    assert first.status == 202
    assert again.status == 200
    assert await again.json() == {"status": "duplicate", "lead_id": LEAD_ID}
    [form] = await stored_forms(api)
    assert form.external_id == "form-7f3a9c"
    assert form.message == "Vocês entregam em Campinas?"


async def test_the_same_external_id_is_one_lead_and_another_one_is_a_second_form(api: TestClient) -> None:
    body = {**website_form(), "external_id": "typeform-resp-001"}
    assert (await api.post("/api/leads", json=body, headers=BEARER)).status == 202
    assert (await api.post("/api/leads", json=body, headers=BEARER)).status == 200
    other = {**body, "external_id": "typeform-resp-002"}
    response = await api.post("/api/leads", json=other, headers=BEARER)
    assert response.status == 202
    assert (await response.json())["lead_id"] == LEAD_ID  # the same person: the same lead
    assert [f.external_id for f in await stored_forms(api)] == ["typeform-resp-001", "typeform-resp-002"]


async def test_a_double_submit_without_any_key_is_one_lead(api: TestClient) -> None:
    first = {"phone": "+55 11 91234-5678", "name": "Ana  Souza", "answers": {"Lojas": "3"}}
    # The same form, as a second click sends it: other spacing, key order, phone spelling.
    second = {"answers": {"Lojas": "3"}, "name": "Ana Souza", "phone": "(11) 91234-5678"}
    assert (await api.post("/api/leads", json=first, headers=BEARER)).status == 202
    assert (await api.post("/api/leads", json=second, headers=BEARER)).status == 200
    changed = {**second, "answers": {"Lojas": "4"}}
    assert (await api.post("/api/leads", json=changed, headers=BEARER)).status == 202
    assert len(await stored_forms(api)) == 2


# --- refused --------------------------------------------------------------------------


async def test_without_a_configured_key_the_route_is_closed(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    client = await aiohttp_client(create_app(fast_settings(tmp_path), clock=clock, role="web"))
    response = await client.post("/api/leads", json=website_form(), headers=BEARER)
    assert response.status == 403
    assert "LEADS_API_KEY" in (await error_body(response))["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer"},
        {"X-Signature-256": "sha256=" + "0" * 64},
        {"X-Signature-256": KEY},
    ],
    ids=["none", "wrong-bearer", "basic", "empty-bearer", "forged-hmac", "key-as-signature"],
)
async def test_wrong_credentials_get_401_and_store_nothing(api: TestClient, headers: dict[str, str]) -> None:
    response = await api.post("/api/leads", json=website_form(), headers=headers)
    assert response.status == 401
    body = await error_body(response)
    assert KEY not in json.dumps(body)
    assert await stored_forms(api) == []


async def test_a_signature_of_another_body_is_refused(api: TestClient) -> None:
    body = json.dumps({"phone": "11 91234-5678"}).encode()
    tampered = json.dumps({"phone": "11 98888-7777"}).encode()
    response = await api.post("/api/leads", data=tampered, headers=signed(body))
    assert response.status == 401
    other_key = await api.post("/api/leads", data=body, headers=signed(body, key="another-key"))
    assert other_key.status == 401
    assert await stored_forms(api) == []


async def test_unknown_fields_are_named_and_nothing_is_stored(api: TestClient) -> None:
    body = {**website_form(), "telefone": "11 91234-5678", "e-mail": "x@y.com"}
    response = await api.post("/api/leads", json=body, headers=BEARER)
    assert response.status == 422
    error = (await error_body(response))["error"]
    assert "unknown field(s) e-mail, telefone" in error
    assert "answers" in error  # where free questions go
    assert await stored_forms(api) == []


async def test_validation_errors_name_each_field_and_never_echo_the_values(api: TestClient) -> None:
    secret_like = "sk-live-" + "9" * 300
    body = {"phone": "11 91234-5678", "name": secret_like, "answers": ["not", "an", "object"], "state": 35}
    response = await api.post("/api/leads", json=body, headers=BEARER)
    assert response.status == 422
    error = (await error_body(response))["error"]
    assert "name: String should have at most 200 characters" in error
    assert "answers: Input should be a valid dictionary" in error
    assert "sk-live" not in error
    assert await stored_forms(api) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "Ana"}, "phone: Field required"),
        ({"phone": "   ", "name": "Ana"}, "the form has no phone number"),
        ({"phone": None}, "the form has no phone number"),
        ({"phone": "91234-5678"}, "not a number with area code (DDD)"),
        ({"phone": "ligar depois"}, "not a number with area code (DDD)"),
    ],
    ids=["missing", "blank", "null", "no-ddd", "words"],
)
async def test_a_lead_without_a_whatsapp_number_is_refused(
    api: TestClient, body: dict[str, Any], message: str
) -> None:
    response = await api.post("/api/leads", json=body, headers=BEARER)
    assert response.status == 422
    assert message in (await error_body(response))["error"]
    assert await api.app[STORE].pending_contacts() == []


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b"phone=11912345678", "application/x-www-form-urlencoded", 415),
        (b'{"phone": "11912345678"}', "text/plain", 415),
    ],
    ids=["bad-json", "bad-utf8", "not-an-object", "form-encoded", "text-plain"],
)
async def test_a_body_that_is_not_a_json_object_is_refused(
    api: TestClient, data: bytes, content_type: str, status: int
) -> None:
    response = await api.post("/api/leads", data=data, headers={**BEARER, "Content-Type": content_type})
    assert response.status == status
    await error_body(response)
    assert await api.app[STORE].pending_contacts() == []


async def test_a_json_body_without_a_content_type_is_read_as_json(api: TestClient) -> None:
    body = b'{"phone": "11912345678"}'
    response = await api.post("/api/leads", data=body, headers=BEARER, skip_auto_headers=["Content-Type"])
    assert response.status == 202
    assert len(await stored_forms(api)) == 1


async def test_a_body_over_64_kib_is_refused_before_it_is_read(api: TestClient) -> None:
    body = {"phone": "11912345678", "message": "x" * 70_000}
    response = await api.post("/api/leads", json=body, headers=BEARER)
    assert response.status == 413
    assert "64 KiB" in (await error_body(response))["error"]
    assert await stored_forms(api) == []


async def test_a_chunked_body_over_64_kib_is_refused_too(api: TestClient) -> None:
    async def chunks() -> Any:
        yield b'{"phone": "11912345678", "message": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    response = await api.post(
        "/api/leads", data=chunks(), headers={**BEARER, "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert await stored_forms(api) == []


async def test_a_malformed_idempotency_key_is_refused(api: TestClient) -> None:
    headers = {**BEARER, "Idempotency-Key": "k" * 201}
    response = await api.post("/api/leads", json=website_form(), headers=headers)
    assert response.status == 422
    assert "Idempotency-Key" in (await error_body(response))["error"]


async def test_the_store_down_gets_503_with_retry_after_and_the_retry_is_accepted(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unavailable(*_a: Any, **_kw: Any) -> bool:
        raise StoreUnavailable("database is locked")

    headers = {**BEARER, "Idempotency-Key": "retry-me"}
    monkeypatch.setattr(api.app[STORE], "add_inbound", unavailable)
    response = await api.post("/api/leads", json=website_form(), headers=headers)
    assert response.status == 503
    assert response.headers["Retry-After"] == "10"
    await error_body(response)
    monkeypatch.undo()
    retry = await api.post("/api/leads", json=website_form(), headers=headers)
    assert retry.status == 202
    assert [f.external_id for f in await stored_forms(api)] == ["retry-me"]


async def test_log_lines_never_hold_the_phone_or_the_email(api: TestClient) -> None:
    good = {**website_form(), "phone": "+55 21 97777-6666"}
    with capture_logs() as logs:
        assert (await api.post("/api/leads", json=good, headers=BEARER)).status == 202
        bad = {"phone": "97777-6666", "email": "carla@mercadinhobomdia.com.br"}
        assert (await api.post("/api/leads", json=bad, headers=BEARER)).status == 422
        unknown = {"phone": "21977776666", "telefone": "21977776666"}
        assert (await api.post("/api/leads", json=unknown, headers=BEARER)).status == 422
    output = json.dumps(logs, default=str)
    assert "form_lead_received" in output and "leads_api_rejected" in output
    for secret in ("77776666", "7777-6666", "carla@", KEY):
        assert secret not in output

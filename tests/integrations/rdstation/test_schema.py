"""RD Station Marketing's conversion webhook read into forms: the published example,
a landing page's own fields, and payloads that are odd without being wrong."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from core.form_fields import parse_form_field_map
from core.forms import FormSource
from integrations.rdstation import RdPayloadError, parse_rdstation_batch, parse_rdstation_conversion
from tests.helpers.clock import WEEKDAY_IN_HOURS
from tests.helpers.fakes import load_fixture

NOW = WEEKDAY_IN_HOURS


def published() -> dict[str, Any]:
    return load_fixture("rdstation/conversion_published_example.json")


def landing_page() -> dict[str, Any]:
    return load_fixture("rdstation/conversion_landing_page.json")


def test_the_published_example_is_one_form_with_the_leads_fields() -> None:
    [form] = parse_rdstation_conversion(published(), received_at=NOW)
    assert form.source is FormSource.RDSTATION
    assert form.external_id == "c2f3d2b3-......-eef38be32f7f:2012-06-04T15:31:35-03:00"
    assert form.submitted_at == datetime(2012, 6, 4, 18, 31, 35, tzinfo=UTC)
    assert form.phone == "48 999999999"
    assert form.profile == {
        "name": "Lead Name",
        "email": "email@email.com",
        "company": "Company Name",
        "city": "Florianópolis",
        "state": "SC",
    }
    assert [(a.question, a.answer) for a in form.answers] == [("Cargo", "Job")]
    # The last conversion is the one that brought the lead now; it has no origin of its own.
    assert form.attribution.conversion_identifier == "webinar-abc"
    assert form.attribution.utm_source is None
    assert form.message is None


def test_a_landing_page_conversion_keeps_its_fields_answers_and_origin() -> None:
    batch = parse_rdstation_batch(landing_page(), received_at=NOW)
    assert batch.skipped == []
    form, no_phone = batch.submissions
    assert form.external_id == "7d4b1e3a-5c2f-4a8e-9b6d-2f0e1c3a4b5d:2026-12-02T10:14:05-03:00"
    assert form.phone == "(11) 98765-4321"  # the form's celular: RD has no phone on the lead
    assert form.profile == {
        "name": "Marina Souza",
        "email": "marina.souza@padariapaodeouro.com.br",
        "company": "Padaria Pão de Ouro",
        "city": "São Paulo",
        "state": "SP",
        "cnpj": "11.222.333/0001-81",
    }
    assert [(a.question, a.answer) for a in form.answers] == [
        ("Cargo", "Sócia-gerente"),
        # RD's custom fields, named for a person (the `cf_` prefix is RD's bookkeeping).
        ("Quantos pedidos por mes", "30 a 50"),
        ("Produtos de interesse", "Farinha, Fermento"),
    ]
    assert form.message == "Quero uma cotação para entrega semanal."
    attribution = form.attribution
    assert attribution.conversion_identifier == "lp-black-friday-atacado"
    assert (
        attribution.utm_source,
        attribution.utm_medium,
        attribution.utm_campaign,
        attribution.utm_term,
    ) == (
        "google",
        "cpc",
        "black-friday-atacado",
        "farinha atacado",
    )
    assert no_phone.phone is None and no_phone.profile["name"] == "João Lima"


def test_the_company_s_lead_forms_rules_apply_to_rd_station_forms_too() -> None:
    # prompts/lead_forms.toml: a custom field everywhere, and one form's own rules, keyed
    # by RD's conversion identifier.
    rules = parse_form_field_map(
        {
            "campos": {"quantos_pedidos_por_mes": "volume"},
            "rotulos": {"produtos_de_interesse": "Produtos que procura"},
            "formularios": {
                "lp-black-friday-atacado": {"nome": "Black Friday atacado", "campos": {"cidade": "resposta"}}
            },
        }
    )
    form, _ = parse_rdstation_batch(landing_page(), received_at=NOW, fields=rules).submissions
    assert form.attribution.form_name == "Black Friday atacado"
    assert form.profile["volume"] == "30 a 50"
    assert form.profile["city"] == "São Paulo"  # the lead's own field still wins
    assert ("Produtos que procura", "Farinha, Fermento") in [(a.question, a.answer) for a in form.answers]
    assert ("Cidade", "São Paulo") in [(a.question, a.answer) for a in form.answers]


def test_the_job_title_is_one_answer_and_english_field_names_fill_the_profile() -> None:
    payload = published()
    content = payload["leads"][0]["last_conversion"]["content"]
    content.update({"cargo": "Diretora", "segment": "Açougue", "product": "FB300"})
    [form] = parse_rdstation_conversion(payload, received_at=NOW)
    # The lead's own job title wins; the form's is not repeated as a second "Cargo".
    assert [a.question for a in form.answers].count("Cargo") == 1
    assert (form.profile["segment"], form.profile["product_interest"]) == ("Açougue", "FB300")


def test_a_new_conversion_of_the_same_person_is_a_new_form_the_same_one_resent_is_not() -> None:
    first = parse_rdstation_conversion(published(), received_at=NOW)[0]
    again = parse_rdstation_conversion(published(), received_at=NOW)[0]
    later = published()
    later["leads"][0]["last_conversion"]["created_at"] = "2012-06-05T09:00:00-03:00"
    converted_again = parse_rdstation_conversion(later, received_at=NOW)[0]
    assert first.external_id == again.external_id
    assert converted_again.external_id != first.external_id


def test_the_first_dialable_phone_wins_and_a_bad_one_is_kept_for_the_refusal() -> None:
    payload = published()
    lead = payload["leads"][0]
    lead["mobile_phone"] = "123"  # not dialable
    lead["personal_phone"] = None
    lead["last_conversion"]["content"]["whatsapp"] = "+55 48 98888-7777"
    assert parse_rdstation_conversion(payload, received_at=NOW)[0].phone == "+55 48 98888-7777"
    del lead["last_conversion"]["content"]["whatsapp"]
    assert parse_rdstation_conversion(payload, received_at=NOW)[0].phone == "123"


def test_odd_values_are_read_loosely_and_a_lead_that_is_not_an_object_is_skipped() -> None:
    payload = published()
    lead = payload["leads"][0]
    lead["name"] = {"first": "Lead"}  # not text: not said
    lead["mobile_phone"] = 48999999999  # a number, not a string
    lead["last_conversion"] = "not an object"  # falls back to the first conversion
    lead["uuid"] = None
    payload["leads"].append("garbage")
    batch = parse_rdstation_batch(payload, received_at=NOW)
    [form] = batch.submissions
    assert batch.skipped == ["leads[1] is not an object"]
    assert form.profile["name"] == "Lead Name"  # the form's `nome`
    assert form.phone == "48999999999"
    assert form.external_id == "1:2012-06-04T15:31:35-03:00"  # the lead's id when no uuid
    assert form.attribution.conversion_identifier == "ebook-abc"
    assert form.attribution.utm_campaign == "campaign 1"


def test_a_lead_without_any_id_or_date_gets_a_stable_id_from_its_content() -> None:
    payload = {"leads": [{"name": "Ana", "mobile_phone": "11 91234-5678"}]}
    first = parse_rdstation_conversion(payload, received_at=NOW)[0]
    again = parse_rdstation_conversion(copy.deepcopy(payload), received_at=NOW)[0]
    assert first.external_id.startswith("sha256:") and first.external_id == again.external_id
    assert first.submitted_at == NOW


def test_a_conversion_dated_after_its_arrival_is_dated_at_its_arrival() -> None:
    payload = published()
    payload["leads"][0]["last_conversion"]["created_at"] = "2031-01-01T00:00:00"
    assert parse_rdstation_conversion(payload, received_at=NOW)[0].submitted_at == NOW


def test_many_form_fields_are_capped_at_the_forms_limit() -> None:
    payload = published()
    payload["leads"][0]["last_conversion"]["content"].update({f"pergunta_{i}": "x" * 5000 for i in range(80)})
    [form] = parse_rdstation_conversion(payload, received_at=NOW)
    assert len(form.answers) == 50
    assert all(len(a.answer) <= 1000 for a in form.answers)


@pytest.mark.parametrize("payload", [[], {"lead": []}, {"leads": {"0": {}}}, "leads", None])
def test_a_body_that_is_not_rd_stations_is_refused(payload: Any) -> None:
    with pytest.raises(RdPayloadError):
        parse_rdstation_conversion(payload, received_at=NOW)

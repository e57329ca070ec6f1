"""Lead profile and merge: what a sales manager would notice if it went wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from openai.lib._parsing._completions import type_to_response_format_param
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, ConfigDict, ValidationError

from core.lead import (
    FIELD_LABELS,
    PROFILE_FIELDS,
    QUALIFICATION_ORDER,
    LeadProfile,
    LeadUpdate,
    describe_lead,
    merge_lead,
    missing_fields,
)
from core.lead_fields import normalize_cnpj, parse_volume_per_day

T1 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
T2 = datetime(2025, 3, 10, 9, 5, tzinfo=UTC)
VALID_CNPJ = "11.222.333/0001-81"


def upd(**fields: object) -> LeadUpdate:
    return LeadUpdate.model_validate(fields)


# --- structured-output schema ------------------------------------------------------------


def _walk(schema: object):
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from _walk(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _walk(value)


def test_lead_update_is_openai_strict_compatible() -> None:
    schema = to_strict_json_schema(LeadUpdate)
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["additionalProperties"] is False
    # Our own pydantic schema already has no defaults: the model must answer every field.
    own = LeadUpdate.model_json_schema()
    assert set(own["required"]) == set(own["properties"])
    for node in _walk(own):
        assert "format" not in node
        assert "default" not in node
        assert node.get("additionalProperties") in (None, False)
        for keyword in ("minimum", "maximum", "pattern", "minLength", "maxLength"):
            assert keyword not in node
    # Every profile field can be extracted.
    assert set(own["properties"]) == set(PROFILE_FIELDS)


def test_lead_update_works_nested_in_a_response_format() -> None:
    class TurnOutput(BaseModel):
        model_config = ConfigDict(extra="forbid")
        reply: str
        lead: LeadUpdate

    param = type_to_response_format_param(TurnOutput)
    assert param["type"] == "json_schema"
    assert param["json_schema"]["strict"] is True
    nested = param["json_schema"]["schema"]["$defs"]["LeadUpdate"]
    assert set(nested["required"]) == set(nested["properties"])


def test_lead_update_parses_a_strict_model_answer() -> None:
    answer = dict.fromkeys(PROFILE_FIELDS) | {"name": "Carlos", "urgency": "imediata"}
    update = LeadUpdate.model_validate_json(json.dumps(answer))
    assert update.name == "Carlos"
    assert update.urgency == "imediata"


def test_lead_update_tolerates_missing_keys_and_off_enum_values() -> None:
    update = upd(name="Ana", urgency="urgente", decision_role="chefe de cozinha", knows_company="sim")
    assert update.name == "Ana"
    assert update.urgency == "imediata"
    assert update.decision_role is None  # unknown role dropped, not the whole update
    assert update.knows_company is True


def test_lead_update_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        upd(name="Ana", favourite_colour="azul")


# --- merge ------------------------------------------------------------------------------


def test_later_correction_of_the_city_wins() -> None:
    profile, _ = merge_lead(LeadProfile(), upd(city="Campinas", state="SP"), message_id="m1", at=T1)
    profile, changed = merge_lead(profile, upd(city="Jundiaí"), message_id="m2", at=T2)
    assert profile.city == "Jundiaí"
    assert profile.state == "SP"
    assert changed == ["city"]
    assert profile.provenance["city"].message_id == "m2"
    assert profile.provenance["state"].message_id == "m1"


@pytest.mark.parametrize("blank", [None, "", "   ", "\n"])
def test_null_or_blank_extraction_never_erases_a_known_name(blank: object) -> None:
    profile, _ = merge_lead(LeadProfile(), upd(name="Mariana Souza"), message_id="m1", at=T1)
    profile, changed = merge_lead(profile, upd(name=blank, company="Boi Bom"), message_id="m2")
    assert profile.name == "Mariana Souza"
    assert profile.company == "Boi Bom"
    assert changed == ["company"]
    assert profile.provenance["name"].message_id == "m1"


def test_false_is_information_not_blank() -> None:
    profile, changed = merge_lead(LeadProfile(), upd(knows_company=False), message_id="m1")
    assert profile.knows_company is False
    assert changed == ["knows_company"]


def test_bad_uf_is_dropped_while_the_rest_applies() -> None:
    profile, changed = merge_lead(
        LeadProfile(state="MG"),
        upd(name="João", city="Uberlândia", state="XX", email="Joao@Frigo.com.br"),
        message_id="m3",
    )
    assert profile.state == "MG"
    assert profile.name == "João"
    assert profile.city == "Uberlândia"
    assert profile.email == "joao@frigo.com.br"
    assert "state" not in changed
    assert changed == ["name", "city", "email"]


def test_invalid_cnpj_is_dropped_while_the_rest_applies() -> None:
    profile, changed = merge_lead(
        LeadProfile(), upd(cnpj="11.222.333/0001-82", company="Frigorífico Boi Bom"), message_id="m4"
    )
    assert profile.cnpj is None
    assert profile.company == "Frigorífico Boi Bom"
    assert changed == ["company"]


def test_valid_cnpj_is_kept_in_canonical_form() -> None:
    profile, changed = merge_lead(LeadProfile(), upd(cnpj=VALID_CNPJ), message_id="m5")
    assert profile.cnpj == "11222333000181"
    assert changed == ["cnpj"]
    assert "CNPJ: 11.222.333/0001-81" in describe_lead(profile)


@pytest.mark.parametrize("cnpj", ["00.000.000/0000-00", "11111111111111", "123", "11.222.333/0001-8", "abc"])
def test_nonsense_cnpj_is_refused(cnpj: str) -> None:
    with pytest.raises(ValueError):
        normalize_cnpj(cnpj)


def test_alphanumeric_cnpj_from_2026_is_accepted() -> None:
    # Example published by Receita Federal for the alphanumeric CNPJ.
    assert normalize_cnpj("12.ABC.345/01DE-35") == "12ABC34501DE35"


def test_bad_email_is_dropped() -> None:
    profile, changed = merge_lead(LeadProfile(email="a@b.com"), upd(email="sem arroba"), message_id="m")
    assert profile.email == "a@b.com"
    assert changed == []


def test_full_state_name_becomes_uf() -> None:
    profile, _ = merge_lead(LeadProfile(), upd(state="são paulo"), message_id="m")
    assert profile.state == "SP"


def test_city_with_uf_is_split() -> None:
    profile, changed = merge_lead(LeadProfile(), upd(city="Chapecó - SC"), message_id="m")
    assert (profile.city, profile.state) == ("Chapecó", "SC")
    assert changed == ["city", "state"]


def test_provenance_points_to_the_message_that_set_the_field() -> None:
    profile, _ = merge_lead(LeadProfile(), upd(name="Rita"), message_id="wamid.A", at=T1)
    profile, changed = merge_lead(
        profile, upd(name="Rita", product_interest="FB300"), message_id="wamid.B", at=T2
    )
    assert changed == ["product_interest"]  # repeating a known value is not a change
    assert profile.provenance["name"].message_id == "wamid.A"
    assert profile.provenance["name"].at == T1
    assert profile.provenance["product_interest"].message_id == "wamid.B"
    assert profile.provenance["product_interest"].value == "FB300"


def test_merge_does_not_mutate_the_input_profile() -> None:
    original = LeadProfile(name="Rita")
    merge_lead(original, upd(name="Rita Lima"), message_id="m")
    assert original.name == "Rita"
    assert original.provenance == {}


def test_no_change_returns_the_same_profile() -> None:
    profile = LeadProfile(name="Rita")
    same, changed = merge_lead(profile, upd(), message_id="m")
    assert same is profile and changed == []


def test_volume_per_day_is_derived_when_the_model_did_not() -> None:
    profile, changed = merge_lead(LeadProfile(), upd(volume="uns 3 mil hambúrgueres por dia"), message_id="m")
    assert profile.volume_per_day == 3000
    assert changed == ["volume", "volume_per_day"]


def test_model_volume_per_day_wins_over_derivation() -> None:
    profile, _ = merge_lead(LeadProfile(), upd(volume="300 por hora", volume_per_day=3000), message_id="m")
    assert profile.volume_per_day == 3000


def test_corrected_volume_without_number_does_not_keep_stale_figure() -> None:
    profile, _ = merge_lead(LeadProfile(), upd(volume="500 por dia"), message_id="m1")
    profile, changed = merge_lead(profile, upd(volume="umas duas toneladas"), message_id="m2")
    assert profile.volume == "umas duas toneladas"
    assert profile.volume_per_day is None
    assert "volume_per_day" not in profile.provenance
    assert changed == ["volume", "volume_per_day"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500 hambúrgueres/dia", 500),
        ("3.000 por dia", 3000),
        ("3 mil por dia", 3000),
        ("300 por hora", 2400),
        ("500 a 600 por dia", 500),
        ("500 hambúrgueres", None),
        ("bastante", None),
    ],
)
def test_parse_volume_per_day(text: str, expected: int | None) -> None:
    assert parse_volume_per_day(text) == expected


def test_profile_rejects_invalid_uf_directly() -> None:
    with pytest.raises(ValidationError):
        LeadProfile(state="ZZ")
    assert LeadProfile(state="rj").state == "RJ"


def test_profile_round_trips_through_json() -> None:
    profile, _ = merge_lead(
        LeadProfile(), upd(name="Rita", knows_company=True, volume_per_day=800), message_id="m", at=T1
    )
    again = LeadProfile.model_validate_json(profile.model_dump_json())
    assert again == profile
    assert again.provenance["knows_company"].value is True
    assert again.provenance["volume_per_day"].value == 800


# --- missing fields and labels ----------------------------------------------------------


def test_missing_fields_in_sales_priority_order() -> None:
    assert missing_fields(LeadProfile())[:5] == ["name", "product_interest", "volume", "city", "state"]
    profile = LeadProfile(name="Rita", product_interest="FB300", city="Campinas")
    assert missing_fields(profile) == [
        "volume",
        "state",
        "company",
        "segment",
        "urgency",
        "decision_role",
        "knows_company",
    ]


def test_complete_profile_misses_nothing() -> None:
    profile = LeadProfile(
        name="Rita",
        product_interest="FB300",
        volume_per_day=900,
        city="Campinas",
        state="SP",
        company="Casa de Carnes Rita",
        segment="açougue",
        urgency="ate_30_dias",
        decision_role="decisor",
        knows_company=False,
    )
    assert missing_fields(profile) == []


def test_every_field_has_a_pt_br_label() -> None:
    assert set(FIELD_LABELS) == set(PROFILE_FIELDS)
    assert set(QUALIFICATION_ORDER) <= set(FIELD_LABELS)

"""The leadgen Page webhook as Meta publishes it, and what a malformed body gets (422).

Fixtures under tests/fixtures/meta_leads/ cite their source in `_source`.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from core.errors import WebhookRejected
from integrations.meta_leads import MAX_WEBHOOK_ENTRIES, GraphLead, LeadgenEvent, parse_leadgen_webhook
from tests.helpers.fakes import load_fixture

SAMPLE = load_fixture("meta_leads/webhooks_for_leadgen_sample.json")


def sample() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE)


def test_meta_sample_with_numeric_ids_becomes_one_event_with_string_ids() -> None:
    assert parse_leadgen_webhook(sample()) == [
        LeadgenEvent(
            leadgen_id="123123123123",
            page_id="123123123",
            form_id="12312312312",
            ad_id="12312312312",
            adgroup_id="12312312312",
            created_time=datetime(2015, 8, 21, 1, 26, 24, tzinfo=UTC),
        )
    ]


def test_string_ids_parse_the_same_as_numbers() -> None:
    body = sample()
    value = body["entry"][0]["changes"][0]["value"]
    for key in ("leadgen_id", "page_id", "form_id", "ad_id", "adgroup_id"):
        value[key] = str(value[key])
    assert parse_leadgen_webhook(body) == parse_leadgen_webhook(sample())


def test_two_changes_in_one_delivery_are_two_leads_in_order() -> None:
    events = parse_leadgen_webhook(load_fixture("meta_leads/retrieving_leads_two_changes_sample.json"))
    assert [e.leadgen_id for e in events] == ["123123123123", "123123123124"]


def test_changes_of_other_fields_and_entries_without_changes_are_skipped() -> None:
    body = sample()
    body["entry"][0]["changes"].insert(0, {"field": "feed", "value": {"item": "status", "verb": "add"}})
    body["entry"].append({"id": "153125381133", "time": 1438292065, "messaging": [{"message": {}}]})
    assert [e.leadgen_id for e in parse_leadgen_webhook(body)] == ["123123123123"]
    only_feed = {
        "object": "page",
        "entry": [{"id": "1", "time": 1, "changes": [{"field": "feed", "value": {}}]}],
    }
    assert parse_leadgen_webhook(only_feed) == []


def test_the_same_lead_twice_in_one_body_is_one_event() -> None:
    body = sample()
    body["entry"].append(copy.deepcopy(body["entry"][0]))
    assert len(parse_leadgen_webhook(body)) == 1


def test_missing_page_and_time_come_from_the_entry() -> None:
    body = {
        "object": "page",
        "entry": [
            {
                "id": "153125381133",
                "time": 1438292065,
                "changes": [{"field": "leadgen", "value": {"leadgen_id": "444444444444", "form_id": "1"}}],
            }
        ],
    }
    [event] = parse_leadgen_webhook(body)
    assert event.page_id == "153125381133"
    assert event.created_time == datetime.fromtimestamp(1438292065, tz=UTC)


def _with_value(**value: Any) -> dict[str, Any]:
    body = sample()
    body["entry"][0]["changes"][0]["value"].update(value)
    return body


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ([], "the body"),
        ("{}", "the body"),
        ({"object": "instagram", "entry": []}, "object"),
        ({"object": "page"}, "entry"),
        ({"object": "page", "entry": {"id": "1"}}, "entry"),
        ({"object": "page", "entry": ["x"]}, "entry[0]"),
        ({"object": "page", "entry": [{"changes": {"field": "leadgen"}}]}, "entry[0].changes"),
        ({"object": "page", "entry": [{"changes": [{"field": "leadgen"}]}]}, "entry[0].changes[0].value"),
        (_with_value(leadgen_id=None), "entry[0].changes[0].value.leadgen_id"),
        (_with_value(leadgen_id="../me/accounts"), "entry[0].changes[0].value.leadgen_id"),
        (_with_value(leadgen_id=True), "entry[0].changes[0].value.leadgen_id"),
        (_with_value(created_time="yesterday"), "entry[0].changes[0].value.created_time"),
    ],
)
def test_malformed_bodies_are_rejected_with_422_saying_where(body: Any, where: str) -> None:
    with pytest.raises(WebhookRejected) as info:
        parse_leadgen_webhook(body)
    assert info.value.status == 422
    assert where in info.value.message


def test_too_many_entries_are_rejected() -> None:
    body = {"object": "page", "entry": [SAMPLE["entry"][0]] * (MAX_WEBHOOK_ENTRIES + 1)}
    with pytest.raises(WebhookRejected) as info:
        parse_leadgen_webhook(body)
    assert info.value.status == 422
    assert str(MAX_WEBHOOK_ENTRIES) in info.value.message


def test_graph_lead_reads_meta_sample_and_its_offset_without_colon() -> None:
    lead = GraphLead.model_validate(load_fixture("meta_leads/retrieving_leads_lead.json"))
    assert lead.created_time == datetime(2015, 2, 28, 8, 49, 14, tzinfo=UTC)
    assert lead.answers() == [
        ("car_make", "Honda"),
        ("full_name", "Joe Example"),
        ("email", "joe@example.com"),
        ("selected_dealer", "99213450"),
    ]


def test_graph_lead_joins_multiple_choice_values_and_ignores_unknown_fields() -> None:
    lead = GraphLead.model_validate(
        {
            "id": 920184736501234,
            "created_time": "2025-06-09T09:00:00-0300",
            "field_data": [
                {"name": "equipamentos", "values": ["moedor", "serra_fita"]},
                {"name": "vazio", "values": []},
            ],
            "custom_disclaimer_responses": [{"checkbox_key": "a", "is_checked": "1"}],
        }
    )
    assert lead.id == "920184736501234"
    assert lead.created_time == datetime(2025, 6, 9, 12, 0, tzinfo=UTC)
    assert lead.answers() == [("equipamentos", "moedor, serra_fita")]

"""The response schema as sent (agent/compact_schema.py): still strict-mode valid, with
the same fields, types and enums as the SDK's, at a fraction of the tokens."""

from __future__ import annotations

import json
from typing import Any

from openai.lib._parsing._completions import type_to_response_format_param

from agent.billing import format_tokens
from agent.compact_schema import compact_response_format
from agent.graph import AgentTurnOutput
from agent.tools import TOOL_NAMES
from core.lead import PROFILE_FIELDS


def nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [d for value in node.values() for d in nodes(value)]
    if isinstance(node, list):
        return [d for value in node for d in nodes(value)]
    return []


SDK = type_to_response_format_param(AgentTurnOutput)
SENT = compact_response_format(SDK)  # type: ignore[arg-type]
SCHEMA = SENT["json_schema"]["schema"]


def test_it_stays_a_strict_json_schema() -> None:
    assert SENT["type"] == "json_schema"
    assert SENT["json_schema"]["strict"] is True
    objects = [n for n in nodes(SCHEMA) if n.get("type") == "object"]
    assert len(objects) == 2 + len(TOOL_NAMES)  # the output, the lead and each tool
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
    assert not any("default" in n or "title" in n or "$ref" in n for n in nodes(SCHEMA))


def test_it_keeps_every_field_tool_and_enum() -> None:
    assert set(SCHEMA["properties"]) == {"reply", "lead", "tool_calls", "summary", "image_description"}
    assert set(SCHEMA["properties"]["lead"]["properties"]) == set(PROFILE_FIELDS)
    tools = SCHEMA["properties"]["tool_calls"]["items"]["anyOf"]
    assert [t["properties"]["tool"]["const"] for t in tools] == list(TOOL_NAMES)
    lead = SCHEMA["properties"]["lead"]["properties"]
    assert lead["city"] == {"type": ["string", "null"]}  # a nullable scalar, in the documented form
    assert {"enum": ["decisor", "influenciador", "usuario"], "type": "string"} in lead["decision_role"][
        "anyOf"
    ]
    # Nothing the model writes lost its instruction.
    assert "x8" in lead["volume_per_day"]["description"]
    assert "UF" in lead["state"]["description"]


def test_it_costs_less_than_half_the_sdks_schema() -> None:
    # 1,012 against 2,104 for the same models (2,472 before their descriptions were cut).
    assert format_tokens(SENT) <= 1100
    assert 2 * format_tokens(SENT) < format_tokens(SDK)  # type: ignore[arg-type]


def test_the_sdks_schema_is_left_as_it_was() -> None:
    again = type_to_response_format_param(AgentTurnOutput)
    compact_response_format(again)  # type: ignore[arg-type]
    assert json.dumps(again, sort_keys=True) == json.dumps(SDK, sort_keys=True)
    assert any("title" in n for n in nodes(again))

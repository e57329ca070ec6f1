"""The structured-output schema as OpenAI reads it, without what only costs tokens.

The schema is billed as input on every call (it is injected ahead of the system
message). The SDK's strict conversion of the pydantic models carries weight the model
does not use: a `title` on every node, each nullable scalar spelled as a two-branch
`anyOf`, a `$defs` entry left behind for a model it also inlined, definitions used once
behind a `$ref`, and the root model's docstring (written for developers). Without them
the schema is 1,447 o200k tokens instead of 2,472, with the same fields, types, enums
and descriptions.

What stays is what strict mode requires and what the model reads: every object keeps
`additionalProperties: false` and every property in `required`; a nullable scalar is
`"type": [T, "null"]`, the documented strict-mode idiom
(https://platform.openai.com/docs/guides/structured-outputs/supported-schemas#all-fields-must-be-required).
Nullable enums keep their `anyOf` (an enum with null is not in those documented forms).
Parsing is unchanged: answers are still validated by the pydantic models themselves.
"""

from __future__ import annotations

import copy
from typing import Any

_SCALARS = frozenset({"string", "integer", "number", "boolean"})
_DEFS = "#/$defs/"


def _nullable_scalar(node: dict[str, Any]) -> dict[str, Any]:
    """{"anyOf": [{"type": T}, {"type": "null"}], ...} -> {"type": [T, "null"], ...}."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2 or {"type": "null"} not in branches:
        return node
    [other] = [b for b in branches if b != {"type": "null"}]
    if set(other) != {"type"} or other["type"] not in _SCALARS:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {"type": [other["type"], "null"], **rest}


def _compact(node: Any) -> Any:
    if isinstance(node, list):
        return [_compact(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            # Maps of names to schemas: the names are data, only the schemas are compacted.
            out[key] = {name: _compact(schema) for name, schema in value.items()}
        else:
            out[key] = _compact(value)
    return _nullable_scalar(out)


def _ref_counts(node: Any, counts: dict[str, int]) -> None:
    if isinstance(node, list):
        for item in node:
            _ref_counts(item, counts)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS):
            counts[ref[len(_DEFS) :]] = counts.get(ref[len(_DEFS) :], 0) + 1
        for value in node.values():
            _ref_counts(value, counts)


def _inline(node: Any, defs: dict[str, Any], once: set[str]) -> Any:
    """Each {"$ref": ...} to a definition used once replaced by the definition itself."""
    if isinstance(node, list):
        return [_inline(item, defs, once) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if set(node) == {"$ref"} and isinstance(ref, str) and ref[len(_DEFS) :] in once:
        return _inline(defs[ref[len(_DEFS) :]], defs, once)
    return {key: _inline(value, defs, once) for key, value in node.items()}


def _inline_single_use_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Definitions referenced once are written in place (their name and the reference
    are then only tokens); unused ones (the SDK leaves the ones it inlined) are dropped."""
    defs = schema.get("$defs")
    if not isinstance(defs, dict):
        return schema
    counts: dict[str, int] = {}
    _ref_counts(schema, counts)
    once = {name for name, count in counts.items() if count == 1 and name in defs}
    body = _inline({k: v for k, v in schema.items() if k != "$defs"}, defs, once)
    kept = {name: _inline(d, defs, once) for name, d in defs.items() if counts.get(name, 0) > 1}
    return {"$defs": kept, **body} if kept else body


def compact_response_format(response_format: dict[str, Any]) -> dict[str, Any]:
    """A `response_format` of type json_schema, compacted (the input is not modified)."""
    compacted = copy.deepcopy(response_format)
    spec = compacted.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        return compacted
    schema = _compact(spec["schema"])
    schema.pop("description", None)  # the root model's docstring, for developers
    spec["schema"] = _inline_single_use_defs(schema)
    return compacted


__all__ = ["compact_response_format"]

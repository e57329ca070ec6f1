"""What Meta sends and answers for Lead Ads: the `leadgen` Page webhook and the lead node.

Webhook (https://developers.facebook.com/docs/graph-api/webhooks/getting-started/webhooks-for-leadgen,
sample in https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving):
`{"object": "page", "entry": [{"id", "time", "changes": [{"field": "leadgen", "value":
{"leadgen_id", "page_id", "form_id", "adgroup_id", "ad_id", "created_time"}}]}]}`. Meta's
own sample renders the ids as JSON numbers, other deliveries as strings: both become
strings here. The notification carries ids only; what the lead answered is read from the
Graph lead node (`GraphLead`) with a Page access token.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import WebhookRejected

# Meta batches notifications, but a Page's leads arrive a few at a time: more than this
# is not a delivery from Meta but a payload someone built.
MAX_WEBHOOK_ENTRIES = 100
MAX_WEBHOOK_LEADS = 500
MAX_FIELD_DATA = 200
MAX_ID_CHARS = 64

GRAPH_ID = re.compile(r"[0-9]{1,32}")


def graph_id(value: Any) -> str | None:
    """An id as Meta sends it (a JSON number or a string) as a string; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("an id, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_ID_CHARS:
            raise ValueError(f"an id of at most {MAX_ID_CHARS} characters")
        return text or None
    raise ValueError("an id (a number or a string)")


def epoch_utc(value: Any) -> datetime:
    """Unix seconds (a JSON number or a numeric string) as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError("a Unix timestamp, not a boolean")
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,12}(\.[0-9]+)?\s*", value):
        value = float(value)
    if not isinstance(value, (int, float)) or not 0 < value < 10**11:
        raise ValueError("a Unix timestamp in seconds")
    return datetime.fromtimestamp(value, tz=UTC)


class LeadgenEvent(BaseModel):
    """One `leadgen` change: a person submitted a Page's Instant Form."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    leadgen_id: str
    page_id: str | None = None
    form_id: str | None = None
    ad_id: str | None = None
    # Meta's legacy name for the ad (ad groups were renamed ads): usually ad_id again.
    adgroup_id: str | None = None
    created_time: datetime

    @field_validator("leadgen_id", "page_id", "form_id", "ad_id", "adgroup_id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str | None:
        return graph_id(value)

    @field_validator("leadgen_id")
    @classmethod
    def _numeric(cls, value: str) -> str:
        # It becomes the path of the Graph read: anything but digits could address another node.
        if not GRAPH_ID.fullmatch(value):
            raise ValueError("leadgen_id must be the lead's numeric id")
        return value

    @field_validator("created_time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime:
        return epoch_utc(value)


def _reject(where: str, problem: str) -> WebhookRejected:
    return WebhookRejected(422, f"not a Meta leadgen webhook: {where} {problem}")


def _event(value: Any, entry: dict[str, Any], where: str) -> LeadgenEvent:
    if not isinstance(value, dict):
        raise _reject(where, "must be an object with leadgen_id")
    data = dict(value)
    if data.get("created_time") is None:
        # Meta always sends it; a hand-made test delivery may not: the entry's time is
        # when Meta sent the change, close enough.
        data["created_time"] = entry.get("time")
    if data.get("page_id") is None:
        data["page_id"] = entry.get("id")  # the entry is the Page
    try:
        return LeadgenEvent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "value"
        raise _reject(f"{where}.{loc}", f"is invalid ({first['msg']})") from None


def parse_leadgen_webhook(payload: object) -> list[LeadgenEvent]:
    """The leads a Page webhook body announces, in order, each once. Changes of other
    fields (a Page subscribed to `feed` too) and entries without `changes` are skipped;
    anything else that is not Meta's shape is a WebhookRejected(422) saying where."""
    if not isinstance(payload, dict):
        raise _reject("the body", "must be a JSON object")
    if payload.get("object") != "page":
        raise _reject("object", f"must be 'page' (got {str(payload.get('object'))[:40]!r})")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise _reject("entry", "must be a list")
    if len(entries) > MAX_WEBHOOK_ENTRIES:
        raise _reject("entry", f"has {len(entries)} items, more than {MAX_WEBHOOK_ENTRIES}")
    events: dict[str, LeadgenEvent] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _reject(f"entry[{i}]", "must be an object")
        changes = entry.get("changes")
        if changes is None:
            continue
        if not isinstance(changes, list):
            raise _reject(f"entry[{i}].changes", "must be a list")
        for j, change in enumerate(changes):
            where = f"entry[{i}].changes[{j}]"
            if not isinstance(change, dict):
                raise _reject(where, "must be an object")
            if change.get("field") != "leadgen":
                continue
            event = _event(change.get("value"), entry, f"{where}.value")
            events.setdefault(event.leadgen_id, event)
            if len(events) > MAX_WEBHOOK_LEADS:
                raise _reject("entry", f"announces more than {MAX_WEBHOOK_LEADS} leads")
    return list(events.values())


# --------------------------------------------------------------------------------------
# The Graph lead node
# --------------------------------------------------------------------------------------


class GraphFieldData(BaseModel):
    """One answer: `name` is the question's key, `values` what the lead chose or typed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(max_length=500)
    values: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("values", mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list):
            return [str(v) for v in value if v is not None and not isinstance(v, (dict, list))]
        return value


class GraphLead(BaseModel):
    """The lead node (GET /{leadgen_id}), https://developers.facebook.com/docs/marketing-api/reference/user-lead-gen-info/.
    `created_time` is ISO 8601 ("2015-02-28T08:49:14+0000"); ad fields are absent for
    organic leads and when the token lacks ads_management."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    created_time: datetime
    field_data: list[GraphFieldData] = Field(default_factory=list, max_length=MAX_FIELD_DATA)
    form_id: str | None = None
    ad_id: str | None = None
    ad_name: str | None = None
    adset_id: str | None = None
    adset_name: str | None = None
    campaign_id: str | None = None
    campaign_name: str | None = None
    platform: str | None = None
    is_organic: bool | None = None

    @field_validator("id", "form_id", "ad_id", "adset_id", "campaign_id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str | None:
        return graph_id(value)

    @field_validator("ad_name", "adset_name", "campaign_name", "platform", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return " ".join(value.split())[:300] or None
        return value

    @field_validator("field_data", mode="before")
    @classmethod
    def _field_data(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("created_time", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return epoch_utc(value)
        if isinstance(value, str):
            # Graph writes the offset without a colon ("+0000"), which ISO parsers may refuse.
            return re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value.strip())
        return value

    @field_validator("created_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    def answers(self) -> list[tuple[str, str]]:
        """`(question key, answer)` pairs; a multiple-choice answer's values joined by ", "."""
        pairs: list[tuple[str, str]] = []
        for item in self.field_data:
            text = ", ".join(v.strip() for v in item.values if v.strip())
            if item.name.strip() and text:
                pairs.append((item.name.strip(), text))
        return pairs


__all__ = [
    "MAX_WEBHOOK_ENTRIES",
    "MAX_WEBHOOK_LEADS",
    "GraphFieldData",
    "GraphLead",
    "LeadgenEvent",
    "epoch_utc",
    "graph_id",
    "parse_leadgen_webhook",
]

"""Z-API's chat presence webhook (PresenceChatCallback) as a typed presence hint, from
the documented examples (tests/fixtures/zapi/presence_chat*.json, each citing its page)."""

from __future__ import annotations

from typing import Any

import pytest

from channels.base import PresenceEvent
from channels.zapi import ZapiChannel
from core.errors import WebhookRejected
from tests.channels.test_zapi import channel, load  # noqa: F401 (the fixture)


@pytest.mark.parametrize(
    ("fixture", "state"),
    [
        ("presence_chat.json", "typing"),
        ("presence_chat_recording.json", "recording"),
        ("presence_chat_paused.json", "paused"),
        ("presence_chat_available.json", "online"),
        ("presence_chat_unavailable.json", "offline"),
    ],
)
def test_each_documented_status_is_a_presence(channel: ZapiChannel, fixture: str, state: str) -> None:  # noqa: F811
    payload = load(fixture)
    payload.pop("_source")
    result = channel.parse(payload)
    assert result.presences == [PresenceEvent(contact_id="5544999999999", state=state)]  # type: ignore[arg-type]
    # A hint, not a message: nothing to store or answer, nothing ignored either.
    assert result.messages == [] and result.ignored == [] and result.statuses == []


def test_a_lid_phone_keeps_its_lid(channel: ZapiChannel) -> None:  # noqa: F811
    payload = load("presence_chat.json") | {"phone": "123456789012345@lid"}
    assert [p.contact_id for p in channel.parse(payload).presences] == ["123456789012345@lid"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "SOMETHING_NEW"}, "presence_unknown"),
        ({"status": None}, "presence_unknown"),
        ({"phone": None}, "presence_without_phone"),
        ({"phone": "  "}, "presence_without_phone"),
        ({"phone": "120363019502650977-group"}, "group"),
    ],
)
def test_an_unusable_presence_is_acknowledged_and_dropped(
    channel: ZapiChannel,  # noqa: F811
    change: dict[str, Any],
    reason: str,
) -> None:
    result = channel.parse(load("presence_chat.json") | change)
    assert result.presences == [] and result.messages == []
    assert [e.reason for e in result.ignored] == [reason]


@pytest.mark.parametrize(
    "change",
    [
        {"phone": 5544999999999},
        {"status": ["COMPOSING"]},
        {"lastSeen": "ontem"},
        {"phone": "abc"},
        {"phone": "9" * 200},
    ],
)
def test_a_presence_of_the_wrong_types_is_a_422(channel: ZapiChannel, change: dict[str, Any]) -> None:  # noqa: F811
    with pytest.raises(WebhookRejected) as rejected:
        channel.parse(load("presence_chat.json") | change)
    assert rejected.value.status == 422 and "Z-API" in rejected.value.message

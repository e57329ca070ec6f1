"""WAHA's presence.update as a typed presence hint, from the documented example
(tests/fixtures/waha/presence_update*.json, each citing its page)."""

from __future__ import annotations

from typing import Any

import pytest

from channels.base import PresenceEvent
from channels.waha import WahaChannel
from core.errors import WebhookRejected
from tests.channels.test_waha import channel, load  # noqa: F401 (the fixture)


def body(name: str) -> dict[str, Any]:
    payload = load(name)
    payload.pop("_source", None)
    return payload


@pytest.mark.parametrize(
    ("fixture", "state"),
    [
        ("presence_update_typing.json", "typing"),
        ("presence_update_recording.json", "recording"),
        ("presence_update_paused.json", "paused"),
    ],
)
def test_a_direct_chats_presence_is_a_presence(channel: WahaChannel, fixture: str, state: str) -> None:  # noqa: F811
    result = channel.parse(body(fixture))
    assert result.presences == [PresenceEvent(contact_id="5511999999999", state=state)]  # type: ignore[arg-type]
    assert result.messages == [] and result.ignored == [] and result.statuses == []


@pytest.mark.parametrize(
    ("value", "state"), [("online", "online"), ("offline", "offline"), ("composing", "typing")]
)
def test_every_documented_state_maps(channel: WahaChannel, value: str, state: str) -> None:  # noqa: F811
    payload = body("presence_update_typing.json")
    payload["payload"]["presences"][0]["lastKnownPresence"] = value
    assert [p.state for p in channel.parse(payload).presences] == [state]


def test_the_docs_group_example_is_acknowledged_not_used(channel: WahaChannel) -> None:  # noqa: F811
    result = channel.parse(body("presence_update_group_docs.json"))
    assert result.presences == [] and [e.reason for e in result.ignored] == ["group"]


def test_a_lid_chat_keeps_its_lid(channel: WahaChannel) -> None:  # noqa: F811
    payload = body("presence_update_typing.json")
    payload["payload"]["id"] = "81896604192873@lid"
    assert [p.contact_id for p in channel.parse(payload).presences] == ["81896604192873@lid"]


def test_another_sessions_presence_is_not_ours(channel: WahaChannel) -> None:  # noqa: F811
    result = channel.parse(body("presence_update_typing.json") | {"session": "someone-else"})
    assert result.presences == [] and [e.reason for e in result.ignored] == ["other_session"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"id": "5511999999999@c.us", "presences": []}, "presence_unknown"),
        ({"id": "5511999999999@c.us"}, "presence_unknown"),
        ({"id": "5511999999999@c.us", "presences": [{"lastKnownPresence": "dancing"}]}, "presence_unknown"),
        ({"presences": [{"lastKnownPresence": "typing"}]}, "presence_without_chat"),
        ({"id": "status@broadcast", "presences": [{"lastKnownPresence": "typing"}]}, "broadcast"),
    ],
)
def test_an_unusable_presence_is_acknowledged_and_dropped(
    channel: WahaChannel,  # noqa: F811
    payload: dict[str, Any],
    reason: str,
) -> None:
    result = channel.parse(body("presence_update_typing.json") | {"payload": payload})
    assert result.presences == [] and [e.reason for e in result.ignored] == [reason]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "typing",
        [],
        {"id": 5511999999999, "presences": []},
        {"id": "5511999999999@c.us", "presences": "typing"},
        {"id": "5511999999999@c.us", "presences": [{"lastKnownPresence": 3}]},
        {"id": "not-a-phone@c.us", "presences": [{"lastKnownPresence": "typing"}]},
    ],
)
def test_a_presence_of_the_wrong_shape_is_a_422(channel: WahaChannel, payload: Any) -> None:  # noqa: F811
    with pytest.raises(WebhookRejected) as rejected:
        channel.parse(body("presence_update_typing.json") | {"payload": payload})
    assert rejected.value.status == 422 and "WAHA" in rejected.value.message

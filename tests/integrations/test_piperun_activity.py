"""A booked meeting as an activity on the PipeRun deal: each request is one PipeRun's
published reference documents (tests/fixtures/piperun/activities_openapi.json), the
seller owns it, a retry or a move finds it by our marker, a cancel closes it."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from pydantic import SecretStr

from integrations.piperun import MeetingActivity, PipeRunClient, PipeRunConfig, upsert_meeting_activity
from integrations.piperun.activities import PipeRunActivityType, pick_meeting_type
from tests.helpers.fake_piperun import BASE, FIXTURES

SPEC = json.loads((FIXTURES / "activities_openapi.json").read_text(encoding="utf-8"))["operations"]
DEAL = 10836111
SP = ZoneInfo("America/Sao_Paulo")


def violations(method: str, path: str, query: dict[str, str], body: Any) -> list[str]:
    for key, op in SPEC.items():
        m, template = key.split(" ", 1)
        if m == method and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            problems = [f"query {name}" for name in query if name not in op["query"]]
            if body is not None:
                schema = op["body"]
                problems += [f"body {name}" for name in body if name not in schema["properties"]]
                problems += [f"missing {name}" for name in schema["required"] if name not in body]
            return problems
    return [f"{method} {path} is not documented"]


class Activities:
    """PipeRun's /activities for one account, in memory."""

    def __init__(self, mocked: aioresponses) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any] | None]] = []
        url = re.compile(rf"{re.escape(BASE)}/activities(/\d+)?(\?.*)?$")
        mocked.get(url, callback=self._call("GET"), repeat=True)
        mocked.post(url, callback=self._call("POST"), repeat=True)
        mocked.put(url, callback=self._call("PUT"), repeat=True)

    def _call(self, method: str) -> Any:
        async def callback(url: Any, **kwargs: Any) -> CallbackResult:
            body = kwargs.get("json")
            query = dict(kwargs.get("params") or {})
            path = str(url.path).removeprefix("/v1")
            assert violations(method, path, query, body) == []
            self.calls.append((method, body))
            if method == "GET":
                rows = [r for r in self.rows.values() if str(r["deal_id"]) == query["deal_id"]]
                return CallbackResult(
                    payload={"success": True, "data": rows, "meta": {"cursor": {"next": None}}}
                )
            if method == "POST":
                row = {**body, "id": 11458059 + len(self.rows)}
                self.rows[row["id"]] = row
                return CallbackResult(status=201, payload={"success": True, "data": row})
            row = self.rows[int(path.rsplit("/", 1)[1])]
            row.update(body)
            return CallbackResult(payload={"success": True, "data": row})

        return callback


@pytest.fixture
async def client() -> AsyncIterator[PipeRunClient]:
    async with aiohttp.ClientSession() as session:
        yield PipeRunClient(PipeRunConfig(token=SecretStr("pr-token-activity")), session)


def meeting(**changes: Any) -> MeetingActivity:
    values: dict[str, Any] = {
        "event_id": "sdr0a1b2c3d4e5f",
        "title": "Reunião com João Silva",
        "starts_at": datetime(2026, 5, 4, 17, 0, tzinfo=UTC),
        "ends_at": datetime(2026, 5, 4, 17, 30, tzinfo=UTC),
        "owner_id": 1001,
        "meet_url": "https://meet.google.com/abc-defg-hij",
    }
    return MeetingActivity(**{**values, **changes})


async def upsert(client: PipeRunClient, m: MeetingActivity) -> int | None:
    return await upsert_meeting_activity(
        client, DEAL, m, reference="sdr-abc123", activity_type_id=121381, zone=SP
    )


async def test_a_booked_meeting_is_one_open_activity_owned_by_the_seller_even_when_retried(
    client: PipeRunClient,
) -> None:
    with aioresponses() as mocked:
        account = Activities(mocked)
        first = await upsert(client, meeting())
        again = await upsert(client, meeting())  # the answer was lost: the outbox runs it again

    assert first == again and len(account.rows) == 1
    posted = [body for method, body in account.calls if method == "POST"]
    assert len(posted) == 1
    body = posted[0]
    assert body is not None
    assert {k: body[k] for k in ("activity_type_id", "status", "owner_id", "deal_id", "title")} == {
        "activity_type_id": 121381,
        "status": 0,
        "owner_id": 1001,
        "deal_id": DEAL,
        "title": "Reunião com João Silva",
    }
    # PipeRun's format, in the account's zone (17:00 UTC is 14:00 in Brasília).
    assert (body["start_at"], body["end_at"], body["duration"]) == (
        "2026-05-04 14:00:00",
        "2026-05-04 14:30:00",
        30,
    )
    assert body["appearin_link"] == "https://meet.google.com/abc-defg-hij"
    assert "Ref. SDR: sdr-abc123/" in body["description"]


async def test_a_move_updates_the_same_activity_and_a_cancel_closes_it(client: PipeRunClient) -> None:
    with aioresponses() as mocked:
        account = Activities(mocked)
        created = await upsert(client, meeting())
        moved = await upsert(
            client,
            meeting(
                starts_at=datetime(2026, 5, 5, 13, 0, tzinfo=UTC),
                ends_at=datetime(2026, 5, 5, 13, 30, tzinfo=UTC),
            ),
        )
        cancelled = await upsert(client, meeting(cancelled=True))

    assert created == moved == cancelled and len(account.rows) == 1
    row = account.rows[created or 0]
    assert row["status"] == 2 and row["title"] == "Cancelada: Reunião com João Silva"
    assert row["comment"] == "Reunião cancelada pelo lead."
    assert [m for m, _ in account.calls] == ["GET", "POST", "GET", "PUT", "GET", "PUT"]
    put_move = account.calls[3][1]
    assert put_move is not None and put_move["start_at"] == "2026-05-05 10:00:00" and put_move["status"] == 0


async def test_a_meeting_cancelled_before_its_activity_existed_creates_nothing(client: PipeRunClient) -> None:
    with aioresponses() as mocked:
        account = Activities(mocked)
        assert await upsert(client, meeting(cancelled=True)) is None
    assert account.rows == {} and [m for m, _ in account.calls] == ["GET"]


async def test_the_meeting_type_is_the_accounts_reuniao(client: PipeRunClient) -> None:
    body = json.loads((FIXTURES / "activity_types_list.json").read_text(encoding="utf-8"))
    with aioresponses() as mocked:
        mocked.get(re.compile(rf"{re.escape(BASE)}/activityTypes\?.*"), payload=body)
        types = await client.list_activity_types()
        request = next(iter(mocked.requests.values()))[0]
    assert violations("GET", "/activityTypes", dict(request.kwargs["params"]), None) == []
    assert pick_meeting_type(types) == 121381
    assert pick_meeting_type([PipeRunActivityType(id=1, name="Ligação")]) is None

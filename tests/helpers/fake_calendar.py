"""A Google Calendar at the HTTP boundary, built from the v3 discovery document's shapes
(the fixtures in tests/fixtures/google_calendar/ name their source): the token endpoint,
freeBusy, events.get and events.insert with client-supplied ids (409 when the id exists).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import re
from collections import deque
from datetime import UTC, datetime
from typing import Any

from aioresponses import CallbackResult, aioresponses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers.fakes import load_fixture

API = "https://www.googleapis.com/calendar/v3"
TOKEN_URL = "https://oauth2.googleapis.com/token"


@functools.cache
def _private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_json() -> str:
    """A service account key in Google's format, with a key made for this run only."""
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "seleto-sdr",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": _private_pem(),
            "client_email": "sdr-bot@seleto-sdr.iam.gserviceaccount.com",
            "client_id": "104857600000000000001",
            "token_uri": TOKEN_URL,
        }
    )


def _fixture(name: str) -> dict[str, Any]:
    data = load_fixture(f"google_calendar/{name}")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class FakeGoogleCalendar:
    def __init__(self, mock: aioresponses) -> None:
        self.busy: dict[str, list[tuple[datetime, datetime]]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.inserts: list[dict[str, Any]] = []
        self.freebusy_calls = 0
        self.token_requests: list[dict[str, Any]] = []
        # Statuses the next insert(s) answer with before succeeding (an outage).
        self.insert_script: deque[int] = deque()
        # Busy periods that appear at the next freeBusy (a slot taken meanwhile).
        self.taken_next: list[tuple[datetime, datetime]] = []
        mock.post(TOKEN_URL, callback=self._token, repeat=True)
        mock.post(f"{API}/freeBusy", callback=self._freebusy, repeat=True)
        mock.get(
            re.compile(rf"{re.escape(API)}/calendars/[^/]+/events/[^/?]+.*"), callback=self._get, repeat=True
        )
        mock.post(
            re.compile(rf"{re.escape(API)}/calendars/[^/]+/events\?.*"), callback=self._insert, repeat=True
        )
        event_url = re.compile(rf"{re.escape(API)}/calendars/[^/]+/events/[^/?]+.*")
        mock.patch(event_url, callback=self._patch, repeat=True)
        mock.delete(event_url, callback=self._delete, repeat=True)
        self.patches: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    async def _token(self, url: Any, **kwargs: Any) -> CallbackResult:
        self.token_requests.append(dict(kwargs.get("data") or {}))
        return CallbackResult(status=200, payload=_fixture("token_response.json"))

    async def _freebusy(self, url: Any, **kwargs: Any) -> CallbackResult:
        self.freebusy_calls += 1
        body = kwargs.get("json") or json.loads(kwargs.get("data") or "{}")
        if self.taken_next:
            for item in body["items"]:
                self.busy.setdefault(item["id"], []).extend(self.taken_next)
            self.taken_next = []
        calendars = {
            item["id"]: {
                "busy": [
                    {"start": s.isoformat(), "end": e.isoformat()} for s, e in self.busy.get(item["id"], [])
                ]
            }
            for item in body["items"]
        }
        answer = CallbackResult(
            status=200,
            payload={
                "kind": "calendar#freeBusy",
                "timeMin": body["timeMin"],
                "timeMax": body["timeMax"],
                "calendars": calendars,
            },
        )
        # The answer travels back while other requests run (the booking race's window).
        await asyncio.sleep(0.01)
        return answer

    async def _get(self, url: Any, **kwargs: Any) -> CallbackResult:
        event_id = str(url.path).rsplit("/", 1)[-1]
        if event_id in self.events:
            return CallbackResult(status=200, payload=self.events[event_id])
        return CallbackResult(status=404, payload=_fixture("error_404_not_found.json"))

    def _calendar_of(self, url: Any) -> str:
        return str(url.path).split("/calendars/", 1)[1].split("/", 1)[0]

    def _free(self, calendar_id: str, event: dict[str, Any]) -> None:
        span = (_parse(event["start"]["dateTime"]), _parse(event["end"]["dateTime"]))
        if span in self.busy.get(calendar_id, []):
            self.busy[calendar_id].remove(span)

    async def _patch(self, url: Any, **kwargs: Any) -> CallbackResult:
        event_id = str(url.path).rsplit("/", 1)[-1]
        if event_id not in self.events:
            return CallbackResult(status=404, payload=_fixture("error_404_not_found.json"))
        body = kwargs.get("json") or json.loads(kwargs.get("data") or "{}")
        calendar_id = self._calendar_of(url)
        event = self.events[event_id]
        self._free(calendar_id, event)
        event.update(start=body["start"], end=body["end"])
        self.busy.setdefault(calendar_id, []).append(
            (_parse(body["start"]["dateTime"]), _parse(body["end"]["dateTime"]))
        )
        self.patches.append(body)
        return CallbackResult(status=200, payload=event)

    async def _delete(self, url: Any, **kwargs: Any) -> CallbackResult:
        event_id = str(url.path).rsplit("/", 1)[-1]
        event = self.events.pop(event_id, None)
        if event is None:
            return CallbackResult(status=410, payload=_fixture("error_410_deleted.json"))
        self._free(self._calendar_of(url), event)
        self.deleted.append(event_id)
        return CallbackResult(status=204)

    async def _insert(self, url: Any, **kwargs: Any) -> CallbackResult:
        if self.insert_script:
            status = self.insert_script.popleft()
            return CallbackResult(status=status, payload=_fixture("error_500_backend.json"))
        body = kwargs.get("json") or json.loads(kwargs.get("data") or "{}")
        if body["id"] in self.events:
            return CallbackResult(status=409, payload=_fixture("error_409_duplicate.json"))
        calendar_id = self._calendar_of(url)
        event = copy.deepcopy(_fixture("event_meet.json"))
        event.update(id=body["id"], start=body["start"], end=body["end"], summary=body.get("summary"))
        self.events[body["id"]] = event
        self.inserts.append(body)
        self.busy.setdefault(calendar_id, []).append(
            (_parse(body["start"]["dateTime"]), _parse(body["end"]["dateTime"]))
        )
        return CallbackResult(status=200, payload=event)

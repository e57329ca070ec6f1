"""An in-memory PipeRun account behind aioresponses, answering with the envelopes of
PipeRun's API v1 reference (fixtures under tests/fixtures/piperun/, each citing its
operation in `_source`). It filters the way an exact-match server would, so a second
sync sees what the first one created.

`PipeRunAccount` is the account itself, transport-free (`handle(method, path, query,
body) -> (status, payload)`); `FakePipeRun` serves it through aioresponses, and
tests/helpers/provider_server.py serves it over loopback HTTP to a bot process."""

from __future__ import annotations

import copy
import itertools
import json
import re
from functools import partial
from pathlib import Path
from typing import Any

from aioresponses import CallbackResult, aioresponses
from yarl import URL

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "piperun"
BASE = "https://api.pipe.run/v1"


def load(name: str) -> Any:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    data.pop("_source", None)
    return data


def record(name: str) -> dict[str, Any]:
    """The first record of a fixture's `data` (an object or, for companies, a list)."""
    data = load(name)["data"]
    return copy.deepcopy(data[0] if isinstance(data, list) else data)


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


Response = tuple[int, Any]


class PipeRunAccount:
    """An in-memory PipeRun account answering with the documented envelopes.

    `handle(method, path, query, body)` takes a path without the `/v1` prefix (e.g.
    `/persons`, `/notes/9`) and returns `(status, payload)`; the transport (aioresponses
    or a real HTTP server) checks the `token` header and records the call."""

    def __init__(self, *, ignore_person_filters: bool = False) -> None:
        self.persons: list[dict[str, Any]] = []
        self.companies: list[dict[str, Any]] = []
        self.deals: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str, dict[str, str], Any]] = []
        self.ignore_person_filters = ignore_person_filters
        self._ids = itertools.count(90001)

    # -- seeding and inspection -----------------------------------------------------

    def add_person(self, *, phones: list[str], emails: list[str], **fields: Any) -> dict[str, Any]:
        person = record("persons_list.json")
        person.update(fields)
        person["_phones"], person["_emails"] = list(phones), list(emails)
        self.persons.append(person)
        return person

    def add_deal(self, *, person_id: int, **fields: Any) -> dict[str, Any]:
        """A deal a seller already has in the CRM (open, in the fixture's pipeline, unless told)."""
        deal = record("deals_list.json")
        deal.update(person_id=person_id, **fields)
        self.deals.append(deal)
        return deal

    def posts(self, path: str) -> list[Any]:
        return [body for m, p, _, body in self.calls if m == "POST" and p == path]

    def puts(self, prefix: str) -> list[tuple[str, Any]]:
        return [(p, body) for m, p, _, body in self.calls if m == "PUT" and p.startswith(prefix)]

    def gets(self, path: str) -> list[dict[str, str]]:
        return [q for m, p, q, _ in self.calls if m == "GET" and p == path]

    # -- the server -----------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> Response:
        handler = getattr(self, f"_{method.lower()}_{path.strip('/').split('/')[0]}", None)
        if handler is None:
            return 404, load("error_404.json")
        return handler(path, query, body)

    @staticmethod
    def _list(fixture: str, records: list[dict[str, Any]]) -> Response:
        envelope = load(fixture)
        envelope["data"] = records
        return 200, envelope

    def _render_person(self, person: dict[str, Any], with_: str) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in person.items() if not k.startswith("_")}
        phones, emails = person["_phones"], person["_emails"]
        # The documented list example carries one object; `with=` returns them all.
        if phones:
            out["contact_phones"] = {**out.get("contact_phones", {}), "phone": phones[0]}
        else:
            out.pop("contact_phones", None)
        if emails:
            out["contact_emails"] = {**out.get("contact_emails", {}), "email": emails[0]}
        else:
            out.pop("contact_emails", None)
        if "contactPhones" in with_:
            out["contactPhones"] = [{"phone": p} for p in phones]
        if "contactEmails" in with_:
            out["contactEmails"] = [{"email": e} for e in emails]
        return out

    def _get_persons(self, path: str, query: dict[str, str], body: Any) -> Response:
        found = list(self.persons)
        # The one documented filter the client uses: our reference in `observation`.
        if not self.ignore_person_filters and "observation" in query:
            found = [p for p in found if query["observation"] in (p.get("observation") or "")]
        return self._list("persons_list.json", [self._render_person(p, query.get("with", "")) for p in found])

    def _post_persons(self, path: str, query: dict[str, str], body: dict[str, Any]) -> Response:
        person = record("person_create_response.json")
        person.update(
            id=next(self._ids),
            name=body["name"],
            manager_id=body.get("manager_id"),
            company_id=body.get("company_id"),
            observation=body.get("observation", ""),
        )
        person["_phones"], person["_emails"] = body.get("contactPhones", []), body.get("contactEmails", [])
        self.persons.append(person)
        envelope = load("person_create_response.json")
        envelope["data"] = self._render_person(person, "")
        return 201, envelope

    def _get_companies(self, path: str, query: dict[str, str], body: Any) -> Response:
        found = list(self.companies)
        if "external_code" in query:  # documented; our reference for the company
            found = [c for c in found if c.get("external_code") == query["external_code"]]
        return self._list("companies_list.json", copy.deepcopy(found))

    def _post_companies(self, path: str, query: dict[str, str], body: dict[str, Any]) -> Response:
        company = record("company_create_response.json")
        company.update(
            id=next(self._ids),
            name=body["name"],
            cnpj=body.get("cnpj"),
            external_code=body.get("external_code"),
        )
        self.companies.append(company)
        envelope = load("company_create_response.json")
        envelope["data"] = [copy.deepcopy(company)]
        return 201, envelope

    def _get_deals(self, path: str, query: dict[str, str], body: Any) -> Response:
        found = [
            d
            for d in self.deals
            if all(str(d.get(k)) == query[k] for k in ("person_id", "pipeline_id", "status") if k in query)
        ]
        return self._list("deals_list.json", copy.deepcopy(found))

    def _post_deals(self, path: str, query: dict[str, str], body: dict[str, Any]) -> Response:
        deal = record("deal_create_response.json")
        deal.update({"company_id": None, "origin_id": None, "owner_id": None, "temperature": None})
        deal.update(body)
        deal.update(id=next(self._ids), status=0, deleted=0)
        self.deals.append(deal)
        envelope = load("deal_create_response.json")
        envelope["data"] = copy.deepcopy(deal)
        return 201, envelope

    def _get_notes(self, path: str, query: dict[str, str], body: Any) -> Response:
        found = [n for n in self.notes if str(n["deal_id"]) == query.get("deal_id")]
        return self._list("notes_list.json", copy.deepcopy(found))

    def _post_notes(self, path: str, query: dict[str, str], body: dict[str, Any]) -> Response:
        note = record("note_create_response.json")
        note.update(id=next(self._ids), text=body["text"], deal_id=body["deal_id"])
        self.notes.append(note)
        envelope = load("note_create_response.json")
        envelope["data"] = copy.deepcopy(note)
        return 201, envelope

    def _put_notes(self, path: str, query: dict[str, str], body: dict[str, Any]) -> Response:
        note_id = int(path.rsplit("/", 1)[1])
        note = next((n for n in self.notes if n["id"] == note_id), None)
        if note is None:
            return 404, load("error_404.json")
        note["text"] = body["text"]
        envelope = load("note_update_response.json")
        envelope["data"].update(id=note_id, text=note["text"], deal_id=note["deal_id"])
        return 200, envelope


class FakePipeRun(PipeRunAccount):
    """The account behind aioresponses, at https://api.pipe.run/v1 (header `token`)."""

    def __init__(self, mocked: aioresponses, *, token: str, ignore_person_filters: bool = False) -> None:
        super().__init__(ignore_person_filters=ignore_person_filters)
        self.token = token
        self.failures: dict[tuple[str, str], list[dict[str, Any]]] = {}
        pattern = re.compile(r"^https://api\.pipe\.run/v1/.*$")
        for method in ("GET", "POST", "PUT"):
            getattr(mocked, method.lower())(pattern, callback=partial(self._handle, method), repeat=True)

    def fail_next(self, method: str, path: str, **response: Any) -> None:
        """Queue a failure for the next `method` call whose path starts with `path`."""
        self.failures.setdefault((method, path), []).append(response)

    def _handle(self, method: str, url: URL, **kwargs: Any) -> CallbackResult:
        if kwargs["headers"].get("token") != self.token:
            return CallbackResult(status=401, payload=load("error_401.json"))
        path = url.path.removeprefix("/v1")
        query = dict(url.query)
        body = kwargs.get("json")
        self.calls.append((method, path, query, body))
        for (f_method, f_path), queue in self.failures.items():
            if f_method == method and path.startswith(f_path) and queue:
                failure = queue.pop(0)
                if "exception" in failure:
                    raise failure["exception"]
                return CallbackResult(**failure)
        status, payload = self.handle(method, path, query, body)
        return CallbackResult(status=status, payload=payload)

"""A real HTTP server on loopback that plays OpenAI, Z-API and (optionally) Chatwoot,
the Meta Conversions API and PipeRun.

aioresponses only fakes HTTP inside the test process; a bot running as a separate
process (to be killed with SIGKILL, or driven by a benchmark) needs a fake it can reach
over the network. Responses come from the same fixture files as the in-process fakes.

Real sockets also make real timeouts: a `Fault(hang_s=25)` keeps the request open for
25 s (or until the server stops), so the bot's own client timeout is what fires.

Every knob below defaults to "off": a bare `ProviderServer()` behaves as it always did.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.helpers.fake_piperun import PipeRunAccount
from tests.helpers.fake_piperun import load as load_piperun
from tests.helpers.fakes import load_fixture


@dataclass
class Fault:
    """One scripted misbehaviour of a provider call: wait `hang_s` (a timeout when longer
    than the caller's), then answer `status` with the provider's own error body."""

    status: int = 500
    retry_after: str | None = None
    hang_s: float = 0.0
    body: Any = None


@dataclass
class ChatwootState:
    """A small but stateful Chatwoot account: contacts, conversations and messages
    created through the Application API are found again by search and listing, so a
    bot that crashed between "created" and "remembered" can be caught duplicating."""

    token: str | None = None  # when set, calls without this api_access_token get 401
    delay_s: float = 0.0  # before answering a write (the call is "on the wire" meanwhile)
    down: bool = False  # answer 503 to everything
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[int, dict[str, Any]] = field(default_factory=dict)
    messages: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    unauthorized: int = 0

    def public_messages(self, conversation_id: int) -> list[tuple[str, str]]:
        return [
            (m["message_type"], m["content"])
            for m in self.messages.get(conversation_id, [])
            if not m.get("private")
        ]


class PipeRunState(PipeRunAccount):
    """The in-memory PipeRun account of tests/helpers/fake_piperun.py (persons, companies,
    deals, notes, calls), served under `/piperun/v1/...`: point the bot's
    PIPERUN_API_URL at `{provider.url}/piperun/v1`. Off by default (an unknown route)."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = False
        self.token: str | None = None  # when set, calls without this `token` header get 401
        self.delay_s = 0.0  # after a write is applied, before answering (a kill can land inside)
        self.unauthorized = 0


@dataclass
class ProviderState:
    llm_delay_s: float = 0.0
    llm_hang: asyncio.Event | None = None  # when set to an unset Event, chat calls block on it
    llm_hang_texts: set[str] | None = None  # block only turns whose last message is one of these
    send_hang: asyncio.Event | None = None
    send_fail_first: int = 0  # answer this many sends with 500 before accepting
    reply_prefix: str = "Resposta para"
    chat_calls: int = 0
    chat_started: int = 0
    send_started: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    # --- fault injection (all off by default) ---------------------------------------
    # One entry per call, in order; None answers that call normally.
    chat_faults: deque[Fault | None] = field(default_factory=deque)
    send_faults: deque[Fault | None] = field(default_factory=deque)
    # Outages by the loop clock: while `loop.time() < *_down_until`, every call gets the
    # next fault of the cycle (500, 429, a hang...), then the provider recovers.
    chat_down_until: float = 0.0
    chat_outage: list[Fault] = field(default_factory=list)
    send_down_until: float = 0.0
    send_outage: list[Fault] = field(default_factory=list)
    send_delay_s: float = 0.0  # every accepted send takes this long (a kill can land inside)
    # Scripted completions (`reply`, `lead`, `tool_calls`, `summary`), used before the echo.
    chat_replies: deque[dict[str, Any]] = field(default_factory=deque)
    # Scripted fields merged into every completion whose user messages contain the key
    # (e.g. a lead's tag), after `chat_replies`: one lead can stay hot, turn after turn.
    chat_replies_when: dict[str, dict[str, Any]] = field(default_factory=dict)
    reply_text: str | None = None  # answer with this instead of echoing the lead
    raw_chat_content: str | None = None  # answer every chat call with this content verbatim
    chat_finished: int = 0  # chat handlers that returned (faulted or not)
    send_finished: int = 0
    chat_headers: list[dict[str, str]] = field(default_factory=list)
    send_headers: list[dict[str, str]] = field(default_factory=list)
    chatwoot: ChatwootState = field(default_factory=ChatwootState)
    # Any other route: 404 as before, or (when set) a 422 that echoes the whole request
    # back (path, query, headers, body), like providers that quote the request they refused.
    echo_unknown: bool = False
    unknown_requests: list[dict[str, Any]] = field(default_factory=list)
    # Meta Conversions API (`POST /{version}/{pixel}/events`): off, it is an unknown route.
    capi_enabled: bool = False
    capi_requests: list[dict[str, Any]] = field(default_factory=list)
    # PipeRun (`/piperun/v1/...`): off, it is an unknown route.
    piperun: PipeRunState = field(default_factory=PipeRunState)

    def capi_events(self) -> list[dict[str, Any]]:
        return [event for request in self.capi_requests for event in request["body"].get("data", [])]


class ProviderServer:
    def __init__(self, state: ProviderState | None = None) -> None:
        self.state = state or ProviderState()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._completion = load_fixture("openai/chat_completion_structured.json")
        self._send_ok = load_fixture("zapi/send_text_response.json")
        self._released = asyncio.Event()  # set on stop: every hang ends
        self._chat_cycle = 0
        self._send_cycle = 0
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        app.router.add_post("/instances/{instance}/token/{token}/send-text", self._send)
        cw = "/api/v1/accounts/{account}"
        app.router.add_get(f"{cw}/contacts/search", self._cw_search)
        app.router.add_post(f"{cw}/contacts", self._cw_create_contact)
        app.router.add_put(f"{cw}/contacts/{{contact}}", self._cw_update_contact)
        app.router.add_get(f"{cw}/contacts/{{contact}}/conversations", self._cw_contact_conversations)
        app.router.add_post(f"{cw}/contacts/{{contact}}/contact_inboxes", self._cw_contact_inbox)
        app.router.add_post(f"{cw}/conversations", self._cw_create_conversation)
        app.router.add_post(f"{cw}/conversations/{{conversation}}/messages", self._cw_create_message)
        app.router.add_get(f"{cw}/conversations/{{conversation}}/messages", self._cw_list_messages)
        app.router.add_post(f"{cw}/conversations/{{conversation}}/toggle_status", self._cw_toggle)
        app.router.add_post(f"{cw}/conversations/{{conversation}}/labels", self._cw_labels)
        app.router.add_get(f"{cw}/conversations/{{conversation}}/labels", self._cw_read_labels)
        app.router.add_post(f"{cw}/conversations/{{conversation}}/assignments", self._cw_assign)
        app.router.add_route("*", "/piperun/v1/{tail:.*}", self._piperun)
        app.router.add_post("/{version}/{pixel}/events", self._capi)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._released.set()
        for hang in (self.state.llm_hang, self.state.send_hang):
            if hang is not None:
                hang.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- faults -----------------------------------------------------------------------
    def _next_fault(self, kind: str) -> Fault | None:
        state = self.state
        script = state.chat_faults if kind == "chat" else state.send_faults
        if script:
            return script.popleft()  # may be None: this call goes through
        until = state.chat_down_until if kind == "chat" else state.send_down_until
        outage = state.chat_outage if kind == "chat" else state.send_outage
        if outage and asyncio.get_running_loop().time() < until:
            if kind == "chat":
                self._chat_cycle += 1
                return outage[(self._chat_cycle - 1) % len(outage)]
            self._send_cycle += 1
            return outage[(self._send_cycle - 1) % len(outage)]
        return None

    async def _sleep(self, seconds: float) -> None:
        """A hang that ends early when the server stops (teardown never waits 25 s)."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), timeout=seconds)

    async def _fault_response(self, fault: Fault, default_body: Any) -> web.Response:
        await self._sleep(fault.hang_s)
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        body = fault.body if fault.body is not None else default_body
        return web.json_response(body, status=fault.status, headers=headers)

    @staticmethod
    def _openai_error(status: int) -> Any:
        name = {429: "error_429.json", 400: "error_400.json"}.get(status, "error_500.json")
        return load_fixture(f"openai/{name}")

    async def _chat(self, request: web.Request) -> web.Response:
        try:
            return await self._chat_inner(request)
        finally:
            self.state.chat_finished += 1

    async def _chat_inner(self, request: web.Request) -> web.Response:
        self.state.chat_started += 1
        self.state.chat_headers.append(dict(request.headers))
        body = await request.json()
        last_user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        fault = self._next_fault("chat")
        if fault is not None and fault.status >= 400:
            return await self._fault_response(fault, self._openai_error(fault.status))
        if fault is not None:  # slow, then a normal answer (maybe to a caller who gave up)
            await self._sleep(fault.hang_s)
        if self.state.llm_hang is not None and (
            self.state.llm_hang_texts is None or last_user in self.state.llm_hang_texts
        ):
            await self.state.llm_hang.wait()
        if self.state.llm_delay_s:
            await asyncio.sleep(self.state.llm_delay_s)
        self.state.chat_calls += 1
        completion = copy.deepcopy(self._completion)
        content = {
            "reply": self.state.reply_text or f"{self.state.reply_prefix}: {last_user}",
            "lead": {},
            "tool_calls": [],
            "summary": "Conversa em andamento.",
            "image_description": None,
        }
        if self.state.chat_replies:
            content.update(self.state.chat_replies.popleft())
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        for needle, scripted in self.state.chat_replies_when.items():
            if any(needle in str(text) for text in users):
                content.update(copy.deepcopy(scripted))
        raw = self.state.raw_chat_content
        completion["choices"][0]["message"]["content"] = (
            raw if raw is not None else json.dumps(content, ensure_ascii=False)
        )
        return web.json_response(completion)

    async def _transcribe(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(load_fixture("openai/transcription.json"))

    async def _send(self, request: web.Request) -> web.Response:
        try:
            return await self._send_inner(request)
        finally:
            self.state.send_finished += 1

    async def _send_inner(self, request: web.Request) -> web.Response:
        self.state.send_started += 1
        self.state.send_headers.append(dict(request.headers))
        body = await request.json()
        fault = self._next_fault("send")
        if fault is not None and fault.status >= 400:
            return await self._fault_response(fault, {"error": "Internal error", "message": "try later"})
        if fault is not None:  # slow, then accepted
            await self._sleep(fault.hang_s)
        if self.state.send_delay_s:
            await asyncio.sleep(self.state.send_delay_s)
        if self.state.send_fail_first > 0:
            self.state.send_fail_first -= 1
            return web.json_response({"error": "Internal error"}, status=500)
        if self.state.send_hang is not None:
            await self.state.send_hang.wait()
        self.state.sent.append(body)
        response = dict(self._send_ok)
        response["messageId"] = f"3EB0{len(self.state.sent):016X}"
        return web.json_response(response)

    # --- Chatwoot Application API -------------------------------------------------------
    async def _cw_gate(self, request: web.Request, write: bool) -> web.Response | None:
        cw = self.state.chatwoot
        if cw.down:
            return web.json_response({"error": "Service Unavailable"}, status=503)
        if cw.token is not None and request.headers.get("api_access_token") != cw.token:
            cw.unauthorized += 1
            return web.json_response(load_fixture("chatwoot/error_401.json"), status=401)
        cw.calls.append((request.method, request.path))
        if write and cw.delay_s:
            await asyncio.sleep(cw.delay_s)
        return None

    @staticmethod
    def _digits(value: Any) -> str:
        return "".join(ch for ch in str(value or "") if ch.isdigit())

    async def _cw_search(self, request: web.Request) -> web.Response:
        if (gate := await self._cw_gate(request, False)) is not None:
            return gate
        query = request.query.get("q", "").strip()
        digits = self._digits(query)
        found = [
            c
            for c in self.state.chatwoot.contacts.values()
            if query
            and (
                query == c.get("identifier")
                or (len(digits) >= 8 and digits in self._digits(c.get("phone_number")))
                or query.lower() in str(c.get("name") or "").lower()
            )
        ]
        return web.json_response({"meta": {"count": len(found), "current_page": 1}, "payload": found})

    async def _cw_create_contact(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (gate := await self._cw_gate(request, False)) is not None:
            return gate
        template = load_fixture("chatwoot/contact_create_response.json")["payload"]
        contact = copy.deepcopy(template["contact"])
        contact_id = 1000 + next(self._ids)
        inbox = copy.deepcopy(template["contact_inbox"]["inbox"])
        inbox["id"] = body.get("inbox_id", inbox["id"])
        source_id = str(uuid.uuid4())
        contact.update(
            id=contact_id,
            name=body.get("name") or body.get("phone_number") or "",
            phone_number=body.get("phone_number"),
            identifier=body.get("identifier"),
            email=body.get("email"),
            custom_attributes=body.get("custom_attributes") or {},
            contact_inboxes=[{"source_id": source_id, "inbox": inbox}],
        )
        self.state.chatwoot.contacts[contact_id] = contact  # created, whatever happens next
        if self.state.chatwoot.delay_s:
            await asyncio.sleep(self.state.chatwoot.delay_s)
        return web.json_response(
            {"payload": {"contact": contact, "contact_inbox": {"inbox": inbox, "source_id": source_id}}}
        )

    async def _cw_update_contact(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (gate := await self._cw_gate(request, True)) is not None:
            return gate
        contact = self.state.chatwoot.contacts.get(int(request.match_info["contact"]))
        if contact is None:
            return web.json_response(load_fixture("chatwoot/error_404.json"), status=404)
        contact["custom_attributes"] = {
            **contact.get("custom_attributes", {}),
            **body.get("custom_attributes", {}),
        }
        return web.json_response({"payload": contact})

    async def _cw_contact_conversations(self, request: web.Request) -> web.Response:
        if (gate := await self._cw_gate(request, False)) is not None:
            return gate
        contact_id = int(request.match_info["contact"])
        found = [
            c for c in self.state.chatwoot.conversations.values() if c["meta"]["sender"]["id"] == contact_id
        ]
        return web.json_response({"payload": found})

    async def _cw_contact_inbox(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (gate := await self._cw_gate(request, True)) is not None:
            return gate
        return web.json_response({"source_id": str(uuid.uuid4()), "inbox": {"id": body.get("inbox_id")}})

    async def _cw_create_conversation(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (gate := await self._cw_gate(request, False)) is not None:
            return gate
        cw = self.state.chatwoot
        contact = cw.contacts.get(int(body.get("contact_id", 0)))
        if contact is None:
            return web.json_response(load_fixture("chatwoot/error_404.json"), status=404)
        conversation = copy.deepcopy(load_fixture("chatwoot/conversation_create_response.json"))
        conversation_id = 300 + next(self._ids)
        conversation.update(
            id=conversation_id, inbox_id=body.get("inbox_id"), status=body.get("status", "pending")
        )
        conversation["meta"]["sender"].update(
            id=contact["id"],
            name=contact["name"],
            phone_number=contact["phone_number"],
            identifier=contact["identifier"],
        )
        cw.conversations[conversation_id] = conversation
        cw.messages[conversation_id] = []
        if cw.delay_s:
            await asyncio.sleep(cw.delay_s)
        return web.json_response(conversation)

    async def _cw_create_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (gate := await self._cw_gate(request, False)) is not None:
            return gate
        cw = self.state.chatwoot
        conversation_id = int(request.match_info["conversation"])
        if conversation_id not in cw.conversations:
            return web.json_response(load_fixture("chatwoot/error_404.json"), status=404)
        message = {
            "id": 90000 + next(self._ids),
            "content": body.get("content"),
            "message_type": body.get("message_type"),
            "private": bool(body.get("private")),
        }
        cw.messages[conversation_id].append(message)  # created: a kill from here on is ambiguous
        if cw.delay_s:
            await asyncio.sleep(cw.delay_s)
        response = copy.deepcopy(load_fixture("chatwoot/message_create_response.json"))
        response.update(
            id=message["id"],
            content=message["content"],
            conversation_id=conversation_id,
            message_type=0 if message["message_type"] == "incoming" else 1,
            private=message["private"],
        )
        return web.json_response(response)

    async def _cw_list_messages(self, request: web.Request) -> web.Response:
        if (gate := await self._cw_gate(request, False)) is not None:
            return gate
        conversation_id = int(request.match_info["conversation"])
        kinds = {"incoming": 0, "outgoing": 1}
        payload = [
            {
                "id": m["id"],
                "content": m["content"],
                "message_type": kinds.get(m["message_type"], 1),
                "private": m["private"],
                "conversation_id": conversation_id,
            }
            for m in self.state.chatwoot.messages.get(conversation_id, [])
        ]
        return web.json_response({"meta": {}, "payload": payload})

    async def _cw_toggle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (gate := await self._cw_gate(request, True)) is not None:
            return gate
        conversation_id = int(request.match_info["conversation"])
        conversation = self.state.chatwoot.conversations.get(conversation_id)
        if conversation is not None:
            conversation["status"] = body.get("status")
        return web.json_response(
            {
                "meta": {},
                "payload": {
                    "success": True,
                    "current_status": body.get("status"),
                    "conversation_id": conversation_id,
                },
            }
        )

    async def _cw_labels(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (gate := await self._cw_gate(request, True)) is not None:
            return gate
        conversation = self.state.chatwoot.conversations.get(int(request.match_info["conversation"]))
        if conversation is not None:
            conversation["labels"] = list(body.get("labels", []))
        return web.json_response({"payload": list(body.get("labels", []))})

    async def _cw_read_labels(self, request: web.Request) -> web.Response:
        """GET .../labels (swagger: conversation labels): the list the bot merges into."""
        if (gate := await self._cw_gate(request, False)) is not None:
            return gate
        conversation = self.state.chatwoot.conversations.get(int(request.match_info["conversation"]))
        labels = list(conversation.get("labels", [])) if conversation is not None else []
        return web.json_response({"payload": labels})

    async def _cw_assign(self, request: web.Request) -> web.Response:
        await request.read()
        if (gate := await self._cw_gate(request, True)) is not None:
            return gate
        return web.json_response(load_fixture("chatwoot/assignment_team_response.json"))

    # --- Meta Conversions API -----------------------------------------------------------
    async def _capi(self, request: web.Request) -> web.Response:
        if not self.state.capi_enabled:
            return await self._unknown(request)
        body = await request.json()
        self.state.capi_requests.append(
            {"path": request.path, "headers": dict(request.headers), "body": body}
        )
        if self.state.send_delay_s:
            await asyncio.sleep(self.state.send_delay_s)
        response = load_fixture("meta_capi/success.json")
        response["events_received"] = len(body.get("data", []))
        return web.json_response(response)

    # --- PipeRun ------------------------------------------------------------------------
    async def _piperun(self, request: web.Request) -> web.Response:
        account = self.state.piperun
        if not account.enabled:
            return await self._unknown(request)
        raw = await request.read()
        if account.token is not None and request.headers.get("token") != account.token:
            account.unauthorized += 1
            return web.json_response(load_piperun("error_401.json"), status=401)
        path = "/" + request.match_info["tail"]
        body = json.loads(raw) if raw else None
        # aiohttp sends `show=20` etc. as strings: the account compares strings, as before.
        query = dict(request.query)
        account.calls.append((request.method, path, query, body))
        status, payload = account.handle(request.method, path, query, body)
        if request.method != "GET" and account.delay_s:
            await asyncio.sleep(account.delay_s)  # applied already: a kill from here is ambiguous
        return web.json_response(payload, status=status)

    # --- anything else ------------------------------------------------------------------
    async def _unknown(self, request: web.Request) -> web.Response:
        raw = await request.read()
        record = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": dict(request.headers),
            "body": raw.decode("utf-8", "replace"),
        }
        self.state.unknown_requests.append(record)
        if not self.state.echo_unknown:
            raise web.HTTPNotFound()
        return web.json_response(
            {
                "success": False,
                "message": f"Unprocessable request {request.method} {request.path_qs}",
                "error": {"message": f"rejected: {json.dumps(record, ensure_ascii=False)}", "code": 100},
                "data": record,
            },
            status=422,
        )

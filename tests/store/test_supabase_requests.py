"""The exact PostgREST requests the Supabase store sends, and what it makes of the answers.

Replayed against recorded exchanges (tests/fixtures/supabase/*.json, PostgREST's own
response shapes), so these tests need no database: method, path, query string, headers
(`apikey`, `Authorization: Bearer <key>`, the schema profile) and JSON body are checked
one by one. Then the unhappy paths: what is retried (5xx, timeouts, connection errors),
what is not (4xx), what becomes `StoreUnavailable`, and that the service-role key never
shows in a log line or an exception. The "one effect" checks run on the real Postgres
behind the PostgREST bridge.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from core.errors import StoreUnavailable
from core.models import InboundMessage, MessageKind
from core.records import NewMessage, OutboxItem, TurnCommit
from store import supabase as supabase_module
from store.supabase import SupabaseRequestError, SupabaseStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "supabase"
URL = "https://sdr-fixture.supabase.co"
KEY = "fixture-service-role-key"
CONTACT = "5544999887766"
CONTACT_KEY = f"whatsapp:{CONTACT}"
REQUEST_ID = uuid.UUID("0b7e6a4c9d2f4e1a8c3b5d7f9a1c2e4f")


def fixture(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    data.pop("_source", None)
    return data


def answer(name: str) -> httpx.Response:
    recorded = fixture(name)["response"]
    body = recorded["body"]
    content = json.dumps(body).encode() if body is not None else b""
    return httpx.Response(recorded["status"], content=content, headers=recorded["headers"])


class Replay:
    """A PostgREST double: records each request and answers from a queue of recorded
    responses, injected statuses or transport errors."""

    def __init__(self, *answers: str | int | type[Exception] | httpx.Response) -> None:
        self.answers: deque[Any] = deque(answers)
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        nxt = self.answers.popleft()
        if isinstance(nxt, type) and issubclass(nxt, Exception):
            raise nxt("injected", request=request)  # type: ignore[call-arg]
        if isinstance(nxt, int):
            return httpx.Response(nxt, json=fixture("error_503_pgrst001")["response"]["body"])
        if isinstance(nxt, httpx.Response):
            return nxt
        return answer(nxt)


@pytest.fixture
def replay() -> Replay:
    return Replay()


@pytest.fixture
async def store(replay: Replay) -> AsyncIterator[SupabaseStore]:
    s = SupabaseStore(
        URL, KEY, transport=httpx.MockTransport(replay.handler), instance_id="bot-a", max_attempts=3
    )
    await s.open()
    yield s
    await s.close()


@pytest.fixture(autouse=True)
def fixed_request_id(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(supabase_module.uuid, "uuid4", lambda: REQUEST_ID)
    yield


def message() -> InboundMessage:
    return InboundMessage(
        channel="zapi",
        contact_id=CONTACT,
        provider_message_id="3EB0C4F1A2B3C4D5E6F7",
        kind=MessageKind.TEXT,
        text="Oi, quero um orçamento da FB300",
        phone=CONTACT,
        name="Mariana Souza",
        timestamp=datetime(2026, 11, 25, 14, 0, 5, tzinfo=UTC),
    )


def commit(inbound_id: int = 1) -> TurnCommit:
    return TurnCommit(
        turn_id="a1b2c3d4",
        contact_key=CONTACT_KEY,
        channel="zapi",
        contact_id=CONTACT,
        phone=CONTACT,
        name="Mariana Souza",
        inbound_ids=[inbound_id],
        messages=[
            NewMessage(
                "in",
                "text",
                "Oi, quero um orçamento da FB300",
                provider_message_id="3EB0C4F1A2B3C4D5E6F7",
                status="received",
            ),
            NewMessage(
                "out", "text", "Olá, Mariana! Para quantas peças por dia?", status="queued", ref="reply-0"
            ),
        ],
        profile={"name": "Mariana", "product_interest": "FB300"},
        score=25,
        temperature="morno",
        score_reasons=["interesse em produto: +15", "1 mensagem do lead: +2"],
        lead_messages_added=1,
        outbox=[
            OutboxItem(
                kind="send_text",
                order_key=f"reply:{CONTACT_KEY}",
                idempotency_key=f"reply:{CONTACT_KEY}:a1b2c3d4:0",
                payload={
                    "channel": "zapi",
                    "contact_id": CONTACT,
                    "text": "Olá, Mariana! Para quantas peças por dia?",
                    "message_ref": "reply-0",
                },
            )
        ],
        at=datetime(2026, 11, 25, 14, 0, 9, tzinfo=UTC),
    )


def assert_sent_as_recorded(request: httpx.Request, name: str) -> None:
    """Method, path, query string, auth and profile headers and JSON body, as recorded."""
    expected = fixture(name)["request"]
    assert request.method == expected["method"]
    assert request.url.scheme == "https" and request.url.host == "sdr-fixture.supabase.co"
    assert request.url.path == expected["path"]
    assert [list(p) for p in request.url.params.multi_items()] == expected["params"]
    assert request.headers["apikey"] == KEY
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept-profile"] == "public"
    assert request.headers.get("prefer") == expected["prefer"]
    if expected["json"] is None:
        assert request.content == b""
    else:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["content-profile"] == "public"
        assert json.loads(request.content) == expected["json"]


# --- the key operations, request by request -------------------------------------------------


async def test_add_inbound_calls_sdr_add_inbound_with_the_whole_message(
    store: SupabaseStore, replay: Replay
) -> None:
    replay.answers.extend(["rpc_add_inbound", "rpc_add_inbound_duplicate"])
    assert await store.add_inbound(message()) is True
    assert await store.add_inbound(message()) is False
    assert_sent_as_recorded(replay.requests[0], "rpc_add_inbound")
    body = json.loads(replay.requests[0].content)
    assert body["p_status"] == "pending" and body["p_reason"] is None
    assert InboundMessage.model_validate(body["p_message"]) == message()


async def test_pending_contacts_come_as_one_json_array(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.append("rpc_pending_contacts")
    assert await store.pending_contacts() == [CONTACT_KEY]
    assert_sent_as_recorded(replay.requests[0], "rpc_pending_contacts")


async def test_pending_inbound_is_a_plain_table_read(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.append("select_pending_inbound")
    [record] = await store.pending_inbound(CONTACT_KEY)
    request = replay.requests[0]
    assert_sent_as_recorded(request, "select_pending_inbound")
    assert request.url.query.decode() == (
        "select=id%2Cmessage%2Cattempts%2Creceived_at&contact_key=eq.whatsapp%3A5544999887766"
        "&status=eq.pending&order=id.asc"
    )
    assert record.id == 1 and record.attempts == 0
    assert record.message == message()
    assert record.received_at.tzinfo is not None


async def test_commit_turn_is_one_rpc_with_a_request_id(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.append("rpc_commit_turn_once")
    await store.commit_turn(commit())
    assert len(replay.requests) == 1
    assert_sent_as_recorded(replay.requests[0], "rpc_commit_turn_once")
    body = json.loads(replay.requests[0].content)
    assert body["p_request_id"] == REQUEST_ID.hex
    # The outbox payload still names the message by its ref: the function swaps in the id.
    assert body["p_commit"]["outbox"][0]["payload"]["message_ref"] == "reply-0"


async def test_get_lead_parses_the_lead_and_its_conversation(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.extend(["rpc_get_lead", "rpc_get_lead_unknown"])
    lead = await store.get_lead(CONTACT_KEY)
    assert_sent_as_recorded(replay.requests[0], "rpc_get_lead")
    assert lead is not None
    assert (lead.id, lead.contact_key, lead.name, lead.score, lead.temperature) == (
        1,
        CONTACT_KEY,
        "Mariana Souza",
        25,
        "morno",
    )
    assert lead.profile == {"name": "Mariana", "product_interest": "FB300"}
    assert lead.conversation_id == 1
    assert lead.last_inbound_at == datetime(2026, 11, 25, 14, 0, 9, tzinfo=UTC)
    for stamp in (lead.created_at, lead.updated_at, lead.conversation_started_at):
        assert stamp is not None and stamp.tzinfo is not None
    assert (lead.crm_person_id, lead.crm_deal_id, lead.opted_out) == (None, None, False)

    assert await store.get_lead("whatsapp:5500000000000") is None
    assert_sent_as_recorded(replay.requests[1], "rpc_get_lead_unknown")


async def test_claim_outbox_leases_items_to_this_instance(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.append("rpc_claim_outbox_for")
    [item] = await store.claim_outbox(limit=8, now=datetime(2026, 11, 25, 14, 0, 10, tzinfo=UTC))
    assert_sent_as_recorded(replay.requests[0], "rpc_claim_outbox_for")
    assert (item.id, item.kind, item.status, item.attempts) == (1, "send_text", "inflight", 1)
    assert item.idempotency_key == f"reply:{CONTACT_KEY}:a1b2c3d4:0"
    assert item.payload["message_id"] == 2 and "message_ref" not in item.payload
    assert all(
        t is not None and t.tzinfo is not None
        for t in (item.next_attempt_at, item.created_at, item.updated_at)
    )


async def test_complete_outbox_is_a_minimal_patch(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.append("update_outbox_complete")
    assert await store.complete_outbox(1) is None
    assert_sent_as_recorded(replay.requests[0], "update_outbox_complete")


async def test_ping_reaches_the_server(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.append(httpx.Response(200, json=[]))
    await store.ping()
    [request] = replay.requests
    assert (request.method, request.url.path, request.url.query.decode()) == (
        "GET",
        "/rest/v1/inbound",
        "select=id&limit=1",
    )


# --- what is retried and what is not ---------------------------------------------------------


async def test_a_503_is_retried_and_the_answer_after_it_is_used(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.extend([503, "rpc_add_inbound"])
    assert await store.add_inbound(message()) is True
    assert len(replay.requests) == 2
    assert replay.requests[0].content == replay.requests[1].content


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_every_time_gives_store_unavailable_after_max_attempts(
    store: SupabaseStore, replay: Replay, status: int
) -> None:
    replay.answers.extend([status] * 3)
    with pytest.raises(StoreUnavailable, match=f"rpc sdr_add_inbound unavailable: HTTP {status}"):
        await store.add_inbound(message())
    assert len(replay.requests) == 3


@pytest.mark.parametrize(
    "error", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.ConnectError, httpx.ReadError]
)
async def test_timeouts_and_connection_errors_give_store_unavailable(
    store: SupabaseStore, replay: Replay, error: type[Exception]
) -> None:
    replay.answers.extend([error] * 3)
    with pytest.raises(StoreUnavailable):
        await store.commit_turn(commit())
    assert len(replay.requests) == 3
    # Every attempt is the same request: the same request id, so a commit is written once.
    assert len({r.content for r in replay.requests}) == 1


async def test_a_server_that_never_answers_hits_the_deadline() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        import asyncio

        await asyncio.sleep(5)
        return httpx.Response(200, json=True)

    store = SupabaseStore(URL, KEY, transport=httpx.MockTransport(hang), timeout_s=0.05, max_attempts=2)
    await store.open()
    try:
        with pytest.raises(StoreUnavailable, match="no answer within 0.05 s"):
            await store.ping()
    finally:
        await store.close()


async def test_an_unknown_function_is_not_retried_and_says_what_is_missing(
    store: SupabaseStore, replay: Replay
) -> None:
    replay.answers.append("error_pgrst202")
    with pytest.raises(SupabaseRequestError) as caught:
        await store.pending_contacts()
    assert len(replay.requests) == 1
    assert not isinstance(caught.value, StoreUnavailable)
    assert caught.value.status == 404 and caught.value.code == "PGRST202"
    assert "rpc sdr_pending_contacts" in str(caught.value)
    assert "Could not find the function" in str(caught.value)


async def test_a_rejected_commit_is_not_retried(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.append("error_22023_commit_turn")
    with pytest.raises(SupabaseRequestError, match="22023"):
        await store.commit_turn(commit())
    assert len(replay.requests) == 1


async def test_a_unique_violation_on_a_chatwoot_link_keeps_the_first_link(
    store: SupabaseStore, replay: Replay
) -> None:
    replay.answers.append("error_23505_chatwoot_message_id")
    await store.set_chatwoot_message_id(2, 777)  # no exception: the first link stays
    assert len(replay.requests) == 1
    assert_sent_as_recorded(replay.requests[0], "error_23505_chatwoot_message_id")


async def test_a_refused_key_is_an_outage_not_a_bug(store: SupabaseStore, replay: Replay) -> None:
    replay.answers.append("error_401_invalid_key")
    with pytest.raises(StoreUnavailable, match="service role key was refused"):
        await store.add_inbound(message())
    assert len(replay.requests) == 1


async def test_a_closed_store_sends_nothing(store: SupabaseStore, replay: Replay) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.add_inbound(message())
    assert replay.requests == []


async def test_the_key_never_appears_in_logs_or_errors(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-live-7f3a9c1e5b2d4f6a8c0e"
    replay = Replay(503, 503, httpx.ConnectTimeout, "error_pgrst202", "error_401_invalid_key")
    store = SupabaseStore(URL, secret, transport=httpx.MockTransport(replay.handler), max_attempts=3)
    await store.open()
    errors: list[BaseException] = []
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:  # unrendered, unscrubbed: what the store itself logged
        for call in (store.add_inbound(message()), store.pending_contacts(), store.ping()):
            try:
                await call
            except Exception as exc:  # noqa: BLE001 - every error is inspected below
                errors.append(exc)
    await store.close()
    assert len(errors) == 3
    assert all(r.headers["apikey"] == secret for r in replay.requests)  # it was sent...
    assert {e["event"] for e in events} >= {"supabase_unavailable", "supabase_rejected"}  # logs were seen
    captured = capsys.readouterr()
    texts = [repr(store), captured.out, captured.err, caplog.text, repr(events)]
    for exc in errors:
        cause: BaseException | None = exc
        while cause is not None:  # ...but no log line and no error in any chain names it
            texts += [str(cause), repr(cause)]
            cause = cause.__cause__ or cause.__context__
    assert not [t for t in texts if secret in t]


# --- one effect, on the real database ---------------------------------------------------------


@pytest.fixture
async def bridged() -> AsyncIterator[tuple[SupabaseStore, Any]]:
    from tests.helpers.postgrest_bridge import PostgrestBridge
    from tests.store.pg_support import fresh_schema

    with fresh_schema() as schema:
        bridge = PostgrestBridge(schema, api_key=KEY)
        store = SupabaseStore(URL, KEY, transport=bridge.transport(), instance_id="bot-a")
        await store.open()
        try:
            yield store, bridge
        finally:
            await store.close()
            bridge.close()


async def test_an_add_inbound_retried_after_a_503_stores_one_row(bridged: tuple[SupabaseStore, Any]) -> None:
    store, bridge = bridged
    bridge.fail_next(2, status=503)
    assert await store.add_inbound(message()) is True
    assert len(bridge.requests) == 3
    assert len(await store.pending_inbound(CONTACT_KEY)) == 1


async def test_a_commit_whose_answer_was_lost_is_written_once(bridged: tuple[SupabaseStore, Any]) -> None:
    store, bridge = bridged
    await store.add_inbound(message())
    [record] = await store.pending_inbound(CONTACT_KEY)
    bridge.lose_next(1)  # the turn commits, then the answer times out; the retry must not redo it
    await store.commit_turn(commit(record.id))
    commits = [r for r in bridge.requests if r.path.endswith("/sdr_commit_turn_once")]
    assert len(commits) == 2 and commits[0].json == commits[1].json
    assert [m.text for m in await store.recent_messages(CONTACT_KEY, 10)] == [
        "Oi, quero um orçamento da FB300",
        "Olá, Mariana! Para quantas peças por dia?",
    ]
    lead = await store.get_lead(CONTACT_KEY)
    assert lead is not None and lead.lead_message_count == 1
    assert (await store.outbox_stats()).pending == 1


async def test_a_commit_after_the_retries_ran_out_left_nothing(bridged: tuple[SupabaseStore, Any]) -> None:
    store, bridge = bridged
    bridge.fail_next(3, status=503)
    with pytest.raises(StoreUnavailable):
        await store.commit_turn(commit())
    assert await store.get_lead(CONTACT_KEY) is None
    assert (await store.outbox_stats()).pending == 0


async def test_an_unreachable_then_slow_database_refuses_and_stores_nothing(
    bridged: tuple[SupabaseStore, Any],
) -> None:
    store, bridge = bridged
    bridge.raise_next(3, error=httpx.ConnectError)
    with pytest.raises(StoreUnavailable, match="connection error"):
        await store.add_inbound(message())
    slow = SupabaseStore(URL, KEY, transport=bridge.transport(), timeout_s=0.05, max_attempts=2)
    await slow.open()
    try:
        bridge.delay_next(1.0, times=2)  # cancelled at the deadline, before it runs
        with pytest.raises(StoreUnavailable, match="no answer within"):
            await slow.add_inbound(message())
    finally:
        await slow.close()
    assert await store.pending_inbound(CONTACT_KEY) == []
    assert await store.add_inbound(message()) is True  # and it is back


# --- the bridge itself speaks PostgREST ---------------------------------------------------------


async def test_the_bridge_serves_table_verbs_with_postgrest_shapes(
    bridged: tuple[SupabaseStore, Any],
) -> None:
    """What the store does not use today is still served the PostgREST way, so a later
    store method cannot pass here and fail against Supabase for a bridge shortcut."""
    from postgrest.types import ReturnMethod
    from supabase import AsyncClientOptions, acreate_client

    _store, bridge = bridged
    async with httpx.AsyncClient(transport=bridge.transport()) as http:
        client = await acreate_client(URL, KEY, options=AsyncClientOptions(httpx_client=http))
        rows = [{"nome": "Seleto", "site": "https://seleto.example"}, {"nome": "Outra", "site": None}]
        inserted = await client.table("empresa").insert(rows).execute()
        assert [r["nome"] for r in inserted.data] == ["Seleto", "Outra"]
        assert inserted.data[0]["dados"] == {} and inserted.data[0]["id"] == 1  # column defaults applied
        assert bridge.requests[-1].headers["prefer"] == "return=representation"

        picked = await (
            client.table("empresa")
            .select("id,nome")
            .in_("nome", ["Outra", "Seleto"])
            .is_("site", None)
            .order("id", desc=True)
            .limit(5)
            .execute()
        )
        assert picked.data == [{"id": 2, "nome": "Outra"}]

        quiet = (
            await client.table("empresa")
            .update({"site": "x"}, returning=ReturnMethod.minimal)
            .eq("id", 2)
            .execute()
        )
        assert quiet.data == []
        changed = await client.table("empresa").update({"telefone": "4433334444"}).eq("id", 1).execute()
        assert (
            changed.data[0]["telefone"] == "4433334444"
            and changed.data[0]["site"] == "https://seleto.example"
        )

        gone = await client.table("empresa").delete().neq("id", 1).execute()
        assert [r["id"] for r in gone.data] == [2]
        left = await client.table("empresa").select("*").execute()
        assert [r["id"] for r in left.data] == [1]
        assert isinstance(left.data[0]["created_at"], str) and left.data[0]["created_at"].endswith("+00:00")

        with pytest.raises(Exception, match="PGRST205"):
            await client.table("no_such_table").select("*").execute()
        with pytest.raises(Exception, match="42703"):
            await client.table("empresa").select("no_such_column").execute()

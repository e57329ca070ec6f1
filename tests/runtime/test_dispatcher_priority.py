"""The dispatcher under a flood (issue 18): with one worker and a backlog of mirror and
CRM items, a lead's reply queued last is the next thing delivered; a store too busy to
claim is a warning, and the next pass claims."""

from __future__ import annotations

from structlog.testing import capture_logs

from core.errors import StoreUnavailable
from core.records import OutboxItem
from store.sqlite import SqliteStore
from tests.runtime.outbox_support import (
    DispatcherFactory,
    ScriptedHandler,
    drained,
    enqueue,
    fixed_policy,
    item,
)


async def test_a_reply_queued_after_a_backlog_is_delivered_first(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    backlog = []
    for n in range(5):
        backlog += [
            item(f"crm-{n}", kind="piperun_sync", order_key=f"crm:zapi:{n}"),
            item(f"mirror-{n}", kind="chatwoot_message", order_key=f"chatwoot:zapi:{n}"),
        ]
    await enqueue(store, *backlog)
    await enqueue(store, item("reply", order_key="reply:zapi:new-lead"))
    handler = ScriptedHandler()
    policy = fixed_policy(0.01)
    d = await dispatcher(
        dict.fromkeys(("send_text", "chatwoot_message", "piperun_sync"), (handler, policy)), workers=1
    )

    await drained(d)
    assert handler.delivered[0] == "reply"
    assert handler.delivered[1:6] == [f"mirror-{n}" for n in range(5)]
    assert handler.delivered[6:] == [f"crm-{n}" for n in range(5)]


async def test_a_claim_the_store_refuses_is_a_warning_and_the_next_pass_claims(
    store: SqliteStore, dispatcher: DispatcherFactory
) -> None:
    refusals = [StoreUnavailable("sqlite busy: database is locked")]
    claim = store.claim_outbox

    async def busy_once(**kwargs: object) -> list[OutboxItem]:
        if refusals:
            raise refusals.pop()
        return await claim(**kwargs)  # type: ignore[arg-type]

    store.claim_outbox = busy_once  # type: ignore[method-assign]
    await enqueue(store, item("reply"))
    handler = ScriptedHandler()
    with capture_logs() as logs:
        d = await dispatcher({"send_text": (handler, fixed_policy(0.01))})
        await drained(d)
    assert handler.delivered == ["reply"]
    events = [(e["event"], e["log_level"]) for e in logs]
    assert ("outbox_claim_unavailable", "warning") in events
    assert all(e["event"] != "outbox_claim_failed" for e in logs)

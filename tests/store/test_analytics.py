"""The sales dashboard's aggregates (issue 20) on both backends: a generated data set
whose every figure is known (tests/store/analytics_data.py), read through the `Store`
protocol; fixed periods and timestamps only, so the wall clock never matters."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from core.analytics import Funnel, FunnelGroup
from core.records import NewMessage, TurnCommit, TurnUsage
from store.base import Store
from store.sqlite import SqliteStore
from tests.store.analytics_data import (
    PERIOD,
    TIMEZONE,
    WEBSITE_UTM,
    known_dataset,
    write_postgres,
    write_sqlite,
)
from tests.store.conftest import BACKENDS, BUILDERS, SUPABASE

BRL = 5.0


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = BUILDERS[request.param](tmp_path)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def load_known(store: Store, tmp_path: Path) -> None:
    data = known_dataset()
    if isinstance(store, SqliteStore):
        write_sqlite(store.db, data)
        return
    from tests.store.pg_support import connect

    with connect(SUPABASE._bridges[tmp_path].schema) as conn:
        write_postgres(conn, data)


async def funnel(store: Store, group_by: str = "week", period: tuple[datetime, datetime] = PERIOD) -> Funnel:
    return await store.funnel(period[0], period[1], group_by=group_by, timezone=TIMEZONE, brl_per_usd=BRL)  # type: ignore[arg-type]


def stages(group: FunnelGroup) -> list[int]:
    return [s.leads for s in group.stages]


async def test_the_funnel_of_the_known_leads_by_week(store: Store, tmp_path: Path) -> None:
    await load_known(store, tmp_path)
    result = await funnel(store)

    total = result.total
    assert stages(total) == [50, 40, 20, 8, 3, 1]
    assert [s.conversion for s in total.stages] == [None, 0.8, 0.5, 0.4, 0.375, 0.3333]
    # Delays 10, 20 ... 400 s: percentile_cont over the 40 answered leads.
    assert (total.first_reply_p50_s, total.first_reply_p90_s) == (205.0, 361.0)
    assert total.by_temperature == {"frio": 30, "morno": 10, "quente": 10}
    assert total.top_handoff_reasons == [("pediu orçamento", 5), ("quer falar com humano", 3)]
    assert total.opt_outs == 2

    week1, week2 = result.groups
    assert (week1.week, week2.week) == (date(2026, 11, 16), date(2026, 11, 23))
    assert stages(week1) == [30, 30, 20, 8, 3, 1] and week1.opt_outs == 0
    assert (week1.first_reply_p50_s, week1.first_reply_p90_s) == (155.0, 271.0)
    assert stages(week2) == [20, 10, 0, 0, 0, 0] and week2.opt_outs == 2
    assert (week2.first_reply_p50_s, week2.first_reply_p90_s) == (355.0, 391.0)
    assert week2.stages[3].conversion is None  # nobody qualified: no rate, not an error


async def test_the_funnel_by_source(store: Store, tmp_path: Path) -> None:
    await load_known(store, tmp_path)
    result = await funnel(store, "source")
    # The dashboard's weekly chart comes with it, the same weeks as grouping by week.
    assert result.weeks == (await funnel(store, "week")).groups
    by_key = {g.key: g for g in result.groups}
    assert list(by_key) == [
        "instagram",
        "zapi",
        "zapi ad_id=ad1 campaign_id=c1",
        "zapi ad_id=ad2 campaign_id=c2 form_id=f1",
        "zapi utm_source=google utm_medium=cpc utm_campaign=verao",
    ]
    assert stages(by_key["zapi ad_id=ad1 campaign_id=c1"]) == [10, 8, 4, 2, 1, 1]
    assert stages(by_key["zapi ad_id=ad2 campaign_id=c2 form_id=f1"]) == [10, 8, 4, 2, 1, 0]
    website = by_key["zapi utm_source=google utm_medium=cpc utm_campaign=verao"]
    assert stages(website) == [10, 8, 4, 2, 1, 0]
    assert website.source is not None and website.source.utm_campaign == "verao"
    assert stages(by_key["instagram"]) == [10, 8, 4, 1, 0, 0] and by_key["instagram"].opt_outs == 1
    assert stages(by_key["zapi"]) == [10, 8, 4, 1, 0, 0] and by_key["zapi"].opt_outs == 1
    # Lead 1's ignored delivery hours earlier and lead 2's human reply change nothing:
    # their delays are 20 s and 30 s, as the Lead Ads and website groups' medians show.
    assert by_key["zapi ad_id=ad2 campaign_id=c2 form_id=f1"].first_reply_p50_s == 195.0  # 20, 70 ... 370
    assert website.first_reply_p50_s == 205.0  # 30, 80 ... 380


async def test_the_cost_per_day_lead_and_qualified_lead(store: Store, tmp_path: Path) -> None:
    await load_known(store, tmp_path)
    cost = (await funnel(store)).cost
    total = cost.total
    # 40 turns of 1000 prompt (400 cached) + 100 completion tokens: 0.003 US$ each; one
    # 30 s voice note: 0.003 US$; the turn an hour before the period is not counted.
    assert (total.turns, total.prompt_tokens, total.cached_tokens, total.completion_tokens) == (
        40,
        40000,
        16000,
        4000,
    )
    assert total.transcription_seconds == 30.0
    assert total.usd == pytest.approx(0.123, abs=1e-9) and total.brl == pytest.approx(0.615, abs=1e-9)
    assert cost.usd_per_lead == pytest.approx(0.00246, abs=1e-9)
    assert cost.brl_per_lead == pytest.approx(0.0123, abs=1e-9)
    assert cost.usd_per_qualified_lead == pytest.approx(0.00615, abs=1e-9)
    assert cost.brl_per_qualified_lead == pytest.approx(0.03075, abs=1e-9)
    assert len(cost.days) == 14
    by_day = {d.day.isoformat(): d for d in cost.days if d.turns}
    # Leads 0-23 answered on Monday the 16th (company time), 24-29 on the 17th, 30-39 on the 23rd.
    assert {day: d.turns for day, d in by_day.items()} == {
        "2026-11-16": 24,
        "2026-11-17": 6,
        "2026-11-23": 10,
    }
    assert by_day["2026-11-16"].usd == pytest.approx(0.075, abs=1e-9)
    assert by_day["2026-11-16"].transcription_seconds == 30.0
    assert by_day["2026-11-23"].brl == pytest.approx(0.15, abs=1e-9)


async def test_an_empty_period_is_zeros_not_an_error(store: Store, tmp_path: Path) -> None:
    await load_known(store, tmp_path)
    empty = (datetime(2025, 1, 6, 3, tzinfo=UTC), datetime(2025, 1, 13, 3, tzinfo=UTC))
    for group_by in ("week", "source"):
        result = await funnel(store, group_by, empty)
        assert stages(result.total) == [0, 0, 0, 0, 0, 0]
        assert result.total.first_reply_p50_s is None and result.total.opt_outs == 0
        assert result.total.by_temperature == {"frio": 0, "morno": 0, "quente": 0}
        assert result.cost.total.usd == 0.0 and result.cost.usd_per_lead == 0.0
        assert len(result.cost.days) == 7
    assert [g.week for g in (await funnel(store, "week", empty)).groups] == [date(2025, 1, 6)]
    assert (await funnel(store, "source", empty)).groups == []


AT = datetime(2026, 11, 20, 15, tzinfo=UTC)
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def costed_turn(turn_id: str = "turn0001") -> TurnCommit:
    return TurnCommit(
        turn_id=turn_id,
        contact_key="whatsapp:5511987650001",
        channel="zapi",
        contact_id="5511987650001",
        phone="5511987650001",
        name="Maria",
        inbound_ids=[],
        messages=[NewMessage(direction="in", kind="form", text="formulário")],
        profile={},
        score=50,
        temperature="morno",
        score_reasons=[],
        lead_messages_added=1,
        at=AT,
        usage=TurnUsage(
            model="gpt-4o",
            prompt_tokens=3000,
            cached_tokens=1000,
            completion_tokens=200,
            transcription_seconds=12.5,
        ),
        utm=WEBSITE_UTM,
    )


async def test_a_committed_turn_records_its_usage_and_the_deal_won(store: Store) -> None:
    await store.commit_turn(costed_turn())
    await store.commit_turn(TurnCommit(**{**costed_turn("turn0002").__dict__, "usage": None}))
    result = await funnel(store, "source", EVER)
    total = result.cost.total
    assert (total.turns, total.prompt_tokens, total.cached_tokens, total.completion_tokens) == (
        1,
        3000,
        1000,
        200,
    )
    assert total.transcription_seconds == 12.5
    # 2000 x 2.50 + 1000 x 1.25 + 200 x 10 per 1M tokens, and 12.5 s of Whisper.
    assert total.usd == pytest.approx(0.00825 + 12.5 / 60 * 0.006, abs=1e-9)
    assert [d.day for d in result.cost.days if d.turns] == [date(2026, 11, 20)]
    assert [g.key for g in result.groups] == ["zapi utm_source=google utm_medium=cpc utm_campaign=verao"]

    assert await store.mark_deal_won("whatsapp:5511987650001", at=AT) is True
    assert await store.mark_deal_won("whatsapp:5511900000000", at=AT) is False
    assert stages((await funnel(store, "week", EVER)).total)[-1] == 1


async def test_the_commit_keeps_the_first_message_and_the_first_reply(store: Store) -> None:
    from core.models import InboundMessage, MessageKind

    key = "whatsapp:5511987650001"
    for n in (1, 2):
        message = InboundMessage(
            channel="zapi",
            contact_id="5511987650001",
            provider_message_id=f"w{n}",
            kind=MessageKind.TEXT,
            text="oi",
            phone="5511987650001",
        )
        assert await store.add_inbound(message)
    pending = await store.pending_inbound(key)
    silent = costed_turn("turn0001")
    silent.inbound_ids = [pending[0].id]
    await store.commit_turn(silent)  # no reply yet (a person was talking)
    assert stages((await funnel(store, "week", EVER)).total)[:2] == [1, 0]
    answered = costed_turn("turn0002")
    answered.inbound_ids = [pending[1].id]
    answered.messages = [*answered.messages, NewMessage(direction="out", kind="text", text="Olá!")]
    await store.commit_turn(answered)
    total = (await funnel(store, "week", EVER)).total
    assert stages(total)[:2] == [1, 1]
    # From the first message's arrival to the reply's commit, both on the store's own
    # clock: only the delay's sign and scale are known here.
    assert total.first_reply_p50_s is not None and 0 <= total.first_reply_p50_s < 60


async def test_a_handoff_given_back_to_the_bot_still_counts(store: Store) -> None:
    key = "whatsapp:5511987650001"
    await store.commit_turn(costed_turn())
    await store.request_handoff(key, reason="pediu orçamento", summary="quer 10 caixas")
    await store.set_human_owned(key, until=None, resolved=True)  # handoff_at is cleared
    await store.request_handoff(key, reason="de novo", summary="voltou")
    await store.set_human_owned(key, until=None, resolved=True)
    total = (await funnel(store, "week", EVER)).total
    assert stages(total)[3] == 1
    assert total.top_handoff_reasons == [("pediu orçamento", 1)]  # the first one


async def test_an_old_sqlite_file_gets_the_cost_table_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.commit_turn(costed_turn("turn0000"))
    await store.close()
    with sqlite3.connect(path) as db:  # the file as an earlier release left it
        db.execute("DROP TABLE turn_usage")
        for column in (
            "utm",
            "won_at",
            "handed_off_at",
            "handed_off_reason",
            "first_in_at",
            "first_reply_at",
        ):
            db.execute(f"ALTER TABLE leads DROP COLUMN {column}")
        db.execute(
            "UPDATE leads SET handoff_at = '2026-11-20T15:00:00.000000+00:00', handoff_reason = 'antes'"
        )
        db.execute(
            "INSERT INTO inbound (channel, provider_message_id, contact_key, message, status, received_at)"
            " VALUES ('zapi', 'w1', 'whatsapp:5511987650001', '{}', 'done', '2026-11-20T14:59:00.000000+00:00'),"
            " ('zapi', 'w0', 'whatsapp:5511987650001', '{}', 'ignored', '2026-11-20T10:00:00.000000+00:00')"
        )
        db.execute(
            "INSERT INTO messages (conversation_id, lead_id, direction, kind, text, turn_id, created_at)"
            " VALUES (1, 1, 'out', 'text', 'oi', 'human', '2026-11-20T14:59:30.000000+00:00'),"
            " (1, 1, 'out', 'text', 'Olá!', 't1', '2026-11-20T15:01:00.000000+00:00')"
        )
    store = SqliteStore(path)
    await store.open()
    try:
        columns = {row[1] for row in store.db.execute("PRAGMA table_info(leads)")}
        assert {
            "utm",
            "won_at",
            "handed_off_at",
            "handed_off_reason",
            "first_in_at",
            "first_reply_at",
        } <= columns
        # The first messages of the leads already there: the first inbound that counts, the
        # first reply a person did not write.
        firsts = tuple(store.db.execute("SELECT first_in_at, first_reply_at FROM leads").fetchone())
        assert firsts == ("2026-11-20T14:59:00.000000+00:00", "2026-11-20T15:01:00.000000+00:00")
        await store.commit_turn(costed_turn())
        usage = [
            tuple(r) for r in store.db.execute("SELECT prompt_tokens, transcription_seconds FROM turn_usage")
        ]
        assert usage == [(3000, 12.5)]
        # The handoff still open when the file was upgraded is the lead's first.
        first = tuple(store.db.execute("SELECT handed_off_at, handed_off_reason FROM leads").fetchone())
        assert first == ("2026-11-20T15:00:00.000000+00:00", "antes")
        assert stages((await funnel(store, "week", EVER)).total)[3] == 1
    finally:
        await store.close()

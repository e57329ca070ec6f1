"""The commit builder is pure: a turn's result in, the TurnCommit and its outbox out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.graph import TurnResult
from agent.llm import Usage
from agent.scoring import ScoreResult
from agent.tools import ToolEffects
from core.lead import LeadProfile
from core.models import InboundMessage, MessageKind
from core.records import DueFollowUp, Handoff, InboundRecord, LeadRecord
from runtime.commit import CommitBuilder, CommitConfig
from runtime.handoff_card import load_handoff_card

NOW = datetime(2026, 3, 4, 13, 0, tzinfo=UTC)
KEY = "whatsapp:5511999990000"


def builder(*, chatwoot: bool = True, delays: tuple[float, ...] = (2.0, 22.0)) -> CommitBuilder:
    config = CommitConfig(
        reply_max_parts=3,
        typing_chars_per_s=20.0,
        typing_max_s=5,
        chatwoot=chatwoot,
        follow_up_delays_h=delays,
    )
    return CommitBuilder(config, load_handoff_card())


def record(record_id: int, text: str) -> InboundRecord:
    message = InboundMessage(
        channel="zapi",
        contact_id="5511999990000",
        provider_message_id=f"m{record_id}",
        kind=MessageKind.TEXT,
        text=text,
    )
    return InboundRecord(record_id, message, 0, NOW)


def lead(**changes: object) -> LeadRecord:
    base = LeadRecord(
        id=1,
        contact_key=KEY,
        channel="zapi",
        contact_id="5511999990000",
        phone=None,
        name=None,
        profile={},
        score=10,
        temperature="frio",
        score_reasons=[],
        lead_message_count=1,
        opted_out=False,
        created_at=NOW,
        updated_at=NOW,
        last_inbound_at=NOW - timedelta(hours=1),
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def result(
    reply: str,
    *,
    handoff: Handoff | None = None,
    temperature: str = "morno",
    lead_texts: tuple[str, ...] = ("Oi",),
) -> TurnResult:
    return TurnResult(
        reply=reply,
        lead_texts=list(lead_texts),
        profile=LeadProfile(name="Ana"),
        changed_fields=["name"],
        score=ScoreResult(score=40, temperature=temperature, reasons=["segmento"]),  # type: ignore[arg-type]
        usage=Usage(),
        llm_seconds=0.0,
        effects=ToolEffects(handoff=handoff),
        summary="Ana quer uma formadora.",
    )


def test_a_split_reply_gets_one_item_per_bubble_keyed_by_the_burst() -> None:
    commit = builder(chatwoot=False).build(
        "t1", KEY, [record(7, "Oi")], None, reply="Olá!\n\nTudo bem?", at=NOW
    )
    assert [i.kind for i in commit.outbox] == ["send_text", "send_text"]
    assert [i.idempotency_key for i in commit.outbox] == [f"reply:{KEY}:7:0", f"reply:{KEY}:7:1"]
    assert [m.ref for m in commit.messages] == ["in-0", "reply-0", "reply-1"]
    assert commit.outbox[0].payload["message_ref"] == "reply-0"
    assert (commit.score, commit.temperature, commit.at) == (0, "frio", NOW)


def test_what_the_agent_did_not_decide_stays_as_the_lead_had_it() -> None:
    known = lead(score=55, temperature="morno", profile={"name": "Bia"})
    commit = builder(chatwoot=False).build("t1", KEY, [record(1, "Oi")], known, reply="", at=NOW)
    assert (commit.score, commit.temperature, commit.profile) == (55, "morno", {"name": "Bia"})
    assert commit.outbox == []


def test_the_opt_out_confirmation_marks_the_reply_and_its_mirror() -> None:
    commit = builder().build(
        "t1",
        KEY,
        [record(1, "SAIR")],
        None,
        reply="Tchau",
        at=NOW,
        opt_out=True,
        purpose="opt_out_confirmation",
    )
    assert [(i.kind, i.payload.get("purpose")) for i in commit.outbox] == [
        ("send_text", "opt_out_confirmation"),
        ("chatwoot_message", "opt_out_confirmation"),
        ("chatwoot_message", "opt_out_confirmation"),
    ]


def test_a_handoff_adds_the_card_from_the_prompts_file_and_no_follow_up() -> None:
    handoff = Handoff(reason="pediu_orcamento", summary="Quer preço da FB300.")
    commit = builder().from_agent(
        "t9", KEY, [record(3, "Oi")], lead(), result("Já passo!", handoff=handoff), at=NOW
    )
    kinds = [i.kind for i in commit.outbox]
    assert kinds == [
        "send_text",
        "chatwoot_message",
        "chatwoot_message",
        "chatwoot_profile",
        "chatwoot_handoff",
    ]
    card = commit.outbox[-1].payload["card"]
    assert card.splitlines()[0] == "🔔 Lead para atendimento humano"
    assert "Motivo: pediu_orcamento" in card and "Resumo: Quer preço da FB300." in card
    assert commit.handoff == handoff
    assert commit.follow_up is None


def test_a_lead_still_qualifying_gets_the_first_nudge() -> None:
    commit = builder(chatwoot=False).from_agent("t1", KEY, [record(1, "Oi")], lead(), result("Olá"), at=NOW)
    assert commit.follow_up is not None
    assert (commit.follow_up.attempt, commit.follow_up.due_at) == (1, NOW + timedelta(hours=2))


def test_a_fired_nudge_counts_from_the_leads_last_message_and_marks_every_item() -> None:
    known = lead(last_inbound_at=NOW - timedelta(hours=3))
    due = DueFollowUp(id=4, contact_key=KEY, attempt=1, due_at=NOW, scheduled_at=NOW - timedelta(hours=1))
    commit = builder().from_agent(
        "t2", KEY, [], known, result("Ainda aí?", lead_texts=()), at=NOW, fired_follow_up=due
    )
    assert commit.lead_wrote is False and commit.fired_follow_up_id == 4
    assert commit.follow_up is not None
    assert commit.follow_up.due_at == known.last_inbound_at + timedelta(hours=22)
    assert {i.payload.get("purpose") for i in commit.outbox} == {"follow_up"}

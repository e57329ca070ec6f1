"""Quote requests and technical questions reach people: each becomes a private note with a
label in the lead's Chatwoot conversation, a note on the PipeRun deal, and an outbound
webhook event; and the lead's files are mirrored to Chatwoot as files, not links."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.graph import TurnResult
from agent.llm import Usage
from agent.scoring import ScoreResult
from agent.tools import ToolEffects
from core.lead import LeadProfile
from core.models import InboundMessage, MessageKind
from core.outbox import PAYLOADS
from core.records import InboundRecord, QuoteRequest, TechnicalQuestion
from runtime.commit import CommitBuilder, CommitConfig
from runtime.handoff_card import load_handoff_card
from runtime.lifecycle import Lifecycle, LifecycleConfig, Subscription
from runtime.seller_notes import SellerNotesError, load_seller_notes
from tests.runtime.test_commit import KEY, NOW, record

NOTES = load_seller_notes()


def builder(*, chatwoot: bool = True) -> CommitBuilder:
    config = CommitConfig(
        reply_max_parts=3, typing_chars_per_s=20.0, typing_max_s=5, chatwoot=chatwoot, follow_up_delays_h=()
    )
    return CommitBuilder(config, load_handoff_card(), NOTES)


def asking(*, quotes: int = 1, questions: int = 1) -> TurnResult:
    effects = ToolEffects()
    for _ in range(quotes):
        effects.quotes.append(
            QuoteRequest(products=["FB300", "Esteira"], quantity=None, summary="Quer preço")
        )
    for _ in range(questions):
        effects.technical_questions.append(TechnicalQuestion(question="Aceita carne com osso?", context=None))
    return TurnResult(
        reply="Vou pedir para o vendedor.",
        lead_texts=["Quanto custa a FB300?"],
        profile=LeadProfile(name="Ana"),
        changed_fields=[],
        score=ScoreResult(score=40, temperature="morno", reasons=[]),
        usage=Usage(),
        llm_seconds=0.0,
        effects=effects,
        summary=None,
    )


def payloads(items: list, kind: str) -> list[dict]:
    return [PAYLOADS[i.kind].parse(i.payload).serialize() for i in items if i.kind == kind]


def test_each_quote_and_question_is_a_labelled_private_note_in_chatwoot() -> None:
    commit = builder().from_agent("t1", KEY, [record(1, "Quanto custa?")], None, asking(), at=NOW)
    notes = payloads(commit.outbox, "chatwoot_note")
    assert [n["labels"] for n in notes] == [["orcamento"], ["duvida-tecnica"]]
    assert notes[0]["note"].splitlines() == [
        "🧾 Pedido de orçamento",
        "Produtos: FB300, Esteira",
        "Resumo: Quer preço",
    ]
    assert "Pergunta: Aceita carne com osso?" in notes[1]["note"]
    assert "Contexto" not in notes[1]["note"]  # unknown values leave no empty line
    keys = [i.idempotency_key for i in commit.outbox if i.kind == "chatwoot_note"]
    assert keys == [f"cw-note:{KEY}:t1:q0", f"cw-note:{KEY}:t1:t0"]


def test_without_chatwoot_no_note_is_queued() -> None:
    commit = builder(chatwoot=False).from_agent("t1", KEY, [record(1, "Oi")], None, asking(), at=NOW)
    assert payloads(commit.outbox, "chatwoot_note") == []


def test_the_deal_note_follows_the_crm_sync_of_the_same_turn_and_webhooks_hear_of_both() -> None:
    commit = builder().from_agent("t1", KEY, [record(1, "Quanto custa?")], None, asking(), at=NOW)
    commit.temperature = "quente"  # this turn also sends the lead to the CRM
    lifecycle = Lifecycle(
        LifecycleConfig(piperun=True, piperun_sync_on=frozenset({"hot"})),
        [Subscription("erp", frozenset({"quote.requested", "technical_question.created"}))],
        NOTES,
    )
    items = lifecycle.items_for(None, commit)
    crm = [i for i in items if i.order_key == f"crm:{KEY}"]
    assert [i.kind for i in crm] == ["piperun_sync", "piperun_note", "piperun_note"]
    assert "Pedido de orçamento" in crm[1].payload["text"]
    events = payloads(items, "outbound_webhook")
    assert [e["event"] for e in events] == ["quote.requested", "technical_question.created"]
    assert events[0]["data"]["quote"] == {
        "products": ["FB300", "Esteira"],
        "quantity": None,
        "summary": "Quer preço",
    }
    assert events[1]["data"]["question"]["question"] == "Aceita carne com osso?"


def test_without_piperun_or_texts_there_is_no_deal_note() -> None:
    commit = builder().from_agent("t1", KEY, [record(1, "Oi")], None, asking(), at=NOW)
    assert [i.kind for i in Lifecycle(LifecycleConfig(), [], NOTES).items_for(None, commit)] == []
    web_role = Lifecycle(LifecycleConfig(piperun=True), [])  # no texts: no turn runs there
    assert "piperun_note" not in [i.kind for i in web_role.items_for(None, commit)]


def test_the_leads_photo_is_mirrored_with_what_the_channel_needs_to_fetch_it() -> None:
    photo = InboundMessage(
        channel="whatsapp_cloud",
        contact_id="5511999990000",
        provider_message_id="wamid.photo",
        kind=MessageKind.IMAGE,
        media_url="whatsapp-media:1234567890",
        media_mime="image/jpeg",
        media_caption="a máquina antiga",
    )
    commit = builder().build("t1", KEY, [InboundRecord(1, photo, 0, NOW)], None, reply="Que legal!", at=NOW)
    lead_side, bot_side = payloads(commit.outbox, "chatwoot_message")
    assert lead_side["media_url"] == "whatsapp-media:1234567890"
    assert (lead_side["channel"], lead_side["media_kind"], lead_side["media_mime"]) == (
        "whatsapp_cloud",
        "image",
        "image/jpeg",
    )
    assert "whatsapp-media:" not in lead_side["text"]  # a file, not an unusable link
    assert "media_url" not in bot_side


def test_a_label_with_spaces_stops_the_bot_at_start(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "prompts" / "seller_notes.toml").read_text(encoding="utf-8")
    broken = tmp_path / "seller_notes.toml"
    broken.write_text(text.replace('label = "orcamento"', 'label = "Orçamento pedido"'), encoding="utf-8")
    with pytest.raises(SellerNotesError, match="lowercase with no spaces"):
        load_seller_notes(broken)

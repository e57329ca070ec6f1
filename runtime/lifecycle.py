"""Lead lifecycle -> integration side effects (CRM, Meta CAPI, outbound webhooks).

A turn's commit is compared with the lead as it was before the turn; each transition
(first contact, qualified, hot, handoff, opt-out, a message either way) becomes outbox
items committed in the same transaction as the turn. Idempotency keys are derived from
the lead and the stage (CAPI: one event per lead and stage, ever) or from the turn
(webhooks, CRM updates), so a retried or replayed turn never doubles anything.

Events that come from outside a turn (a CRM reporting a won deal or a booked meeting)
go through `external_event`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from core.outbox import CapiEvent, OutboundWebhook, PipeRunActivity, PipeRunNote, PipeRunSync
from core.records import LeadRecord, OutboxItem, TurnCommit, erasure_lane, lane_key
from integrations.outbound_webhooks import WebhookEvent
from runtime.seller_notes import SellerNotes
from runtime.sellers import Sellers

CapiStage = Literal["Lead", "QualifiedLead", "Schedule", "Purchase", "lead_lost"]

PIPERUN_KIND = PipeRunSync.KIND
CAPI_KIND = CapiEvent.KIND
WEBHOOK_KIND = OutboundWebhook.KIND
ERASED_EVENT = "lead.erased"


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """Which transitions become items: a CRM sync only when PipeRun is configured and on
    the PIPERUN_SYNC_ON triggers, a CAPI event only for the META_CAPI_EVENTS stages."""

    piperun: bool = False
    piperun_sync_on: frozenset[str] = frozenset()
    meta_capi: bool = False
    meta_capi_events: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Subscription:
    """What the lifecycle needs to know of an outbound webhook endpoint."""

    endpoint_id: str
    events: frozenset[str]

    def wants(self, event: str) -> bool:
        return "*" in self.events or event in self.events


@dataclass
class Transition:
    """What one commit changed about the lead, in sales terms."""

    created: bool = False
    qualified: bool = False
    hot: bool = False
    handoff: bool = False
    lost: bool = False
    updated: bool = False
    messages_in: list[str] = field(default_factory=list)
    messages_out: list[str] = field(default_factory=list)


def transition(lead: LeadRecord | None, commit: TurnCommit) -> Transition:
    was_hot = lead is not None and lead.temperature == "quente"
    was_handed_off = lead is not None and lead.handoff_state is not None
    is_hot = commit.temperature == "quente"
    handoff = commit.handoff is not None and not was_handed_off
    changed = lead is None or (
        lead.profile != commit.profile or lead.score != commit.score or lead.temperature != commit.temperature
    )
    return Transition(
        created=lead is None and commit.lead_wrote,
        # A lead is qualified for the ads when it is hot or a person takes it over.
        qualified=(is_hot or handoff) and not (was_hot or was_handed_off),
        hot=is_hot and not was_hot,
        handoff=handoff,
        lost=commit.opt_out and not (lead is not None and lead.opted_out),
        updated=lead is not None and changed,
        messages_in=[m.text or "" for m in commit.messages if m.direction == "in"],
        messages_out=[m.text or "" for m in commit.messages if m.direction == "out"],
    )


class Lifecycle:
    def __init__(
        self,
        config: LifecycleConfig,
        subscriptions: list[Subscription] | None = None,
        notes: SellerNotes | None = None,
        seller_owner: Callable[[str], int | None] | None = None,
    ) -> None:
        self.config = config
        self.subscriptions = subscriptions or []
        # The texts of the PipeRun deal notes (quotes, technical questions); None where no
        # turn runs (the web role), so no note is written there.
        self.notes = notes
        # A seller's key -> their PipeRun user (the meeting activity's owner); None: no
        # seller is known to PipeRun, the activity falls back to PIPERUN_OWNER_ID.
        self.seller_owner = seller_owner

    # --- from a turn ------------------------------------------------------------------
    def items_for(self, lead: LeadRecord | None, commit: TurnCommit) -> list[OutboxItem]:
        change = transition(lead, commit)
        items: list[OutboxItem] = []
        items += self._piperun(lead, commit, change)
        items += self._deal_notes(commit)
        items += self._meeting_activity(lead, commit)
        items += self._capi(commit, change)
        items += self._webhooks(lead, commit, change)
        return items

    def _piperun(self, lead: LeadRecord | None, commit: TurnCommit, change: Transition) -> list[OutboxItem]:
        if not self.config.piperun:
            return []
        triggers = self.config.piperun_sync_on
        reason = None
        if change.hot and "hot" in triggers:
            reason = "hot"
        elif change.handoff and "handoff" in triggers:
            reason = "handoff"
        elif commit.meeting is not None and commit.meeting.status == "scheduled" and lead_deal_missing(lead):
            # A booked meeting is a sales opportunity: the deal exists before its activity.
            reason = "meeting"
        elif change.updated and lead is not None and self._already_in_crm(lead):
            reason = "update"
        if reason is None:
            return []
        sync = PipeRunSync(contact_key=commit.contact_key, reason=reason, turn_id=commit.turn_id)
        return [
            sync.item(
                order_key=lane_key("crm", commit.contact_key),
                idempotency_key=f"piperun:{commit.contact_key}:{commit.turn_id}",
            )
        ]

    def _deal_notes(self, commit: TurnCommit) -> list[OutboxItem]:
        """Quote requests and technical questions on the lead's PipeRun deal. In the CRM
        lane, after this commit's sync, so a deal created by the same turn gets them."""
        if not self.config.piperun or self.notes is None:
            return []
        notes = self.notes
        texts = [(f"q{n}", notes.quote(quote)) for n, quote in enumerate(commit.quotes)]
        texts += [(f"t{n}", notes.technical_question(q)) for n, q in enumerate(commit.technical_questions)]
        return [
            PipeRunNote(contact_key=commit.contact_key, text=text).item(
                order_key=lane_key("crm", commit.contact_key),
                idempotency_key=f"piperun-note:{commit.contact_key}:{commit.turn_id}:{key}",
            )
            for key, text in texts
        ]

    def _meeting_activity(self, lead: LeadRecord | None, commit: TurnCommit) -> list[OutboxItem]:
        """The turn's booked, moved or cancelled meeting on the PipeRun deal, owned by its
        seller. In the CRM lane after this commit's sync (runtime/crm_sync.py: no deal,
        nothing). One item per state of the meeting: a move or a cancel is a new item."""
        meeting = commit.meeting
        if not self.config.piperun or meeting is None:
            return []
        name = commit.name or (lead.name if lead is not None else None)
        owner = self.seller_owner(meeting.seller_key) if self.seller_owner is not None else None
        starts_at = meeting.starts_at.isoformat()
        activity = PipeRunActivity(
            contact_key=commit.contact_key,
            title=f"Reunião com {name}" if name else "Reunião com lead do bot SDR",
            starts_at=starts_at,
            ends_at=meeting.ends_at.isoformat(),
            owner_id=owner,
            meet_url=meeting.meet_url,
            event_id=meeting.event_id,
            status=meeting.status,
        )
        return [
            activity.item(
                order_key=lane_key("crm", commit.contact_key),
                idempotency_key=f"piperun-activity:{meeting.event_id}:{meeting.status}:{starts_at}",
            )
        ]

    def _already_in_crm(self, lead: LeadRecord) -> bool:
        """Sent before (or about to be): later profile changes update the deal."""
        triggers = self.config.piperun_sync_on
        return (
            lead.crm_deal_id is not None
            or ("hot" in triggers and lead.temperature == "quente")
            or ("handoff" in triggers and lead.handoff_state is not None)
        )

    def _capi(self, commit: TurnCommit, change: Transition) -> list[OutboxItem]:
        stages: list[CapiStage] = []
        if change.created:
            stages.append("Lead")
        if change.qualified:
            stages.append("QualifiedLead")
        if change.lost:
            stages.append("lead_lost")
        if commit.meeting is not None and commit.meeting.status == "scheduled":
            stages.append("Schedule")
        return [
            self.capi_item(commit.contact_key, stage, at=commit.at)
            for stage in stages
            if self._capi_on(stage)
        ]

    def _capi_on(self, stage: CapiStage) -> bool:
        return self.config.meta_capi and stage in self.config.meta_capi_events

    def capi_item(
        self,
        contact_key: str,
        stage: CapiStage,
        *,
        at: datetime | None,
        value: float | None = None,
        currency: str | None = None,
    ) -> OutboxItem:
        event_time = int((at or datetime.now(UTC)).timestamp())
        priced = {"value": value, "currency": currency} if value is not None else {}
        event = CapiEvent(contact_key=contact_key, stage=stage, event_time=event_time, **priced)
        return event.item(
            order_key=lane_key("capi", contact_key),
            # One event per lead and stage, ever: a replayed turn or webhook cannot recount it.
            idempotency_key=f"capi:{contact_key}:{stage}",
        )

    def _webhooks(self, lead: LeadRecord | None, commit: TurnCommit, change: Transition) -> list[OutboxItem]:
        if not self.subscriptions:
            return []
        events: list[tuple[WebhookEvent, dict[str, Any]]] = []
        card = lead_snapshot(lead, commit)
        if change.created:
            events.append(("lead.created", {"lead": card}))
        elif change.updated:
            events.append(("lead.updated", {"lead": card}))
        if change.qualified:
            events.append(("lead.qualified", {"lead": card}))
        if change.hot:
            events.append(("lead.hot", {"lead": card}))
        if change.handoff and commit.handoff is not None:
            events.append(
                (
                    "conversation.handoff",
                    {"lead": card, "reason": commit.handoff.reason, "summary": commit.handoff.summary},
                )
            )
        for quote in commit.quotes:
            events.append(
                (
                    "quote.requested",
                    {
                        "lead": card,
                        "quote": {
                            "products": quote.products,
                            "quantity": quote.quantity,
                            "summary": quote.summary,
                        },
                    },
                )
            )
        for question in commit.technical_questions:
            events.append(
                (
                    "technical_question.created",
                    {"lead": card, "question": {"question": question.question, "context": question.context}},
                )
            )
        if commit.meeting is not None:
            m = commit.meeting
            meeting = {
                "event_id": m.event_id,
                "seller": m.seller_key,
                "starts_at": m.starts_at.isoformat(),
                "ends_at": m.ends_at.isoformat(),
                "meet_url": m.meet_url,
            }
            name: WebhookEvent = "meeting.scheduled" if m.status == "scheduled" else "meeting.cancelled"
            events.append((name, {"lead": card, "meeting": meeting}))
        for n, text in enumerate(change.messages_in):
            events.append(("message.received", {"lead": _who(card), "message": {"text": text, "index": n}}))
        for n, text in enumerate(change.messages_out):
            events.append(("message.sent", {"lead": _who(card), "message": {"text": text, "index": n}}))
        at = commit.at or datetime.now(UTC)
        return [
            self.webhook_item(
                sub, event, data, contact_key=commit.contact_key, source_id=f"{commit.turn_id}:{n}", at=at
            )
            for n, (event, data) in enumerate(events)
            for sub in self.subscriptions
            if sub.wants(event)
        ]

    def webhook_item(
        self,
        sub: Subscription,
        event: str,
        data: dict[str, Any],
        *,
        contact_key: str,
        source_id: str,
        at: datetime,
    ) -> OutboxItem:
        delivery_id = f"{sub.endpoint_id}:{event}:{source_id}"
        hook = OutboundWebhook(
            contact_key=contact_key,
            endpoint_id=sub.endpoint_id,
            event=event,
            delivery_id=delivery_id,
            timestamp=at.astimezone(UTC).isoformat(),
            data=data,
        )
        return hook.item(
            # One lane per lead and endpoint: a slow receiver does not hold up another.
            order_key=lane_key("hooks", contact_key) + f"#{sub.endpoint_id}",
            idempotency_key=f"hook:{delivery_id}",
        )

    # --- from outside a turn (a CRM's webhook) ---------------------------------------
    def external_event(
        self,
        lead: LeadRecord,
        stage: CapiStage,
        *,
        at: datetime,
        value: float | None = None,
        currency: str | None = None,
    ) -> list[OutboxItem]:
        items: list[OutboxItem] = []
        if self._capi_on(stage):
            items.append(
                self.capi_item(
                    lead.contact_key,
                    stage,
                    at=at,
                    value=value,
                    currency=(currency or "BRL").upper() if value is not None else None,
                )
            )
        return items


def lead_deal_missing(lead: LeadRecord | None) -> bool:
    return lead is None or lead.crm_deal_id is None


def piperun_owners(sellers: Sellers) -> Callable[[str], int | None]:
    """`seller_owner` for Lifecycle: a seller's key -> their piperun_user_id (None when
    the seller has none or left prompts/sellers.toml)."""

    def owner(seller_key: str) -> int | None:
        seller = sellers.get(seller_key)
        return seller.piperun_user_id if seller is not None else None

    return owner


def erased_items(
    subscriptions: list[Subscription], *, erasure_id: int, erased_at: str, channel: str | None
) -> list[OutboxItem]:
    """One `lead.erased` per enabled endpoint, whatever events it subscribed to: every
    event carries the lead card, so any receiver may hold the lead's data. The event
    names the erasure, never the lead: no contact key in the data, the lane or the keys."""
    data = {"erasure_id": erasure_id, "erased_at": erased_at, "channel": channel}
    items = []
    for sub in subscriptions:
        delivery_id = f"{sub.endpoint_id}:{ERASED_EVENT}:{erasure_id}"
        hook = OutboundWebhook(
            endpoint_id=sub.endpoint_id,
            event=ERASED_EVENT,
            delivery_id=delivery_id,
            timestamp=erased_at,
            data=dict(data),
        )
        items.append(
            hook.item(
                order_key=f"{erasure_lane(erasure_id)}#{sub.endpoint_id}",
                idempotency_key=f"hook:{delivery_id}",
            )
        )
    return items


def lead_snapshot(lead: LeadRecord | None, commit: TurnCommit) -> dict[str, Any]:
    return {
        "contact_key": commit.contact_key,
        "channel": commit.channel,
        "phone": commit.phone or (lead.phone if lead else None),
        "name": commit.name or (lead.name if lead else None),
        "profile": commit.profile,
        "score": commit.score,
        "temperature": commit.temperature,
        "score_reasons": commit.score_reasons,
        "summary": commit.summary or (lead.summary if lead else None),
    }


def _who(card: dict[str, Any]) -> dict[str, Any]:
    return {k: card[k] for k in ("contact_key", "channel", "phone", "name")}

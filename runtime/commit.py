"""The commit of a turn, built without I/O: what the turn decided -> one TurnCommit.

Everything a turn writes goes into one store transaction: the messages, the lead's new
profile and score, the outbox items (the reply bubbles, the Chatwoot mirror and cards)
and the next follow-up. Building it is pure (the clock's reading and the agent's result
come in as arguments), so every rule here is testable without a store or a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.forms import UTM_FIELDS
from core.lead import LeadProfile, missing_fields
from core.models import InboundMessage
from core.outbox import (
    ChatwootHandoff,
    ChatwootMessage,
    ChatwootNote,
    ChatwootProfile,
    SendText,
    chatwoot_lane,
)
from core.records import (
    DueFollowUp,
    FollowUp,
    InboundRecord,
    LeadRecord,
    NewMessage,
    OutboxItem,
    TurnCommit,
    TurnUsage,
)
from runtime.handoff_card import HandoffCard
from runtime.replies import MAX_TEXT_BYTES, fit_to_limit, split_reply, typing_seconds
from runtime.seller_notes import SellerNotes

if TYPE_CHECKING:  # the agent (langgraph, openai) is loaded only where turns run
    from agent.graph import TurnResult

# The Chatwoot lead card is refreshed when the score moved at least this much.
CARD_SCORE_STEP = 10

OPT_OUT_CONFIRMATION = "opt_out_confirmation"
FOLLOW_UP = "follow_up"


@dataclass(frozen=True)
class CommitConfig:
    reply_max_parts: int
    typing_chars_per_s: float
    typing_max_s: int
    chatwoot: bool
    follow_up_delays_h: tuple[float, ...]


@dataclass(frozen=True)
class LeadUpdate:
    """What the agent decided about the lead; None fields stay as the lead had them."""

    lead_texts: list[str] | None = None
    profile: dict[str, Any] | None = None
    name: str | None = None
    score: int | None = None
    temperature: str | None = None
    reasons: list[str] | None = None


class CommitBuilder:
    def __init__(self, config: CommitConfig, card: HandoffCard, notes: SellerNotes | None = None) -> None:
        self.config = config
        self.card = card
        self.notes = notes

    def build(
        self,
        turn_id: str,
        contact_key: str,
        records: list[InboundRecord],
        lead: LeadRecord | None,
        *,
        reply: str,
        at: datetime,
        update: LeadUpdate | None = None,
        opt_out: bool = False,
        purpose: str | None = None,
    ) -> TurnCommit:
        """The commit of a turn; what the agent did not decide stays as the lead had it.
        `purpose` marks the reply and its mirror (opt-out confirmation, follow-up)."""
        from agent.graph import describe_inbound

        update = update or LeadUpdate()
        inbound = [r.message for r in records]
        texts = update.lead_texts if update.lead_texts is not None else [describe_inbound(m) for m in inbound]
        messages = [
            NewMessage(
                direction="in",
                kind=msg.kind.value,
                text=text,
                provider_message_id=msg.provider_message_id,
                status="received",
                media_url=msg.media_url,
                ref=f"in-{index}",
            )
            for index, (msg, text) in enumerate(zip(inbound, texts, strict=True))
        ]
        if inbound:
            channel, contact_id = inbound[-1].channel, inbound[-1].contact_id
        else:
            assert lead is not None, "a turn without inbound messages needs a known lead"
            channel, contact_id = lead.channel, lead.contact_id
        # Deterministic per batch of inbound messages: re-running a turn that crashed
        # before commit can never enqueue a second copy of the same answer.
        batch = f"{contact_key}:{records[0].id}" if records else f"{contact_key}:t{turn_id}"
        outbox = self._bubbles(
            reply,
            messages,
            turn_id=turn_id,
            contact_key=contact_key,
            channel=channel,
            contact_id=contact_id,
            batch=batch,
            purpose=purpose,
        )
        if self.config.chatwoot:
            outbox += self._mirror(contact_key, batch, messages, purpose, inbound, notes=self.notes)
        return TurnCommit(
            turn_id=turn_id,
            contact_key=contact_key,
            channel=channel,
            contact_id=contact_id,
            phone=next((m.phone for m in reversed(inbound) if m.phone), None),
            name=update.name or next((m.name for m in reversed(inbound) if m.name), None),
            inbound_ids=[r.id for r in records],
            messages=messages,
            profile=_kept(update.profile, lead.profile if lead else None, {}),
            score=_kept(update.score, lead.score if lead else None, 0),
            temperature=update.temperature or (lead.temperature if lead else "frio"),
            score_reasons=_kept(update.reasons, lead.score_reasons if lead else None, []),
            lead_messages_added=len(inbound),
            outbox=outbox,
            opt_out=opt_out,
            at=at,
            referral=next(
                (m.referral.model_dump(exclude_none=True) for m in inbound if m.referral is not None), None
            ),
            utm=_utm_of(inbound),
        )

    def _bubbles(
        self,
        reply: str,
        messages: list[NewMessage],
        *,
        turn_id: str,
        contact_key: str,
        channel: str,
        contact_id: str,
        batch: str,
        purpose: str | None,
    ) -> list[OutboxItem]:
        """The reply as a person would send it: a few bubbles, each within the channel's
        size limit and with its typing pause; each bubble's message joins `messages`."""
        outbox: list[OutboxItem] = []
        seen = [m.provider_message_id for m in messages if m.direction == "in" and m.provider_message_id]
        parts = fit_to_limit(
            split_reply(reply, max_parts=self.config.reply_max_parts), MAX_TEXT_BYTES.get(channel)
        )
        for index, part in enumerate(parts):
            ref = f"reply-{index}"
            messages.append(NewMessage(direction="out", kind="text", text=part, status="queued", ref=ref))
            bubble = SendText.bot_reply(
                channel=channel,
                contact_id=contact_id,
                contact_key=contact_key,
                text=part,
                typing_s=typing_seconds(
                    part, chars_per_s=self.config.typing_chars_per_s, max_s=self.config.typing_max_s
                ),
                message_ref=ref,
                turn_id=turn_id,
                purpose=purpose,
                # Seen once, with the first bubble: the lead's messages of this burst.
                seen=seen if index == 0 else None,
            )
            outbox.append(bubble.to_item(f"reply:{batch}:{index}"))
        return outbox

    @staticmethod
    def _mirror(
        contact_key: str,
        batch: str,
        messages: list[NewMessage],
        purpose: str | None,
        inbound: list[InboundMessage],
        *,
        notes: SellerNotes | None = None,
    ) -> list[OutboxItem]:
        """The team sees every message, the lead's and the bot's, in order; the lead's
        files (a photo, a PDF, the voice note under its transcript) as real attachments;
        a filled form as a private note with its answers, ad and campaign."""
        items = []
        for index, message in enumerate(messages):
            source = inbound[index] if message.direction == "in" and index < len(inbound) else None
            key = f"cw:{batch}:{message.ref}"
            if source is not None and source.form is not None and notes is not None:
                form_note = ChatwootNote(
                    contact_key=contact_key, note=notes.form(source.form), labels=[notes.form_label]
                )
                items.append(form_note.item(order_key=chatwoot_lane(contact_key), idempotency_key=key))
                continue
            mirrored = ChatwootMessage(
                contact_key=contact_key,
                direction=message.direction,
                text=message.text or "",
                message_ref=message.ref,
                **({"purpose": purpose} if purpose is not None else {}),
                **_media_of(source),
            )
            items.append(mirrored.item(order_key=chatwoot_lane(contact_key), idempotency_key=key))
        return items

    def from_agent(
        self,
        turn_id: str,
        contact_key: str,
        records: list[InboundRecord],
        lead: LeadRecord | None,
        result: TurnResult,
        *,
        at: datetime,
        new_session: bool = False,
        fired_follow_up: DueFollowUp | None = None,
    ) -> TurnCommit:
        """The commit of a turn the agent answered (or of a follow-up it wrote)."""
        effects = result.effects
        # The model's goodbye is the confirmation: it goes out even though the lead is
        # do-not-contact from this commit on. A nudge says so on every item it makes.
        nudge = FOLLOW_UP if fired_follow_up is not None else None
        purpose = nudge or (OPT_OUT_CONFIRMATION if effects.opt_out else None)
        commit = self.build(
            turn_id,
            contact_key,
            records,
            lead,
            reply=result.reply,
            at=at,
            update=LeadUpdate(
                lead_texts=result.lead_texts,
                profile=result.profile.model_dump(mode="json"),
                name=result.profile.name,
                score=result.score.score,
                temperature=result.score.temperature,
                reasons=list(result.score.reasons),
            ),
            opt_out=effects.opt_out,
            purpose=purpose,
        )
        if self.config.chatwoot:
            commit.outbox += self._cards(commit, lead, result, nudge)
        commit.quotes = list(effects.quotes)
        commit.technical_questions = list(effects.technical_questions)
        if self.config.chatwoot and self.notes is not None:
            commit.outbox += seller_notes(self.notes, commit)
        commit.handoff = None if (lead and lead.handoff_state) else effects.handoff
        commit.summary = result.summary or None
        commit.new_session = new_session
        if fired_follow_up is not None:
            commit.lead_wrote = False
            commit.fired_follow_up_id = fired_follow_up.id
        commit.follow_up = self._next_follow_up(lead, result, at, fired_follow_up)
        usage = result.usage
        commit.usage = TurnUsage(
            model=usage.model or "unknown",
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            completion_tokens=usage.completion_tokens,
        )
        return commit

    def _next_follow_up(
        self, lead: LeadRecord | None, result: TurnResult, now: datetime, fired: DueFollowUp | None
    ) -> FollowUp | None:
        """The next nudge, while the lead is still being qualified and not handed off."""
        effects = result.effects
        handed_off = bool(lead and lead.handoff_state) or effects.handoff is not None
        attempt = fired.attempt + 1 if fired else 1
        delays = self.config.follow_up_delays_h
        if (
            attempt > len(delays)
            or effects.opt_out
            or handed_off
            or result.score.temperature == "quente"
            or not missing_fields(result.profile)
        ):
            return None
        # Delays count from the lead's last message, so "2 h and 22 h" both land inside
        # a 24-hour customer-service window.
        base = now if fired is None or lead is None or lead.last_inbound_at is None else lead.last_inbound_at
        due_at = max(base + timedelta(hours=delays[attempt - 1]), now + timedelta(minutes=1))
        return FollowUp(due_at=due_at, attempt=attempt)

    def _cards(
        self, commit: TurnCommit, lead: LeadRecord | None, result: TurnResult, purpose: str | None
    ) -> list[OutboxItem]:
        """The lead card on the Chatwoot contact when it changed; the handoff note when handed off."""
        profile, score = result.profile, result.score
        lane = chatwoot_lane(commit.contact_key)
        marked: dict[str, Any] = {"purpose": purpose} if purpose is not None else {}
        items = []
        # Not on every point the score moves (each message adds a little): a card update
        # costs Chatwoot calls on every turn, and sellers read the temperature anyway.
        if (
            lead is None
            or abs(lead.score - score.score) >= CARD_SCORE_STEP
            or lead.temperature != score.temperature
            or lead.profile != profile.model_dump(mode="json")
        ):
            card = ChatwootProfile(
                contact_key=commit.contact_key,
                attributes=_card_attributes(profile, score.score, score.temperature),
                temperature=score.temperature,
                **marked,
            )
            items.append(
                card.item(order_key=lane, idempotency_key=f"cw-profile:{commit.contact_key}:{commit.turn_id}")
            )
        handoff = result.effects.handoff
        if handoff is not None and not (lead and lead.handoff_state):
            note = ChatwootHandoff(
                contact_key=commit.contact_key,
                card=self.card.render(
                    reason=handoff.reason,
                    profile=profile,
                    score=score.score,
                    temperature=score.temperature,
                    score_reasons=list(score.reasons),
                    summary=handoff.summary,
                ),
                **marked,
            )
            items.append(
                note.item(order_key=lane, idempotency_key=f"cw-handoff:{commit.contact_key}:{commit.turn_id}")
            )
        return items


def seller_notes(notes: SellerNotes, commit: TurnCommit) -> list[OutboxItem]:
    """A private note and its label in the lead's Chatwoot conversation for each quote
    request and technical question of the turn: rows nobody read become work a seller sees."""
    lane = chatwoot_lane(commit.contact_key)
    written = [(f"q{n}", notes.quote(quote), notes.quote_label) for n, quote in enumerate(commit.quotes)]
    written += [
        (f"t{n}", notes.technical_question(question), notes.question_label)
        for n, question in enumerate(commit.technical_questions)
    ]
    return [
        ChatwootNote(contact_key=commit.contact_key, note=text, labels=[label]).item(
            order_key=lane, idempotency_key=f"cw-note:{commit.contact_key}:{commit.turn_id}:{key}"
        )
        for key, text, label in written
    ]


def _utm_of(inbound: list[InboundMessage]) -> dict[str, str] | None:
    """A website form's UTMs (the dashboard's source of a form lead without an ad)."""
    for message in inbound:
        if message.form is not None:
            attribution = message.form.attribution
            utm = {name: value for name in UTM_FIELDS if (value := getattr(attribution, name))}
            if utm:
                return utm
    return None


def _media_of(message: InboundMessage | None) -> dict[str, Any]:
    """The file fields of a mirrored message; nothing for text, or a media id that the
    channel would not know how to fetch."""
    if message is None or not message.media_url:
        return {}
    media = {
        "channel": message.channel,
        "media_url": message.media_url,
        "media_kind": message.kind.value,
        "media_mime": message.media_mime,
        "file_name": message.file_name,
    }
    return {key: value for key, value in media.items() if value is not None}


def _card_attributes(profile: LeadProfile, score: int, temperature: str) -> dict[str, Any]:
    """Chatwoot custom attributes (pt-BR keys: sellers filter by them); unknown ones left out."""
    attributes = {
        "nome": profile.name,
        "empresa": profile.company,
        "cidade": profile.city,
        "uf": profile.state,
        "produto": profile.product_interest,
        "volume": profile.volume,
        "urgencia": profile.urgency,
        "pontuacao": score,
        "temperatura": temperature,
    }
    return {k: v for k, v in attributes.items() if v is not None}


def _kept(decided: Any, had: Any, default: Any) -> Any:
    """What the agent decided, else what the lead had, else the default."""
    if decided is not None:
        return decided
    return had if had is not None else default

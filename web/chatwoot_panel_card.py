"""The lead card of the panel inside Chatwoot: what the store knows of one lead, worded
for the sales team (pt-BR) and shaped as the JSON the panel's page renders.

Read-only: built from the store's own reads (the lead, its messages, quotes, technical
questions and meetings); times are said on the company's clock (prompts/business_hours).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from core.forms import FormSource
from core.lead import PROFILE_FIELDS, FieldSource, LeadProfile, display_value, field_label
from core.models import CHANNEL_NAMES
from core.records import LeadRecord, MeetingRecord
from store.base import Store

TEMPERATURE_LABELS = {"frio": "Frio", "morno": "Morno", "quente": "Quente"}
FORM_LABELS = {
    FormSource.META_LEAD_ADS.value: "formulário do Meta Lead Ads",
    FormSource.API.value: "formulário do site",
    FormSource.RDSTATION.value: "conversão do RD Station",
}
_WEEKDAYS = ("seg", "ter", "qua", "qui", "sex", "sáb", "dom")
# How far back a field's message is looked for, to quote the lead's own words.
_QUOTED_MESSAGES = 200
_QUOTE_CHARS = 140
# A pause longer than this is a conversation the team took (`open` in Chatwoot), not a timer.
_OWNED_BY_THE_TEAM = timedelta(days=60)

BotState = Literal["active", "paused", "opted_out"]


class CardField(BaseModel):
    name: str
    label: str
    value: str
    source: str
    said_at: str | None = None
    quote: str | None = None


class CardQuote(BaseModel):
    products: list[str]
    quantity: str | None
    summary: str
    status: str
    created_at: str | None


class CardQuestion(BaseModel):
    question: str
    context: str | None
    status: str
    created_at: str | None


class CardMeeting(BaseModel):
    starts_at: str
    status: str
    seller: str
    meet_url: str | None
    calendar_url: str | None


class CardBot(BaseModel):
    state: BotState
    label: str
    paused_until: str | None = None
    handoff: str | None = None


class CardCrm(BaseModel):
    deal_id: int
    url: str


class LeadCard(BaseModel):
    name: str
    channel: str
    phone: str | None
    score: int
    temperature: str
    temperature_label: str
    score_reasons: list[str]
    summary: str | None
    fields: list[CardField]
    quotes: list[CardQuote]
    technical_questions: list[CardQuestion]
    meetings: list[CardMeeting]
    crm: CardCrm | None
    bot: CardBot


def when(at: datetime | str | None, zone: tzinfo) -> str | None:
    """ "qui 04/12 14:30" on the company's clock; None for nothing (or an unreadable value)."""
    if at is None:
        return None
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            return None
    if at.tzinfo is None:
        return None
    local = at.astimezone(zone)
    return f"{_WEEKDAYS[local.weekday()]} {local:%d/%m %H:%M}"


def _profile(lead: LeadRecord) -> LeadProfile:
    try:
        return LeadProfile.model_validate(lead.profile)
    except ValidationError:  # a row from another version: keep what still reads
        known = {k: v for k, v in lead.profile.items() if k in PROFILE_FIELDS}
        return LeadProfile.model_construct(**known)


def _provenance(lead: LeadRecord) -> dict[str, FieldSource]:
    out: dict[str, FieldSource] = {}
    for name, raw in (lead.profile.get("provenance") or {}).items():
        try:
            out[name] = FieldSource.model_validate(raw)
        except ValidationError:
            continue
    return out


def _source_label(source: FieldSource | None) -> str:
    if source is None:
        return "cadastro do contato"
    message_id = source.message_id or ""
    if message_id.startswith("form:"):
        kind = message_id.split(":", 2)[1]
        return FORM_LABELS.get(kind, "formulário")
    return "conversa"


def _short(text: str | None) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 1] + "…"


def card_fields(lead: LeadRecord, said: dict[str, str], zone: tzinfo) -> list[CardField]:
    """Each known field with where it came from: the form, or the lead's message (quoted)."""
    profile, provenance = _profile(lead), _provenance(lead)
    fields: list[CardField] = []
    quoted: set[str] = set()
    for name in PROFILE_FIELDS:
        value = getattr(profile, name, None)
        if value is None and name == "name":
            value = lead.name
        if value is None or (name == "volume_per_day" and profile.volume is not None):
            continue  # the daily figure is shown beside the volume the lead said
        text = display_value(name, value)
        if name == "volume" and profile.volume_per_day is not None:
            text = f"{text} (~{display_value('volume_per_day', profile.volume_per_day)})"
        source = provenance.get(name)
        message_id = source.message_id if source is not None else None
        quote = None
        if message_id and not message_id.startswith("form:") and message_id not in quoted:
            quote = _short(said.get(message_id))  # the lead's words, once per message
            quoted.add(message_id)
        fields.append(
            CardField(
                name=name,
                label=field_label(name),
                value=text,
                source=_source_label(source),
                said_at=when(source.at, zone) if source is not None else None,
                quote=quote,
            )
        )
    return fields


def bot_state(lead: LeadRecord, now: datetime, zone: tzinfo) -> CardBot:
    handoff = f"Transferido para o time ({lead.handoff_reason})" if lead.handoff_state else None
    if lead.opted_out:
        return CardBot(
            state="opted_out", label="Lead pediu para sair: o bot não escreve mais", handoff=handoff
        )
    if lead.paused_until is not None and lead.paused_until > now:
        if lead.paused_until - now > _OWNED_BY_THE_TEAM:  # an `open` conversation: no end date
            return CardBot(state="paused", label="Bot pausado: a conversa está com o time", handoff=handoff)
        until = when(lead.paused_until, zone)
        return CardBot(state="paused", label=f"Bot pausado até {until}", paused_until=until, handoff=handoff)
    return CardBot(state="active", label="Bot ativo", handoff=handoff)


def _quotes(rows: Iterable[dict[str, Any]], zone: tzinfo) -> list[CardQuote]:
    return [
        CardQuote(
            products=[str(p) for p in row.get("products") or []],
            quantity=row.get("quantity"),
            summary=str(row.get("summary") or ""),
            status=str(row.get("status") or "novo"),
            created_at=when(row.get("created_at"), zone),
        )
        for row in rows
    ]


def _questions(rows: Iterable[dict[str, Any]], zone: tzinfo) -> list[CardQuestion]:
    return [
        CardQuestion(
            question=str(row.get("question") or ""),
            context=row.get("context"),
            status=str(row.get("status") or "aberta"),
            created_at=when(row.get("created_at"), zone),
        )
        for row in rows
    ]


def _meetings(meetings: Iterable[MeetingRecord], zone: tzinfo) -> list[CardMeeting]:
    return [
        CardMeeting(
            starts_at=when(m.starts_at, zone) or "",
            status="agendada" if m.status == "scheduled" else "cancelada",
            seller=m.seller_key,
            meet_url=m.meet_url,
            calendar_url=m.html_link,
        )
        for m in meetings
    ]


def crm_link(lead: LeadRecord, deal_url: str) -> CardCrm | None:
    if lead.crm_deal_id is None:
        return None
    return CardCrm(deal_id=lead.crm_deal_id, url=deal_url.replace("{deal_id}", str(lead.crm_deal_id)))


async def build_card(
    store: Store, lead: LeadRecord, *, now: datetime, zone: tzinfo, deal_url: str
) -> LeadCard:
    key = lead.contact_key
    messages = await store.recent_messages(key, _QUOTED_MESSAGES)
    said = {
        m.provider_message_id: m.text or "" for m in messages if m.direction == "in" and m.provider_message_id
    }
    return LeadCard(
        name=lead.name or _profile(lead).name or "Lead sem nome",
        channel=CHANNEL_NAMES.get(lead.channel, lead.channel),
        phone=lead.phone,
        score=lead.score,
        temperature=lead.temperature,
        temperature_label=TEMPERATURE_LABELS.get(lead.temperature, lead.temperature),
        score_reasons=list(lead.score_reasons),
        summary=lead.summary,
        fields=card_fields(lead, said, zone),
        quotes=_quotes(await store.quotes(key), zone),
        technical_questions=_questions(await store.technical_questions(key), zone),
        meetings=_meetings(await store.lead_meetings(key), zone),
        crm=crm_link(lead, deal_url),
        bot=bot_state(lead, now, zone),
    )


__all__ = ["LeadCard", "bot_state", "build_card", "card_fields", "crm_link", "when"]

"""The idempotent "hot lead -> deal" sync: one person, (company,) open deal and note per lead.

It decides what to find and what to create; persisting the ids, ordering per lead and
retrying belong to the caller (the outbox). Each record is one step below, in the order
the records depend on each other: company, person, deal, note.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from core.lead_fields import format_cnpj
from core.models import mask_contact_key
from integrations.piperun.card import CrmLink, LeadCard
from integrations.piperun.client import PipeRunClient
from integrations.piperun.errors import PipeRunRejected
from integrations.piperun.identity import external_code_for, phone_key, reference_marker
from integrations.piperun.schema import (
    DEAL_TEMPERATURE,
    CompanyCreate,
    DealCreate,
    NoteCreate,
    PersonCreate,
    PipeRunCompany,
    PipeRunPerson,
)
from integrations.piperun.texts import PipeRunTexts, default_texts, fill, render_deal_title, render_note

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[CrmLink], Awaitable[None]]


def is_card_note(text: str | None, reference: str) -> bool:
    """The lead-card note carries the bare reference; the other notes we post on the
    deal (deal_notes) carry it followed by "/<key>", and are never the card."""
    return re.search(re.escape(reference) + r"(?![/\w])", text or "") is not None


async def sync_lead(
    client: PipeRunClient,
    card: LeadCard,
    link: CrmLink,
    *,
    pipeline_id: int,
    stage_id: int,
    origin_id: int | None = None,
    owner_id: int | None = None,
    on_progress: ProgressCallback,
    texts: PipeRunTexts | None = None,
) -> CrmLink:
    """Make PipeRun hold one person, (company,) open deal and lead-card note for this lead.

    Safe to run any number of times, and to resume after a crash at any point:
    - ids already in `link` are used as they are (no lookup, no creation);
    - otherwise the record is looked for first, only among the lead's own (person: our
      reference in its observation; company: our reference as its external code; deal:
      the person's open deal in the pipeline; note: the one carrying our reference) and
      created only when not found. Nothing the lead typed is ever searched (see
      identity), and PipeRun documents no phone filter to search the verified number;
    - `on_progress(link)` is awaited right after every id that enters the link (created
      or found), before the next call, so a crash never loses a created record's id for
      long: the next run either has it or finds it again.
    The note is created once and updated (PUT) on later runs. Stage, owner and the other
    deal fields are left to the sellers once the deal exists.
    Raises PipeRunError (only `PipeRunUnavailable` is worth retrying); whatever was saved
    through `on_progress` stays valid for the next attempt.
    """
    if not pipeline_id or not stage_id:
        raise PipeRunRejected("PIPERUN_PIPELINE_ID and PIPERUN_STAGE_ID must be set to create deals")
    run = _Sync(
        client=client,
        card=card,
        texts=texts or default_texts(),
        reference=external_code_for(card.contact_key),
        who=mask_contact_key(card.contact_key),
        owner_id=owner_id,
        on_progress=on_progress,
        current=link.model_copy(),
    )
    # Company first, so a new person and the deal are created already linked to it.
    if run.current.company_id is None and (card.cnpj or card.company):
        company_id = await run.company()
        if company_id is not None:
            await run.advance(company_id=company_id)
    if run.current.person_id is None:
        await run.advance(person_id=await run.person())
    if run.current.deal_id is None:
        await run.advance(deal_id=await run.deal(pipeline_id, stage_id, origin_id))
    await run.note()
    return run.current


@dataclass
class _Sync:
    """One run of `sync_lead`: what every step needs, and the link as it grows."""

    client: PipeRunClient
    card: LeadCard
    texts: PipeRunTexts
    reference: str
    who: str
    owner_id: int | None
    on_progress: ProgressCallback
    current: CrmLink

    async def advance(self, **ids: int) -> None:
        self.current = self.current.model_copy(update=ids)
        await self.on_progress(self.current)

    async def company(self) -> int | None:
        """Ours (found by our reference) or a new one; None when PipeRun refuses it (a
        CNPJ it already holds, say): the company is optional for the person and the
        deal, and its name and CNPJ are still in the note."""
        card, client = self.card, self.client
        company: PipeRunCompany | None = await client.find_company_by_reference(self.reference)
        if company is not None:
            log.info("piperun_company_found", contact=self.who, company_id=company.id)
            return company.id
        name = card.company or fill(self.texts.company_without_name, {"cnpj": format_cnpj(card.cnpj or "")})
        try:
            company = await client.create_company(
                CompanyCreate(
                    name=name,
                    cnpj=format_cnpj(card.cnpj) if card.cnpj else None,
                    external_code=self.reference,
                )
            )
        except PipeRunRejected as refused:
            if refused.auth_failed:
                raise
            log.warning("piperun_company_refused", contact=self.who, status=refused.status)
            return None
        log.info("piperun_company_created", contact=self.who, company_id=company.id)
        return company.id

    async def person(self) -> int:
        card, client = self.card, self.client
        person: PipeRunPerson | None = await client.find_person_by_reference(self.reference)
        if person is not None:
            log.info("piperun_person_found", contact=self.who, person_id=person.id, by="reference")
            return person.id
        # The verified number first: it is the one a seller (or a CRM automation) reaches.
        phones = [k for k in dict.fromkeys((phone_key(card.verified_phone), phone_key(card.phone))) if k]
        person = await client.create_person(
            PersonCreate(
                name=card.name or fill(self.texts.person_without_name, {"canal": card.channel_name}),
                contact_phones=phones or None,
                contact_emails=[card.email] if card.email else None,
                company_id=self.current.company_id,
                manager_id=self.owner_id,
                observation=reference_marker(self.reference),
            )
        )
        log.info("piperun_person_created", contact=self.who, person_id=person.id)
        return person.id

    async def deal(self, pipeline_id: int, stage_id: int, origin_id: int | None) -> int:
        person_id = self.current.person_id
        assert person_id is not None
        deal = await self.client.find_open_deal(person_id, pipeline_id)
        if deal is not None:
            log.info("piperun_deal_found", contact=self.who, deal_id=deal.id)
            return deal.id
        deal = await self.client.create_deal(
            DealCreate(
                pipeline_id=pipeline_id,
                stage_id=stage_id,
                title=render_deal_title(self.card, self.texts),
                person_id=person_id,
                company_id=self.current.company_id,
                origin_id=origin_id,
                owner_id=self.owner_id,
                temperature=DEAL_TEMPERATURE.get((self.card.temperature or "").lower()),
                reference=self.reference,
            )
        )
        log.info("piperun_deal_created", contact=self.who, deal_id=deal.id, pipeline_id=pipeline_id)
        return deal.id

    async def note(self) -> None:
        """Update our note (by id, else the one carrying our reference), or create it."""
        deal_id = self.current.deal_id
        assert deal_id is not None
        text = render_note(self.card, reference=self.reference, texts=self.texts)
        if self.current.note_id is not None:
            if await self.client.update_note(self.current.note_id, text) is not None:
                log.info("piperun_note_updated", contact=self.who, note_id=self.current.note_id)
                return
            log.info("piperun_note_gone", contact=self.who, note_id=self.current.note_id)
        notes = await self.client.list_deal_notes(deal_id)
        existing = [n for n in notes if is_card_note(n.text, self.reference)]
        if existing:
            note_id = min(n.id for n in existing)
            if await self.client.update_note(note_id, text) is not None:
                log.info("piperun_note_updated", contact=self.who, note_id=note_id)
                await self.advance(note_id=note_id)
                return
        note = await self.client.create_note(NoteCreate(text=text, deal_id=deal_id))
        log.info("piperun_note_created", contact=self.who, note_id=note.id, deal_id=deal_id)
        await self.advance(note_id=note.id)


__all__ = ["ProgressCallback", "is_card_note", "sync_lead"]

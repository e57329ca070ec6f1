"""Outbox handlers that put a hot (or handed-off) lead in PipeRun, keep its deal note
current afterwards, and post the lead's quote requests and technical questions on the
deal.

Items of one lead share the `crm:<contact key>` order key, so they run one at a time
across every instance; each id PipeRun gives back is saved at once (on the item and on
the lead) so a crash between calls resumes where it stopped instead of creating a
second person or deal. The lead is read at delivery time: the card is always the
latest one, and an erased lead (LGPD) sends nothing. A lead erased while its sync runs
is caught at the next saved id: what the sync created is handed to the erasure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from core.logging import get_logger
from core.outbox import PipeRunActivity, PipeRunNote, PipeRunSync
from core.records import LeadRecord, OutboxItem
from integrations.piperun import (
    CrmLink,
    LeadCard,
    MeetingActivity,
    PipeRunClient,
    PipeRunTexts,
    external_code_for,
    pick_meeting_type,
    post_deal_note,
    sync_lead,
    upsert_meeting_activity,
)
from runtime.erasure import late_piperun_item
from store.base import Store

log = get_logger(__name__)


class _ErasedMidSync(Exception):
    def __init__(self, link: CrmLink) -> None:
        super().__init__("lead erased during the sync")
        self.link = link


@dataclass(frozen=True, slots=True)
class CrmSyncConfig:
    """Where a lead lands in PipeRun, and where the deal note links back to Chatwoot."""

    pipeline_id: int
    stage_id: int
    owner_id: int | None = None
    origin_id: int | None = None
    # Instagram's own origin, and the one of every other channel (WhatsApp, the
    # terminal): either wins over `origin_id` when set.
    origin_id_instagram: int | None = None
    origin_id_whatsapp: int | None = None
    chatwoot_api_url: str | None = None
    chatwoot_account_id: str | None = None
    # The meeting activity's type; None: the account's type named "Reunião" (looked up once).
    activity_type_id: int | None = None
    # PipeRun takes activity times without a zone: the account's local time.
    activity_zone: str = "America/Sao_Paulo"

    def origin_for(self, channel: str) -> int | None:
        if channel == "instagram" and self.origin_id_instagram:
            return self.origin_id_instagram
        if channel != "instagram" and self.origin_id_whatsapp:
            return self.origin_id_whatsapp
        return self.origin_id


class CrmSync:
    def __init__(
        self,
        client: PipeRunClient,
        store: Store,
        config: CrmSyncConfig,
        texts: PipeRunTexts,
        seller_owner: Callable[[str], int | None] | None = None,
    ) -> None:
        """`texts` (prompts/piperun.toml) are read at start, so a broken file stops the bot
        there instead of failing the first hot lead's sync. `seller_owner`: a seller's
        PipeRun user (prompts/sellers.toml), so the lead's routed seller owns the deal."""
        self.client = client
        self.store = store
        self.config = config
        self.texts = texts
        self.seller_owner = seller_owner
        self._activity_type: int | None = config.activity_type_id

    async def _owner(self, contact_key: str) -> int | None:
        """The lead's routed seller owns a new deal; else PIPERUN_OWNER_ID. (An existing
        deal's owner is the sellers' to change, never ours.)"""
        if self.seller_owner is not None:
            seller = await self.store.lead_seller(contact_key)
            owner = self.seller_owner(seller) if seller is not None else None
            if owner is not None:
                return owner
        return self.config.owner_id

    def _chatwoot_url(self, lead: LeadRecord) -> str | None:
        c = self.config
        if not (c.chatwoot_api_url and c.chatwoot_account_id and lead.chatwoot_conversation_id):
            return None
        base = c.chatwoot_api_url.rstrip("/")
        return f"{base}/app/accounts/{c.chatwoot_account_id}/conversations/{lead.chatwoot_conversation_id}"

    async def sync(self, item: OutboxItem, payload: PipeRunSync) -> None:
        assert item.id is not None
        item_id = item.id
        contact_key = payload.contact_key
        lead = await self.store.get_lead(contact_key)
        if lead is None:
            log.info("piperun_skipped", reason="lead_erased")
            return
        saved = CrmLink.model_validate(payload.link or {})
        link = CrmLink(
            person_id=saved.person_id or lead.crm_person_id,
            company_id=saved.company_id or lead.crm_company_id,
            deal_id=saved.deal_id or lead.crm_deal_id,
            note_id=saved.note_id,
        )
        state = payload

        async def progress(current: CrmLink) -> None:
            nonlocal state
            if await self.store.is_erased(contact_key):
                raise _ErasedMidSync(current)
            state = state.updated(link=current.model_dump(exclude_none=True))
            item.payload = state.serialize()
            await self.store.outbox_progress(item_id, item.payload)
            await self.store.save_crm_link(
                contact_key,
                person_id=current.person_id,
                company_id=current.company_id,
                deal_id=current.deal_id,
            )

        try:
            final = await sync_lead(
                self.client,
                LeadCard.from_record(lead, chatwoot_url=self._chatwoot_url(lead)),
                link,
                pipeline_id=self.config.pipeline_id,
                stage_id=self.config.stage_id,
                origin_id=self.config.origin_for(lead.channel),
                owner_id=await self._owner(contact_key),
                texts=self.texts,
                on_progress=progress,
            )
        except _ErasedMidSync as erased:
            done = erased.link
            if done.person_id is not None or done.deal_id is not None:
                await self.store.enqueue(late_piperun_item(done.person_id, done.deal_id))
            log.info("piperun_sync_stopped", reason="lead_erased")
            return
        log.info("piperun_synced", reason=payload.reason, deal_id=final.deal_id)

    async def note(self, item: OutboxItem, payload: PipeRunNote) -> None:
        """The note on the lead's deal, once: a retry after a lost answer finds the note
        it posted (by the item's idempotency key) instead of posting a second one.

        Without a deal (the lead never became hot, or its sync has not run: enqueue on
        the lead's `crm:` lane so a pending sync runs first) or without the lead
        (erased), there is nowhere to write: skipped, not failed."""
        lead = await self.store.get_lead(payload.contact_key)
        if lead is None:
            log.info("piperun_note_skipped", reason="lead_erased")
            return
        if lead.crm_deal_id is None:
            log.info("piperun_note_skipped", reason="no_deal")
            return
        note_id = await post_deal_note(
            self.client,
            lead.crm_deal_id,
            payload.text,
            reference=external_code_for(lead.contact_key),
            key=item.idempotency_key or f"item-{item.id}",
        )
        log.info("piperun_note_posted", deal_id=lead.crm_deal_id, note_id=note_id)

    async def activity(self, item: OutboxItem, payload: PipeRunActivity) -> None:
        """The meeting as an activity on the lead's deal, owned by the seller; a move
        updates it, a cancel closes it as "Cancelada" (integrations/piperun/activities.py).

        Product choices: the sync runs first in the lead's `crm:` lane, so a lead the
        CRM triggers put there has its deal; one without a deal (not hot, not handed off:
        never sent to PipeRun) or erased has nowhere to hold it, and it is skipped like a
        note (the seller has the calendar event and the Chatwoot note). PipeRun requires an
        owner and a type: without the seller's piperun_user_id the deal owner
        (PIPERUN_OWNER_ID) owns it, and with neither, or no meeting type in the account,
        the meeting is written as a deal note instead, once (by the item's key)."""
        lead = await self.store.get_lead(payload.contact_key)
        if lead is None:
            log.info("piperun_activity_skipped", reason="lead_erased")
            return
        if lead.crm_deal_id is None:
            log.info("piperun_activity_skipped", reason="no_deal")
            return
        reference = external_code_for(lead.contact_key)
        key = item.idempotency_key or f"item-{item.id}"
        owner = payload.owner_id or self.config.owner_id
        activity_type = await self._meeting_type() if owner is not None else None
        if owner is None or activity_type is None:
            reason = "no_owner" if owner is None else "no_activity_type"
            note_id = await post_deal_note(
                self.client, lead.crm_deal_id, self._meeting_note(payload), reference=reference, key=key
            )
            log.info("piperun_activity_as_note", reason=reason, deal_id=lead.crm_deal_id, note_id=note_id)
            return
        meeting = MeetingActivity(
            event_id=payload.event_id,
            title=payload.title,
            starts_at=datetime.fromisoformat(payload.starts_at),
            ends_at=datetime.fromisoformat(payload.ends_at),
            owner_id=owner,
            cancelled=payload.status == "cancelled",
            meet_url=payload.meet_url,
        )
        activity_id = await upsert_meeting_activity(
            self.client,
            lead.crm_deal_id,
            meeting,
            reference=reference,
            activity_type_id=activity_type,
            zone=ZoneInfo(self.config.activity_zone),
        )
        log.info("piperun_activity_done", deal_id=lead.crm_deal_id, activity_id=activity_id)

    async def _meeting_type(self) -> int | None:
        if self._activity_type is None:
            self._activity_type = pick_meeting_type(await self.client.list_activity_types())
            if self._activity_type is None:
                log.warning("piperun_activity_type_missing", hint="create an activity type named Reunião")
        return self._activity_type

    def _meeting_note(self, payload: PipeRunActivity) -> str:
        zone = ZoneInfo(self.config.activity_zone)
        starts = datetime.fromisoformat(payload.starts_at).astimezone(zone)
        ends = datetime.fromisoformat(payload.ends_at).astimezone(zone)
        state = "cancelada" if payload.status == "cancelled" else "agendada"
        lines = [f"{payload.title}: reunião {state} pelo bot SDR", f"{starts:%d/%m/%Y %H:%M}–{ends:%H:%M}"]
        if payload.meet_url:
            lines.append(f"Google Meet: {payload.meet_url}")
        return "\n".join(lines)

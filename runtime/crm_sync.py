"""Outbox handler that puts a hot (or handed-off) lead in PipeRun, and keeps its deal
note current afterwards.

Items of one lead share the `crm:<contact key>` order key, so they run one at a time
across every instance; each id PipeRun gives back is saved at once (on the item and on
the lead) so a crash between calls resumes where it stopped instead of creating a
second person or deal. The lead is read at delivery time: the card is always the
latest one, and an erased lead (LGPD) sends nothing. A lead erased while its sync runs
is caught at the next saved id: what the sync created is handed to the erasure.
"""

from __future__ import annotations

from core.logging import get_logger
from core.outbox import PipeRunSync
from core.records import LeadRecord, OutboxItem
from core.settings import Settings
from integrations.piperun import CrmLink, LeadCard, PipeRunClient, sync_lead
from runtime.erasure import late_piperun_item
from store.base import Store

log = get_logger(__name__)


class _ErasedMidSync(Exception):
    def __init__(self, link: CrmLink) -> None:
        super().__init__("lead erased during the sync")
        self.link = link


class CrmSync:
    def __init__(self, client: PipeRunClient, store: Store, settings: Settings) -> None:
        self.client = client
        self.store = store
        self.settings = settings

    def _chatwoot_url(self, lead: LeadRecord) -> str | None:
        s = self.settings
        if not (s.chatwoot_api_url and s.chatwoot_account_id and lead.chatwoot_conversation_id):
            return None
        base = s.chatwoot_api_url.rstrip("/")
        return f"{base}/app/accounts/{s.chatwoot_account_id}/conversations/{lead.chatwoot_conversation_id}"

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

        assert self.settings.piperun_pipeline_id is not None and self.settings.piperun_stage_id is not None
        try:
            final = await sync_lead(
                self.client,
                LeadCard.from_record(lead, chatwoot_url=self._chatwoot_url(lead)),
                link,
                pipeline_id=self.settings.piperun_pipeline_id,
                stage_id=self.settings.piperun_stage_id,
                origin_id=self.settings.piperun_origin_for(lead.channel),
                owner_id=self.settings.piperun_owner_id,
                on_progress=progress,
            )
        except _ErasedMidSync as erased:
            done = erased.link
            if done.person_id is not None or done.deal_id is not None:
                await self.store.enqueue(late_piperun_item(done.person_id, done.deal_id))
            log.info("piperun_sync_stopped", reason="lead_erased")
            return
        log.info("piperun_synced", reason=payload.reason, deal_id=final.deal_id)

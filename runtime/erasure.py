"""An LGPD erasure taken beyond the store: Chatwoot, PipeRun and the webhook subscribers.

`forget_lead` writes one `lead_erasure` item in the transaction that erases the lead; its
payload holds only the lead's ids in the other systems. `ErasureFanout` turns it into one
item per integration (idempotent keys derived from the erasure id, so a crash between
enqueues just enqueues the rest on the retry), and those go through the outbox like any
side effect: ordered, retried, behind their integration's circuit breaker. An outage
delays the erasure and never spends it: transient failures are retried for as long as
they last (`erasure_policy`), and anything refused for good is a dead item an operator
sees and replays (`python main.py outbox list --status dead`).

Records another integration creates for the lead while the erasure runs (a CRM sync or a
Chatwoot mirror item already in flight) are erased by the same items, enqueued by those
handlers when they find the tombstone (`late_chatwoot_item`, `late_piperun_item`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from tenacity import retry_if_exception, stop_never

from core.errors import Retryable
from core.logging import get_logger
from core.outbox import ChatwootErase, LeadErasure, PipeRunErase
from core.records import OutboxItem
from integrations.chatwoot import ChatwootClient
from integrations.piperun import EXTERNAL_CODE_PREFIX, PipeRunClient, PipeRunError
from runtime.lifecycle import Subscription, erased_items
from runtime.policies import (
    TABLE_AS_IS,
    DeliveryPolicy,
    JitteredBackoff,
    OutboxKnobs,
    effective_spec,
    is_transient,
)
from store.base import Store

log = get_logger(__name__)

CHATWOOT_ERASE_KIND = ChatwootErase.KIND
PIPERUN_ERASE_KIND = PipeRunErase.KIND

# What the sales team sees in PipeRun where the lead was (pt-BR: PipeRun is read in pt-BR).
ANONYMOUS_PERSON = "Titular removido (LGPD)"
ANONYMOUS_DEAL_TITLE = "Oportunidade de titular removido (LGPD)"
ANONYMOUS_NOTE = "Dados pessoais removidos a pedido do titular (LGPD)."
# Our notes carry the lead's reference ("sdr-" + 20 hex digits, see external_code_for).
_OUR_NOTE = re.compile(re.escape(EXTERNAL_CODE_PREFIX) + r"[0-9a-f]{20}")


@dataclass(frozen=True, slots=True)
class ErasureConfig:
    """Where an erasure can go (an integration not configured is skipped, and logged),
    and what PIPERUN_FORGET says to do with the PipeRun person."""

    chatwoot: bool
    piperun: bool
    piperun_forget: Literal["delete", "anonymize"] = "anonymize"


def erasure_policy(integration: str, knobs: OutboxKnobs = TABLE_AS_IS) -> DeliveryPolicy:
    """The integration's backoff, without its attempt budget: an erasure waits out an
    outage of any length. A refusal (4xx) still ends it, as a dead item to look at."""
    spec = effective_spec(integration, knobs)
    return DeliveryPolicy(
        name=f"{integration}:erasure",
        stop=stop_never,
        wait=JitteredBackoff(spec.base_delay_s, spec.max_delay_s, linear=spec.backoff == "linear"),
        retry=retry_if_exception(is_transient),
        timeout_s=spec.timeout_s,
    )


def fanout_policy(knobs: OutboxKnobs = TABLE_AS_IS) -> DeliveryPolicy:
    """The fan-out only writes to the store: retried like the most patient integration."""
    return replace(erasure_policy("chatwoot", knobs), name="erasure")


def chatwoot_erase_item(contact_id: int, *, erasure_id: int | None) -> OutboxItem:
    ref = f"{erasure_id}" if erasure_id is not None else f"late-{contact_id}"
    return ChatwootErase(erasure_id=erasure_id, chatwoot_contact_id=contact_id).item(
        order_key=f"erasure:chatwoot:{contact_id}",
        idempotency_key=f"chatwoot_erase:{ref}:{contact_id}",
    )


def piperun_erase_item(person_id: int | None, deal_id: int | None, *, erasure_id: int | None) -> OutboxItem:
    ref = f"{erasure_id}" if erasure_id is not None else f"late-{person_id}-{deal_id}"
    return PipeRunErase(erasure_id=erasure_id, crm_person_id=person_id, crm_deal_id=deal_id).item(
        order_key=f"erasure:piperun:{person_id or deal_id}",
        idempotency_key=f"piperun_erase:{ref}:{person_id}:{deal_id}",
    )


def late_chatwoot_item(contact_id: int) -> OutboxItem:
    """A Chatwoot contact created for a lead the erasure had already taken."""
    return chatwoot_erase_item(contact_id, erasure_id=None)


def late_piperun_item(person_id: int | None, deal_id: int | None) -> OutboxItem:
    """PipeRun records created for a lead the erasure had already taken."""
    return piperun_erase_item(person_id, deal_id, erasure_id=None)


class ErasureFanout:
    """Handler of `lead_erasure`: one item per integration that may hold the lead."""

    def __init__(self, store: Store, config: ErasureConfig, subscriptions: list[Subscription]) -> None:
        self.store = store
        self.config = config
        self.subscriptions = subscriptions

    def items(self, payload: LeadErasure) -> list[OutboxItem]:
        erasure_id = payload.erasure_id
        items: list[OutboxItem] = []
        contact_id = payload.chatwoot_contact_id
        if contact_id is not None:
            if self.config.chatwoot:
                items.append(chatwoot_erase_item(contact_id, erasure_id=erasure_id))
            else:
                log.warning(
                    "erasure_skipped", integration="chatwoot", reason="not_configured", erasure_id=erasure_id
                )
        person_id, deal_id = payload.crm_person_id, payload.crm_deal_id
        if person_id is not None or deal_id is not None:
            if self.config.piperun:
                items.append(piperun_erase_item(person_id, deal_id, erasure_id=erasure_id))
            else:
                log.warning(
                    "erasure_skipped", integration="piperun", reason="not_configured", erasure_id=erasure_id
                )
        items += erased_items(
            self.subscriptions,
            erasure_id=erasure_id,
            erased_at=payload.erased_at,
            channel=payload.channel,
        )
        return items

    async def fan_out(self, _item: OutboxItem, payload: LeadErasure) -> None:
        items = self.items(payload)
        for each in items:
            await self.store.enqueue(each)
        log.info("erasure_fanned_out", erasure_id=payload.erasure_id, kinds=sorted(i.kind for i in items))


class ChatwootErasure:
    def __init__(self, client: ChatwootClient) -> None:
        self.client = client

    async def erase(self, _item: OutboxItem, payload: ChatwootErase) -> None:
        deleted = await self.client.delete_contact(payload.chatwoot_contact_id)
        log.info("chatwoot_contact_erased", erasure_id=payload.erasure_id, already_gone=not deleted)


class PipeRunErasure:
    """The person deleted or anonymised (PIPERUN_FORGET); the deal keeps the sales history
    but loses the lead's name in its title and the lead card in our note, either way."""

    def __init__(self, client: PipeRunClient, forget: Literal["delete", "anonymize"]) -> None:
        self.client = client
        self.forget = forget

    async def erase(self, _item: OutboxItem, payload: PipeRunErase) -> None:
        deal_id, person_id = payload.crm_deal_id, payload.crm_person_id
        if deal_id is not None:
            await self._anonymize_deal(deal_id)
        if person_id is not None:
            how = await self._erase_person(person_id)
            log.info("piperun_person_erased", erasure_id=payload.erasure_id, how=how)

    async def _anonymize_deal(self, deal_id: int) -> None:
        try:
            await self.client.update_deal(deal_id, {"title": ANONYMOUS_DEAL_TITLE})
        except PipeRunError as exc:
            if exc.status != 404:
                raise
            return  # a seller deleted the deal: nothing of the lead is left there
        for note in await self.client.list_deal_notes(deal_id):
            if _OUR_NOTE.search(note.text or ""):
                await self.client.update_note(note.id, ANONYMOUS_NOTE)

    async def _erase_person(self, person_id: int) -> str:
        if self.forget == "delete":
            try:
                return "deleted" if await self.client.delete_person(person_id) else "already_gone"
            except PipeRunError as exc:
                if isinstance(exc, Retryable) or exc.status == 401:
                    raise
                # Refused (a person with deals may not be deletable, or the token may not
                # delete): the personal fields still go, which is what the erasure owes.
                log.warning("piperun_delete_refused", status=exc.status, fallback="anonymize")
        anonymized = await self.client.anonymize_person(person_id, name=ANONYMOUS_PERSON)
        return "anonymized" if anonymized else "already_gone"


__all__ = [
    "CHATWOOT_ERASE_KIND",
    "PIPERUN_ERASE_KIND",
    "ChatwootErasure",
    "ErasureConfig",
    "ErasureFanout",
    "PipeRunErasure",
    "erasure_policy",
    "fanout_policy",
    "late_chatwoot_item",
    "late_piperun_item",
]

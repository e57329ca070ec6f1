"""Who is the right seller for a lead: the rules of prompts/sellers.toml first (territory,
product lines), then the round-robin kept in the store.

A lead keeps the seller it was given (sticky), even when its profile later points
elsewhere, unless that seller has left the file. Otherwise the candidates are the sellers
who cover the lead's state (or have no territory) and sell what it wants (or have no
product lines); if the rules leave nobody, every seller. Among them the store picks the
one assigned least recently, in one atomic step shared by every instance
(`Store.assign_seller`), so the rotation stays fair across restarts and instances.
"""

from __future__ import annotations

from datetime import datetime

from core.lead import LeadProfile
from core.logging import get_logger
from runtime.sellers import Seller, Sellers
from store.base import Store

log = get_logger(__name__)


def candidates_for(sellers: Sellers, profile: LeadProfile) -> list[Seller]:
    """The sellers the rules allow for this lead, in the file's order; all of them when
    the rules leave nobody."""
    matching = [
        seller
        for seller in sellers
        if seller.covers(profile.state) and seller.sells(profile.product_interest, profile.segment)
    ]
    return matching or list(sellers)


async def choose_seller(
    store: Store,
    sellers: Sellers,
    profile: LeadProfile,
    *,
    contact_key: str,
    now: datetime | None = None,
) -> Seller | None:
    """The lead's seller, recorded in the store; None when the file names no seller."""
    if not sellers:
        return None
    current = sellers.get(await store.lead_seller(contact_key))
    if current is not None:
        return current
    candidates = candidates_for(sellers, profile)
    key = await store.assign_seller(contact_key, [seller.key for seller in candidates], now=now)
    chosen = sellers.get(key)
    if chosen is None:  # the store answers one of the keys it was given
        log.error("seller_assignment_unknown", seller=key)
    else:
        log.info("seller_assigned", seller=chosen.key, candidates=len(candidates))
    return chosen

"""The `Store` contract, continued: finding a lead by its Chatwoot contact, and a lead
who came back through an ad (Instagram `messaging_referrals`) taking that ad as its
attribution.

Like `test_store_contract.py`, these talk only through the protocol, so they run on
every backend listed in `conftest.py`.
"""

from __future__ import annotations

import dataclasses

from core.models import AdReferral
from store.base import Store
from tests.store.test_store_contract import LEAD_A, LEAD_B, LEAD_C, key, turn

FIRST_AD = {"ctwa_clid": "ARAkLkA8rmlFeiCkt", "source_id": "23722824350495506", "source_type": "ad"}
# The ad of tests/fixtures/instagram/message_ad_referral.json (Meta's Instagram Messaging
# webhook example: ad_id, source "ADS", ads_context_data.ad_title) as the Instagram
# channel turns it into an AdReferral and the runtime hands it to the store.
NEWER_AD = AdReferral(
    source_id="120210000000000001", source_type="ad", headline="Kit Verão com 30% OFF"
).model_dump(exclude_none=True)


async def _lead_with_ad(store: Store, contact: str = LEAD_A) -> None:
    await store.commit_turn(dataclasses.replace(turn(contact=contact), referral=FIRST_AD))


# --- a lead by its Chatwoot contact ---------------------------------------------------


async def test_a_lead_is_found_by_its_chatwoot_contact(store: Store) -> None:
    await store.commit_turn(turn(contact=LEAD_A))
    await store.commit_turn(turn(contact=LEAD_B))
    await store.save_chatwoot_link(key(LEAD_A), contact_id=42, source_id="src-a", conversation_id=77)
    await store.save_chatwoot_link(key(LEAD_B), contact_id=43, source_id="src-b", conversation_id=78)

    found = await store.lead_by_chatwoot_contact(42)
    assert found is not None
    assert (found.contact_key, found.chatwoot_contact_id, found.chatwoot_conversation_id) == (
        key(LEAD_A),
        42,
        77,
    )
    assert found.name == "Maria Souza" and found.conversation_id is not None
    other = await store.lead_by_chatwoot_contact(43)
    assert other is not None and other.contact_key == key(LEAD_B)


async def test_an_unknown_chatwoot_contact_finds_no_lead(store: Store) -> None:
    await store.commit_turn(turn())
    assert await store.lead_by_chatwoot_contact(42) is None  # linked to nothing yet
    await store.save_chatwoot_link(key(), contact_id=42, source_id=None, conversation_id=None)
    assert await store.lead_by_chatwoot_contact(404) is None


async def test_a_chatwoot_contact_of_several_leads_finds_the_one_changed_last(store: Store) -> None:
    for contact in (LEAD_A, LEAD_B, LEAD_C):
        await store.commit_turn(turn(contact=contact))
    await store.save_chatwoot_link(key(LEAD_A), contact_id=42, source_id=None, conversation_id=77)
    await store.save_chatwoot_link(key(LEAD_B), contact_id=42, source_id=None, conversation_id=78)
    found = await store.lead_by_chatwoot_contact(42)
    assert found is not None and found.contact_key == key(LEAD_B)

    # LEAD_A writes again: the person is now talking on that channel.
    await store.commit_turn(turn(contact=LEAD_A, turn_id="turn0002"))
    found = await store.lead_by_chatwoot_contact(42)
    assert found is not None and found.contact_key == key(LEAD_A)


async def test_an_erased_lead_is_not_found_by_its_chatwoot_contact(store: Store) -> None:
    await store.commit_turn(turn())
    await store.save_chatwoot_link(key(), contact_id=42, source_id=None, conversation_id=77)
    assert await store.forget_lead(key()) is True
    assert await store.lead_by_chatwoot_contact(42) is None


# --- a lead back through an ad --------------------------------------------------------


async def test_a_lead_back_through_an_ad_takes_the_newest_ad(store: Store) -> None:
    await _lead_with_ad(store)
    lead = await store.get_lead(key())
    assert lead is not None and lead.referral == FIRST_AD

    assert await store.record_referral(key(), NEWER_AD) is True
    lead = await store.get_lead(key())
    assert lead is not None and lead.referral == NEWER_AD  # replaced, not merged


async def test_a_referral_is_kept_for_a_lead_that_had_none(store: Store) -> None:
    await store.commit_turn(turn())
    assert await store.record_referral(key(), NEWER_AD) is True
    lead = await store.get_lead(key())
    assert lead is not None and lead.referral == NEWER_AD
    # The next turn's own referral does not undo it: a turn keeps the one stored.
    await store.commit_turn(dataclasses.replace(turn(turn_id="turn0002"), referral=FIRST_AD))
    lead = await store.get_lead(key())
    assert lead is not None and lead.referral == NEWER_AD


async def test_a_referral_of_an_unknown_contact_stores_nothing(store: Store) -> None:
    assert await store.record_referral(key(LEAD_B), NEWER_AD) is False
    assert await store.get_lead(key(LEAD_B)) is None


async def test_a_referral_of_an_erased_lead_stores_nothing(store: Store) -> None:
    await _lead_with_ad(store)
    assert await store.forget_lead(key()) is True
    assert await store.record_referral(key(), NEWER_AD) is False
    assert await store.get_lead(key()) is None
    assert await store.is_erased(key()) is True


async def test_an_empty_referral_keeps_the_ad_stored(store: Store) -> None:
    await _lead_with_ad(store)
    assert await store.record_referral(key(), {}) is False
    lead = await store.get_lead(key())
    assert lead is not None and lead.referral == FIRST_AD


async def test_a_referral_changes_only_its_own_lead(store: Store) -> None:
    await _lead_with_ad(store, LEAD_A)
    await _lead_with_ad(store, LEAD_B)
    assert await store.record_referral(key(LEAD_B), NEWER_AD) is True
    a, b = await store.get_lead(key(LEAD_A)), await store.get_lead(key(LEAD_B))
    assert a is not None and a.referral == FIRST_AD
    assert b is not None and b.referral == NEWER_AD

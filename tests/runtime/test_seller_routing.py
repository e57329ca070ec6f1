"""Who is the right seller: territory and product rules first, then the store's
round-robin; a lead keeps its seller until that seller leaves the file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.lead import LeadProfile
from runtime.seller_routing import candidates_for, choose_seller
from runtime.sellers import Seller, Sellers, load_sellers
from store.sqlite import SqliteStore

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def seller(key: str, **rules: Any) -> Seller:
    return Seller(key=key, name=key.title(), email=f"{key}@seleto.example", **rules)


TEAM = Sellers(
    [
        seller("sul", territory=["PR", "SC", "RS"], chatwoot_agent_id=3, piperun_user_id=103),
        seller("formadoras-sp", territory=["SP"], products=["hamburguer", "formadora", "FB"]),
        seller("cortes", products=["cortador", "CT200", "fatiador"]),
        seller("geral"),
    ]
)


def keys(sellers: list[Seller]) -> list[str]:
    return [s.key for s in sellers]


class CountingStore(SqliteStore):
    """The real SQLite store, counting the assignments it is asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.assign_calls: list[list[str]] = []

    async def assign_seller(
        self, contact_key: str, candidates: list[str], *, now: datetime | None = None
    ) -> str:
        self.assign_calls.append(list(candidates))
        return await super().assign_seller(contact_key, candidates, now=now)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    store = CountingStore(tmp_path / "routing.sqlite3")
    await store.open()
    yield store
    await store.close()


async def choose(
    store: CountingStore, contact: str, sellers: Sellers = TEAM, **profile: Any
) -> Seller | None:
    return await choose_seller(store, sellers, LeadProfile(**profile), contact_key=f"zapi:{contact}", now=NOW)


# --- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({"state": "RS"}, ["sul", "geral"]),
        ({"state": "SP", "product_interest": "FB300"}, ["formadoras-sp", "geral"]),
        ({"state": "SP", "product_interest": "Cortador de bifes"}, ["cortes", "geral"]),
        ({"state": "SP", "segment": "Hamburgueria"}, ["formadoras-sp", "geral"]),
        ({"state": "RS", "product_interest": "fatiador"}, ["sul", "cortes", "geral"]),
        ({"state": "BA"}, ["geral"]),
        ({}, ["geral"]),  # nothing known: the generalists only
    ],
)
def test_candidates_are_the_sellers_whose_territory_and_products_match(
    profile: dict[str, Any], expected: list[str]
) -> None:
    assert keys(candidates_for(TEAM, LeadProfile(**profile))) == expected


def test_when_the_rules_leave_nobody_every_seller_is_a_candidate() -> None:
    specialists = Sellers([seller("sp", territory=["SP"]), seller("cortes", products=["cortador"])])
    lead = LeadProfile(state="AM", product_interest="misturador")
    assert keys(candidates_for(specialists, lead)) == ["sp", "cortes"]


def test_accents_and_case_do_not_matter() -> None:
    team = Sellers(
        [seller("misturas", products=["Misturadeira", "misturador"]), seller("resto", territory=["AC"])]
    )
    assert keys(candidates_for(team, LeadProfile(product_interest="MISTURADOR de 70 L"))) == ["misturas"]
    team = Sellers([seller("acougues", products=["açougue"]), seller("resto", territory=["AC"])])
    assert keys(candidates_for(team, LeadProfile(segment="Acougue e mercearia"))) == ["acougues"]


# --- choosing, over the store -------------------------------------------------------------------


async def test_the_chosen_seller_carries_its_chatwoot_and_piperun_ids(store: CountingStore) -> None:
    chosen = await choose(store, "5511900000001", state="SC")
    assert chosen is not None and chosen.key == "sul"
    assert (chosen.chatwoot_agent_id, chosen.piperun_user_id) == (3, 103)
    assert store.assign_calls == [["sul", "geral"]]
    assert await store.lead_seller("zapi:5511900000001") == "sul"


async def test_candidates_take_turns(store: CountingStore) -> None:
    chosen = [await choose(store, f"55119000000{n:02d}", state="PR") for n in range(4)]
    assert [s.key for s in chosen if s] == ["sul", "geral", "sul", "geral"]


async def test_a_lead_with_a_seller_keeps_it_without_a_new_assignment(store: CountingStore) -> None:
    first = await choose(store, "5511900000001", state="SC")
    again = await choose(store, "5511900000001", state="SP", product_interest="cortador")
    assert first == again and again is not None and again.key == "sul"
    assert len(store.assign_calls) == 1


async def test_a_lead_whose_seller_left_the_file_gets_a_new_one(store: CountingStore) -> None:
    await choose(store, "5511900000001", state="SC")
    without_sul = Sellers([s for s in TEAM if s.key != "sul"])
    chosen = await choose(store, "5511900000001", without_sul, state="SC")
    assert chosen is not None and chosen.key == "geral"
    assert await store.lead_seller("zapi:5511900000001") == "geral"


async def test_no_sellers_means_no_one_and_nothing_recorded(store: CountingStore) -> None:
    assert await choose(store, "5511900000001", Sellers(), state="SP") is None
    assert store.assign_calls == []


async def test_the_rotation_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "restart.sqlite3"
    team = Sellers([seller("ana"), seller("bruno"), seller("carla")])
    chosen = []
    for n in range(6):  # a restart between every lead
        store = CountingStore(path)
        await store.open()
        picked = await choose(store, f"55119000000{n:02d}", team)
        chosen.append(picked.key if picked else None)
        await store.close()
    assert chosen == ["ana", "bruno", "carla"] * 2


async def test_the_shipped_example_sellers_route(store: CountingStore) -> None:
    sellers = load_sellers()
    chosen = await choose(store, "5511900000001", sellers, state="SP", product_interest="formadora FB300")
    assert chosen is not None and chosen.key in sellers.keys

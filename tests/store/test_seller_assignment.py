"""The `Store` contract, continued: which seller takes a lead.

`assign_seller` is a round-robin kept in the store: the lead's seller if it has one among
the candidates (sticky), else the candidate assigned least recently, recorded in one
atomic step that every handle on the same data (an instance, a process) shares. The
routing rules of prompts/sellers.toml (`runtime.seller_routing.choose_seller`) run here
over each backend too, through the protocol only.

Then concurrency, below the protocol: instances assigning at the same moment (threads with
a Postgres connection each calling sdr_assign_seller, as instances behind a load
balancer; threads with a store handle each on one SQLite file, as the web and worker
processes) still spread the leads evenly and never give one lead two sellers.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.lead import LeadProfile
from runtime.seller_routing import choose_seller
from runtime.sellers import Seller, Sellers
from store.base import Store
from store.sqlite import SqliteStore
from tests.helpers.busy_store import retried_while_busy
from tests.store.conftest import OpenStore
from tests.store.test_store_contract import inbound, key

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TEAM = ["ana", "bruno", "carla"]


def lead(n: int) -> str:
    return f"zapi:55119876{n:05d}"


async def assign_many(store: Store, leads: list[str], candidates: list[str] = TEAM) -> list[str]:
    return [await store.assign_seller(contact, candidates, now=T0) for contact in leads]


# --- the rotation ----------------------------------------------------------------------


async def test_thirty_leads_over_three_sellers_are_ten_each_in_turn(store: Store) -> None:
    # One instant for all: the rotation's order is the store's, not the clock's.
    chosen = await assign_many(store, [lead(n) for n in range(30)])
    assert chosen[:6] == ["ana", "bruno", "carla", "ana", "bruno", "carla"]
    assert Counter(chosen) == {"ana": 10, "bruno": 10, "carla": 10}


async def test_a_lead_keeps_its_seller_and_asking_again_moves_no_one(store: Store) -> None:
    assert await store.lead_seller(lead(1)) is None
    assert await store.assign_seller(lead(1), TEAM, now=T0) == "ana"
    assert await store.assign_seller(lead(1), TEAM, now=T0 + timedelta(hours=1)) == "ana"
    assert await store.assign_seller(lead(1), ["carla", "ana"], now=T0) == "ana"
    assert await store.lead_seller(lead(1)) == "ana"
    # Asking again did not count as another lead for ana: the next lead goes to bruno.
    assert await store.assign_seller(lead(2), TEAM, now=T0) == "bruno"


async def test_a_lead_whose_seller_is_no_longer_a_candidate_is_reassigned(store: Store) -> None:
    assert await store.assign_seller(lead(1), TEAM, now=T0) == "ana"
    assert await store.assign_seller(lead(1), ["bruno", "carla"], now=T0) == "bruno"
    assert await store.lead_seller(lead(1)) == "bruno"


async def test_the_least_recently_assigned_candidate_wins_and_a_newcomer_goes_first(store: Store) -> None:
    assert await assign_many(store, [lead(1), lead(2), lead(3)]) == ["ana", "bruno", "carla"]
    # Only bruno and carla qualify: bruno had his lead before carla.
    assert await store.assign_seller(lead(4), ["carla", "bruno"], now=T0) == "bruno"
    # A seller never assigned is the least recent of all, whatever the list's order.
    assert await store.assign_seller(lead(5), [*TEAM, "davi"], now=T0) == "davi"
    assert await store.assign_seller(lead(6), [*TEAM, "davi"], now=T0) == "ana"


async def test_ties_between_never_assigned_sellers_go_in_list_order(store: Store) -> None:
    assert await store.assign_seller(lead(1), ["carla", "bruno"], now=T0) == "carla"
    assert await store.assign_seller(lead(2), ["bruno", "carla"], now=T0) == "bruno"


async def test_without_a_now_the_stores_clock_is_used(store: Store) -> None:
    assert await store.assign_seller(lead(1), TEAM) == "ana"
    assert await store.assign_seller(lead(2), TEAM) == "bruno"


async def test_no_candidate_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.assign_seller(lead(1), [], now=T0)


async def test_the_rotation_and_the_assignments_survive_a_restart(open_store: OpenStore) -> None:
    before = await open_store()
    assert await assign_many(before, [lead(1), lead(2)]) == ["ana", "bruno"]
    await before.close()
    after = await open_store()
    assert await after.lead_seller(lead(1)) == "ana"
    assert await after.assign_seller(lead(2), TEAM, now=T0) == "bruno"
    assert await after.assign_seller(lead(3), TEAM, now=T0) == "carla"
    assert await after.assign_seller(lead(4), TEAM, now=T0) == "ana"


async def test_two_instances_share_one_rotation(open_store: OpenStore) -> None:
    one, two = await open_store(), await open_store()
    chosen = []
    for n in range(0, 6, 2):
        chosen.append(await one.assign_seller(lead(n), TEAM, now=T0))
        chosen.append(await two.assign_seller(lead(n + 1), TEAM, now=T0))
    assert chosen == ["ana", "bruno", "carla"] * 2
    assert await two.lead_seller(lead(0)) == "ana"


async def test_concurrent_calls_on_one_handle_spread_evenly(store: Store) -> None:
    chosen = await asyncio.gather(*(store.assign_seller(lead(n), TEAM, now=T0) for n in range(21)))
    assert Counter(chosen) == {"ana": 7, "bruno": 7, "carla": 7}


# --- erasure ---------------------------------------------------------------------------


async def test_an_erased_leads_assignment_is_gone_and_is_not_recorded_again(store: Store) -> None:
    contact = "5511987650001"
    await store.add_inbound(inbound("seller-in-1", contact=contact))
    assert await store.assign_seller(key(contact), TEAM, now=T0) == "ana"
    assert await store.forget_lead(key(contact)) is True
    assert await store.lead_seller(key(contact)) is None
    # A late call for the erased lead gets an answer, but nothing about it is kept.
    assert await store.assign_seller(key(contact), TEAM, now=T0) == "bruno"
    assert await store.lead_seller(key(contact)) is None
    assert await store.assign_seller(lead(2), TEAM, now=T0) == "bruno"


# --- the routing rules over the store ----------------------------------------------------


def seller(key_: str, **rules: Any) -> Seller:
    return Seller(key=key_, name=key_.title(), email=f"{key_}@seleto.example", **rules)


ROUTED = Sellers(
    [
        seller("sul", territory=["PR", "SC", "RS"]),
        seller("formadoras-sp", territory=["SP"], products=["hamburguer", "formadora", "FB"]),
        seller("cortes-sp", territory=["SP"], products=["cortador", "CT200", "fatiador"]),
        seller("nordeste", territory=["BA", "PE", "CE"]),
    ]
)


async def route(store: Store, n: int, sellers: Sellers = ROUTED, **profile: Any) -> str | None:
    chosen = await choose_seller(store, sellers, LeadProfile(**profile), contact_key=lead(n), now=T0)
    return chosen.key if chosen is not None else None


async def test_territory_and_product_rules_pick_the_seller(store: Store) -> None:
    assert await route(store, 1, state="SC") == "sul"
    assert await route(store, 2, state="São Paulo", product_interest="Formadora de hambúrgueres") == (
        "formadoras-sp"
    )
    assert await route(store, 3, state="SP", product_interest="FB300") == "formadoras-sp"
    assert await route(store, 4, state="SP", segment="açougue", product_interest="cortador CT200") == (
        "cortes-sp"
    )
    assert await route(store, 5, state="BA", product_interest="misturador") == "nordeste"
    # The segment counts as much as the product of interest.
    assert await route(store, 6, state="SP", segment="Fábrica de hambúrguer") == "formadoras-sp"


async def test_when_the_rules_leave_nobody_every_seller_is_a_candidate(store: Store) -> None:
    specialists = Sellers(
        [seller("sp", territory=["SP"], products=["formadora"]), seller("mg", territory=["MG"])]
    )
    chosen = [await route(store, n, specialists, state="AM", product_interest="misturador") for n in range(4)]
    assert chosen == ["sp", "mg", "sp", "mg"]


async def test_the_chosen_seller_sticks_until_it_leaves_the_file(store: Store) -> None:
    assert await route(store, 1, state="SC") == "sul"
    # The lead later says it is from SP and wants a cutter: it stays with its seller.
    assert await route(store, 1, state="SP", product_interest="cortador") == "sul"
    without_sul = Sellers([s for s in ROUTED if s.key != "sul"])
    # Nobody else covers SC: every seller is a candidate, the rotation's first one wins.
    assert await route(store, 1, without_sul, state="SC") == "formadoras-sp"
    assert await store.lead_seller(lead(1)) == "formadoras-sp"


async def test_no_sellers_in_the_file_assigns_no_one(store: Store) -> None:
    assert await route(store, 1, Sellers(), state="SP") is None
    assert await store.lead_seller(lead(1)) is None


# --- instances at the same moment ----------------------------------------------------------

THREADS = 4


def run_together(work: Callable[[int], list[str]]) -> list[str]:
    """`work(thread)` on THREADS threads released at once; every seller they got."""
    start = threading.Barrier(THREADS)
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def thread(number: int) -> None:
        try:
            start.wait()
            chosen = work(number)
            with lock:
                results.extend(chosen)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_postgres_instances_assigning_at_once_spread_the_leads_evenly() -> None:
    from tests.store.pg_support import connect, fresh_schema

    per_thread = 5  # 20 leads at once over three sellers

    with fresh_schema() as schema:

        def work(thread: int) -> list[str]:
            with connect(schema) as conn:
                return [
                    conn.execute(
                        "SELECT sdr_assign_seller(%s, %s, %s)", (lead(thread * 100 + n), TEAM, T0)
                    ).fetchone()[0]
                    for n in range(per_thread)
                ]

        chosen = run_together(work)
        assert sorted(Counter(chosen).values()) == [6, 7, 7]
        with connect(schema) as conn:
            assigned = conn.execute("SELECT count(*), count(DISTINCT contact_key) FROM seller_assignments")
            assert assigned.fetchone() == (20, 20)
            seqs = [row[0] for row in conn.execute("SELECT rotation_seq FROM seller_rotation")]
            assert len(set(seqs)) == 3


def test_postgres_two_instances_assigning_one_lead_at_once_agree() -> None:
    from tests.store.pg_support import connect, fresh_schema

    with fresh_schema() as schema:

        def work(thread: int) -> list[str]:
            with connect(schema) as conn:
                return [conn.execute("SELECT sdr_assign_seller(%s, %s)", (lead(1), TEAM)).fetchone()[0]]

        assert run_together(work) == ["ana"] * THREADS
        with connect(schema) as conn:
            assert conn.execute(
                "SELECT count(*) FROM seller_rotation WHERE rotation_seq IS NOT NULL"
            ).fetchone() == (1,)


def test_sqlite_processes_assigning_at_once_spread_the_leads_evenly(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    per_thread = 5

    async def assign(thread: int) -> list[str]:
        store = SqliteStore(path)
        await store.open()
        try:
            chosen = []
            for n in range(per_thread):
                contact_key = lead(thread * 100 + n)
                # A busy file is retried, as the turn that routes the lead does.
                chosen.append(
                    await retried_while_busy(lambda: store.assign_seller(contact_key, TEAM, now=T0))  # noqa: B023
                )
            return chosen
        finally:
            await store.close()

    async def create() -> None:  # the schema, before the race
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(create())
    chosen = run_together(lambda thread: asyncio.run(assign(thread)))
    assert sorted(Counter(chosen).values()) == [6, 7, 7]

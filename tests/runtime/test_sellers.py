"""prompts/sellers.toml: the shipped file loads, and every mistake a manager can make
stops the bot with the file, the seller and the key in the message."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from runtime.sellers import DEFAULT_SELLERS_PATH, Seller, Sellers, SellersError, load_sellers

ANA = """
[[sellers]]
key = "ana"
name = "Ana Ribeiro"
email = "Ana.Ribeiro@Seleto.example"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sellers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_file_loads_with_its_example_sellers_marked() -> None:
    sellers = load_sellers()
    assert len(sellers) >= 2
    assert all("exemplo" in seller.key for seller in sellers)
    assert "EXEMPLO" in DEFAULT_SELLERS_PATH.read_text(encoding="utf-8")
    for seller in sellers:
        assert seller.calendar_id
        assert seller.booking_url is None or seller.booking_url.startswith("https://")


def test_a_minimal_seller_gets_the_defaults(tmp_path: Path) -> None:
    [ana] = load_sellers(write(tmp_path, ANA))
    assert ana.key == "ana" and ana.name == "Ana Ribeiro"
    assert ana.email == "ana.ribeiro@seleto.example"
    assert ana.calendar_id == ana.email
    assert ana.chatwoot_agent_id is None and ana.piperun_user_id is None
    assert ana.territory == () and ana.products == ()
    assert ana.hours is None and ana.booking_url is None


def test_every_field_is_read(tmp_path: Path) -> None:
    text = (
        ANA
        + """calendar_id = "c_123@group.calendar.google.com"
chatwoot_agent_id = 7
piperun_user_id = 9001
territory = ["sp", "Minas Gerais", "SP"]
products = ["formadora", "FB300"]
booking_url = "https://calendar.app.google/abc"

[sellers.hours]
monday = ["08:00-12:00", "13:00-18:00"]
tuesday = ["08:00-18:00"]
wednesday = ["08:00-18:00"]
thursday = ["08:00-18:00"]
friday = ["08:00-18:00"]
saturday = []
sunday = []
"""
    )
    [ana] = load_sellers(write(tmp_path, text))
    assert ana.calendar_id == "c_123@group.calendar.google.com"
    assert (ana.chatwoot_agent_id, ana.piperun_user_id) == (7, 9001)
    assert ana.territory == ("SP", "MG")
    assert ana.products == ("formadora", "FB300")
    assert ana.booking_url == "https://calendar.app.google/abc"
    zone = ZoneInfo("America/Sao_Paulo")
    monday_noon_30 = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)  # 12:30 in São Paulo
    assert not ana.works_at(monday_noon_30, zone)
    assert ana.works_at(datetime(2026, 12, 7, 17, 0, tzinfo=UTC), zone)
    assert not ana.works_at(datetime(2026, 12, 6, 15, 0, tzinfo=UTC), zone)  # Sunday


def test_sellers_keep_the_files_order_and_are_found_by_key(tmp_path: Path) -> None:
    text = ANA + '\n[[sellers]]\nkey = "bruno"\nname = "Bruno"\nemail = "bruno@seleto.example"\n'
    sellers = load_sellers(write(tmp_path, text))
    assert sellers.keys == ["ana", "bruno"]
    bruno = sellers.get("bruno")
    assert bruno is not None and bruno.name == "Bruno"
    assert sellers.get("carla") is None and sellers.get(None) is None


def test_a_file_without_sellers_routes_to_no_one(tmp_path: Path) -> None:
    sellers = load_sellers(write(tmp_path, "# ninguém ainda\n"))
    assert not sellers and len(sellers) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('territory = ["XX"]', "territory"),
        ('territory = ["SP", "Gotham"]', "Brazilian state"),
        ('booking_url = "calendly.com/ana"', "booking_url"),
        ("chatwoot_agent_id = 0", "chatwoot_agent_id"),
        ('piperun_user_id = "abc"', "piperun_user_id"),
        ('products = ["  "]', "products"),
        ('telefone = "11"', "unknown key"),
    ],
)
def test_a_bad_value_names_the_file_the_seller_and_the_key(tmp_path: Path, extra: str, message: str) -> None:
    path = write(tmp_path, ANA + extra + "\n")
    with pytest.raises(SellersError) as caught:
        load_sellers(path)
    assert str(path) in str(caught.value)
    assert "'ana'" in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[sellers]]\nkey = "Ana Ribeiro"\nname = "Ana"\nemail = "ana@seleto.example"\n', "key"),
        ('[[sellers]]\nkey = "ana"\nname = "Ana"\nemail = "ana"\n', "email"),
        ('[[sellers]]\nkey = "ana"\nemail = "ana@seleto.example"\n', "name: missing"),
        ('[[sellers]]\nkey = "ana"\nname = "Ana"\n', "email: missing"),
        (ANA + ANA, "used by an earlier seller"),
        ('[vendedores]\nana = "x"\n', "unknown key"),
        ("sellers = 3\n", "[[sellers]]"),
        ("[[sellers]\n", "not valid TOML"),
        (ANA + "[sellers.hours]\nmonday = []\n", "hours.tuesday: missing"),
        (ANA + '[sellers.hours]\nmonday = ["18:00-08:00"]\n', "hours.monday"),
    ],
)
def test_a_broken_file_names_itself(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SellersError) as caught:
        load_sellers(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(SellersError, match="not found"):
        load_sellers(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("keyword", "said", "sells"),
    [
        ("hamburguer", "Formadora de HAMBÚRGUERES", True),
        ("FB", "quero a fb300", True),
        ("formadora automática", "uma formadora automatica grande", True),
        ("formadora automática", "uma formadora manual", False),
        ("serra", "Serrana Alimentos", True),  # a keyword starts a word: as documented
        ("corte", "recorte", False),  # but never matches inside one
        ("CT200", None, False),
    ],
)
def test_a_product_keyword_starts_a_word_of_the_leads_interest(
    keyword: str, said: str | None, sells: bool
) -> None:
    seller = Seller(key="ana", name="Ana", email="ana@seleto.example", products=[keyword])
    assert seller.sells(said) is sells


def test_without_product_lines_or_territory_a_seller_takes_anything() -> None:
    seller = Seller(key="ana", name="Ana", email="ana@seleto.example")
    assert seller.sells(None) and seller.sells("qualquer coisa")
    assert seller.covers(None) and seller.covers("AM")
    regional = Seller(key="bia", name="Bia", email="bia@seleto.example", territory=["SP"])
    assert regional.covers("SP") and not regional.covers("RJ") and not regional.covers(None)


def test_two_sellers_with_one_key_are_refused() -> None:
    ana = Seller(key="ana", name="Ana", email="ana@seleto.example")
    with pytest.raises(SellersError):
        Sellers([ana, ana])

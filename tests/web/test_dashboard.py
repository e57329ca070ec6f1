"""The sales dashboard page (issue 20): refused without its token, closed without one
configured, and the known dataset's figures (tests/web/dashboard_support.py) on the page
by week and by source, with lead-supplied text escaped and a strict CSP."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from tests.helpers.clock import TestClock
from tests.web.dashboard_support import (
    DASHBOARD_TOKEN,
    HOSTILE,
    HOSTILE_REASON,
    KNOWN,
    LATER,
    METRICS_TOKEN,
    dashboard_settings,
    seed_known,
)
from tests.web.support import error_body
from web.app import create_app
from web.keys import STORE

BEARER = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}


async def _bot(aiohttp_client: Callable[..., Any], tmp_path: Path, **settings: Any) -> TestClient:
    app = create_app(dashboard_settings(tmp_path, **settings), clock=TestClock(LATER), role="web")
    client: TestClient = await aiohttp_client(app)
    return client


@pytest.fixture
async def bot(aiohttp_client: Callable[..., Any], tmp_path: Path) -> TestClient:
    client = await _bot(aiohttp_client, tmp_path)
    seed_known(client.app[STORE])
    return client


def text_of(page: str) -> str:
    """The page's text as a reader sees it: tags out, entities decoded, spaces squeezed."""
    body = page.split("<body", 1)[1]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


async def test_refused_without_or_with_a_wrong_token(bot: TestClient) -> None:
    for headers, query in (
        ({}, {}),
        ({}, {"token": "wrong"}),
        ({"Authorization": "Bearer wrong"}, {}),
        ({"Authorization": f"Basic {DASHBOARD_TOKEN}"}, {}),
        ({}, {"token": DASHBOARD_TOKEN[:-1]}),
    ):
        response = await bot.get("/dashboard", headers=headers, params=query)
        assert response.status == 403, (headers, query)
        assert DASHBOARD_TOKEN not in str(await error_body(response))
    assert (await bot.get("/dashboard", params={"token": DASHBOARD_TOKEN, **KNOWN})).status == 200
    assert (await bot.get("/dashboard", headers=BEARER, params=KNOWN)).status == 200


async def test_closed_when_no_token_is_configured(aiohttp_client: Callable[..., Any], tmp_path: Path) -> None:
    bot = await _bot(aiohttp_client, tmp_path, dashboard_token=None, metrics_token=None)
    response = await bot.get("/dashboard", params={"token": ""})
    assert response.status == 404
    assert "DASHBOARD_TOKEN" in (await error_body(response))["error"]
    assert (await bot.get("/dashboard/static/dashboard.css")).status == 404


async def test_the_metrics_token_opens_it_when_there_is_no_dashboard_token(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    bot = await _bot(aiohttp_client, tmp_path, dashboard_token=None, metrics_token=METRICS_TOKEN)
    ok = await bot.get("/dashboard", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status == 200
    assert (await bot.get("/dashboard", params={"token": DASHBOARD_TOKEN})).status == 403


async def test_the_known_funnel_by_week(bot: TestClient) -> None:
    with capture_logs() as logs:
        response = await bot.get("/dashboard", params={"token": DASHBOARD_TOKEN, **KNOWN})
    assert response.status == 200 and response.content_type == "text/html"
    assert DASHBOARD_TOKEN not in repr(logs)
    page = await response.text()
    text = text_of(page)
    assert "Painel de vendas" in text and "leads de 16/11/2026 a 29/11/2026" in text
    # The total funnel: 50 → 40 → 20 → 8 → 3 → 1, each with its conversion.
    funnel = text.split("Funil", 1)[1]
    for row in (
        "Novos leads 50 —",
        "Responderam 40 80,0%",
        "Qualificados 20 50,0%",
        "Transferidos 8 40,0%",
        "Reunião marcada 3 37,5%",
        "Venda ganha 1 33,3%",
    ):
        assert row in funnel, row
    assert "1ª resposta (p50 / p90) 3 min 25 s / 6 min 01 s" in text  # 205 s and 361 s
    assert "Temperatura Frio 30 · Morno 10 · Quente 10" in text
    assert "pediu orçamento (5)" in text and "quer falar com humano (3)" in text
    assert "Opt-outs 2" in text
    # By week: 30 leads in the first week, 20 in the second, nobody qualified then.
    weeks = text.split("Por semana", 2)[2]
    first, second = weeks.split("Semana de 16/11/2026", 1)[1].split("Semana de 23/11/2026", 1)
    assert "Novos leads 30" in first and "Venda ganha 1 33,3%" in first
    assert "Novos leads 20" in second and "Qualificados 0 0,0%" in second and "Transferidos 0 —" in second
    # Cost: 40 turns, US$ 0.123 → R$ 0.615 at 5.0; per lead US$ 0.00246 (R$ 0.0123).
    assert "Total US$ 0,1230 · R$ 0,62" in text  # R$ 0,615, half up
    assert "Por lead US$ 0,0025 · R$ 0,0123" in text
    assert "Turnos 40" in text and "Câmbio R$ 5,00 por US$ 1" in text
    assert "16/11/2026 24" in text and "23/11/2026 10" in text  # turns per day


async def test_the_known_funnel_by_source(bot: TestClient) -> None:
    response = await bot.get("/dashboard", params={"token": DASHBOARD_TOKEN, "group": "source", **KNOWN})
    assert response.status == 200
    text = text_of(await response.text())
    groups = text.split("Por origem", 2)[2]
    for title, counts in (
        ("WhatsApp · anúncio ad1 · campanha c1", "Novos leads 10 — Responderam 8 80,0%"),
        ("WhatsApp · anúncio ad2 · campanha c2 · formulário f1", "Novos leads 10"),
        ("WhatsApp · UTM google / cpc / verao", "1ª resposta (p50 / p90) 3 min 25 s"),
        ("Instagram", "Opt-outs 1"),
    ):
        assert title in groups, title
        assert counts in groups.split(title, 1)[1][:700], (title, counts)
    assert 'aria-current="page">Por origem' in await response.text()


async def test_lead_supplied_text_is_escaped(aiohttp_client: Callable[..., Any], tmp_path: Path) -> None:
    bot = await _bot(aiohttp_client, tmp_path)
    seed_known(bot.app[STORE], hostile=True)
    for group in ("source", "week"):
        params = {"token": DASHBOARD_TOKEN, "group": group, "weeks": "1", "until": "2026-12-06"}
        page = await (await bot.get("/dashboard", params=params)).text()
        assert "<script" not in page.lower() and "<img src=x" not in page
        assert HOSTILE_REASON in text_of(page) and html.escape(HOSTILE_REASON, quote=True) in page
        if group == "source":
            assert f"UTM site / {HOSTILE}" in text_of(page)


async def test_the_page_headers_and_its_stylesheet(bot: TestClient) -> None:
    response = await bot.get("/dashboard", headers=BEARER, params=KNOWN)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp and "img-src data:" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp and "frame-ancestors 'self'" in csp
    assert response.headers["Cache-Control"] == "no-store"
    page = await response.text()
    assert "<script" not in page.lower() and "http://" not in page.split("<body", 1)[1].replace(
        "http://www.w3.org", ""
    )
    assert page.count('<img src="data:image/svg+xml;base64,') == 3  # funnel, weeks, cost per day
    css = await bot.get("/dashboard/static/dashboard.css")
    assert css.status == 200 and css.content_type == "text/css"
    assert "max-age" in css.headers["Cache-Control"] and "@media" in await css.text()
    assert (await bot.get("/dashboard/static/other.js")).status == 404


@pytest.mark.parametrize(
    "query",
    [{"weeks": "0"}, {"weeks": "53"}, {"weeks": "x"}, {"group": "seller"}, {"until": "29/11/2026"}],
)
async def test_bad_parameters_are_a_400(bot: TestClient, query: dict[str, str]) -> None:
    response = await bot.get("/dashboard", headers=BEARER, params=query)
    assert response.status == 400
    await error_body(response)


async def test_without_until_the_period_ends_today(bot: TestClient) -> None:
    # The clock says Thursday 03/12/2026: 8 weeks back from that week's Monday.
    text = text_of(await (await bot.get("/dashboard", headers=BEARER)).text())
    assert "leads de 12/10/2026 a 03/12/2026" in text
    assert "Novos leads 50" in text

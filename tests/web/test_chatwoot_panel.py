"""The lead panel inside Chatwoot (a Dashboard App): closed without CHATWOOT_PANEL_TOKEN,
refused without the right token, framable only by the Chatwoot origin; its API shows the
lead card of a Chatwoot conversation and pauses or resumes the bot for that lead, which
the runtime then honours. (The page itself, rendered by Chromium: test_chatwoot_panel_browser.py.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from core.settings import Settings
from tests.conftest import zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.logs import logging_for
from tests.helpers.settle import settled
from tests.web.chatwoot_panel_support import (
    CHATWOOT_ORIGIN,
    CONTACT_ID,
    CONVERSATION_ID,
    DEAL_ID,
    KEY,
    PANEL_TOKEN,
    PHONE,
    QUOTE_SUMMARY,
    panel_settings,
    seed_hot_lead,
)
from tests.web.support import error_body
from web.app import create_app
from web.chatwoot_panel import origin_of
from web.keys import STORE

AUTH = {"X-Panel-Token": PANEL_TOKEN}
LEAD_URL = f"/chatwoot/panel/api/lead?conversation_id={CONVERSATION_ID}&contact_id={CONTACT_ID}"
REF = {"conversation_id": CONVERSATION_ID, "contact_id": CONTACT_ID}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return panel_settings(tmp_path)


@pytest.fixture
async def panel(aiohttp_client: Callable[..., Any], settings: Settings, clock: TestClock) -> TestClient:
    # The web role: the panel reads and writes the store; no turn runs meanwhile.
    client = await aiohttp_client(create_app(settings, clock=clock, role="web"))
    await seed_hot_lead(client.app[STORE])
    return client


# --- who may open it --------------------------------------------------------------------


async def test_without_a_configured_token_the_panel_is_closed(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    app = create_app(panel_settings(tmp_path, chatwoot_panel_token=None), clock=clock, role="web")
    client = await aiohttp_client(app)
    for url in ("/chatwoot/panel", f"/chatwoot/panel?token={PANEL_TOKEN}", "/chatwoot/panel/static/panel.js"):
        assert (await client.get(url)).status == 404
    response = await client.get(LEAD_URL, headers=AUTH)
    assert response.status == 404
    assert "CHATWOOT_PANEL_TOKEN" in (await error_body(response))["error"]
    assert (await client.post("/chatwoot/panel/api/lead/pause", json=REF, headers=AUTH)).status == 404


async def test_a_missing_or_wrong_token_is_refused(panel: TestClient) -> None:
    for url in ("/chatwoot/panel", "/chatwoot/panel?token=", "/chatwoot/panel?token=cw-panel-guess"):
        response = await panel.get(url)
        assert response.status == 403
        await error_body(response)
    for headers in ({}, {"X-Panel-Token": "cw-panel-guess"}, {"X-Panel-Token": "é\udcff"}):
        assert (await panel.get(LEAD_URL, headers=headers)).status == 403
        assert (await panel.post("/chatwoot/panel/api/lead/pause", json=REF, headers=headers)).status == 403
    # The token in the page's URL does not open the API: the page sends it as a header.
    assert (await panel.get(f"{LEAD_URL}&token={PANEL_TOKEN}")).status == 403
    lead = await panel.app[STORE].get_lead(KEY)
    assert lead is not None and lead.paused_until is None


async def test_the_page_is_framable_only_by_chatwoot_and_runs_no_inline_script(panel: TestClient) -> None:
    response = await panel.get(f"/chatwoot/panel?token={PANEL_TOKEN}")
    assert response.status == 200 and response.content_type == "text/html"
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["frame-ancestors"] == CHATWOOT_ORIGIN
    assert directives["script-src"] == "'self'" and directives["default-src"] == "'none'"
    assert "unsafe-inline" not in csp
    assert response.headers["Referrer-Policy"] == "no-referrer"  # the token stays in the URL
    assert response.headers["Cache-Control"] == "no-store"
    page = await response.text()
    assert f'data-chatwoot-origin="{CHATWOOT_ORIGIN}"' in page
    assert '<script src="panel/static/panel.js"></script>' in page and "<script>" not in page
    assert PANEL_TOKEN not in page
    script = await panel.get("/chatwoot/panel/static/panel.js")
    assert script.status == 200 and script.content_type == "application/javascript"
    text = await script.text()
    # Chatwoot's contract: a message from the configured origin only; ask again on load.
    assert "event.origin !== chatwootOrigin" in text and "chatwoot-dashboard-app:fetch-info" in text
    assert (await panel.get("/chatwoot/panel/static/index.html")).status == 404
    api = await panel.get(LEAD_URL, headers=AUTH)
    assert "frame-ancestors 'none'" in api.headers["Content-Security-Policy"]


def test_the_chatwoot_origin_is_said_as_a_browser_says_it() -> None:
    assert origin_of("https://Chat.Example.com:443/app/accounts/7") == "https://chat.example.com"
    assert origin_of("http://localhost:3000/") == "http://localhost:3000"
    assert origin_of("chat.example.com") is None and origin_of(None) is None


# --- the lead card ----------------------------------------------------------------------


async def test_the_card_of_a_chatwoot_conversation(panel: TestClient) -> None:
    response = await panel.get(LEAD_URL, headers=AUTH)
    assert response.status == 200, await response.text()
    card = await response.json()
    assert (card["name"], card["channel"], card["phone"]) == ("Maria Souza", "WhatsApp", PHONE)
    assert (card["score"], card["temperature"], card["temperature_label"]) == (82, "quente", "Quente")
    assert "urgência imediata: +25" in card["score_reasons"]
    fields = {f["name"]: f for f in card["fields"]}
    assert fields["company"]["value"] == "Frigorífico Boi Bom"
    assert fields["company"]["source"] == "formulário do Meta Lead Ads"
    assert fields["company"]["said_at"] == "ter 01/12 10:10" and fields["company"]["quote"] is None
    assert fields["urgency"]["source"] == "conversa" and fields["urgency"]["said_at"] == "qua 02/12 10:10"
    # The lead's words are quoted under the first field they gave, not repeated.
    assert fields["name"]["quote"].startswith("Preciso de um orçamento da FB300")
    assert fields["urgency"]["quote"] is None
    assert (
        fields["volume"]["value"] == "3.000 hambúrgueres por dia (~3.000/dia)"
        and "volume_per_day" not in fields
    )
    assert [q["summary"] for q in card["quotes"]] == [QUOTE_SUMMARY]
    assert card["quotes"][0]["products"] == ["FB300"] and card["quotes"][0]["status"] == "novo"
    assert card["technical_questions"][0]["question"] == "A FB300 trabalha com carne de frango?"
    [meeting] = card["meetings"]
    assert (meeting["starts_at"], meeting["status"], meeting["seller"]) == (
        "qui 03/12 14:00",
        "agendada",
        "carlos",
    )
    assert card["crm"] == {
        "deal_id": DEAL_ID,
        "url": f"https://app.pipe.run/pipeline/gerenciador/visualizar/{DEAL_ID}",
    }
    assert card["bot"] == {"state": "active", "label": "Bot ativo", "paused_until": None, "handoff": None}


async def test_a_lead_is_found_by_its_contact_when_the_conversation_is_new(panel: TestClient) -> None:
    response = await panel.get(
        f"/chatwoot/panel/api/lead?conversation_id=999&contact_id={CONTACT_ID}", headers=AUTH
    )
    assert response.status == 200 and (await response.json())["name"] == "Maria Souza"


async def test_an_unknown_conversation_or_no_id_is_not_a_lead(panel: TestClient) -> None:
    unknown = await panel.get("/chatwoot/panel/api/lead?conversation_id=999", headers=AUTH)
    assert unknown.status == 404
    await error_body(unknown)
    assert (await panel.get("/chatwoot/panel/api/lead", headers=AUTH)).status == 400
    assert (await panel.get("/chatwoot/panel/api/lead?conversation_id=abc", headers=AUTH)).status == 400
    assert (await panel.post("/chatwoot/panel/api/lead/pause", data=b"{", headers=AUTH)).status == 400


# --- pause and resume -------------------------------------------------------------------


async def test_pause_then_resume_change_the_bots_state_in_the_store(
    panel: TestClient, clock: TestClock
) -> None:
    paused = await panel.post("/chatwoot/panel/api/lead/pause", json=REF, headers=AUTH)
    assert paused.status == 200, await paused.text()
    bot = (await paused.json())["bot"]
    # BOT_PAUSE_HOURS (12) from Wednesday 10:30 in São Paulo.
    assert bot["state"] == "paused" and bot["paused_until"] == "qua 02/12 22:30"
    assert bot["label"] == "Bot pausado até qua 02/12 22:30"
    lead = await panel.app[STORE].get_lead(KEY)
    assert lead is not None and lead.paused_until is not None and lead.paused_until > clock()

    resumed = await panel.post("/chatwoot/panel/api/lead/resume", json=REF, headers=AUTH)
    assert resumed.status == 200
    assert (await resumed.json())["bot"]["state"] == "active"
    lead = await panel.app[STORE].get_lead(KEY)
    assert lead is not None and lead.paused_until is None


async def test_a_conversation_the_team_took_is_paused_without_an_end_date(
    panel: TestClient, clock: TestClock
) -> None:
    # What the Chatwoot webhook does for an `open` conversation (web/chatwoot_webhook.py).
    await panel.app[STORE].set_human_owned(KEY, until=clock() + timedelta(days=3650))
    card = await (await panel.get(LEAD_URL, headers=AUTH)).json()
    assert card["bot"]["state"] == "paused" and card["bot"]["paused_until"] is None
    assert card["bot"]["label"] == "Bot pausado: a conversa está com o time"


async def test_the_token_never_reaches_the_logs(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(logging_for(panel_settings(tmp_path, log_format="json")), clock=clock, role="web")
    client = await aiohttp_client(app)
    await seed_hot_lead(client.app[STORE])
    with capture_logs() as captured:
        await client.get(f"/chatwoot/panel?token={PANEL_TOKEN}")
        await client.get(LEAD_URL, headers=AUTH)
        await client.post("/chatwoot/panel/api/lead/pause", json=REF, headers=AUTH)
        await client.get("/chatwoot/panel?token=cw-panel-guess")
    assert any(e["event"] == "chatwoot_panel_bot" for e in captured)
    assert PANEL_TOKEN not in repr(captured)
    # And through the real renderer (the scrubber and the JSON lines the process writes).
    await client.post("/chatwoot/panel/api/lead/resume", json=REF, headers=AUTH)
    out = capsys.readouterr()
    assert "chatwoot_panel_bot" in out.out + out.err
    assert PANEL_TOKEN not in out.out + out.err


async def test_a_lead_paused_from_the_panel_is_not_answered_until_resumed(
    bot: TestClient, openai_fake: FakeOpenAI, zapi_fake: FakeZapi
) -> None:
    await seed_hot_lead(bot.app[STORE])
    assert (await bot.post("/chatwoot/panel/api/lead/pause", json=REF, headers=AUTH)).status == 200

    response = await bot.post(
        "/webhooks/zapi", json=zapi_message(message_id="3EB0PANEL001", text="Alguém aí?")
    )
    assert response.status == 200
    await settled(bot)
    assert zapi_fake.texts_to(PHONE) == []  # a person has the conversation

    assert (await bot.post("/chatwoot/panel/api/lead/resume", json=REF, headers=AUTH)).status == 200
    openai_fake.then(reply="Oi, Maria! Sigo com você por aqui.")
    response = await bot.post("/webhooks/zapi", json=zapi_message(message_id="3EB0PANEL002", text="Oi?"))
    assert response.status == 200
    await settled(bot)
    # The bot answers again (and, the lead being hot, hands it to the team).
    assert zapi_fake.texts_to(PHONE)[0] == "Oi, Maria! Sigo com você por aqui."

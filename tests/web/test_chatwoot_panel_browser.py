"""The lead panel as a seller sees it: Chromium loads a stand-in for Chatwoot's
conversation screen that embeds the panel in an iframe and posts it the appContext
message Chatwoot sends (tests/fixtures/chatwoot/dashboard_app_frame_app_context.json),
from the configured Chatwoot origin, as Chatwoot's Frame.vue does on the iframe's load
and on `chatwoot-dashboard-app:fetch-info`.

Chromium's `--dump-dom` prints the top document only, never an iframe's. So the
stand-in copies the panel's visible text into its own page once the panel says it is
drawn (`data-ready`); that needs the stand-in on the panel's own origin. The screenshot
of that page is kept at test-artifacts/lead_panel.png. A second test puts the stand-in on
another origin (localhost vs 127.0.0.1), as in production, and checks the panel took
the message from there and asked the bot for this conversation's card.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, unused_port

from tests.helpers.browser import ARTIFACTS, chromium, require_chromium
from tests.helpers.clock import TestClock
from tests.web.chatwoot_panel_support import (
    CONVERSATION_ID,
    PANEL_TOKEN,
    QUOTE_SUMMARY,
    app_context,
    panel_settings,
    seed_hot_lead,
)
from web.app import create_app
from web.keys import STORE

HARNESS = "/test-harness/chatwoot"
# The harness is the test's own page (no CSP): Chatwoot's side of the contract.
HARNESS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Chatwoot</title>
<style>body{margin:0;font:14px sans-serif;background:#f4f6fb}
iframe{width:400px;height:1900px;border:0;background:#fff}#panel-text{display:none}</style></head>
<body><iframe id="app" src="%(src)s"></iframe><pre id="panel-text"></pre>
<script>
const context = %(context)s;
const frame = document.getElementById("app");
function send() { frame.contentWindow.postMessage(JSON.stringify(context), "*"); }
frame.addEventListener("load", send);
window.addEventListener("message", (e) => {
  if (e.data === "chatwoot-dashboard-app:fetch-info") send();
});
function copy() {
  let doc = null;
  try { doc = frame.contentDocument; } catch (e) { return; }
  if (doc && doc.body && doc.body.dataset.ready) {
    document.getElementById("panel-text").textContent = doc.body.innerText;
    document.body.dataset.panelState = doc.body.dataset.state;
    return;
  }
  setTimeout(copy, 50);
}
copy();
</script></body></html>"""


def _harness(panel_src: str) -> Callable[[web.Request], Any]:
    context = json.dumps(app_context(), ensure_ascii=False).replace("</", "<\\/")

    async def page(_request: web.Request) -> web.Response:
        body = HARNESS_PAGE % {"src": html.escape(panel_src, quote=True), "context": context}
        return web.Response(text=body, content_type="text/html")

    return page


async def _bot(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    clock: TestClock,
    *,
    chatwoot: str,
    panel_src: str,
    port: int,
) -> tuple[TestClient, list[tuple[str, int]]]:
    """The bot on a real port, with the harness beside it and a record of the panel's API calls."""
    app = create_app(panel_settings(tmp_path, chatwoot_frontend_url=chatwoot), clock=clock, role="web")
    app.router.add_get(HARNESS, _harness(panel_src))
    calls: list[tuple[str, int]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/chatwoot/panel/api/"):
            calls.append((request.path_qs, response.status))

    app.on_response_prepare.append(record)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    await seed_hot_lead(client.app[STORE])
    return client, calls


def _visible_text(dom: str) -> str:
    found = re.search(r'<pre id="panel-text">(.*?)</pre>', dom, flags=re.S)
    assert found is not None, dom[-3000:]
    return html.unescape(found.group(1))


async def test_the_panel_embedded_in_chatwoot_shows_the_lead_card(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    require_chromium()
    port = unused_port()
    origin = f"http://127.0.0.1:{port}"
    bot, calls = await _bot(
        aiohttp_client,
        tmp_path,
        clock,
        chatwoot=origin,
        panel_src=f"/chatwoot/panel?token={PANEL_TOKEN}",
        port=port,
    )
    dom = await chromium(f"{origin}{HARNESS}")
    assert 'data-panel-state="card"' in dom, dom[-3000:]
    text = _visible_text(dom)
    for seen in (
        "Maria Souza",
        "Quente",
        "82 pontos",
        "Pausar bot",
        "Retomar bot",
        "Bot ativo",
        QUOTE_SUMMARY,
    ):
        assert seen in text, (seen, text)
    assert "fonte: formulário do Meta Lead Ads" in text and "Abrir negócio #88123 no PipeRun" in text
    assert "qui 03/12 14:00" in text  # the meeting, on the company's clock
    assert calls and all(status == 200 for _, status in calls)
    # The same page as a picture, for a person to look at.
    shot = ARTIFACTS / "lead_panel.png"
    shot.unlink(missing_ok=True)
    await chromium(f"{origin}{HARNESS}", screenshot=shot, window=(420, 1900))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"lead panel screenshot: {shot}")


async def test_the_panel_framed_by_another_origin_asks_for_the_conversations_card(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    require_chromium()
    port = unused_port()
    # Chatwoot at http://localhost:<port>, the bot at http://127.0.0.1:<port>: two origins.
    bot, calls = await _bot(
        aiohttp_client,
        tmp_path,
        clock,
        chatwoot=f"http://localhost:{port}",
        panel_src=f"http://127.0.0.1:{port}/chatwoot/panel?token={PANEL_TOKEN}",
        port=port,
    )
    dom = await chromium(f"http://localhost:{port}{HARNESS}")
    assert '<pre id="panel-text"></pre>' in dom  # another origin: its DOM is not ours to read
    assert (f"/chatwoot/panel/api/lead?conversation_id={CONVERSATION_ID}&contact_id=1042", 200) in calls, (
        calls
    )


async def test_the_panel_opened_outside_chatwoot_waits_for_a_conversation(
    aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock
) -> None:
    require_chromium()
    port = unused_port()
    origin = f"http://127.0.0.1:{port}"
    bot, calls = await _bot(
        aiohttp_client, tmp_path, clock, chatwoot=origin, panel_src="about:blank", port=port
    )
    dom = await chromium(f"{origin}/chatwoot/panel?token={PANEL_TOKEN}")
    assert "Abra uma conversa no Chatwoot para ver o lead." in dom
    assert "data-ready" not in dom and calls == []


def test_without_chromium_the_browser_tests_skip_here_and_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.helpers.browser.shutil.which", lambda _name: None)
    monkeypatch.delenv("SDR_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        require_chromium()
    monkeypatch.setenv("SDR_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="Chromium is not installed"):
        require_chromium()

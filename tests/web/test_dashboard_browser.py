"""The sales dashboard as the manager sees it on a phone: Debian's Chromium
(tests/helpers/browser.py) loads the page with the known dataset (tests/web/dashboard_support.py)
and the screenshot is kept at test-artifacts/dashboard.png.

`--dump-dom` gives markup, not what is visible; so a stand-in page on the bot's origin
(the test's own, no CSP) frames the dashboard 390 px wide and copies out what the
browser drew: the frame's `innerText` (only what CSS shows), whether the stylesheet
applied, how many chart images decoded, and whether the page fits the phone's width.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, unused_port

from tests.helpers.browser import ARTIFACTS, chromium, require_chromium
from tests.helpers.clock import TestClock
from tests.web.dashboard_support import DASHBOARD_TOKEN, KNOWN, LATER, dashboard_settings, seed_known
from web.app import create_app
from web.keys import STORE

HARNESS = "/test-harness/dashboard"
PAGE = f"/dashboard?token={DASHBOARD_TOKEN}&weeks={KNOWN['weeks']}&until={KNOWN['until']}"
HARNESS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>phone</title>
<style>body{margin:0}iframe{width:390px;height:2000px;border:0}#seen{display:none}</style></head>
<body><iframe id="page" src="%(src)s"></iframe><pre id="seen"></pre>
<script>
const frame = document.getElementById("page");
function copy() {
  const doc = frame.contentDocument;
  const images = doc ? [...doc.images] : [];
  if (!doc || !doc.body || !doc.body.dataset.ready || images.some((i) => !i.complete)) {
    setTimeout(copy, 50);
    return;
  }
  const cards = doc.querySelector(".cards");
  document.getElementById("seen").textContent = doc.body.innerText;
  document.body.dataset.styled = getComputedStyle(cards).display;
  document.body.dataset.charts = images.filter((i) => i.naturalWidth > 0).length;
  document.body.dataset.fits = doc.documentElement.scrollWidth <= doc.documentElement.clientWidth;
}
frame.addEventListener("load", copy);
</script></body></html>"""


async def _bot(aiohttp_client: Callable[..., Any], tmp_path: Path, port: int) -> TestClient:
    app = create_app(dashboard_settings(tmp_path), clock=TestClock(LATER), role="web")

    async def harness(_request: web.Request) -> web.Response:
        return web.Response(
            text=HARNESS_PAGE % {"src": html.escape(PAGE, quote=True)}, content_type="text/html"
        )

    app.router.add_get(HARNESS, harness)
    client: TestClient = await aiohttp_client(app, server_kwargs={"port": port})
    seed_known(client.app[STORE])
    return client


async def test_the_dashboard_on_a_phone_shows_the_funnel_and_the_cost(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    require_chromium()
    port = unused_port()
    origin = f"http://127.0.0.1:{port}"
    await _bot(aiohttp_client, tmp_path, port)
    dom = await chromium(f"{origin}{HARNESS}")
    found = re.search(r'<pre id="seen">(.*?)</pre>', dom, flags=re.S)
    assert found is not None and found.group(1), dom[-3000:]
    seen = re.sub(r"\s+", " ", html.unescape(found.group(1)))
    for text in ("Painel de vendas", "Novos leads", "50", "Qualificados", "80,0%", "3 min 25 s", "R$ 0,0123"):
        assert text in seen, (text, seen[:2000])
    assert 'data-styled="grid"' in dom  # the stylesheet the bot serves was applied under the CSP
    assert 'data-charts="3"' in dom  # the three SVG charts decoded
    assert 'data-fits="true"' in dom  # nothing wider than the phone
    # The page itself, 390 px wide, for a person to look at.
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    await chromium(f"{origin}{PAGE}", screenshot=shot, window=(390, 2600))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"dashboard screenshot: {shot}")


async def test_the_browser_is_refused_without_the_token(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    require_chromium()
    port = unused_port()
    await _bot(aiohttp_client, tmp_path, port)
    dom = await chromium(f"http://127.0.0.1:{port}/dashboard")
    assert "wrong or missing dashboard token" in dom and "Novos leads" not in dom

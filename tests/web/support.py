"""Small helpers shared by the tests in tests/core (not collected: no test_ prefix)."""

from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp.test_utils import TestClient

from web.keys import STORE

LEAD_PHONE = "5544999999999"  # the `phone` of tests/fixtures/zapi/received_*.json
MASKED_LEAD = "5544***99"
WEBHOOK_SECRET = "whk-7Qp2Lx9Vb4Nc8Rt1zK"


def rows(client: TestClient, sql: str, *args: Any) -> list[tuple]:
    """Read the bot's SQLite file through a second connection, like an operator would."""
    path = client.app[STORE].path  # type: ignore[attr-defined]
    with sqlite3.connect(path) as db:
        return db.execute(sql, args).fetchall()


def inbound_count(client: TestClient) -> int:
    return rows(client, "SELECT COUNT(*) FROM inbound")[0][0]


async def error_body(response: Any) -> dict[str, Any]:
    """Every rejection must be JSON with an `error` key; return the decoded body."""
    assert response.content_type == "application/json", (response.status, await response.text())
    body = await response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    return body

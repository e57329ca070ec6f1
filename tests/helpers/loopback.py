"""Helpers for tests that run the bot against the loopback ProviderServer: settings
pointing every integration at it, provider signatures, raw HTTP for the bytes an HTTP
client library would refuse to send, and reading the bot's SQLite file like an operator."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from core.settings import Settings
from tests.conftest import fast_settings
from tests.helpers.provider_server import ProviderServer


def loopback_settings(tmp_path: Path, provider: ProviderServer, **overrides: Any) -> Settings:
    """fast_settings with OpenAI and Z-API on the loopback fake and short client timeouts,
    so "the provider hangs for 25 s" costs the test a fraction of a second."""
    values: dict[str, Any] = {
        "openai_base_url": f"{provider.url}/v1",
        "zapi_base_url": provider.url,
        "openai_timeout_s": 0.3,
        "http_timeout_s": 0.3,
    }
    values.update(overrides)
    return fast_settings(tmp_path, **values)


# --- provider signatures --------------------------------------------------------------


def meta_signature(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


def waha_signature(key: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
    return {"X-Webhook-Hmac": digest, "X-Webhook-Hmac-Algorithm": "sha512"}


def chatwoot_signature(secret: str, body: bytes, *, at: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Chatwoot-Signature": f"sha256={digest}", "X-Chatwoot-Timestamp": ts}


# --- raw HTTP -------------------------------------------------------------------------


async def raw_request(
    port: int,
    method: str,
    target: str,
    *,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    body: bytes = b"",
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request written byte for byte (any header bytes at all); returns the
    status and the response body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
        head.append(b"Content-Type: application/json")
        head.append(f"Content-Length: {len(body)}".encode())
        head += [name + b": " + value for name, value in headers]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=timeout)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", status_line)
    if match is None:
        raise AssertionError(f"not an HTTP response: {data[:200]!r}")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(match.group(1)), payload


# --- the bot's database, read from outside ----------------------------------------------


def db_rows(path: Path, sql: str, *args: Any) -> list[tuple]:
    with sqlite3.connect(path, timeout=10) as db:
        return db.execute(sql, args).fetchall()

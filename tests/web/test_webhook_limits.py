"""Every webhook route under load it should refuse or survive: a body over the limit is a
413 on every route and stores nothing, and a client trickling its request does not hold
up the others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.loopback import (
    loopback_settings,
)
from tests.helpers.provider_server import ProviderServer
from tests.web.test_fuzz_webhooks import (
    CHATWOOT_SECRET,
    CRM_SECRET,
    META_APP_SECRET,
    ROUTES,
    WAHA_HMAC_KEY,
    ZAPI_SECRET,
    Route,
)
from web.app import create_app
from web.keys import STORE

# --- oversized bodies -------------------------------------------------------------------

LIMIT = 64 * 1024


@pytest.fixture
async def small_limit(aiohttp_client: Callable[..., Any], tmp_path: Path, clock: TestClock) -> TestClient:
    provider = ProviderServer()
    await provider.start()
    client = await aiohttp_client(
        create_app(
            loopback_settings(
                tmp_path,
                provider,
                max_body_bytes=LIMIT,
                zapi_webhook_secret=ZAPI_SECRET,
                waha_url=f"{provider.url}/waha",
                waha_webhook_hmac_key=WAHA_HMAC_KEY,
                meta_app_secret=META_APP_SECRET,
                chatwoot_webhook_secret=CHATWOOT_SECRET,
                crm_webhook_secret=CRM_SECRET,
            ),
            clock=clock,
        )
    )
    yield client
    await client.close()
    await provider.stop()


def _padded(route: Route, size: int) -> bytes:
    """The route's first real payload, padded with an extra field to exactly `size` bytes."""
    base = dict(route.payloads[0])
    base["padding"] = ""
    overhead = len(json.dumps(base).encode())
    base["padding"] = "x" * (size - overhead)
    body = json.dumps(base).encode()
    assert len(body) == size
    return body


def _inbound(client: TestClient) -> int:
    return client.app[STORE].db.execute("SELECT COUNT(*) FROM inbound").fetchone()[0]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", list(ROUTES))
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_gets_413_on_every_route_and_is_not_stored(
    small_limit: TestClient, name: str, chunked: bool
) -> None:
    route = ROUTES[name]
    body = _padded(route, LIMIT + 1)
    query, headers = route.auth(body)
    before = _inbound(small_limit)
    if chunked:

        async def chunks() -> Any:
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        data: Any = chunks()
    else:
        data = body
    response = await small_limit.post(
        route.path, params=query, data=data, headers={"Content-Type": "application/json", **headers}
    )
    assert response.status == 413, await response.text()
    assert "error" in await response.json()
    assert _inbound(small_limit) == before


# --- slow clients ------------------------------------------------------------------------


async def _trickle(
    port: int, request: bytes, *, stalled: asyncio.Event, release: asyncio.Event, split_at: int = 0
) -> int:
    """Send `request` byte by byte (after the first `split_at` bytes at once) and stall
    before its last byte until `release`: a client mid-request for as long as the test
    needs, whatever the machine's speed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request[:split_at])
        await writer.drain()
        rest = request[split_at:]
        for index in range(len(rest) - 1):
            writer.write(rest[index : index + 1])
            await writer.drain()
            await asyncio.sleep(0)
        stalled.set()
        await release.wait()
        writer.write(rest[-1:])
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    return int(data.split(b" ", 2)[1])


def _zapi_request(message_id: str) -> tuple[bytes, int]:
    body = json.dumps(zapi_message(message_id=message_id, phone="5511912340000", text="Oi, devagar")).encode()
    head = (
        f"POST /webhooks/zapi?token={ZAPI_SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body, len(head)


async def test_slow_clients_do_not_hold_up_other_requests(small_limit: TestClient) -> None:
    """Ten clients trickle their body byte by byte and ten more their headers, and all of
    them stall mid-request: meanwhile every ordinary webhook is acknowledged, and the slow
    ones are still accepted when they finally finish. A server that served one request at
    a time would never answer the fast ones while the slow ones hang."""
    port = small_limit.port
    assert port is not None
    release = asyncio.Event()
    stalled: list[asyncio.Event] = []
    slow_bodies = []
    for n in range(10):
        request, head_len = _zapi_request(f"3EB0SLOWBODY{n:06d}")
        stalled.append(asyncio.Event())
        slow_bodies.append(
            asyncio.create_task(
                _trickle(port, request, stalled=stalled[-1], release=release, split_at=head_len)
            )
        )
    slow_heads = []  # these trickle the request line and headers too
    for n in range(10):
        request, _ = _zapi_request(f"3EB0SLOWHEAD{n:06d}")
        stalled.append(asyncio.Event())
        slow_heads.append(asyncio.create_task(_trickle(port, request, stalled=stalled[-1], release=release)))
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in stalled)), timeout=30)

    for n in range(15):
        response = await small_limit.post(
            "/webhooks/zapi",
            params={"token": ZAPI_SECRET},
            json=zapi_message(message_id=f"3EB0FAST{n:08d}", phone="5511955550000", text="Oi"),
        )
        assert response.status == 200
    assert not any(task.done() for task in (*slow_bodies, *slow_heads))

    release.set()
    assert await asyncio.gather(*slow_bodies, *slow_heads) == [200] * 20

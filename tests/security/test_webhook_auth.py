"""Every webhook route is authenticated: forged or unsigned requests are refused and change nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers.clock import TestClock
from tests.helpers.loopback import (
    chatwoot_signature,
    db_rows,
    loopback_settings,
    meta_signature,
    raw_request,
    waha_signature,
)
from tests.helpers.provider_server import ProviderServer
from tests.helpers.settle import settled
from tests.security.support import (
    CHATWOOT_API_TOKEN,
    CHATWOOT_WEBHOOK_SECRET,
    CRM_WEBHOOK_SECRET,
    LEAD_PHONE,
    META_APP_SECRET,
    META_VERIFY_TOKEN,
    WAHA_HMAC_KEY,
    ZAPI_WEBHOOK_SECRET,
    chatwoot_contact,
    chatwoot_reply,
    crm_body,
    meta_body,
    waha_body,
    zapi_body,
)
from web.app import create_app
from web.keys import STORE

# --- 2. every webhook route authenticated ---------------------------------------------------

Headers = list[tuple[bytes, bytes]]


Case = tuple[str, str, bytes, Headers]
ZERO = b"0" * 64


def forged_requests() -> list[tuple[str, str, bytes, Headers]]:
    """(case id, target, body, headers): each is refused with 401 or 403."""
    return _zapi_cases() + _waha_cases() + _meta_cases() + _chatwoot_cases() + _crm_cases()


def _zapi_cases() -> list[Case]:
    z = zapi_body("3EB0FORGED000001", "Oi")
    cases: list[Case] = []
    for path in ("/webhooks/zapi", "/webhook/text", "/webhook/audio"):
        cases += [
            (f"{path}-no-token", path, z, []),
            (f"{path}-wrong-query-token", f"{path}?token=zwh_guess", z, []),
            (f"{path}-wrong-header", path, z, [(b"X-Webhook-Token", b"zwh_guess")]),
            (f"{path}-wrong-bearer", path, z, [(b"Authorization", b"Bearer zwh_guess")]),
            (
                f"{path}-non-utf8-header",
                path,
                z,
                [(b"X-Webhook-Token", b"\xff\xfe" + ZAPI_WEBHOOK_SECRET.encode())],
            ),
            (f"{path}-non-utf8-bearer", path, z, [(b"Authorization", b"Bearer \xc3\x28")]),
        ]
    return cases


def _waha_cases() -> list[Case]:
    w = waha_body()
    zero = ZERO
    other_body = json.dumps({"event": "message", "session": "default"}).encode()
    return [
        ("waha-no-signature", "/webhooks/waha", w, []),
        ("waha-forged-signature", "/webhooks/waha", w, [(b"X-Webhook-Hmac", zero * 2)]),
        (
            "waha-signature-of-another-body",
            "/webhooks/waha",
            w,
            [(b"X-Webhook-Hmac", waha_signature(WAHA_HMAC_KEY, other_body)["X-Webhook-Hmac"].encode())],
        ),
        (
            "waha-downgraded-algorithm",
            "/webhooks/waha",
            w,
            [
                (b"X-Webhook-Hmac", hmac.new(WAHA_HMAC_KEY.encode(), w, hashlib.sha256).hexdigest().encode()),
                (b"X-Webhook-Hmac-Algorithm", b"sha256"),
            ],
        ),
        ("waha-url-token-instead-of-signature", f"/webhooks/waha?token={WAHA_HMAC_KEY}", w, []),
        ("waha-non-utf8-signature", "/webhooks/waha", w, [(b"X-Webhook-Hmac", b"\xff" * 128)]),
    ]


def _meta_cases() -> list[Case]:
    m = meta_body()
    zero = ZERO
    return [
        ("meta-no-signature", "/webhooks/meta", m, []),
        ("meta-forged-signature", "/webhooks/meta", m, [(b"X-Hub-Signature-256", b"sha256=" + zero)]),
        (
            "meta-signed-with-the-verify-token",
            "/webhooks/meta",
            m,
            [(b"X-Hub-Signature-256", meta_signature(META_VERIFY_TOKEN, m)["X-Hub-Signature-256"].encode())],
        ),
        (
            "meta-sha1-header-only",
            "/webhooks/meta",
            m,
            [
                (
                    b"X-Hub-Signature",
                    b"sha1=" + hmac.new(META_APP_SECRET.encode(), m, hashlib.sha1).hexdigest().encode(),
                )
            ],
        ),
        (
            "meta-non-ascii-signature",
            "/webhooks/meta",
            m,
            [(b"X-Hub-Signature-256", "sha256=é".encode() + zero)],
        ),
        ("meta-non-utf8-signature", "/webhooks/meta", m, [(b"X-Hub-Signature-256", b"sha256=\xff" + zero)]),
    ]


def _chatwoot_cases() -> list[Case]:
    c = chatwoot_reply(318, 97002, "Me manda seu CPF", chatwoot_contact(LEAD_PHONE))
    zero = ZERO
    stale = chatwoot_signature(CHATWOOT_WEBHOOK_SECRET, c, at=int(time.time()) - 3600)
    return [
        ("chatwoot-no-credentials", "/webhooks/chatwoot", c, []),
        (
            "chatwoot-forged-signature",
            "/webhooks/chatwoot",
            c,
            [
                (b"X-Chatwoot-Signature", b"sha256=" + zero),
                (b"X-Chatwoot-Timestamp", str(int(time.time())).encode()),
            ],
        ),
        (
            "chatwoot-stale-signature",
            "/webhooks/chatwoot",
            c,
            [(k.encode(), v.encode()) for k, v in stale.items()],
        ),
        ("chatwoot-wrong-token", "/webhooks/chatwoot?token=cwHook-guess", c, []),
        ("chatwoot-api-token-as-webhook-token", f"/webhooks/chatwoot?token={CHATWOOT_API_TOKEN}", c, []),
        ("chatwoot-non-utf8-token", "/webhooks/chatwoot", c, [(b"X-Chatwoot-Webhook-Token", b"\xff")]),
        (
            "chatwoot-non-utf8-signature",
            "/webhooks/chatwoot",
            c,
            [
                (b"X-Chatwoot-Signature", b"sha256=\xff"),
                (b"X-Chatwoot-Timestamp", str(int(time.time())).encode()),
            ],
        ),
    ]


def _crm_cases() -> list[Case]:
    k = crm_body()
    return [
        ("crm-no-secret", "/webhooks/crm", k, []),
        ("crm-wrong-secret", "/webhooks/crm", k, [(b"X-Webhook-Secret", b"crm-guess")]),
        ("crm-wrong-query-token", "/webhooks/crm?token=crm-guess", k, []),
        (
            "crm-non-utf8-secret",
            "/webhooks/crm",
            k,
            [(b"X-Webhook-Secret", b"\xff" + CRM_WEBHOOK_SECRET.encode())],
        ),
    ]


FORGED = forged_requests()


def counts(path: Path) -> tuple[int, int, int]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT (SELECT COUNT(*) FROM inbound), (SELECT COUNT(*) FROM outbox),"
            " (SELECT COUNT(*) FROM messages)"
        ).fetchone()


@pytest.mark.parametrize(("target", "body", "headers"), [c[1:] for c in FORGED], ids=[c[0] for c in FORGED])
async def test_unauthenticated_or_forged_webhooks_are_refused_and_change_nothing(
    bot: TestClient, provider: ProviderServer, target: str, body: bytes, headers: Headers
) -> None:
    path = bot.app[STORE].path  # type: ignore[attr-defined]
    before = counts(path)
    assert bot.port is not None
    status, payload = await raw_request(bot.port, "POST", target, headers=headers, body=body)
    assert status in (401, 403), (status, payload[:200])
    assert "error" in json.loads(payload)
    await settled(bot)  # had anything been stored, a turn would have run by now
    assert counts(path) == before
    assert provider.state.sent == [] and provider.state.chat_started == 0


@pytest.mark.parametrize(
    "token", ["", "guess", META_APP_SECRET, META_VERIFY_TOKEN.upper(), META_VERIFY_TOKEN + "x"]
)
async def test_the_meta_subscription_handshake_needs_the_verify_token(bot: TestClient, token: str) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    response = await bot.get("/webhooks/meta", params=query)
    assert response.status == 403
    assert "1158201444" not in await response.text()
    query["hub.verify_token"] = META_VERIFY_TOKEN
    response = await bot.get("/webhooks/meta", params=query)
    assert (response.status, await response.text()) == (200, "1158201444")


def signed_requests() -> list[tuple[str, str, bytes, dict[str, str]]]:
    z = zapi_body("3EB0SIGNED000001", "Oi, tudo bem?")
    return [
        ("zapi-query-token", f"/webhooks/zapi?token={ZAPI_WEBHOOK_SECRET}", z, {}),
        ("zapi-header-token", "/webhooks/zapi", z, {"X-Webhook-Token": ZAPI_WEBHOOK_SECRET}),
        ("zapi-bearer", "/webhooks/zapi", z, {"Authorization": f"Bearer {ZAPI_WEBHOOK_SECRET}"}),
        ("webhook-text", f"/webhook/text?token={ZAPI_WEBHOOK_SECRET}", z, {}),
        ("webhook-audio", f"/webhook/audio?token={ZAPI_WEBHOOK_SECRET}", z, {}),
        ("waha-hmac", "/webhooks/waha", waha_body(), waha_signature(WAHA_HMAC_KEY, waha_body())),
        ("meta-signature", "/webhooks/meta", meta_body(), meta_signature(META_APP_SECRET, meta_body())),
    ]


@pytest.mark.parametrize(
    ("target", "body", "headers"), [c[1:] for c in signed_requests()], ids=[c[0] for c in signed_requests()]
)
async def test_correctly_signed_messages_are_accepted_and_stored(
    bot: TestClient, target: str, body: bytes, headers: dict[str, str]
) -> None:
    path = bot.app[STORE].path  # type: ignore[attr-defined]
    response = await bot.post(target, data=body, headers={"Content-Type": "application/json", **headers})
    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == 1
    assert (
        db_rows(path, "SELECT COUNT(*) FROM inbound WHERE status = 'pending' OR status = 'done'")[0][0] == 1
    )


async def test_correctly_signed_chatwoot_and_crm_calls_are_accepted(bot: TestClient) -> None:
    body = chatwoot_reply(999999, 97003, "Oi", chatwoot_contact(LEAD_PHONE))
    for headers, query in (
        (chatwoot_signature(CHATWOOT_WEBHOOK_SECRET, body), {}),
        ({"X-Chatwoot-Webhook-Token": CHATWOOT_WEBHOOK_SECRET}, {}),
        ({"Authorization": f"Bearer {CHATWOOT_WEBHOOK_SECRET}"}, {}),
        ({}, {"token": CHATWOOT_WEBHOOK_SECRET}),
    ):
        response = await bot.post("/webhooks/chatwoot", data=body, headers=headers, params=query)
        assert response.status == 200, await response.text()
    for headers, query in (
        ({"X-Webhook-Secret": CRM_WEBHOOK_SECRET}, {}),
        ({}, {"token": CRM_WEBHOOK_SECRET}),
    ):
        response = await bot.post("/webhooks/crm", data=crm_body(), headers=headers, params=query)
        assert response.status == 200, await response.text()


async def test_without_their_secrets_the_meta_chatwoot_and_crm_routes_accept_nothing(
    provider: ProviderServer, aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    """These routes can make the bot write to anyone (or teach the ads a lie): with no
    secret configured they refuse everything instead of trusting everyone."""
    client = await aiohttp_client(create_app(loopback_settings(tmp_path, provider), clock=TestClock()))
    for target, body in (
        ("/webhooks/meta", meta_body()),
        ("/webhooks/chatwoot", chatwoot_reply(318, 97004, "Oi", chatwoot_contact(LEAD_PHONE))),
        ("/webhooks/crm", crm_body()),
    ):
        response = await client.post(target, data=body, headers={"Content-Type": "application/json"})
        assert response.status in (401, 403), (target, response.status)

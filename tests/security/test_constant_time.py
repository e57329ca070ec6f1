"""Credentials are compared in constant time (hmac.compare_digest), never with equality."""

from __future__ import annotations

import ast
import hashlib
import hmac
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from channels import meta_common, waha, zapi
from integrations import chatwoot
from tests.security.support import (
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
from web import crm_webhook

# --- 4. constant-time comparisons ----------------------------------------------------------


async def test_every_route_compares_credentials_with_hmac_compare_digest(
    bot: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behaviour: each route, given a wrong credential, reaches hmac.compare_digest with
    the expected value (so the comparison takes the same time however much matches)."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    def compared(expected: str) -> bool:
        want = expected.lower()
        for a, b in calls:
            for side in (a, b):
                value = side.decode("utf-8", "replace") if isinstance(side, bytes) else str(side)
                if want in value.lower():
                    return True
        return False

    m, w, c = meta_body(), waha_body(), chatwoot_reply(318, 97020, "Oi", chatwoot_contact(LEAD_PHONE))
    checks = [
        (
            "/webhooks/zapi",
            {"token": "zwh_guess"},
            {},
            zapi_body("3EB0CT0000000001", "Oi"),
            ZAPI_WEBHOOK_SECRET,
        ),
        (
            "/webhooks/waha",
            {},
            {"X-Webhook-Hmac": "00" * 64},
            w,
            hmac.new(WAHA_HMAC_KEY.encode(), w, hashlib.sha512).hexdigest(),
        ),
        (
            "/webhooks/meta",
            {},
            {"X-Hub-Signature-256": "sha256=" + "0" * 64},
            m,
            hmac.new(META_APP_SECRET.encode(), m, hashlib.sha256).hexdigest(),
        ),
        ("/webhooks/chatwoot", {"token": "cwHook-guess"}, {}, c, CHATWOOT_WEBHOOK_SECRET),
        ("/webhooks/crm", {}, {"X-Webhook-Secret": "crm-guess"}, crm_body(), CRM_WEBHOOK_SECRET),
    ]
    for target, query, headers, body, expected in checks:
        calls.clear()
        response = await bot.post(target, params=query, data=body, headers=headers)
        assert response.status in (401, 403), target
        assert compared(expected), f"{target} never compared its credential with hmac.compare_digest"
    calls.clear()
    query = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    assert (await bot.get("/webhooks/meta", params=query)).status == 403
    assert compared(META_VERIFY_TOKEN)


AUTH_FUNCTIONS = [
    zapi.ZapiChannel.authenticate,
    waha.WahaChannel._verify_hmac,
    waha.WahaChannel._verify_token,
    meta_common.verify_signature,
    meta_common.verify_subscription,
    chatwoot.verify_webhook,
    crm_webhook._authenticated,
]
SECRETISH = {
    "secret",
    "expected",
    "token",
    "candidate",
    "provided",
    "given",
    "signature",
    "digest",
    "key",
    "header",
}


def _resolve(node: ast.expr, scope: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, scope)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def _reaches_compare_digest(function: Callable[..., Any], depth: int = 2) -> bool:
    """Whether `function` calls hmac.compare_digest, itself or through a helper it calls."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _resolve(node.func, function.__globals__)
        if target is hmac.compare_digest:
            return True
        if depth and inspect.isfunction(target) and _reaches_compare_digest(target, depth - 1):
            return True
    return False


@pytest.mark.parametrize("function", AUTH_FUNCTIONS, ids=lambda f: f.__qualname__)
def test_credential_checks_use_compare_digest_and_never_equality(function: Callable[..., Any]) -> None:
    """Complement to the behaviour test: the code that checks credentials reaches
    hmac.compare_digest, and has no `==`, `!=` or `in` between values that hold secrets
    or what the caller sent."""
    assert _reaches_compare_digest(function)
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    offenders = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            continue
        names = {n.id.lower() for n in ast.walk(node) if isinstance(n, ast.Name)}
        if any(part in name for name in names for part in SECRETISH):
            offenders.append(ast.unparse(node))
    assert offenders == []

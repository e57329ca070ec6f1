"""Nothing secret or personal in the logs, whatever the conversation goes through."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from core.settings import Settings
from tests.helpers.clock import INSTANTS, NEXT_OPENING, TestClock
from tests.helpers.logs import logging_for
from tests.helpers.loopback import (
    chatwoot_signature,
    meta_signature,
    raw_request,
    waha_signature,
)
from tests.helpers.provider_server import Fault, ProviderServer
from tests.helpers.settle import settled
from tests.security.support import (
    CHATWOOT_WEBHOOK_SECRET,
    CRM_WEBHOOK_SECRET,
    LEAD_EMAIL,
    LEAD_PHONE,
    META_APP_SECRET,
    META_LEAD,
    META_VERIFY_TOKEN,
    WAHA_HMAC_KEY,
    WAHA_LEAD,
    ZAPI_WEBHOOK_SECRET,
    chatwoot_reply,
    crm_body,
    everything_configured,
    meta_body,
    phone_forms,
    sqlite_store,
    stored_contact,
    waha_body,
    zapi_body,
)
from web.app import create_app

# --- 1. nothing secret or personal in the logs ------------------------------------------------


def chat_reply(
    reply: str, lead: dict[str, Any] | None = None, tools: list[dict[str, Any]] | None = None
) -> dict:
    return {"reply": reply, "lead": lead or {}, "tool_calls": tools or [], "summary": "Lead em qualificação."}


async def knock_on_every_door(client: TestClient) -> None:
    port = client.port
    assert port is not None
    # Attackers knock on every door first.
    for path in ("/webhooks/zapi", "/webhooks/waha", "/webhooks/meta", "/webhooks/chatwoot", "/webhooks/crm"):
        await raw_request(
            port,
            "POST",
            f"{path}?token=guess",
            headers=[(b"Authorization", b"Bearer guess")],
            body=zapi_body("3EB0SEC0000000FF", "forged"),
        )
    await client.get(
        "/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    )


async def the_lead_introduces_herself(client: TestClient, state: Any) -> None:
    # The lead introduces herself; OpenAI is rate-limited once, Z-API fails once.
    state.chat_faults = deque([Fault(429, retry_after="1")])
    state.send_faults = deque([Fault(500)])
    state.chat_replies.append(
        chat_reply(
            f"Prazer, Maria! Anotei seu e-mail {LEAD_EMAIL} e o WhatsApp +55 (44) 99999-9999. "
            "Quantas unidades por dia vocês precisam?",
            {
                "name": "Maria Souza",
                "company": "Agro Souza",
                "city": "Maringá",
                "state": "PR",
                "email": LEAD_EMAIL,
                "phone": "+55 (44) 99999-9999",
            },
        )
    )
    text = (
        f"Oi! Sou a Maria Souza, da Agro Souza. Meu e-mail é {LEAD_EMAIL} "
        "e meu WhatsApp é +55 (44) 99999-9999, CPF 123.456.789-09"
    )
    response = await client.post(
        "/webhooks/zapi", params={"token": ZAPI_WEBHOOK_SECRET}, data=zapi_body("3EB0SEC000000001", text)
    )
    assert response.status == 200
    await settled(client, timeout=15)
    assert len(state.sent) == 1


async def she_turns_hot(client: TestClient, state: Any, instant: str) -> None:
    # She is hot and asks for a person: CRM deal, CAPI QualifiedLead, Chatwoot handoff.
    state.chat_replies.append(
        chat_reply(
            "Perfeito, Maria! Vou passar você agora para o nosso time comercial.",
            {
                "volume": "500 hambúrgueres/dia",
                "volume_per_day": 500,
                "urgency": "imediata",
                "decision_role": "decisor",
                "product_interest": "formadora de hambúrguer",
                "segment": "frigorífico",
            },
            [
                {
                    "tool": "handoff_to_human",
                    "reason": "lead_quente",
                    "summary": f"Maria ({LEAD_EMAIL}, +55 44 99999-9999) quer 500/dia, urgente.",
                }
            ],
        )
    )
    response = await client.post(
        "/webhooks/zapi",
        params={"token": ZAPI_WEBHOOK_SECRET},
        data=zapi_body("3EB0SEC000000002", "Preciso de 500 por dia, é urgente e eu decido a compra."),
    )
    assert response.status == 200
    await settled(client, timeout=15)
    # Out of hours the lead is also told when a person will answer.
    opening = NEXT_OPENING[instant]
    assert len(state.sent) == (2 if opening is None else 3)
    if opening is not None:
        assert opening in json.dumps(state.sent[-1], ensure_ascii=False)


async def an_agent_answers_and_the_crm_reports_a_win(client: TestClient) -> None:
    # An agent answers from Chatwoot; the CRM reports the deal won.
    conversation_id, contact = stored_contact(client)
    assert conversation_id is not None
    body = chatwoot_reply(conversation_id, 97001, "Oi Maria, aqui é o Carlos. Posso te ligar?", contact)
    response = await client.post(
        "/webhooks/chatwoot", data=body, headers=chatwoot_signature(CHATWOOT_WEBHOOK_SECRET, body)
    )
    assert response.status == 200
    response = await client.post(
        "/webhooks/crm", data=crm_body(), headers={"X-Webhook-Secret": CRM_WEBHOOK_SECRET}
    )
    assert response.status == 200


async def two_more_leads_whose_replies_are_refused(client: TestClient) -> None:
    # Two more leads on WAHA and the Cloud API, whose providers refuse the replies.
    body = waha_body()
    assert (
        await client.post("/webhooks/waha", data=body, headers=waha_signature(WAHA_HMAC_KEY, body))
    ).status == 200
    body = meta_body()
    assert (
        await client.post("/webhooks/meta", data=body, headers=meta_signature(META_APP_SECRET, body))
    ).status == 200
    await client.get(
        "/webhooks/meta",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": META_VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    await client.get("/api/health")
    await client.get("/metrics")
    await settled(client, timeout=15)


def check_the_output(output: str, state: Any, settings: Settings) -> None:
    """Everything went through the scrubbing JSON pipeline, the run took the paths that
    log, and no secret, phone or e-mail is in it, in any form."""
    lines = [line for line in output.splitlines() if line.strip()]
    not_json = [line[:200] for line in lines if not line.startswith("{")]
    assert not_json == [], "output that bypassed the log pipeline (and its scrubber)"
    events = {json.loads(line).get("event") for line in lines}
    # The run really went through the paths that log: it proves the scan saw something.
    for expected in (
        "webhook_rejected",
        "turn_committed",
        "outbox_retry",
        "agent_reply_relayed",
        "crm_event",
    ):
        assert expected in events, f"{expected} never logged: the scenario did not run as designed"
    assert state.unknown_requests, "no provider refused anything: the error paths were not exercised"

    leaks = []
    secrets = settings.secret_values()
    assert len(secrets) >= 14
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form in output:
                leaks.append(f"secret {secret[:6]}... as {form[:12]}...")
    for digits in (LEAD_PHONE, WAHA_LEAD, META_LEAD):
        for form in phone_forms(digits):
            if form in output:
                leaks.append(f"phone {form}")
    if LEAD_EMAIL.lower() in output.lower():
        context = output[
            max(0, output.lower().index(LEAD_EMAIL) - 300) : output.lower().index(LEAD_EMAIL) + 60
        ]
        leaks.append(f"e-mail, e.g. in: ...{context}")
    assert leaks == []


@pytest.mark.parametrize("instant", list(INSTANTS))
async def test_a_full_conversation_with_every_integration_leaves_no_secret_phone_or_email_in_the_logs(
    instant: str,
    provider: ProviderServer,
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    capsys.readouterr()
    settings = everything_configured(tmp_path, provider)
    client = await aiohttp_client(
        create_app(logging_for(settings), store_factory=sqlite_store, clock=TestClock(INSTANTS[instant]))
    )
    state = provider.state
    await knock_on_every_door(client)
    await the_lead_introduces_herself(client, state)
    await she_turns_hot(client, state, instant)
    await an_agent_answers_and_the_crm_reports_a_win(client)
    await two_more_leads_whose_replies_are_refused(client)
    await client.close()  # shutdown lines are part of the output too
    captured = capsys.readouterr()
    check_the_output(captured.err + captured.out, state, settings)

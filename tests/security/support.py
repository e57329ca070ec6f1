"""What the security tests share: every secret configured, the lead's identifiers, and
requests signed the way each provider signs them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from core.settings import Settings
from store.sqlite import SqliteStore
from tests.conftest import zapi_message
from tests.helpers.fakes import load_fixture
from tests.helpers.loopback import (
    db_rows,
    loopback_settings,
)
from tests.helpers.provider_server import ProviderServer
from web.keys import STORE

ZAPI_WEBHOOK_SECRET = "zwh_7Qp2Lx9Vb4Nc8Rt1zKd3"
WAHA_API_KEY = "waha-api-key-3f9a1c7e5b2d"
WAHA_HMAC_KEY = "waha-hmac-Xk29vLq7Zp41"
META_APP_SECRET = "6f1d2c3b4a5968778695a4b3c2d1e0f9"
META_VERIFY_TOKEN = "verify-me-8b7a6c5d4e"
WHATSAPP_TOKEN = "EAAGm0PX4ZCpsBAKZCwa1234567890abcdef"
INSTAGRAM_TOKEN = "IGQWRPcjdUZAHN3ig0987654321fedcba"
CHATWOOT_API_TOKEN = "cwApiTok3nR7q9W2e4T6"
CHATWOOT_WEBHOOK_SECRET = "cwHookS3cretM5n7B9v1"
SUPABASE_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXNlcnZpY2Utcm9sZQ"
)
DATABASE_URL = "postgresql://postgres:Pg-pass-w0rd-91@db.abcdefghijkl.supabase.co:5432/postgres"
PIPERUN_TOKEN = "piperun-token-a8b7c6d5e4f3"
META_CAPI_TOKEN = "EAABcapiToken5566778899aabbccdd"
CRM_WEBHOOK_SECRET = "crm-hook-s3cret-4e5f6a7b"

LEAD_PHONE = "5544999999999"  # the `phone` of tests/fixtures/zapi/received_*.json
LEAD_EMAIL = "maria.souza@agrosouza.com.br"
WAHA_LEAD = "5511999999999"  # tests/fixtures/waha/message_text.json
META_LEAD = "5511987654321"  # tests/fixtures/whatsapp_cloud/text.json
ATTACKER = "5521987650000"


def phone_forms(digits: str) -> list[str]:
    """How a Brazilian mobile number can be written in full (E.164, national, formatted)."""
    ddd, local = digits[2:4], digits[4:]
    return [
        digits,
        f"+{digits}",
        digits[2:],
        f"+55 ({ddd}) {local[:5]}-{local[5:]}",
        f"({ddd}) {local[:5]}-{local[5:]}",
        f"{ddd} {local[:5]}-{local[5:]}",
        f"{ddd}{local[:5]}-{local[5:]}",
    ]


def everything_configured(tmp_path: Path, provider: ProviderServer, **overrides: Any) -> Settings:
    url = provider.url
    values: dict[str, Any] = {
        "log_format": "json",
        "log_level": "DEBUG",
        "zapi_webhook_secret": ZAPI_WEBHOOK_SECRET,
        "waha_url": f"{url}/waha",
        "waha_api_key": WAHA_API_KEY,
        "waha_webhook_hmac_key": WAHA_HMAC_KEY,
        "meta_app_secret": META_APP_SECRET,
        "meta_verify_token": META_VERIFY_TOKEN,
        "meta_graph_url": url,
        "whatsapp_phone_number_id": "106540352242922",
        "whatsapp_access_token": WHATSAPP_TOKEN,
        "instagram_account_id": "17841400008460056",
        "instagram_access_token": INSTAGRAM_TOKEN,
        "chatwoot_api_url": url,
        "chatwoot_api_token": CHATWOOT_API_TOKEN,
        "chatwoot_account_id": "7",
        "chatwoot_inbox_id": "3",
        "chatwoot_webhook_secret": CHATWOOT_WEBHOOK_SECRET,
        "supabase_url": "https://abcdefghijkl.supabase.co",
        "supabase_service_role_key": SUPABASE_KEY,
        "database_url": DATABASE_URL,
        "piperun_api_url": f"{url}/piperun/v1",
        "piperun_api_token": PIPERUN_TOKEN,
        "piperun_pipeline_id": 12,
        "piperun_stage_id": 34,
        "meta_pixel_id": "123456789012345",
        "meta_access_token": META_CAPI_TOKEN,
        "crm_webhook_secret": CRM_WEBHOOK_SECRET,
        "http_timeout_s": 2.0,
        "openai_timeout_s": 2.0,
    }
    values.update(overrides)
    return loopback_settings(tmp_path, provider, **values)


def sqlite_store(settings: Settings) -> SqliteStore:
    """Supabase is configured (its key must be scrubbed too) but the test runs on SQLite."""
    return SqliteStore(settings.sqlite_path)


# --- requests as each provider signs them -------------------------------------------------


def zapi_body(message_id: str, text: str, phone: str = LEAD_PHONE) -> bytes:
    return json.dumps(zapi_message(message_id=message_id, phone=phone, text=text)).encode()


def waha_body() -> bytes:
    return json.dumps(load_fixture("waha/message_text.json")).encode()


def meta_body() -> bytes:
    return json.dumps(load_fixture("whatsapp_cloud/text.json")).encode()


def chatwoot_contact(
    phone: str, contact_id: int = 1042, source_id: str = "8f3c2a71-5d4e-4b8a-9c1f-2e7d6b5a4c39"
) -> dict[str, Any]:
    """Who a Chatwoot conversation is with, as its webhooks describe them."""
    return {"id": contact_id, "phone": phone, "source_id": source_id}


def stored_contact(client: TestClient) -> tuple[int, dict[str, Any]]:
    """The lead's Chatwoot conversation and contact, as the bot stored them."""
    path = client.app[STORE].path  # type: ignore[attr-defined]
    [(conversation, contact_id, source_id, phone)] = db_rows(
        path, "SELECT chatwoot_conversation_id, chatwoot_contact_id, chatwoot_source_id, phone FROM leads"
    )
    return conversation, chatwoot_contact(phone, contact_id, source_id)


def chatwoot_reply(conversation_id: int, message_id: int, content: str, contact: dict[str, Any]) -> bytes:
    """An agent's public reply (tests/fixtures/chatwoot/webhook_message_created_account.json)
    in `conversation_id`, whose contact is `contact` everywhere the payload names it."""
    payload = copy.deepcopy(load_fixture("chatwoot/webhook_message_created_account.json"))
    payload.update(id=message_id, content=content)
    conversation = payload["conversation"]
    conversation["id"] = conversation_id
    conversation["messages"][0].update(id=message_id, content=content, conversation_id=conversation_id)
    conversation["messages"][0]["conversation"]["contact_inbox"]["source_id"] = contact["source_id"]
    conversation["contact_inbox"].update(contact_id=contact["id"], source_id=contact["source_id"])
    conversation["meta"]["sender"].update(
        id=contact["id"], phone_number=f"+{contact['phone']}", identifier=f"whatsapp:{contact['phone']}"
    )
    return json.dumps(payload).encode()


ATTACKER_CONTACT = chatwoot_contact(ATTACKER, 4242, "0b1e4f2c-7a9d-4e3b-8c5f-1d2a3b4c5d6e")


def crm_body() -> bytes:
    return json.dumps(
        {"event": "deal.won", "phone": f"+{LEAD_PHONE}", "value": 15990.5, "currency": "BRL"}
    ).encode()

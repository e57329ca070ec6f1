"""`python main.py doctor`: one read-only call per configured integration, verdicts in pt-BR.

Provider answers come from tests/fixtures/doctor/ (each cites the documentation it copies)
and the existing per-provider error fixtures; aioresponses stands in for the providers,
a fake store for Supabase (its client speaks httpx, not aiohttp).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from aioresponses import CallbackResult, aioresponses
from yarl import URL

import main
from cli.doctor import CHECKS, run_doctor
from core.errors import StoreUnavailable
from core.settings import Settings
from runtime.sellers import Seller, Sellers
from tests.helpers.fake_calendar import service_account_json

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

OPENAI = "https://api.openai.com/v1"
OPENAI_KEY = "sk-test-doctor-7f3e9a1b2c4d5e6fb1a0"
ZAPI_ID = "3C01D0C7049F0E1B2"
ZAPI_TOKEN = "F0E1D2C3B4A5D0C70869A4B"
ZAPI_CLIENT = "Fa9c1d2e3f4b5a69d0c787766554"
ZAPI_STATUS = f"https://api.z-api.io/instances/{ZAPI_ID}/token/{ZAPI_TOKEN}/status"
WAHA = "http://waha.internal:3000"
WAHA_KEY = "waha-key-doctor-0c9b8a7f6e5d"
WAHA_SESSION = f"{WAHA}/api/sessions/default"
GRAPH = "https://graph.facebook.com/v21.0"
PHONE_ID = "106540352242922"
WA_TOKEN = "EAAGwa-doctor-token-1f2e3d4c5b6a"
WA_URL = f"{GRAPH}/{PHONE_ID}?fields=display_phone_number,verified_name"
IG_ID = "17841400000000001"
IG_TOKEN = "IGQV-doctor-token-9a8b7c6d5e4f"
IG_URL = f"{GRAPH}/{IG_ID}?fields=username"
PIXEL = "1234567890123456"
CAPI_TOKEN = "EAAGcapi-doctor-token-6d5e4f3a2b1c"
PIXEL_URL = f"{GRAPH}/{PIXEL}?fields=name"
PAGE_TOKEN = "EAAGpage-doctor-token-7a6b5c4d3e2f"
CHATWOOT = "https://chat.example.com"
CW_TOKEN = "cw-doctor-token-5e4d3c2b1a"
CW_ACCOUNT = f"{CHATWOOT}/api/v1/accounts/7"
PIPERUN = "https://api.pipe.run/v1"
PR_TOKEN = "pr-doctor-token-4f9a8b7c6d5e"
PIPELINE, STAGE = 26447, 141473
SUPABASE_URL = "https://abcdefgh.supabase.co"
SUPABASE_KEY = "sb-service-role-doctor-abcdef123456"
PUBLIC_URL = "https://bot.seleto.com.br"
CALENDAR = "https://www.googleapis.com/calendar/v3"
GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
SERVICE_ACCOUNT = service_account_json()
SELLERS = Sellers(
    (
        Seller(key="ana", name="Ana Ribeiro", email="ana@acme.com.br", piperun_user_id=1001),
        Seller(
            key="carlos",
            name="Carlos Menezes",
            email="carlos@acme.com.br",
            calendar_id="vendas-carlos@acme.com.br",
        ),
    )
)
CALENDAR_URL = re.compile(rf"{re.escape(CALENDAR)}/calendars/([^/?]+)$")
HOOK_SECRETS = {
    "zapi_webhook_secret": "zapi-hook-secret-doctor-11223344",
    "meta_app_secret": "meta-app-secret-doctor-55667788",
    "meta_verify_token": "meta-verify-doctor-99aabbcc",
    "chatwoot_webhook_secret": "cw-hook-secret-doctor-ddeeff00",
    "crm_webhook_secret": "crm-hook-secret-doctor-12121212",
    "waha_webhook_hmac_key": "waha-hmac-doctor-34343434",
}


def fixture(relative: str) -> Any:
    data = json.loads((FIXTURES / relative).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data.pop("_source", None)
        data.pop("_http_status", None)
    return data


def everything(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        _env_file=None,
        public_url=PUBLIC_URL,
        openai_api_key=OPENAI_KEY,
        zapi_instance_id=ZAPI_ID,
        zapi_instance_token=ZAPI_TOKEN,
        zapi_client_token=ZAPI_CLIENT,
        waha_url=WAHA,
        waha_api_key=WAHA_KEY,
        whatsapp_phone_number_id=PHONE_ID,
        whatsapp_access_token=WA_TOKEN,
        instagram_account_id=IG_ID,
        instagram_access_token=IG_TOKEN,
        chatwoot_api_url=CHATWOOT,
        chatwoot_api_token=CW_TOKEN,
        chatwoot_account_id="7",
        chatwoot_inbox_id="5",
        supabase_url=SUPABASE_URL,
        supabase_service_role_key=SUPABASE_KEY,
        piperun_api_token=PR_TOKEN,
        piperun_pipeline_id=PIPELINE,
        piperun_stage_id=STAGE,
        meta_pixel_id=PIXEL,
        meta_access_token=CAPI_TOKEN,
        meta_page_access_token=PAGE_TOKEN,
        meetings_enabled=True,
        google_service_account_json=SERVICE_ACCOUNT,
        **HOOK_SECRETS,
    )
    values.update(overrides)
    return Settings(**values)


def only(**values: Any) -> Settings:
    """Just these integrations, with their webhooks authenticated (a channel without its
    webhook secret is a PROBLEM of its own: see the test for it)."""
    return Settings(_env_file=None, **{**HOOK_SECRETS, **values})


def all_ok(mocked: aioresponses) -> None:
    mocked.get(f"{OPENAI}/models", payload=fixture("doctor/openai_models.json"))
    mocked.get(ZAPI_STATUS, payload=fixture("doctor/zapi_status_connected.json"))
    mocked.get(WAHA_SESSION, payload=fixture("doctor/waha_session_working.json"))
    mocked.get(WA_URL, payload=fixture("doctor/whatsapp_phone_number.json"))
    mocked.get(IG_URL, payload=fixture("doctor/instagram_user.json"))
    mocked.get(PIXEL_URL, payload=fixture("doctor/meta_pixel.json"))
    mocked.get(f"{GRAPH}/me?fields=id,name", payload=fixture("doctor/meta_page_me.json"))
    mocked.get(f"{CW_ACCOUNT}/inboxes/5", payload=fixture("doctor/chatwoot_inbox.json"))
    mocked.get(f"{PIPERUN}/pipelines/{PIPELINE}", payload=fixture("doctor/piperun_pipeline.json"))
    mocked.get(f"{PIPERUN}/stages/{STAGE}", payload=fixture("doctor/piperun_stage.json"))
    google_calendars(mocked)


def google_calendars(mocked: aioresponses, *, not_shared: frozenset[str] = frozenset()) -> None:
    """Google's token endpoint, and calendars.get for each calendar (404 for `not_shared`)."""
    mocked.post(GOOGLE_TOKEN, payload=fixture("google_calendar/token_response.json"), repeat=True)

    async def calendar(url: Any, **kwargs: Any) -> CallbackResult:
        calendar_id = str(url.path).rsplit("/", 1)[-1]
        if calendar_id in not_shared:
            return CallbackResult(status=404, payload=fixture("google_calendar/error_404_not_found.json"))
        body = fixture("google_calendar/calendar_get.json")
        return CallbackResult(payload={**body, "id": calendar_id, "summary": calendar_id})

    mocked.get(CALENDAR_URL, callback=calendar, repeat=True)


@pytest.fixture(autouse=True)
def sellers(monkeypatch: pytest.MonkeyPatch) -> Sellers:
    """The doctor reads prompts/sellers.toml; these tests use their own two sellers."""
    monkeypatch.setattr("cli.doctor.load_sellers", lambda: SELLERS)
    return SELLERS


class FakeSupabaseStore:
    """Stands in for SupabaseStore: records how it was built, answers `ping` as told."""

    instances: list[FakeSupabaseStore] = []
    ping_error: Exception | None = None

    def __init__(self, url: str, key: str, *, timeout_s: float, max_attempts: int) -> None:
        self.url, self.key, self.timeout_s, self.max_attempts = url, key, timeout_s, max_attempts
        self.opened = self.closed = False
        FakeSupabaseStore.instances.append(self)

    async def open(self) -> None:
        self.opened = True

    async def ping(self) -> None:
        if FakeSupabaseStore.ping_error is not None:
            raise FakeSupabaseStore.ping_error

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_supabase(monkeypatch: pytest.MonkeyPatch) -> type[FakeSupabaseStore]:
    import store.supabase as supabase_module

    FakeSupabaseStore.instances = []
    FakeSupabaseStore.ping_error = None
    monkeypatch.setattr(supabase_module, "SupabaseStore", FakeSupabaseStore)
    return FakeSupabaseStore


async def doctor(settings: Settings, setup: Callable[[aioresponses], None], **kwargs: Any) -> tuple[int, str]:
    out = io.StringIO()
    with aioresponses() as mocked:
        setup(mocked)
        async with aiohttp.ClientSession() as session:
            code = await run_doctor(settings, session, out, **kwargs)
    return code, out.getvalue()


def line_of(output: str, name: str) -> str:
    """The verdict line of one integration (the label column, then `name:`)."""
    found = [ln for ln in output.splitlines() if ln[10:].startswith(f"{name}:")]
    assert len(found) == 1, (name, output)
    return found[0]


def assert_no_secret(output: str, settings: Settings) -> None:
    for secret in settings.secret_values():
        assert secret not in output


def connector_error(host: str) -> aiohttp.ClientConnectorError:
    key = ConnectionKey(host, 3000, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


# --- everything fine --------------------------------------------------------------------


async def test_all_configured_and_ok_exits_0_with_an_ok_line_each(
    fake_supabase: type[FakeSupabaseStore],
) -> None:
    settings = everything()
    code, output = await doctor(settings, all_ok)

    assert code == 0
    for check in CHECKS:
        assert line_of(output, check.name).startswith("OK "), output
    assert "PROBLEM" not in output and "not configured" not in output
    assert "model gpt-4o available" in line_of(output, "OpenAI")
    assert "WhatsApp connected" in line_of(output, "Z-API")
    assert "WORKING" in line_of(output, "WAHA")
    assert "Seleto Industrial" in line_of(output, "WhatsApp Cloud")
    assert "@seletoindustrial" in line_of(output, "Instagram")
    assert "Page 'Seleto Industrial'" in line_of(output, "Meta Lead Ads")
    assert "'Bot SDR'" in line_of(output, "Chatwoot")
    assert "'Entradas'" in line_of(output, "PipeRun") and "'Lead quente (bot)'" in line_of(output, "PipeRun")
    assert "Seleto Industrial - Leads WhatsApp" in line_of(output, "Meta CAPI")
    assert "2 seller calendar(s) reachable (Ana Ribeiro, Carlos Menezes)" in line_of(
        output, "Google Calendar"
    )
    # Phone numbers are masked like everywhere else in the bot.
    assert "5511***34" in line_of(output, "WAHA") and "5511***34" in line_of(output, "WhatsApp Cloud")
    store = fake_supabase.instances[0]
    assert (store.url, store.key, store.max_attempts) == (SUPABASE_URL, SUPABASE_KEY, 1)
    assert store.opened and store.closed
    assert_no_secret(output, settings)


async def test_each_call_carries_the_providers_own_auth(fake_supabase: type[FakeSupabaseStore]) -> None:
    settings = everything()
    seen: dict[str, dict[str, str]] = {}

    def setup(mocked: aioresponses) -> None:
        all_ok(mocked)

    out = io.StringIO()
    with aioresponses() as mocked:
        setup(mocked)
        async with aiohttp.ClientSession() as session:
            assert await run_doctor(settings, session, out) == 0
        for (method, url), calls in mocked.requests.items():
            if str(url) == GOOGLE_TOKEN:  # minting the seller's token: the doctor's one POST
                assert method == "POST"
                continue
            assert method == "GET"
            seen[str(url)] = dict(calls[0].kwargs["headers"] or {})

    assert seen[f"{OPENAI}/models"]["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen[ZAPI_STATUS]["Client-Token"] == ZAPI_CLIENT
    assert seen[WAHA_SESSION]["X-Api-Key"] == WAHA_KEY
    assert seen[WA_URL]["Authorization"] == f"Bearer {WA_TOKEN}"
    assert seen[IG_URL]["Authorization"] == f"Bearer {IG_TOKEN}"
    assert seen[PIXEL_URL]["Authorization"] == f"Bearer {CAPI_TOKEN}"
    assert seen[f"{CW_ACCOUNT}/inboxes/5"]["api_access_token"] == CW_TOKEN
    assert seen[f"{PIPERUN}/pipelines/{PIPELINE}"]["token"] == PR_TOKEN
    assert seen[f"{PIPERUN}/stages/{STAGE}"]["token"] == PR_TOKEN
    bearer = f"Bearer {fixture('google_calendar/token_response.json')['access_token']}"
    assert seen[f"{CALENDAR}/calendars/ana@acme.com.br"]["Authorization"] == bearer
    assert seen[f"{CALENDAR}/calendars/vendas-carlos@acme.com.br"]["Authorization"] == bearer


async def test_checks_run_at_the_same_time() -> None:
    settings = only(
        openai_api_key=OPENAI_KEY,
        zapi_instance_id=ZAPI_ID,
        zapi_instance_token=ZAPI_TOKEN,
        waha_url=WAHA,
    )
    in_flight = peak = 0

    def slow(body: Any) -> Callable[..., Any]:
        async def callback(url: Any, **kwargs: Any) -> CallbackResult:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1
            return CallbackResult(payload=body)

        return callback

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{OPENAI}/models", callback=slow(fixture("doctor/openai_models.json")))
        mocked.get(ZAPI_STATUS, callback=slow(fixture("doctor/zapi_status_connected.json")))
        mocked.get(WAHA_SESSION, callback=slow(fixture("doctor/waha_session_working.json")))

    code, _ = await doctor(settings, setup)
    assert code == 0
    assert peak == 3


# --- problems, in plain words -----------------------------------------------------------


async def test_bad_openai_key_is_token_invalido() -> None:
    settings = only(openai_api_key=OPENAI_KEY)

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{OPENAI}/models", status=401, payload=fixture("doctor/openai_error_401.json"))

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "OpenAI")
    assert line.startswith("PROBLEM ") and "invalid token" in line
    assert "OPENAI_API_KEY" in line and "What to do:" in line
    assert "sk-test-" not in output  # not even OpenAI's masked echo of the key
    assert "1 problem(s): OpenAI" in output


async def test_openai_model_not_available_to_the_key() -> None:
    settings = only(openai_api_key=OPENAI_KEY, openai_model="gpt-9-turbo")

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{OPENAI}/models", payload=fixture("doctor/openai_models.json"))

    code, output = await doctor(settings, setup)
    assert code == 1
    assert "gpt-9-turbo" in line_of(output, "OpenAI") and "OPENAI_MODEL" in line_of(output, "OpenAI")


async def test_zapi_disconnected_phone() -> None:
    settings = only(zapi_instance_id=ZAPI_ID, zapi_instance_token=ZAPI_TOKEN, zapi_client_token=ZAPI_CLIENT)

    def setup(mocked: aioresponses) -> None:
        mocked.get(ZAPI_STATUS, payload=fixture("doctor/zapi_status_disconnected.json"))

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "Z-API")
    assert line.startswith("PROBLEM ") and "disconnected" in line and "You are not connected." in line
    assert "QR code" in line
    assert_no_secret(output, settings)


async def test_zapi_connected_but_phone_offline_is_ok_with_a_warning() -> None:
    settings = only(zapi_instance_id=ZAPI_ID, zapi_instance_token=ZAPI_TOKEN)
    body = {**fixture("doctor/zapi_status_connected.json"), "smartphoneConnected": False}

    def setup(mocked: aioresponses) -> None:
        mocked.get(ZAPI_STATUS, payload=body)

    code, output = await doctor(settings, setup)
    assert code == 0
    assert "phone has no internet" in line_of(output, "Z-API")


@pytest.mark.parametrize(
    ("status", "body", "expected", "env"),
    [
        # The 403 body echoes the Client-Token sent (tests/channels/test_zapi.py, same shapes).
        (403, {"error": f"Client-Token {ZAPI_CLIENT} not allowed"}, "invalid token", "ZAPI_CLIENT_TOKEN"),
        (400, {"error": "your client-token is not configured"}, "invalid token", "ZAPI_CLIENT_TOKEN"),
        (
            404,
            {"error": f"Instance {ZAPI_ID} with token {ZAPI_TOKEN} not found"},
            "wrong instance ID or token",
            "ZAPI_INSTANCE_ID",
        ),
    ],
)
async def test_zapi_refusals_name_the_setting_and_never_echo_it(
    status: int, body: dict[str, str], expected: str, env: str
) -> None:
    settings = only(zapi_instance_id=ZAPI_ID, zapi_instance_token=ZAPI_TOKEN, zapi_client_token=ZAPI_CLIENT)

    def setup(mocked: aioresponses) -> None:
        mocked.get(ZAPI_STATUS, status=status, payload=body)

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "Z-API")
    assert expected in line and env in line
    assert ZAPI_CLIENT not in output and ZAPI_TOKEN not in output


async def test_chatwoot_unknown_account_is_a_wrong_account_id() -> None:
    settings = everything(
        openai_api_key=None, zapi_instance_id=None, waha_url=None, whatsapp_phone_number_id=None,
        instagram_account_id=None, supabase_url=None, piperun_api_token=None, meta_pixel_id=None,
    )  # fmt: skip

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{CW_ACCOUNT}/inboxes/5", status=404, payload=fixture("chatwoot/error_404.json"))
        mocked.get(f"{CW_ACCOUNT}/inboxes", status=404, payload=fixture("chatwoot/error_404.json"))

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "Chatwoot")
    assert line.startswith("PROBLEM ") and "wrong account ID" in line and "CHATWOOT_ACCOUNT_ID" in line


async def test_chatwoot_unknown_inbox_lists_the_api_inboxes_of_the_account() -> None:
    settings = only(
        chatwoot_api_url=CHATWOOT, chatwoot_api_token=CW_TOKEN, chatwoot_account_id="7", chatwoot_inbox_id="9"
    )

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{CW_ACCOUNT}/inboxes/9", status=404, payload=fixture("chatwoot/error_404.json"))
        mocked.get(f"{CW_ACCOUNT}/inboxes", payload=fixture("doctor/chatwoot_inboxes.json"))

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "Chatwoot")
    assert "wrong inbox ID" in line and "CHATWOOT_INBOX_ID" in line
    assert "5 (Bot SDR)" in line and "Site" not in line  # only API inboxes are suggested


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("chatwoot/error_401.json", "invalid token"),
        ("doctor/chatwoot_error_401_account.json", "wrong account ID"),
    ],
)
async def test_chatwoot_401_tells_a_bad_token_from_a_foreign_account(body: str, expected: str) -> None:
    settings = only(
        chatwoot_api_url=f"{CHATWOOT}/api/v1",
        chatwoot_api_token=CW_TOKEN,
        chatwoot_account_id="7",
        chatwoot_inbox_id="5",
    )

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{CW_ACCOUNT}/inboxes/5", status=401, payload=fixture(body))

    code, output = await doctor(settings, setup)
    assert code == 1
    assert expected in line_of(output, "Chatwoot")


async def test_chatwoot_without_inbox_id_suggests_one() -> None:
    settings = only(chatwoot_api_url=CHATWOOT, chatwoot_api_token=CW_TOKEN, chatwoot_account_id="7")

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{CW_ACCOUNT}/inboxes", payload=fixture("doctor/chatwoot_inboxes.json"))

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "Chatwoot")
    assert "CHATWOOT_INBOX_ID is missing" in line and "5 (Bot SDR)" in line


async def test_unreachable_url() -> None:
    settings = only(waha_url=WAHA, waha_api_key=WAHA_KEY)

    def setup(mocked: aioresponses) -> None:
        mocked.get(WAHA_SESSION, exception=connector_error("waha.internal"))

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "WAHA")
    assert line.startswith("PROBLEM ") and "URL unreachable" in line
    assert "waha.internal" in line and "WAHA_URL" in line


async def test_timeout() -> None:
    settings = only(openai_api_key=OPENAI_KEY, zapi_instance_id=ZAPI_ID, zapi_instance_token=ZAPI_TOKEN)

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{OPENAI}/models", exception=TimeoutError())
        mocked.get(ZAPI_STATUS, payload=fixture("doctor/zapi_status_connected.json"))

    code, output = await doctor(settings, setup, timeout_s=3)
    assert code == 1
    line = line_of(output, "OpenAI")
    assert line.startswith("PROBLEM ") and "timeout" in line and "3 s" in line
    assert line_of(output, "Z-API").startswith("OK")  # one slow provider does not hide the others


async def test_a_probe_that_never_answers_is_cut_by_the_deadline() -> None:
    settings = only(openai_api_key=OPENAI_KEY)

    async def hang(url: Any, **kwargs: Any) -> CallbackResult:
        await asyncio.sleep(30)
        return CallbackResult(payload={})

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{OPENAI}/models", callback=hang)

    code, output = await asyncio.wait_for(doctor(settings, setup, timeout_s=0.05), timeout=5)
    assert code == 1 and "timeout" in line_of(output, "OpenAI")


async def test_waha_waiting_for_the_qr_code() -> None:
    settings = only(waha_url=WAHA)

    def setup(mocked: aioresponses) -> None:
        mocked.get(WAHA_SESSION, payload=fixture("doctor/waha_session_scan_qr.json"))

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "WAHA")
    assert "SCAN_QR_CODE" in line and "QR code" in line


async def test_piperun_stage_not_in_the_pipeline() -> None:
    settings = only(piperun_api_token=PR_TOKEN, piperun_pipeline_id=PIPELINE, piperun_stage_id=STAGE)
    stage = fixture("doctor/piperun_stage.json")
    stage["data"][0]["pipeline_id"] = 30001

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{PIPERUN}/pipelines/{PIPELINE}", payload=fixture("doctor/piperun_pipeline.json"))
        mocked.get(f"{PIPERUN}/stages/{STAGE}", payload=stage)

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "PipeRun")
    assert line.startswith("PROBLEM ")
    assert f"stage {STAGE}" in line and "to pipeline 30001" in line and f"not to pipeline {PIPELINE}" in line
    assert "PIPERUN_STAGE_ID" in line


@pytest.mark.parametrize(
    ("pipeline_status", "stage_status", "expected"),
    [
        (401, 401, "invalid token"),
        (404, 200, "wrong pipeline ID"),
        (200, 404, "wrong stage ID"),
    ],
)
async def test_piperun_refusals(pipeline_status: int, stage_status: int, expected: str) -> None:
    settings = only(piperun_api_token=PR_TOKEN, piperun_pipeline_id=PIPELINE, piperun_stage_id=STAGE)
    bodies = {200: None, 401: fixture("piperun/error_401.json"), 404: fixture("piperun/error_404.json")}

    def setup(mocked: aioresponses) -> None:
        mocked.get(
            f"{PIPERUN}/pipelines/{PIPELINE}",
            status=pipeline_status,
            payload=bodies[pipeline_status] or fixture("doctor/piperun_pipeline.json"),
        )
        mocked.get(
            f"{PIPERUN}/stages/{STAGE}",
            status=stage_status,
            payload=bodies[stage_status] or fixture("doctor/piperun_stage.json"),
        )

    code, output = await doctor(settings, setup)
    assert code == 1
    assert expected in line_of(output, "PipeRun")
    assert PR_TOKEN not in output


async def test_meta_graph_errors_say_token_or_id() -> None:
    settings = only(
        whatsapp_phone_number_id=PHONE_ID,
        whatsapp_access_token=WA_TOKEN,
        meta_pixel_id=PIXEL,
        meta_access_token=CAPI_TOKEN,
        instagram_account_id=IG_ID,
        instagram_access_token=IG_TOKEN,
    )

    def setup(mocked: aioresponses) -> None:
        mocked.get(WA_URL, status=401, payload=fixture("whatsapp_cloud/error_190.json"))
        mocked.get(PIXEL_URL, status=400, payload=fixture("doctor/graph_error_100_33.json"))
        mocked.get(IG_URL, status=403, payload=fixture("meta_capi/error_200_permission.json"))

    code, output = await doctor(settings, setup)
    assert code == 1
    wa, capi, ig = (line_of(output, n) for n in ("WhatsApp Cloud", "Meta CAPI", "Instagram"))
    assert "invalid token" in wa and "WHATSAPP_ACCESS_TOKEN" in wa
    assert "pixel (dataset) ID" in capi and "wrong" in capi and "META_PIXEL_ID" in capi
    assert "lacks permission" in ig and "instagram_manage_messages" in ig
    assert "3 problem(s)" in output


async def test_unexpected_answer_is_quoted_short_and_scrubbed() -> None:
    settings = only(openai_api_key=OPENAI_KEY)
    body = {"error": {"message": f"gateway said {OPENAI_KEY} is weird and phone 5511987654321 " + "x" * 500}}

    def setup(mocked: aioresponses) -> None:
        mocked.get(f"{OPENAI}/models", status=418, payload=body)

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, "OpenAI")
    assert "unexpected answer (HTTP 418" in line
    assert OPENAI_KEY not in output and "5511987654321" not in output
    assert "x" * 200 not in line


# --- Supabase -----------------------------------------------------------------------------


async def test_supabase_refused_key(fake_supabase: type[FakeSupabaseStore]) -> None:
    fake_supabase.ping_error = StoreUnavailable(
        "supabase select inbound unavailable: the service role key was refused (HTTP 401)"
    )
    settings = only(supabase_url=SUPABASE_URL, supabase_service_role_key=SUPABASE_KEY)
    code, output = await doctor(settings, lambda mocked: None)
    assert code == 1
    line = line_of(output, "Supabase")
    assert "invalid token" in line and "SUPABASE_SERVICE_ROLE_KEY" in line
    assert fake_supabase.instances[0].closed


async def test_supabase_module_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "store.supabase", None)  # import now fails
    settings = only(supabase_url=SUPABASE_URL, supabase_service_role_key=SUPABASE_KEY)
    code, output = await doctor(settings, lambda mocked: None)
    assert code == 1
    assert "has no Supabase module" in line_of(output, "Supabase")


# --- not configured, webhook URLs -----------------------------------------------------------


async def test_not_configured_integrations_list_the_env_vars_to_set() -> None:
    settings = only(whatsapp_phone_number_id=PHONE_ID)  # half of WhatsApp Cloud
    code, output = await doctor(settings, lambda mocked: None)

    assert code == 0  # nothing configured, nothing wrong
    for check in CHECKS:
        assert "not configured" in line_of(output, check.name)
    assert "set OPENAI_API_KEY" in line_of(output, "OpenAI")
    assert "ZAPI_INSTANCE_ID, ZAPI_INSTANCE_TOKEN" in line_of(output, "Z-API")
    assert "CHATWOOT_API_URL, CHATWOOT_API_TOKEN, CHATWOOT_ACCOUNT_ID" in line_of(output, "Chatwoot")
    assert "PIPERUN_API_TOKEN, PIPERUN_PIPELINE_ID, PIPERUN_STAGE_ID" in line_of(output, "PipeRun")
    assert "SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY" in line_of(output, "Supabase")
    assert "META_PIXEL_ID, META_ACCESS_TOKEN" in line_of(output, "Meta CAPI")
    assert "META_PAGE_ACCESS_TOKEN" in line_of(output, "Meta Lead Ads")
    assert "MEETINGS_ENABLED, GOOGLE_SERVICE_ACCOUNT_JSON" in line_of(output, "Google Calendar")
    # Only what is still missing is asked for.
    cloud = line_of(output, "WhatsApp Cloud")
    assert "WHATSAPP_ACCESS_TOKEN" in cloud and "WHATSAPP_PHONE_NUMBER_ID" not in cloud


async def test_webhook_urls_are_built_from_public_url_and_name_secrets_without_values(
    fake_supabase: type[FakeSupabaseStore],
) -> None:
    settings = everything(public_url=PUBLIC_URL + "/")
    code, output = await doctor(settings, all_ok)
    assert code == 0
    webhooks = output.split("Addresses to paste into each provider:")[1]
    for path in (
        "/webhooks/zapi?token=<ZAPI_WEBHOOK_SECRET>",
        "/webhooks/waha",
        "/webhooks/meta",
        "/webhooks/chatwoot?token=<CHATWOOT_WEBHOOK_SECRET>",
        "/webhooks/crm?token=<CRM_WEBHOOK_SECRET>",
        "/api/health",
        "/metrics",
        "/dashboard?token=<",
        "/chatwoot/panel?token=<CHATWOOT_PANEL_TOKEN>",
    ):
        assert f"{PUBLIC_URL}{path}" in webhooks, path
    assert "META_VERIFY_TOKEN" in webhooks and "WAHA_WEBHOOK_HMAC_KEY" in webhooks
    assert "Warning" not in webhooks
    assert_no_secret(output, settings)
    for value in HOOK_SECRETS.values():
        assert value not in output


async def test_without_public_url_local_urls_come_with_a_warning() -> None:
    settings = Settings(_env_file=None, port=9090)
    _, output = await doctor(settings, lambda mocked: None)
    webhooks = output.split("Addresses to paste into each provider:")[1]
    assert "http://localhost:9090/webhooks/zapi" in webhooks
    assert "PUBLIC_URL" in webhooks and "HTTPS" in webhooks
    # No Z-API secret: the URL has no token and the operator is told the bot refuses it.
    assert "without ZAPI_WEBHOOK_SECRET the bot refuses everything" in webhooks


async def test_plain_http_public_url_is_flagged() -> None:
    settings = only(public_url="http://bot.seleto.com.br")
    _, output = await doctor(settings, lambda mocked: None)
    assert "http://bot.seleto.com.br/webhooks/meta" in output
    assert "is not HTTPS" in output


# --- the CLI ------------------------------------------------------------------------------


async def test_main_doctor_opens_a_session_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert await main._doctor(only()) == 0
    assert "not configured" in capsys.readouterr().out


def test_main_parses_the_doctor_subcommand(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    called: list[Settings] = []

    async def fake_doctor(settings: Settings) -> int:
        called.append(settings)
        return 1

    monkeypatch.setattr(main, "_doctor", fake_doctor)
    monkeypatch.setattr(main, "Settings", only)
    assert main.main(["doctor"]) == 1
    assert len(called) == 1


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, [], "OK"),
        (401, {"message": "Invalid API key"}, "invalid token"),
        # PostgREST's answer for a table that is not there (PGRST205, "schema cache").
        (
            404,
            {"code": "PGRST205", "message": "Could not find the table 'public.inbound' in the schema cache"},
            "migrate --apply",
        ),
    ],
)
async def test_supabase_real_store_against_a_local_postgrest(status: int, body: Any, expected: str) -> None:
    """The real SupabaseStore (httpx) against a loopback stand-in for PostgREST: the
    doctor's words follow what the store reports."""
    pytest.importorskip("supabase")
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    key = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.ZG9jdG9yLXRlc3Q"
    seen: list[tuple[str, str | None]] = []

    async def postgrest(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("apikey")))
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", postgrest)
    async with TestServer(app) as server:
        settings = only(supabase_url=str(server.make_url("")).rstrip("/"), supabase_service_role_key=key)
        out = io.StringIO()
        async with aiohttp.ClientSession() as session:
            code = await run_doctor(settings, session, out, timeout_s=2)
    line = line_of(out.getvalue(), "Supabase")
    assert (code == 0) is (status == 200)
    assert expected in line
    assert seen == [("/rest/v1/inbound", key)]  # one read, with the service role key
    assert key not in out.getvalue()


async def test_url_without_scheme_is_url_invalida() -> None:
    """Refused by aiohttp before any connection, so no provider stand-in is needed."""
    out = io.StringIO()
    async with aiohttp.ClientSession() as session:
        code = await run_doctor(only(waha_url="waha:3000"), session, out)
    assert code == 1
    line = line_of(out.getvalue(), "WAHA")
    assert "invalid URL" in line and "WAHA_URL" in line


@pytest.mark.parametrize(
    ("channel", "values", "setting"),
    [
        ("Z-API", {"zapi_instance_id": ZAPI_ID, "zapi_instance_token": ZAPI_TOKEN}, "ZAPI_WEBHOOK_SECRET"),
        (
            "WAHA",
            {"waha_url": WAHA, "waha_api_key": WAHA_KEY},
            "WAHA_WEBHOOK_HMAC_KEY or WAHA_WEBHOOK_SECRET",
        ),
    ],
)
async def test_a_channel_that_answers_but_whose_webhook_has_no_secret_is_a_problem(
    channel: str, values: dict[str, Any], setting: str
) -> None:
    """Its webhook refuses every request: the provider is fine, yet no lead gets in."""
    settings = Settings(_env_file=None, **values)

    def setup(mocked: aioresponses) -> None:
        mocked.get(ZAPI_STATUS, payload=fixture("doctor/zapi_status_connected.json"))
        mocked.get(f"{WAHA}/api/sessions/default", payload=fixture("doctor/waha_session_working.json"))

    code, output = await doctor(settings, setup)
    assert code == 1
    line = line_of(output, channel)
    assert line.startswith("PROBLEM ") and setting in line and "refuses everything" in line


async def test_a_pixel_id_that_is_not_digits_is_named_before_any_call() -> None:
    """The CAPI client refuses a pixel id that would land in the URL path as anything but
    digits; the doctor says which setting is wrong instead of an unexpected error."""
    settings = only(meta_pixel_id="pixel-da-loja", meta_access_token="EAAB-token")
    code, output = await doctor(settings, lambda mocked: None)
    assert code == 1
    assert "META_PIXEL_ID must be digits only" in line_of(output, "Meta CAPI")


# --- Google Calendar: every seller's calendar -------------------------------------------


def calendar_only(**overrides: Any) -> Settings:
    return only(meetings_enabled=True, google_service_account_json=SERVICE_ACCOUNT, **overrides)


async def test_a_seller_whose_calendar_is_not_shared_is_a_problem_naming_the_seller() -> None:
    settings = calendar_only()
    code, output = await doctor(
        settings, lambda mocked: google_calendars(mocked, not_shared=frozenset({"vendas-carlos@acme.com.br"}))
    )

    assert code == 1
    line = line_of(output, "Google Calendar")
    assert line.startswith("PROBLEM ")
    assert "seller Carlos Menezes (carlos)" in line
    assert "'vendas-carlos@acme.com.br' does not exist or is not shared" in line
    assert "Ana Ribeiro" not in line
    assert "1 problem(s): Google Calendar" in output
    assert_no_secret(output, settings)


async def test_every_seller_gets_a_token_of_their_own_and_a_calendar_read() -> None:
    settings = calendar_only()
    out = io.StringIO()
    with aioresponses() as mocked:
        google_calendars(mocked)
        async with aiohttp.ClientSession() as session:
            assert await run_doctor(settings, session, out) == 0
        token_calls = mocked.requests[("POST", URL(GOOGLE_TOKEN))]

    def subject(call: Any) -> str:
        claims = call.kwargs["data"]["assertion"].split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"])

    # The service account acts as each seller: the JWT names the seller's e-mail as `sub`.
    assert sorted(subject(call) for call in token_calls) == ["ana@acme.com.br", "carlos@acme.com.br"]
    assert line_of(out.getvalue(), "Google Calendar").startswith("OK ")


async def test_meetings_on_without_sellers_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cli.doctor.load_sellers", lambda: Sellers(()))
    code, output = await doctor(calendar_only(), lambda mocked: None)

    assert code == 1
    assert "names no seller" in line_of(output, "Google Calendar")


async def test_meetings_on_without_a_service_account_is_not_checked() -> None:
    code, output = await doctor(only(meetings_enabled=True), lambda mocked: None)

    assert code == 0
    line = line_of(output, "Google Calendar")
    assert "not configured" in line and "GOOGLE_SERVICE_ACCOUNT_JSON" in line
    assert "MEETINGS_ENABLED" not in line.split("set ", 1)[1].split(" (optional")[0]

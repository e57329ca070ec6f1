"""Meta Conversions API: hashing by Meta's published examples, deterministic event ids,
business-messaging fields, the exact request, and error mapping for the outbox.

Fixtures under tests/fixtures/meta_capi/ cite their source in `_source`; the hashing
vectors are copied verbatim from Meta's "Customer Information Parameters" table
(customer_information_examples.json).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs
from yarl import URL

from core.settings import Settings
from integrations.meta_capi import (
    BUSINESS_MESSAGING_EVENTS,
    CapiError,
    CapiEvent,
    CapiResult,
    CapiUserData,
    MetaCapiClient,
    MetaCapiConfig,
    build_event,
    capi_event_id,
    hash_user_data,
    messaging_channel_for,
    normalize_city,
    normalize_country,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_state,
    normalize_zip,
    sha256_hex,
    split_name,
    stage_enabled,
)
from web.configs.integrations import meta_capi_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "meta_capi"

GRAPH = "https://graph.facebook.com"
VERSION = "v21.0"
PIXEL = "1202835294532393"
TOKEN = "EAAGm0PX4ZCpsBO-capi-SECRET-token-7f3a9b2c1d"
EVENTS_URL = f"{GRAPH}/{VERSION}/{PIXEL}/events"

PHONE = "+55 (11) 98765-4321"
PHONE_DIGITS = "5511987654321"
EMAIL = "Maria.Souza@Agrosouza.com.br"
CONTACT_KEY = "whatsapp:5511987654321"
CTWA_CLID = "Aff-n8ZTODiE79d22KtAwQKj9e_mIEOOj27vDVwFjN80dp4_0N"
IGSID = "1254459154682919"
IG_ACCOUNT = "17841400008460056"
WABA = "102290129340398"
EVENT_TIME = datetime(2025, 6, 9, 12, 0, tzinfo=UTC)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

CTWA_REFERRAL = {
    "ctwa_clid": CTWA_CLID,
    "source_id": "120210000000000001",
    "source_url": "https://fb.me/3cr4Wqqkv",
    "source_type": "ad",
    "headline": "Plano Anual com 30% OFF",
}
# As channels/instagram.py stores a Click-to-Direct referral: no click id, the ad id.
IG_REFERRAL = {"source_id": "120210000000000001", "source_type": "ad", "headline": "Kit Verão com 30% OFF"}


def load(name: str) -> Any:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data.pop("_source", None)
    return data


def error_response(name: str) -> dict[str, Any]:
    body = load(name)
    status = body.pop("_http_status")
    return {"status": status, "payload": body}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def lead_event(stage: Any = "lead", **overrides: Any) -> CapiEvent:
    values: dict[str, Any] = {
        "contact_key": CONTACT_KEY,
        "channel": "whatsapp",
        "event_time": EVENT_TIME,
        "phone": PHONE,
        "email": EMAIL,
        "first_name": "Maria",
        "last_name": "Souza",
        "referral": CTWA_REFERRAL,
    }
    values.update(overrides)
    return build_event(stage, **values)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mock() -> Any:
    with aioresponses() as m:
        yield m


def make_client(session: aiohttp.ClientSession, **overrides: Any) -> MetaCapiClient:
    values: dict[str, Any] = {
        "graph_url": GRAPH,
        "version": VERSION,
        "pixel_id": PIXEL,
        "access_token": TOKEN,
        "test_event_code": None,
        "timeout_s": 30.0,
    }
    values.update(overrides)
    if isinstance(values["access_token"], str):
        values["access_token"] = SecretStr(values["access_token"])
    return MetaCapiClient(MetaCapiConfig(**values), session)


def only_call(mock: aioresponses) -> Any:
    calls = mock.requests.get(("POST", URL(EVENTS_URL)))
    assert calls, f"no POST {EVENTS_URL}; made: {list(mock.requests)}"
    assert len(calls) == 1
    return calls[0]


# --- hashing: Meta's published examples ----------------------------------------------

EXAMPLES = load("customer_information_examples.json")


@pytest.mark.parametrize("field", ["em", "ph", "fn", "db", "country"])
def test_published_digests_are_sha256_of_the_published_normal_forms(field: str) -> None:
    """The vectors themselves: lowercase hex SHA-256 of the UTF-8 normal form."""
    for example in EXAMPLES[field]:
        assert sha256_hex(example["normalized"]) == example["sha256"]


def test_email_example() -> None:
    # "Input: John_Smith@gmail.com / Normalized format: john_smith@gmail.com /
    #  Expected SHA256 output: 62a14e44...f62f"
    [example] = EXAMPLES["em"]
    assert normalize_email("John_Smith@gmail.com") == "john_smith@gmail.com"
    for raw in ("John_Smith@gmail.com", "  JOHN_SMITH@GMAIL.COM \n", "\tjohn_smith@gmail.com"):
        assert hash_user_data(email=raw)["em"] == [example["sha256"]]
    assert example["sha256"] == "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


def test_phone_example() -> None:
    # "Input: US phone number (650)555-1212 / Normalized format: 16505551212 /
    #  Expected SHA256 output: e323ec62...3176" - the 1 is the US country code.
    [example] = EXAMPLES["ph"]
    for raw in ("+1 (650) 555-1212", "+1 650-555-1212", "001 650 555 1212", "16505551212"):
        assert normalize_phone(raw) == ["16505551212"], raw
        assert hash_user_data(phone=raw)["ph"] == [example["sha256"]]
    assert example["sha256"] == "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"


def test_first_name_examples_including_utf8() -> None:
    # "Mary" -> "mary"; "정" -> UTF-8 "정"; "Valéry" -> "valéry" (accents are kept).
    for example in EXAMPLES["fn"]:
        assert normalize_name(example["input"]) == example["normalized"]
        assert hash_user_data(first_name=example["input"])["fn"] == example["sha256"]
        # "See First Name (fn) for examples": ln follows the same rules.
        assert hash_user_data(last_name=example["input"])["ln"] == example["sha256"]
    # A decomposed é (e + U+0301, as some keyboards and CRMs store it) hashes the same.
    assert hash_user_data(first_name="Vale\u0301ry")["fn"] == EXAMPLES["fn"][2]["sha256"]


def test_country_example() -> None:
    # "Input: United States / Normalized format: us / Expected SHA256 output: 79adb2a2...4621"
    [example] = EXAMPLES["country"]
    assert normalize_country("United States") == "us"
    assert hash_user_data(country="United States")["country"] == example["sha256"]
    assert hash_user_data(country="US")["country"] == example["sha256"]


def test_city_state_zip_published_normal_forms() -> None:
    # ct: "paris", "london", "newyork"; st: "az", "ca"; zp: U.S. 94035 (first 5 digits).
    assert [normalize_city(c) for c in ("Paris", "LONDON", "New York")] == EXAMPLES["ct_normalized_examples"]
    assert [normalize_state(s) for s in ("AZ", " ca ")] == EXAMPLES["st_normalized_examples"]
    assert normalize_zip("94035-1234", country="us") == EXAMPLES["zp_normalized_examples"]["us"]
    assert normalize_zip("M1 1AE", country="gb") == EXAMPLES["zp_normalized_examples"]["gb"]
    assert normalize_zip("75018", country="fr") == EXAMPLES["zp_normalized_examples"]["fr"]
    data = hash_user_data(city="New York", state="CA", zip_code="94035-1234", country="us")
    assert data["ct"] == sha("newyork") and data["st"] == sha("ca") and data["zp"] == sha("94035")


# --- Brazilian data -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "+55 (11) 98765-4321",
        "5511987654321",
        "11987654321",
        "(11) 98765-4321",
        "0055 11 98765 4321",
        "011 98765-4321",  # trunk prefix
        "0 21 11 98765-4321",  # long distance through carrier 21
        "whatsapp 11 9 8765 4321",
    ],
)
def test_brazilian_phones_get_the_country_code_once(raw: str) -> None:
    assert normalize_phone(raw) == [PHONE_DIGITS]


def test_brazilian_landline_and_nine_less_mobile() -> None:
    assert normalize_phone("(11) 3222-1234") == ["551132221234"]
    # WhatsApp ids of older Brazilian mobiles lack the ninth digit: hash the current
    # form first and keep the received one as a second candidate.
    assert normalize_phone("551187654321") == ["5511987654321", "551187654321"]
    assert hash_user_data(phone="551187654321")["ph"] == [sha("5511987654321"), sha("551187654321")]


@pytest.mark.parametrize("raw", ["", "   ", "abc", "123", "+", "0000", None])
def test_unusable_phones_are_dropped(raw: str | None) -> None:
    assert normalize_phone(raw) == []
    assert "ph" not in hash_user_data(phone=raw)


def test_brazilian_address_parts() -> None:
    assert normalize_city("São Paulo") == "sãopaulo"
    assert normalize_city("Ribeirão Preto - SP") == "ribeirãopreto" + "sp"
    assert normalize_state("SP") == "sp"
    assert normalize_state("São Paulo") == "sp"
    assert normalize_state("rio grande do sul") == "rs"
    assert normalize_state("Pará") == "pa"
    # The 5-digit rule is for U.S. ZIP codes only: a CEP keeps its 8 digits, no dash.
    assert normalize_zip("01310-100", country="br") == "01310100"
    assert normalize_zip(" 01310 100 ") == "01310100"
    assert normalize_country("Brasil") == "br"
    assert normalize_country("BR") == "br"


def test_country_is_derived_from_a_brazilian_phone() -> None:
    assert hash_user_data(phone=PHONE)["country"] == sha("br")
    assert "country" not in hash_user_data(phone="+1 (650) 555-1212")
    assert hash_user_data(phone="+1 (650) 555-1212", country="us")["country"] == sha("us")


def test_names_lose_punctuation_not_letters() -> None:
    assert normalize_name("  D'Ávila ") == "dávila"
    assert normalize_name("João-Pedro") == "joãopedro"
    assert normalize_name("Maria  Clara.") == "maria clara"
    assert split_name("Maria Aparecida da Silva") == ("Maria", "Silva")
    assert split_name("Cher") == ("Cher", None)
    assert split_name("  ") == (None, None)


def test_unknown_fields_are_omitted_never_hashed_empty() -> None:
    assert hash_user_data() == {}
    data = hash_user_data(
        phone="",
        email="not an email",
        first_name=" ",
        last_name="...",
        city="",
        state="-",
        zip_code=" ",
        country="Atlantis",
        external_id="  ",
    )
    assert data == {}
    event = lead_event(email=None, first_name=None, last_name=None, referral=None)
    body = json.dumps(event.payload())
    assert EMPTY_SHA256 not in body
    assert set(event.user_data.model_dump(exclude_none=True)) == {"ph", "country", "external_id"}


def test_external_id_is_the_hashed_contact_key() -> None:
    event = lead_event()
    assert event.user_data.external_id == [sha(CONTACT_KEY)]


def test_user_data_refuses_clear_text() -> None:
    with pytest.raises(ValidationError):
        CapiUserData(em=["maria@example.com"])
    with pytest.raises(ValidationError):
        CapiUserData(ph=[PHONE_DIGITS])
    with pytest.raises(ValidationError):
        CapiUserData(fn="maria")
    with pytest.raises(ValidationError):
        CapiUserData()


# --- event ids ------------------------------------------------------------------------


def test_event_id_is_stable_across_retries_and_restarts() -> None:
    first = lead_event(event_time=EVENT_TIME)
    # A rebuild after a restart: different clock, referral read again, same contact/stage.
    again = lead_event(event_time=datetime(2025, 6, 10, tzinfo=UTC), referral=dict(CTWA_REFERRAL))
    assert first.event_id == again.event_id == capi_event_id(CONTACT_KEY, "lead")
    # Pinned: changing the recipe would make Meta count every lead twice after a deploy.
    expected = "sdr-" + sha("\x1f".join(("meta-capi", "v1", CONTACT_KEY, "lead", "")))[:40]
    assert first.event_id == expected


def test_event_id_differs_across_stages_contacts_and_occurrences() -> None:
    stages = ["lead", "qualified", "scheduled", "won", "lost"]
    ids = {capi_event_id(CONTACT_KEY, s) for s in stages}  # type: ignore[arg-type]
    assert len(ids) == len(stages)
    assert capi_event_id(CONTACT_KEY, "lead") != capi_event_id("whatsapp:5511900000000", "lead")
    assert capi_event_id(CONTACT_KEY, "won", "deal-1") != capi_event_id(CONTACT_KEY, "won", "deal-2")
    assert capi_event_id(CONTACT_KEY, "won", "deal-1") == capi_event_id(CONTACT_KEY, "won", "deal-1")


def test_event_id_carries_no_personal_data() -> None:
    event_id = capi_event_id(CONTACT_KEY, "lead")
    assert PHONE_DIGITS not in event_id and "whatsapp" not in event_id
    with pytest.raises(ValueError):
        capi_event_id("  ", "lead")


# --- event names and action sources ----------------------------------------------------


def test_whatsapp_ad_lead_is_business_messaging_with_ctwa_clid() -> None:
    event = lead_event("lead")
    payload = event.payload()
    assert payload["action_source"] == "business_messaging"
    assert payload["messaging_channel"] == "whatsapp"
    # Business messaging spells the lead event LeadSubmitted (onboarding guide FAQ).
    assert payload["event_name"] == "LeadSubmitted"
    assert payload["user_data"]["ctwa_clid"] == CTWA_CLID  # "Do not hash"
    assert payload["event_time"] == int(EVENT_TIME.timestamp())
    # The same shape as Meta's automatic-events LeadSubmitted example.
    example = load("bm_whatsapp_lead_submitted_example.json")["data"][0]
    assert set(example) <= set(payload)
    assert {k: payload[k] for k in ("action_source", "messaging_channel", "event_name")} == {
        k: example[k] for k in ("action_source", "messaging_channel", "event_name")
    }


def test_whatsapp_purchase_matches_metas_business_messaging_example() -> None:
    event = lead_event("won", value=1500, currency="brl", whatsapp_business_account_id=WABA)
    payload = event.payload()
    example = load("bm_whatsapp_purchase_example.json")["data"][0]
    assert set(payload) == set(example) | {"event_id"}
    assert set(example["user_data"]) <= set(payload["user_data"])
    assert payload["user_data"]["whatsapp_business_account_id"] == WABA
    assert payload["custom_data"] == {"value": 1500.0, "currency": "BRL"}
    assert payload["event_name"] == "Purchase"


def test_whatsapp_without_ctwa_clid_is_system_generated() -> None:
    organic = lead_event("lead", referral=None)
    payload = organic.payload()
    assert payload["action_source"] == "system_generated"
    assert payload["event_name"] == "Lead"
    assert "messaging_channel" not in payload
    assert "ctwa_clid" not in payload["user_data"]
    # A referral without a click id (e.g. an unofficial API that lost it) is no ad click.
    no_clid = lead_event("lead", referral={k: v for k, v in CTWA_REFERRAL.items() if k != "ctwa_clid"})
    assert no_clid.action_source == "system_generated"
    blank = lead_event("lead", referral={**CTWA_REFERRAL, "ctwa_clid": "  "})
    assert blank.action_source == "system_generated"


@pytest.mark.parametrize("channel", ["whatsapp", "zapi", "waha", "whatsapp_cloud"])
def test_repo_channel_names_map_to_whatsapp(channel: str) -> None:
    assert messaging_channel_for(channel) == "whatsapp"
    assert lead_event("lead", channel=channel).messaging_channel == "whatsapp"


def test_unknown_channel_is_never_business_messaging() -> None:
    assert messaging_channel_for("cli") is None
    assert lead_event("lead", channel="cli").action_source == "system_generated"


def test_instagram_ad_lead_uses_ig_ids() -> None:
    event = build_event(
        "won",
        contact_key=f"instagram:{IGSID}",
        channel="instagram",
        event_time=EVENT_TIME,
        referral=IG_REFERRAL,
        page_scoped_user_id=IGSID,
        instagram_account_id=IG_ACCOUNT,
        value=123,
        currency="USD",
    )
    payload = event.payload()
    example = load("bm_instagram_purchase_example.json")["data"][0]
    assert set(payload) == set(example) | {"event_id"}
    assert payload["messaging_channel"] == "instagram"
    assert payload["action_source"] == "business_messaging"
    assert payload["user_data"]["ig_sid"] == IGSID
    assert payload["user_data"]["ig_account_id"] == IG_ACCOUNT
    assert set(example["user_data"]) <= set(payload["user_data"])
    assert "ctwa_clid" not in payload["user_data"]


def test_instagram_without_ad_or_igsid_is_system_generated() -> None:
    common: dict[str, Any] = {
        "contact_key": f"instagram:{IGSID}",
        "channel": "instagram",
        "event_time": EVENT_TIME,
    }
    organic = build_event("lead", **common, page_scoped_user_id=IGSID)
    no_igsid = build_event("lead", **common, referral=IG_REFERRAL)
    for event in (organic, no_igsid):
        assert event.action_source == "system_generated" and event.messaging_channel is None
        assert event.user_data.ig_sid is None and event.event_name == "Lead"


@pytest.mark.parametrize(
    ("stage", "qualified_event", "name", "source"),
    [
        ("qualified", "QualifiedLead", "QualifiedLead", "business_messaging"),
        # Not in Meta's business-messaging list: sent as a matched system event instead.
        ("qualified", "CompleteRegistration", "CompleteRegistration", "system_generated"),
        ("scheduled", "QualifiedLead", "Schedule", "system_generated"),
        ("lost", "QualifiedLead", "lead_lost", "system_generated"),
    ],
)
def test_stage_names_with_an_ad_click(stage: Any, qualified_event: Any, name: str, source: str) -> None:
    event = lead_event(stage, qualified_event=qualified_event)
    assert (event.event_name, event.action_source) == (name, source)
    if source == "system_generated":
        assert event.user_data.ctwa_clid is None and event.messaging_channel is None
        assert event.user_data.ph  # still matched on the hashed contact data
    else:
        assert event.event_name in BUSINESS_MESSAGING_EVENTS


@pytest.mark.parametrize(
    ("stage", "name"),
    [("lead", "Lead"), ("qualified", "QualifiedLead"), ("scheduled", "Schedule"), ("lost", "lead_lost")],
)
def test_stage_names_without_an_ad(stage: Any, name: str) -> None:
    event = lead_event(stage, referral=None)
    assert event.event_name == name and event.action_source == "system_generated"
    assert event.custom_data is None


def test_custom_event_name_fits_metas_limit() -> None:
    # "Custom event names must be strings, and cannot exceed 50 characters in length."
    assert len(lead_event("lost").event_name) <= 50
    with pytest.raises(ValidationError):
        CapiEvent.model_validate({**lead_event("lost").payload(), "event_name": "x" * 51})


def test_purchase_needs_a_value_and_a_valid_currency() -> None:
    with pytest.raises(ValueError):
        lead_event("won")
    with pytest.raises(ValueError):
        lead_event("won", value=10, currency="reais")
    with pytest.raises(ValueError):
        lead_event("won", value=-1)
    assert lead_event("won", value=199.999).custom_data.value == 200.0  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        build_event("closed", contact_key=CONTACT_KEY, channel="whatsapp")  # type: ignore[arg-type]


def test_stage_toggles_follow_the_settings_names() -> None:
    enabled = Settings(_env_file=None).meta_capi_events
    assert all(stage_enabled(s, enabled) for s in ("lead", "qualified", "scheduled", "won", "lost"))
    assert not stage_enabled("lost", ["Lead", "Purchase"])
    assert stage_enabled("won", ["Lead", "Purchase"])


def test_event_json_round_trips_for_the_outbox() -> None:
    event = lead_event("won", value=1500)
    stored = json.loads(json.dumps(event.payload()))
    assert CapiEvent.model_validate(stored) == event


def test_naive_and_epoch_event_times() -> None:
    naive = lead_event(event_time=datetime(2025, 6, 9, 12, 0))
    assert naive.event_time == int(EVENT_TIME.timestamp())
    assert lead_event(event_time=1749470400.9).event_time == 1749470400


# --- the request ----------------------------------------------------------------------


async def test_send_posts_the_event_with_the_token_in_a_header(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.post(EVENTS_URL, payload=load("success.json"))
    event = lead_event("won", value=1500)
    result = await make_client(session).send(event)

    assert result == CapiResult(events_received=1, messages=[], fbtrace_id="AhZex4M7cOQtj-zvlyDsHFi")
    call = only_call(mock)
    assert call.kwargs["json"] == {"data": [event.payload()]}
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert call.kwargs["timeout"].total == 30.0
    assert TOKEN not in json.dumps(call.kwargs["json"]) and "access_token" not in call.kwargs["json"]


async def test_test_event_code_is_sent_only_when_set(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    event = lead_event()
    for code, expected in [("TEST12345", "TEST12345"), (None, None), ("", None), ("  ", None)]:
        mock.post(EVENTS_URL, payload=load("success.json"))
        await make_client(session, test_event_code=code).send(event)
        body = mock.requests[("POST", URL(EVENTS_URL))][-1].kwargs["json"]
        if expected is None:
            assert "test_event_code" not in body
        else:
            assert body["test_event_code"] == expected


async def test_send_accepts_the_persisted_payload(session: aiohttp.ClientSession, mock: aioresponses) -> None:
    mock.post(EVENTS_URL, payload=load("success.json"))
    event = lead_event()
    await make_client(session).send(json.loads(json.dumps(event.payload())))
    assert only_call(mock).kwargs["json"]["data"] == [event.payload()]


async def test_a_corrupt_payload_is_permanent_and_not_sent(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    bad = {**lead_event().payload(), "user_data": {"em": ["maria@example.com"]}}
    with pytest.raises(CapiError) as exc_info:
        await make_client(session).send(bad)
    assert exc_info.value.retryable is False
    assert "maria@example.com" not in str(exc_info.value)
    assert mock.requests == {}


async def test_built_from_settings(session: aiohttp.ClientSession, mock: aioresponses) -> None:
    settings = Settings(
        _env_file=None,
        meta_pixel_id=PIXEL,
        meta_access_token=TOKEN,
        meta_test_event_code="TEST999",
        meta_graph_version=VERSION,
    )
    client = MetaCapiClient(meta_capi_config(settings), session)
    assert client.url == EVENTS_URL
    mock.post(EVENTS_URL, payload=load("success.json"))
    await client.send(lead_event())
    call = only_call(mock)
    assert call.kwargs["json"]["test_event_code"] == "TEST999"
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
    with pytest.raises(ValueError):
        MetaCapiClient(meta_capi_config(Settings(_env_file=None)), session)


@pytest.mark.parametrize("pixel", ["", "abc", "123/../me", "123?x=1"])
def test_pixel_id_must_be_numeric(session: aiohttp.ClientSession, pixel: str) -> None:
    with pytest.raises(ValueError):
        make_client(session, pixel_id=pixel)


def test_token_is_required_and_may_be_a_secret(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError):
        make_client(session, access_token="  ")
    make_client(session, access_token=SecretStr(TOKEN))


# --- responses and errors -------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        {"status": 429, "payload": {"error": {"message": "Too many calls", "code": 613}}},
        {"status": 429, "body": ""},
        {"status": 500, "body": "<html><body>Internal Server Error</body></html>"},
        {"status": 502, "body": "Bad Gateway"},
        {"status": 503, "payload": {}},
        "error_2_transient.json",
        "error_4_rate_limit.json",  # a 400 whose code says "throttled": codes decide first
        {"status": 400, "payload": {"error": {"message": "(#17) User request limit reached", "code": 17}}},
        {"status": 400, "payload": {"error": {"message": "Temporary", "code": 80004}}},
        {"status": 400, "payload": {"error": {"message": "Service temporarily unavailable", "code": 1}}},
        {"status": 400, "payload": {"error": {"message": "x", "code": 999, "is_transient": True}}},
    ],
)
async def test_transient_failures_are_retryable(
    session: aiohttp.ClientSession, mock: aioresponses, response: Any
) -> None:
    kwargs = error_response(response) if isinstance(response, str) else response
    mock.post(EVENTS_URL, **kwargs)
    with pytest.raises(CapiError) as exc_info:
        await make_client(session).send(lead_event())
    err = exc_info.value
    assert err.retryable is True and err.auth_failed is False
    assert err.status == kwargs["status"]


@pytest.mark.parametrize("exception", [TimeoutError(), aiohttp.ClientConnectionError("reset")])
async def test_timeouts_and_transport_errors_are_retryable(
    session: aiohttp.ClientSession, mock: aioresponses, exception: Exception
) -> None:
    mock.post(EVENTS_URL, exception=exception)
    with pytest.raises(CapiError) as exc_info:
        await make_client(session).send(lead_event())
    err = exc_info.value
    assert err.retryable is True and err.status is None
    assert err.__suppress_context__ is True


async def test_invalid_parameter_is_permanent(session: aiohttp.ClientSession, mock: aioresponses) -> None:
    mock.post(EVENTS_URL, **error_response("error_100_event_time_too_old.json"))
    with pytest.raises(CapiError) as exc_info:
        await make_client(session).send(lead_event())
    err = exc_info.value
    assert err.retryable is False and err.auth_failed is False
    assert (err.status, err.code, err.subcode) == (400, 100, 2804003)
    assert err.fbtrace_id == "A6UyEgg_HdoiRX9duxcBOjb"
    assert "Event Timestamp Too Old" in str(err) and "A6UyEgg_HdoiRX9duxcBOjb" in str(err)


@pytest.mark.parametrize(
    ("fixture", "code"), [("error_190_token_expired.json", 190), ("error_200_permission.json", 200)]
)
async def test_bad_token_and_permissions_are_permanent(
    session: aiohttp.ClientSession, mock: aioresponses, fixture: str, code: int
) -> None:
    mock.post(EVENTS_URL, **error_response(fixture))
    with pytest.raises(CapiError) as exc_info:
        await make_client(session).send(lead_event())
    err = exc_info.value
    assert err.retryable is False and err.auth_failed is True and err.code == code


@pytest.mark.parametrize(
    "response",
    [
        {"status": 400, "body": "bad request"},
        {"status": 401, "body": ""},
        {"status": 404, "payload": {"error": {"message": "Unsupported post request", "code": 803}}},
        # A 2xx carrying Graph's error object is an error all the same.
        {"status": 200, "payload": {"error": {"message": "Invalid parameter", "code": 100}}},
    ],
)
async def test_other_client_errors_are_permanent(
    session: aiohttp.ClientSession, mock: aioresponses, response: dict[str, Any]
) -> None:
    mock.post(EVENTS_URL, **response)
    with pytest.raises(CapiError) as exc_info:
        await make_client(session).send(lead_event())
    assert exc_info.value.retryable is False


async def test_fbtrace_id_falls_back_to_the_response_header(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.post(EVENTS_URL, status=502, body="<html>", headers={"x-fb-trace-id": "HdrTrace123"})
    with pytest.raises(CapiError) as exc_info:
        await make_client(session).send(lead_event())
    assert exc_info.value.fbtrace_id == "HdrTrace123"


async def test_nothing_received_is_a_permanent_failure(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    mock.post(EVENTS_URL, payload={"events_received": 0, "messages": ["dropped"], "fbtrace_id": "T0"})
    with pytest.raises(CapiError) as exc_info:
        await make_client(session).send(lead_event())
    assert exc_info.value.retryable is False and exc_info.value.fbtrace_id == "T0"


@pytest.mark.parametrize("body", ["", "ok", "[]"])
async def test_unreadable_2xx_is_unconfirmed_success(
    session: aiohttp.ClientSession, mock: aioresponses, body: str
) -> None:
    # A resend could double count (Meta does not deduplicate business messaging events).
    mock.post(EVENTS_URL, body=body)
    result = await make_client(session).send(lead_event())
    assert result.events_received is None


async def test_response_messages_are_kept(session: aiohttp.ClientSession, mock: aioresponses) -> None:
    mock.post(
        EVENTS_URL, payload={"events_received": "1", "messages": ["note", {"k": 1}], "fbtrace_id": " T "}
    )
    result = await make_client(session).send(lead_event())
    assert result.events_received == 1 and result.fbtrace_id == "T"
    assert result.messages == ["note", '{"k": 1}']


# --- logs -----------------------------------------------------------------------------

SECRETS_AND_PII = [
    TOKEN,
    PHONE,
    PHONE_DIGITS,
    "98765",
    EMAIL,
    EMAIL.lower(),
    "Maria",
    "Souza",
    CTWA_CLID,
    CONTACT_KEY,
]


async def test_logs_carry_event_status_and_trace_but_no_token_or_personal_data(
    session: aiohttp.ClientSession, mock: aioresponses
) -> None:
    client = make_client(session, test_event_code="TEST12345")
    event = lead_event("won", value=1500)
    with capture_logs() as logs:
        mock.post(EVENTS_URL, payload=load("success.json"))
        await client.send(event)
        mock.post(EVENTS_URL, **error_response("error_190_token_expired.json"))
        with pytest.raises(CapiError) as auth_error:
            await client.send(event)
        mock.post(EVENTS_URL, **error_response("error_2_transient.json"))
        with pytest.raises(CapiError) as transient_error:
            await client.send(event)
        mock.post(EVENTS_URL, exception=TimeoutError())
        with pytest.raises(CapiError) as timeout_error:
            await client.send(event)

    [sent] = [e for e in logs if e["event"] == "meta_capi_sent"]
    assert sent["event_name"] == "Purchase" and sent["status"] == 200
    assert sent["fbtrace_id"] == "AhZex4M7cOQtj-zvlyDsHFi" and sent["events_received"] == 1
    assert sent["event_id"] == event.event_id and sent["test"] is True
    failed = [e for e in logs if e["event"] == "meta_capi_failed"]
    assert [(e["status"], e["retryable"]) for e in failed] == [(400, False), (500, True), (None, True)]
    assert failed[0]["log_level"] == "error" and failed[0]["code"] == 190
    assert failed[0]["fbtrace_id"] == "I5kLzX6cVbQ2mRt8YpW1aZe"

    dumped = repr(logs) + "".join(str(e.value) for e in (auth_error, transient_error, timeout_error))
    for needle in SECRETS_AND_PII:
        assert needle not in dumped, needle


async def test_a_token_echoed_by_meta_is_redacted(session: aiohttp.ClientSession, mock: aioresponses) -> None:
    mock.post(
        EVENTS_URL,
        status=400,
        payload={
            "error": {"message": f"Malformed access token {TOKEN}", "type": "OAuthException", "code": 190}
        },
    )
    with capture_logs() as logs, pytest.raises(CapiError) as exc_info:
        await make_client(session).send(lead_event())
    assert TOKEN not in str(exc_info.value) and "[REDACTED]" in str(exc_info.value)
    assert TOKEN not in repr(logs)

"""Each client's own doctor probe: the same read-only calls the doctor used to make with its
private copy of the URLs and headers, and the same pt-BR verdicts (tests/cli/test_doctor.py
asserts them through the doctor). Answers are the documented examples under
tests/fixtures/{doctor,chatwoot,piperun,meta_capi}/."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from core.probe import ProbeVerdict
from core.settings import Settings
from integrations.chatwoot import ChatwootClient
from integrations.meta_capi import MetaCapiClient
from integrations.piperun import PipeRunClient
from tests.integrations.probe_io import FakeProbeIO
from web.configs.integrations import chatwoot_config, meta_capi_config, piperun_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

CHATWOOT = "https://chat.example.com"
CW_ACCOUNT = f"{CHATWOOT}/api/v1/accounts/7"
CW_TOKEN = "cw-probe-token-0a1b2c3d"
PIPERUN = "https://api.pipe.run/v1"
PR_TOKEN = "pr-probe-token-4e5f6a7b"
# The documented stage example belongs to pipeline 26447.
PIPELINE, STAGE = 26447, 141473
GRAPH = "https://graph.facebook.com/v21.0"
PIXEL = "1234567890123456"
CAPI_TOKEN = "EAAGcapi-probe-token-8c9d0e1f"
PIXEL_URL = f"{GRAPH}/{PIXEL}?fields=name"


def fixture(relative: str) -> Any:
    data = json.loads((FIXTURES / relative).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data.pop("_source", None)
        data.pop("_http_status", None)
    return data


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


@pytest.fixture
def io(session: aiohttp.ClientSession) -> FakeProbeIO:
    return FakeProbeIO(session, secrets=(CW_TOKEN, PR_TOKEN, CAPI_TOKEN))


def chatwoot(session: aiohttp.ClientSession, **overrides: Any) -> ChatwootClient:
    values: dict[str, Any] = {
        "chatwoot_api_url": CHATWOOT,
        "chatwoot_api_token": CW_TOKEN,
        "chatwoot_account_id": "7",
        "chatwoot_inbox_id": "5",
    }
    values.update(overrides)
    return ChatwootClient(chatwoot_config(Settings(_env_file=None, **values)), session)


def piperun(session: aiohttp.ClientSession, **overrides: Any) -> PipeRunClient:
    values: dict[str, Any] = {
        "piperun_api_token": PR_TOKEN,
        "piperun_pipeline_id": PIPELINE,
        "piperun_stage_id": STAGE,
    }
    values.update(overrides)
    return PipeRunClient(piperun_config(Settings(_env_file=None, **values)), session)


def meta_capi(session: aiohttp.ClientSession) -> MetaCapiClient:
    settings = Settings(_env_file=None, meta_pixel_id=PIXEL, meta_access_token=CAPI_TOKEN)
    return MetaCapiClient(meta_capi_config(settings), session)


# --- Chatwoot --------------------------------------------------------------------------


async def test_chatwoot_probe_reads_the_inbox_with_the_clients_own_url_and_token(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{CW_ACCOUNT}/inboxes/5", payload=fixture("doctor/chatwoot_inbox.json"))
    # CHATWOOT_API_URL given with its /api/v1 suffix is the same account URL.
    result = await chatwoot(session, chatwoot_api_url=f"{CHATWOOT}/api/v1/").probe(io)

    assert result.ok and result.detail == "account 7, inbox 'Bot SDR' (5, API)"
    [(url, headers, _)] = io.calls
    assert url == f"{CW_ACCOUNT}/inboxes/5"
    assert headers == {"api_access_token": CW_TOKEN, "Accept": "application/json"}


async def test_chatwoot_unknown_account(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{CW_ACCOUNT}/inboxes/5", status=404, payload=fixture("chatwoot/error_404.json"))
    mocked.get(f"{CW_ACCOUNT}/inboxes", status=404, payload=fixture("chatwoot/error_404.json"))

    result = await chatwoot(session).probe(io)

    assert not result.ok
    assert result.detail == "wrong account ID: account 7 does not exist on this Chatwoot"
    assert "CHATWOOT_ACCOUNT_ID" in result.hint


async def test_chatwoot_unknown_inbox_lists_the_api_inboxes(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{CW_ACCOUNT}/inboxes/9", status=404, payload=fixture("chatwoot/error_404.json"))
    mocked.get(f"{CW_ACCOUNT}/inboxes", payload=fixture("doctor/chatwoot_inboxes.json"))

    result = await chatwoot(session, chatwoot_inbox_id="9").probe(io)

    assert result.detail == "wrong inbox ID: inbox 9 does not exist in account 7"
    assert result.hint.endswith("of this account: 5 (Bot SDR)")  # the web widget is not offered


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("chatwoot/error_401.json", "invalid token: Chatwoot refused the access token"),
        (
            "doctor/chatwoot_error_401_account.json",
            "wrong account ID: the token's user is not a member of account 7",
        ),
    ],
)
async def test_chatwoot_401_tells_a_bad_token_from_a_foreign_account(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO, body: str, expected: str
) -> None:
    mocked.get(f"{CW_ACCOUNT}/inboxes/5", status=401, payload=fixture(body))

    assert (await chatwoot(session).probe(io)).detail == expected


async def test_chatwoot_without_inbox_id_suggests_one(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{CW_ACCOUNT}/inboxes", payload=fixture("doctor/chatwoot_inboxes.json"))

    result = await chatwoot(session, chatwoot_inbox_id=None).probe(io)

    assert not result.ok and "CHATWOOT_INBOX_ID is missing" in result.detail
    assert result.hint.endswith("an API-type inbox: 5 (Bot SDR)")


async def test_chatwoot_inbox_id_that_is_not_a_number_is_refused_without_a_call(
    session: aiohttp.ClientSession, io: FakeProbeIO
) -> None:
    result = await chatwoot(session, chatwoot_inbox_id="abc").probe(io)

    assert result.detail == "CHATWOOT_INBOX_ID is not a number" and io.calls == []


async def test_chatwoot_404_without_json_is_the_wrong_url(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{CW_ACCOUNT}/inboxes/5", status=404, body="<html>Not Found</html>")

    result = await chatwoot(session).probe(io)

    assert result.detail == "wrong URL: the address did not answer like a Chatwoot"
    assert "CHATWOOT_API_URL" in result.hint


async def test_chatwoot_inbox_of_another_type(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(
        f"{CW_ACCOUNT}/inboxes/5", payload={"id": 5, "name": "Zap", "channel_type": "Channel::Whatsapp"}
    )

    result = await chatwoot(session).probe(io)

    assert result.detail == "inbox 5 ('Zap') is of type Channel::Whatsapp, not API"


async def test_chatwoot_server_error_is_handed_to_the_doctor_scrubbed(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{CW_ACCOUNT}/inboxes/5", status=503, body=f"down, token {CW_TOKEN}")

    result = await chatwoot(session).probe(io)

    assert result.detail == "UNEXPECTED 503" and CW_TOKEN not in result.hint


async def test_a_probe_lets_the_doctors_transport_verdict_through(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{CW_ACCOUNT}/inboxes/5", exception=TimeoutError())

    with pytest.raises(ProbeVerdict) as verdict:
        await chatwoot(session).probe(io)
    assert verdict.value.result.detail == "TIMEOUT"


# --- PipeRun ---------------------------------------------------------------------------


async def test_piperun_probe_reads_pipeline_and_stage_with_the_clients_token(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{PIPERUN}/pipelines/{PIPELINE}", payload=fixture("doctor/piperun_pipeline.json"))
    mocked.get(f"{PIPERUN}/stages/{STAGE}", payload=fixture("doctor/piperun_stage.json"))

    result = await piperun(session).probe(io)

    assert result.ok
    assert result.detail == f"pipeline 'Entradas' ({PIPELINE}), stage 'Lead quente (bot)' ({STAGE})"
    assert sorted(url for url, _, _ in io.calls) == [
        f"{PIPERUN}/pipelines/{PIPELINE}",
        f"{PIPERUN}/stages/{STAGE}",
    ]
    assert all(headers == {"token": PR_TOKEN, "Accept": "application/json"} for _, headers, _ in io.calls)


async def test_piperun_stage_of_another_pipeline(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{PIPERUN}/pipelines/11", payload=fixture("doctor/piperun_pipeline.json"))
    mocked.get(f"{PIPERUN}/stages/{STAGE}", payload=fixture("doctor/piperun_stage.json"))

    result = await piperun(session, piperun_pipeline_id=11).probe(io)

    assert (
        result.detail
        == f"stage {STAGE} ('Lead quente (bot)') belongs to pipeline {PIPELINE}, not to pipeline 11 ('Entradas')"
    )
    assert "PIPERUN_STAGE_ID" in result.hint


@pytest.mark.parametrize(
    ("pipeline_status", "stage_status", "expected"),
    [
        (401, 200, "invalid token: PipeRun refused the API token"),
        (200, 403, "the token's user may not see this pipeline or stage"),
        (404, 200, f"wrong pipeline ID ({PIPELINE} does not exist)"),
        (404, 404, f"wrong pipeline ID ({PIPELINE} does not exist); wrong stage ID ({STAGE} does not exist)"),
    ],
)
async def test_piperun_refusals(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    io: FakeProbeIO,
    pipeline_status: int,
    stage_status: int,
    expected: str,
) -> None:
    bodies = {
        200: None,
        401: fixture("piperun/error_401.json"),
        403: {"success": False, "message": "Forbidden"},
    }
    bodies[404] = fixture("piperun/error_404.json")
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

    result = await piperun(session).probe(io)

    assert not result.ok and result.detail == expected


async def test_piperun_answer_without_a_record_is_handed_to_the_doctor(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(f"{PIPERUN}/pipelines/{PIPELINE}", payload=fixture("doctor/piperun_pipeline.json"))
    mocked.get(f"{PIPERUN}/stages/{STAGE}", payload={"success": True, "data": []})

    assert (await piperun(session).probe(io)).detail == "UNEXPECTED 200"


# --- Meta CAPI -------------------------------------------------------------------------


async def test_meta_capi_probe_reads_the_pixel_node_not_its_events_edge(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(PIXEL_URL, payload=fixture("doctor/meta_pixel.json"))

    result = await meta_capi(session).probe(io)

    assert result.ok and result.detail == "pixel 'Seleto Industrial - Leads WhatsApp'"
    [(url, headers, params)] = io.calls
    assert url == f"{GRAPH}/{PIXEL}" and params == {"fields": "name"}
    assert headers == {"Authorization": f"Bearer {CAPI_TOKEN}"}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            "doctor/graph_error_100_33.json",
            "wrong pixel (dataset) ID, or the token has no access to it",
        ),
        (
            400,
            "meta_capi/error_190_token_expired.json",
            "invalid token: Meta says the token expired or was revoked",
        ),
        (403, "meta_capi/error_200_permission.json", "the token lacks permission to read this asset"),
        (400, "meta_capi/error_4_rate_limit.json", "Meta's call limit reached"),
        (500, "meta_capi/error_2_transient.json", "UNEXPECTED 500"),
    ],
)
async def test_meta_capi_graph_errors(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    io: FakeProbeIO,
    status: int,
    body: str,
    expected: str,
) -> None:
    mocked.get(PIXEL_URL, status=status, payload=fixture(body))

    result = await meta_capi(session).probe(io)

    assert not result.ok and result.detail == expected
    if "permission" in expected:
        assert result.hint == (
            "give the token in META_ACCESS_TOKEN the permission ads_management (or access to the pixel in Business Manager)"
        )


async def test_meta_capi_answer_without_name_or_id_is_handed_to_the_doctor(
    session: aiohttp.ClientSession, mocked: aioresponses, io: FakeProbeIO
) -> None:
    mocked.get(PIXEL_URL, payload={"unexpected": True})

    assert (await meta_capi(session).probe(io)).detail == "UNEXPECTED 200"

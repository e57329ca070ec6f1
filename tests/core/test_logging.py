"""What lands in the logs: machine-readable lines, a turn id and a masked contact on every
line of a turn, and never a secret or a lead's full phone number."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.logging import Scrubber, configure_logging, get_logger
from core.models import InboundMessage, MessageKind, mask_contact_key, mask_phone
from tests.conftest import OPENAI_KEY, ZAPI_CLIENT_TOKEN, ZAPI_TOKEN, fast_settings, zapi_message
from tests.helpers.clock import TestClock
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.logs import logging_for
from tests.helpers.settle import settled
from tests.web.support import LEAD_PHONE, MASKED_LEAD, WEBHOOK_SECRET, rows
from web.app import create_app

SECRETS = {
    "OPENAI_API_KEY": OPENAI_KEY,
    "ZAPI_INSTANCE_TOKEN": ZAPI_TOKEN,
    "ZAPI_CLIENT_TOKEN": ZAPI_CLIENT_TOKEN,
    "ZAPI_WEBHOOK_SECRET": WEBHOOK_SECRET,
}
# Ways the lead's number can be written; none may survive into a log line.
FULL_PHONE_FORMS = [LEAD_PHONE, "+55 (44) 99999-9999", "(44) 99999-9999", "44999999999", "+5544999999999"]


pytestmark = pytest.mark.usefixtures("restore_logging")


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    decoded = []
    for line in lines:
        try:
            decoded.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"log line is not JSON: {line[:200]!r}") from None
    return decoded


# --- a whole conversation with LOG_FORMAT=json ------------------------------------------


@dataclass
class Conversation:
    output: str
    lines: list[dict[str, Any]]
    turn_id: str
    client: TestClient


async def converse(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    capsys: pytest.CaptureFixture[str],
) -> Conversation:
    """Webhook -> turn -> reply, with the unhappy paths that log: a rejected token, a bad
    body, an ignored fromMe event and one failed Z-API send before the delivery."""
    capsys.readouterr()  # start clean
    settings = fast_settings(
        tmp_path, log_format="json", log_level="DEBUG", zapi_webhook_secret=WEBHOOK_SECRET
    )
    client = await aiohttp_client(
        create_app(logging_for(settings), clock=TestClock())
    )  # logging onto the capture
    auth = {"token": WEBHOOK_SECRET}

    await client.post(
        "/webhooks/zapi",
        params={"token": "guess"},
        json=zapi_message(),
        headers={"X-Request-Id": "req-wrong-token"},
    )
    await client.post(
        "/webhooks/zapi", params=auth, data=b'{"type": "ReceivedCallback", "phone": "5544999999999"}'
    )
    # The business writing in another chat (a person at the company: that chat is paused).
    await client.post(
        "/webhooks/zapi", params=auth, json=zapi_message("received_from_me.json", phone="5511900000001")
    )

    zapi_fake.then(status=500)
    openai_fake.then(
        reply="Prazer, Maria! Anotei seu WhatsApp +55 (44) 99999-9999. Quantos hambúrgueres por dia?",
        lead={"name": "Maria Souza", "phone": "+55 (44) 99999-9999"},
    )
    response = await client.post(
        "/webhooks/zapi",
        params=auth,
        json=zapi_message(
            message_id="3EB0LOG000000001", text="Oi, sou a Maria, meu zap é +55 (44) 99999-9999"
        ),
        headers={"X-Request-Id": "req-lead-message"},
    )
    assert response.status == 200
    await settled(client)
    assert [sent["phone"] for sent in zapi_fake.sent] == [LEAD_PHONE]  # one reply, after one refused send
    assert zapi_fake.attempts == 2
    assert rows(client, "SELECT status FROM outbox") == [("done",)]
    turn_ids = rows(client, "SELECT DISTINCT turn_id FROM messages")
    assert len(turn_ids) == 1
    await client.close()  # shutdown lines are part of the output too
    captured = capsys.readouterr()
    output = captured.err + captured.out
    return Conversation(output=output, lines=json_lines(output), turn_id=turn_ids[0][0], client=client)


async def test_a_conversation_logs_valid_json_without_secrets_or_the_leads_phone(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    convo = await converse(aiohttp_client, tmp_path, openai_fake, zapi_fake, capsys)
    events = {line.get("event") for line in convo.lines}
    # Sanity: the capture saw the whole story, not just the start-up line.
    assert {"sdr_started", "webhook_rejected", "turn_committed", "outbox_delivered"} <= events, events
    for name, secret in SECRETS.items():
        assert secret not in convo.output, f"{name} appears in the logs"
    for form in FULL_PHONE_FORMS:
        assert form not in convo.output, f"the lead's phone ({form}) appears in the logs"
    for line in convo.lines:
        assert {"event", "level", "timestamp"} <= line.keys(), line


async def test_every_line_of_a_turn_carries_the_turn_id_and_the_masked_contact(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    convo = await converse(aiohttp_client, tmp_path, openai_fake, zapi_fake, capsys)
    turn_lines = [line for line in convo.lines if line.get("turn_id") == convo.turn_id]
    seen = {line["event"] for line in turn_lines}
    # The turn and each step of its reply's delivery (one failed send, then delivered).
    assert {"turn_committed", "zapi_send_failed", "outbox_retry", "outbox_delivered"} <= seen, (
        f"lines carrying the DB's turn id {convo.turn_id}: {sorted(seen)}"
    )
    missing = [line["event"] for line in turn_lines if MASKED_LEAD not in str(line.get("contact", ""))]
    assert not missing, f"lines of turn {convo.turn_id} without the masked contact: {missing}"


async def test_a_rejected_webhook_is_logged_with_the_callers_request_id(
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
    openai_fake: FakeOpenAI,
    zapi_fake: FakeZapi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    convo = await converse(aiohttp_client, tmp_path, openai_fake, zapi_fake, capsys)
    rejected = [line for line in convo.lines if line.get("event") == "webhook_rejected"]
    by_request = {line.get("request_id"): line for line in rejected}
    assert by_request["req-wrong-token"]["status"] == 401
    assert any(line.get("status") == 422 for line in rejected)


# --- the pipeline on its own --------------------------------------------------------------


def configure(
    fmt: str = "json", level: str = "DEBUG", secrets: tuple[str, ...] = tuple(SECRETS.values())
) -> Any:
    configure_logging(level=level, fmt=fmt, secrets=secrets)
    return get_logger("tests.core.logging")


def test_console_format_is_scrubbed_too(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure(fmt="console")
    log.warning(
        "zapi_call",
        url=f"https://api.z-api.io/instances/3C01/token/{ZAPI_TOKEN}/send-text",
        headers={"Client-Token": ZAPI_CLIENT_TOKEN},
        note=f"lead {LEAD_PHONE} said hi",
    )
    err = capsys.readouterr().err
    assert "zapi_call" in err
    assert ZAPI_TOKEN not in err and ZAPI_CLIENT_TOKEN not in err and LEAD_PHONE not in err


def test_log_level_filters_lower_levels(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure(level="WARNING")
    log.info("chatty")
    log.debug("chattier")
    log.warning("kept")
    events = [line["event"] for line in json_lines(capsys.readouterr().err)]
    assert events == ["kept"]


def test_an_unknown_log_level_falls_back_instead_of_crashing(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure(level="verbose")
    log.info("still_logging")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["still_logging"]


def test_exception_tracebacks_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    log = configure()
    try:
        raise RuntimeError(f"POST /instances/x/token/{ZAPI_TOKEN}/send-text for {LEAD_PHONE} failed")
    except RuntimeError:
        log.exception("send_crashed")
    err = capsys.readouterr().err
    (line,) = json_lines(err)
    assert "RuntimeError" in line["exception"]
    assert ZAPI_TOKEN not in err and LEAD_PHONE not in err


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f'{{"phone": "{LEAD_PHONE}"}}'.encode(), id="bytes_body"),
        pytest.param(
            InboundMessage(
                channel="zapi",
                contact_id=LEAD_PHONE,
                phone=LEAD_PHONE,
                provider_message_id="3EB0X",
                kind=MessageKind.TEXT,
                text="Oi",
                timestamp=datetime(2024, 1, 1, tzinfo=UTC),
            ),
            id="pydantic_model",
        ),
        pytest.param({LEAD_PHONE, "other"}, id="set"),
        pytest.param({"nested": [{"deep": (LEAD_PHONE,)}]}, id="nested_containers"),
        pytest.param(int(LEAD_PHONE), id="int"),
    ],
)
def test_a_careless_keyword_never_leaks_a_phone(capsys: pytest.CaptureFixture[str], value: Any) -> None:
    """core/logging.py promises: whatever a developer passes as a keyword stays safe."""
    log = configure()
    log.info("careless", payload=value)
    err = capsys.readouterr().err
    json_lines(err)
    assert LEAD_PHONE not in err, err


# --- Scrubber and mask_phone, on tricky inputs --------------------------------------------


def scrub(value: Any, secrets: tuple[str, ...] = tuple(SECRETS.values())) -> Any:
    return Scrubber(secrets).scrub(value)


@pytest.mark.parametrize(
    "text",
    [
        f"Cliente {LEAD_PHONE} pediu orçamento",
        "meu zap é +55 44 99999-9999, me chama",
        "liga no +55 (44) 99999-9999 depois das 18h",
        "fone:(44)99999.9999;",
        "55-44-99999-9999",
        "https://wa.me/5544999999999?text=oi",
        "5544999999999@c.us",
        "dois números: 5544999999999 e 5511988887777.",
    ],
)
def test_phones_inside_text_are_masked(text: str) -> None:
    out = scrub(text)
    assert "***" in out
    digits_left = "".join(c for c in out if c.isdigit() or c == "*")
    for full in ("5544999999999", "44999999999", "5511988887777", "11988887777"):
        assert full not in digits_left, out
    assert "99999-9999" not in out and "99999.9999" not in out


def test_a_phone_masked_in_text_keeps_the_surrounding_words() -> None:
    assert scrub(f"Cliente {LEAD_PHONE} pediu orçamento") == f"Cliente {MASKED_LEAD} pediu orçamento"


@pytest.mark.parametrize(
    "text",
    [
        "pedido 12345 de 3 unidades",  # short numbers are not phones
        "CEP 86010-190",
        "R$ 1.250,00",
        "turno das 08:00 às 18:00",
    ],
)
def test_short_numbers_are_left_alone(text: str) -> None:
    assert scrub(text) == text


@pytest.mark.parametrize(
    "text, secret",
    [
        (f"https://api.z-api.io/instances/3C01A9F0/token/{ZAPI_TOKEN}/send-text", ZAPI_TOKEN),
        (f"https://bot.example.com/webhooks/zapi?token={WEBHOOK_SECRET}&x=1", WEBHOOK_SECRET),
        (f"Authorization: Bearer {OPENAI_KEY}", OPENAI_KEY),
        (f"headers={{'Client-Token': '{ZAPI_CLIENT_TOKEN}'}}", ZAPI_CLIENT_TOKEN),
        (f"{ZAPI_TOKEN}{ZAPI_TOKEN}", ZAPI_TOKEN),
    ],
    ids=["zapi_url_path", "webhook_query", "bearer_header", "client_token_repr", "repeated"],
)
def test_secrets_inside_urls_and_headers_are_redacted(text: str, secret: str) -> None:
    out = scrub(text)
    assert secret not in out
    assert "[REDACTED]" in out


def test_the_longest_secret_wins_when_one_contains_another() -> None:
    out = Scrubber(["abcd1234", "abcd1234efgh"]).scrub("x abcd1234efgh y abcd1234 z")
    assert out == "x [REDACTED] y [REDACTED] z"


def test_a_numeric_secret_is_redacted_not_partially_masked() -> None:
    out = Scrubber(["4815162342987"]).scrub("pin 4815162342987")
    assert out == "pin [REDACTED]"


def test_sensitive_keys_are_redacted_whatever_their_value_or_case() -> None:
    out = scrub(
        {"Authorization": "Bearer x", "TOKEN": "t", "Client-Token": "c", "password": 1, "name": "Maria"}
    )
    assert out == {
        "Authorization": "[REDACTED]",
        "TOKEN": "[REDACTED]",
        "Client-Token": "[REDACTED]",
        "password": "[REDACTED]",
        "name": "Maria",
    }


def test_nested_payloads_are_scrubbed() -> None:
    out = scrub({"body": {"phone": LEAD_PHONE, "list": [LEAD_PHONE, {"url": f"/token/{ZAPI_TOKEN}/"}]}})
    assert LEAD_PHONE not in json.dumps(out) and ZAPI_TOKEN not in json.dumps(out)


def test_exceptions_passed_as_values_are_scrubbed() -> None:
    out = scrub(ValueError(f"bad number {LEAD_PHONE} with {OPENAI_KEY}"))
    assert isinstance(out, str) and LEAD_PHONE not in out and OPENAI_KEY not in out


def test_booleans_and_small_numbers_are_untouched() -> None:
    assert scrub({"ok": True, "attempts": 3, "llm_ms": 12.5, "none": None}) == {
        "ok": True,
        "attempts": 3,
        "llm_ms": 12.5,
        "none": None,
    }


def test_the_processor_leaves_timestamp_and_level_alone() -> None:
    event = {"event": "x", "timestamp": "2024-05-01 12:30:45.123456", "level": "info"}
    assert Scrubber([])(None, "info", dict(event)) == event


def test_a_turn_id_made_of_digits_is_not_mistaken_for_a_phone() -> None:
    """Turn ids are `uuid4().hex[:12]`: about 1 in 60 has a run of 10+ decimal digits.
    Masked, the logged id no longer matches `messages.turn_id`, and the operator cannot
    find the turn's lines from the database."""
    event = {"event": "turn_committed", "turn_id": "402983117745", "contact": "zapi:5544***99"}
    assert Scrubber([])(None, "info", dict(event))["turn_id"] == "402983117745"


@pytest.mark.parametrize(
    "raw, masked",
    [
        (LEAD_PHONE, MASKED_LEAD),
        ("+55 (44) 99999-9999", MASKED_LEAD),
        ("55 44 9 9999-9999", MASKED_LEAD),
        ("5544999999999@c.us", MASKED_LEAD),
        ("81896604192873@lid", "8189***73"),
        (None, "-"),
        ("", "-"),
        ("abc", "***"),
        ("12345", "***"),
    ],
)
def test_mask_phone(raw: str | None, masked: str) -> None:
    assert mask_phone(raw) == masked


@pytest.mark.parametrize("raw", [LEAD_PHONE, "+1 (415) 555-0134", "4499999999", "5511988887777"])
def test_mask_phone_never_shows_the_whole_number(raw: str) -> None:
    digits = "".join(c for c in raw if c.isdigit())
    out = mask_phone(raw)
    shown = "".join(c for c in out if c.isdigit())
    assert digits not in out
    assert len(shown) <= 6 < len(digits)


def test_mask_contact_key_keeps_the_channel() -> None:
    assert mask_contact_key(f"zapi:{LEAD_PHONE}") == f"zapi:{MASKED_LEAD}"
    assert LEAD_PHONE not in mask_contact_key(f"zapi:{LEAD_PHONE}")


def test_standard_library_log_lines_are_scrubbed_too(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from core.logging import configure_logging

    configure_logging(level="INFO", fmt="json", secrets=["sk-live-secret-123456"])
    logging.getLogger("asyncio").error("Task failed for 5544999999999 with key sk-live-secret-123456")
    err = capsys.readouterr().err
    assert "5544999999999" not in err and "sk-live-secret-123456" not in err
    assert "5544***99" in err

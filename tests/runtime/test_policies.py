"""Delivery policies: the table of integrations, the operator's knobs, and what is retried."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from core.errors import ProviderRejected, ProviderUnavailable
from core.settings import Settings
from runtime.policies import (
    INTEGRATIONS,
    DeliveryPolicy,
    JitteredBackoff,
    PermanentDeliveryError,
    channel_send_policy,
    integration_policy,
    is_transient,
    policy_for,
)
from tests.helpers.errors import SendError
from tests.runtime.outbox_support import defaults
from web.configs.runtime import outbox_knobs

# --- DeliveryPolicy.decide ------------------------------------------------------------


def policy(**overrides: Any) -> DeliveryPolicy:
    values: dict[str, Any] = {
        "_env_file": None,
        "outbox_max_attempts": 6,
        "outbox_backoff_base_s": 2.0,
        "outbox_backoff_max_s": 300.0,
    }
    values.update(overrides)
    return channel_send_policy(outbox_knobs(Settings(**values)))


def transient() -> SendError:
    return SendError("HTTP 503", status=503, retryable=True)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_decide_waits_within_exponential_bounds(attempt: int) -> None:
    p = policy()
    ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
    waits = [p.decide(attempt, transient()) for _ in range(200)]
    assert all(w is not None and 0.0 <= w <= ceiling for w in waits)
    # Jitter: the waits spread over the range instead of all clients retrying in step.
    assert len({round(w, 6) for w in waits if w is not None}) > 100


def test_decide_caps_the_wait_at_the_maximum() -> None:
    p = policy(outbox_max_attempts=40, outbox_backoff_base_s=2.0, outbox_backoff_max_s=30.0)
    for attempt in (5, 10, 20, 39):
        delay = p.decide(attempt, transient())
        assert delay is not None and 0.0 <= delay <= 30.0


def test_decide_stops_at_the_last_attempt() -> None:
    p = policy(outbox_max_attempts=6)
    assert all(p.decide(n, transient()) is not None for n in range(1, 6))
    assert p.decide(6, transient()) is None
    assert p.decide(7, transient()) is None


def test_decide_with_a_single_attempt_never_retries() -> None:
    assert policy(outbox_max_attempts=1).decide(1, transient()) is None


@pytest.mark.parametrize(
    "error",
    [
        SendError("HTTP 400", status=400, retryable=False),
        SendError("HTTP 404", status=404, retryable=False),
        PermanentDeliveryError("bad payload"),
        ValueError("bug"),
        KeyError("text"),
    ],
    ids=["400", "404", "permanent", "value-error", "key-error"],
)
def test_decide_never_retries_permanent_errors(error: BaseException) -> None:
    assert policy().decide(1, error) is None


@pytest.mark.parametrize(
    "error",
    [
        SendError("HTTP 429", status=429, retryable=True),
        SendError("HTTP 502", status=502, retryable=True),
        TimeoutError(),
        aiohttp.ClientConnectionError(),
        aiohttp.ServerDisconnectedError(),
        ConnectionRefusedError(),
    ],
    ids=["429", "502", "timeout", "client-connection", "server-disconnected", "refused"],
)
def test_decide_retries_transient_errors(error: BaseException) -> None:
    assert is_transient(error)
    assert policy().decide(1, error) is not None


# --- the policy table -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("integration", "attempts", "base_s", "timeout_s"),
    [
        ("token_refresh", 3, 1.0, 10.0),
        ("meta_capi", 5, 2.0, 30.0),
        ("channel_send", 3, 2.0, 15.0),
        ("calendar", 3, 1.0, 10.0),
        ("outbound_webhook", 5, 5.0, 30.0),
    ],
)
def test_the_table_defaults_to_the_spec(
    integration: str, attempts: int, base_s: float, timeout_s: float
) -> None:
    spec = INTEGRATIONS[integration]
    assert (spec.max_attempts, spec.base_delay_s, spec.backoff, spec.timeout_s) == (
        attempts,
        base_s,
        "exponential",
        timeout_s,
    )
    p = policy_for(integration, defaults())
    assert p.name == integration and p.timeout_s == timeout_s
    assert all(p.decide(n, transient()) is not None for n in range(1, attempts))
    assert p.decide(attempts, transient()) is None
    # Exponential with jitter: attempt n waits 70-100 % of base * 2^(n-1).
    for n in range(1, attempts):
        nominal = min(base_s * 2 ** (n - 1), spec.max_delay_s)
        waits = [p.decide(n, transient()) for _ in range(50)]
        assert all(w is not None and 0.7 * nominal <= w <= nominal for w in waits)


def test_every_integration_the_bot_uses_has_a_policy() -> None:
    for name in ("channel_send", "chatwoot", "piperun", "meta_capi", "outbound_webhook"):
        assert policy_for(name, defaults()).name == name
    assert policy_for("channel_send:instagram", defaults()).decide(3, transient()) is None
    assert policy_for("outbound_webhook:crm-a", defaults()).timeout_s == 30.0
    with pytest.raises(KeyError, match="carrier_pigeon"):
        policy_for("carrier_pigeon", defaults())


def test_the_legacy_entry_points_read_the_table() -> None:
    assert channel_send_policy(defaults()).decide(3, transient()) is None
    mirror = integration_policy(defaults())  # Chatwoot keeps its long budget
    assert mirror.decide(11, transient()) is not None
    assert mirror.decide(12, transient()) is None


def test_outbox_settings_set_by_the_operator_override_every_row() -> None:
    settings = Settings(
        _env_file=None, outbox_max_attempts=9, outbox_backoff_base_s=0.5, outbox_backoff_max_s=1.0
    )
    for name in ("channel_send", "meta_capi", "outbound_webhook", "chatwoot"):
        p = policy_for(name, outbox_knobs(settings))
        assert p.decide(8, transient()) is not None
        assert p.decide(9, transient()) is None
        assert all(0.35 <= (p.decide(n, transient()) or 0) <= 1.0 for n in range(2, 8))


def test_linear_backoff_grows_by_the_base() -> None:
    wait = JitteredBackoff(1.0, 60.0, linear=True, jitter=0.0)
    assert [wait.nominal(n) for n in (1, 2, 3, 100)] == [1.0, 2.0, 3.0, 60.0]


class ClientFlagged(Exception):
    def __init__(self, retryable: bool) -> None:
        super().__init__("flagged")
        self.retryable = retryable


def test_is_transient_decides_by_type_and_ignores_a_flag_on_a_foreign_error() -> None:
    """Issue 14: retry is decided by the error tree, never by a `retryable` attribute
    found on any object (the duck typing this test used to allow)."""
    assert not is_transient(ClientFlagged(True))  # an unknown exception is not worth repeating
    assert not is_transient(ClientFlagged(False))
    assert is_transient(ProviderUnavailable("HTTP 503", status=503))
    assert not is_transient(ProviderRejected("HTTP 400", status=400))
    assert is_transient(SendError("HTTP 502", status=502))  # known only by its status


@pytest.mark.parametrize(
    ("status", "retry"),
    [(400, False), (401, False), (404, False), (408, True), (429, True), (500, True), (503, True)],
)
def test_is_transient_reads_the_status_of_raise_for_status(status: int, retry: bool) -> None:
    exc = aiohttp.ClientResponseError(request_info=None, history=(), status=status)  # type: ignore[arg-type]
    assert is_transient(exc) is retry

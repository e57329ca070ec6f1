"""Circuit breakers on a fake clock.

What an operator relies on: a provider that keeps failing stops being called after a
few failures (fail fast), one probe at a time finds out when it is back, a success
closes the breaker at once, and /api/health can say which integration is down since
when and for how much longer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runtime.breaker import BreakerRegistry, CircuitBreaker, CircuitOpenError
from runtime.policies import INTEGRATIONS, PermanentDeliveryError


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.wall0 = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.wall0 + timedelta(seconds=self.t - 1000.0)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, *, threshold: int = 3, reset: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(
        "crm", failure_threshold=threshold, reset_timeout_s=reset, clock=clock, wall_clock=clock.wall
    )


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record_failure(permit)


def succeed(breaker: CircuitBreaker) -> None:
    permit = breaker.acquire()
    assert permit is not None
    breaker.record_success(permit)


def test_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = make(clock, threshold=3)
    fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.acquire() is not None
    fail(breaker)
    assert breaker.state == "open"
    assert breaker.failures == 3


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    breaker = make(clock, threshold=3)
    fail(breaker, 2)
    succeed(breaker)
    fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.failures == 2


def test_open_fails_fast_until_the_reset_timeout(clock: FakeClock) -> None:
    breaker = make(clock, reset=30.0)
    fail(breaker, 3)
    for _ in range(5):
        assert breaker.acquire() is None
    clock.advance(10)
    assert breaker.acquire() is None
    assert breaker.retry_in() == pytest.approx(20.0)
    with pytest.raises(CircuitOpenError) as raised, breaker.guard():
        pytest.fail("an open breaker must not run the call")
    assert raised.value.retryable is True
    assert raised.value.retry_in == pytest.approx(20.0)


def test_half_open_lets_exactly_one_probe_through(clock: FakeClock) -> None:
    breaker = make(clock, reset=30.0)
    fail(breaker, 3)
    clock.advance(30)
    assert breaker.state == "half_open"
    assert breaker.retry_in() == 0.0
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    assert [breaker.acquire() for _ in range(5)] == [None] * 5
    assert breaker.snapshot()["probe_out"] is True


def test_a_successful_probe_closes(clock: FakeClock) -> None:
    breaker = make(clock)
    fail(breaker, 3)
    clock.advance(30)
    probe = breaker.acquire()
    assert probe is not None
    breaker.record_success(probe)
    assert breaker.state == "closed"
    assert breaker.failures == 0
    permits = [breaker.acquire() for _ in range(5)]
    assert all(p is not None and not p.probe for p in permits)


def test_a_failed_probe_reopens_for_another_reset_timeout(clock: FakeClock) -> None:
    breaker = make(clock, reset=30.0)
    fail(breaker, 3)
    clock.advance(31)
    probe = breaker.acquire()
    assert probe is not None
    clock.advance(2)
    breaker.record_failure(probe)
    assert breaker.state == "open"
    assert breaker.acquire() is None
    assert breaker.retry_in() == pytest.approx(30.0)  # counted from the probe's failure
    clock.advance(30)
    assert breaker.state == "half_open"
    assert breaker.acquire() is not None
    assert breaker.opened_total == 2


def test_a_released_probe_lets_the_next_caller_probe(clock: FakeClock) -> None:
    """A probe that ends in a permanent error (the service answered 400) or is
    cancelled says nothing about the service: the next caller probes instead."""
    breaker = make(clock)
    fail(breaker, 3)
    clock.advance(30)
    probe = breaker.acquire()
    assert probe is not None
    breaker.release(probe)
    assert breaker.state == "half_open"
    second = breaker.acquire()
    assert second is not None and second.probe
    assert breaker.acquire() is None


def test_a_lost_probe_is_replaced_after_a_reset_timeout(clock: FakeClock) -> None:
    breaker = make(clock, reset=30.0)
    fail(breaker, 3)
    clock.advance(30)
    lost = breaker.acquire()
    assert lost is not None
    clock.advance(29)
    assert breaker.acquire() is None
    clock.advance(1)
    replacement = breaker.acquire()
    assert replacement is not None and replacement.probe
    breaker.record_success(lost)  # the lost one's late answer is ignored...
    assert breaker.state == "half_open"
    breaker.record_failure(replacement)  # ...the replacement's is not
    assert breaker.state == "open"


def test_a_slow_call_from_before_the_outage_does_not_close_it(clock: FakeClock) -> None:
    breaker = make(clock, threshold=2)
    slow = breaker.acquire()
    assert slow is not None
    fail(breaker, 2)
    assert breaker.state == "open"
    breaker.record_success(slow)
    assert breaker.state == "open"
    breaker.record_failure(slow)
    assert breaker.failures == 2


def test_guard_counts_only_transient_failures(clock: FakeClock) -> None:
    breaker = make(clock, threshold=2)
    for _ in range(3):
        with pytest.raises(PermanentDeliveryError), breaker.guard():
            raise PermanentDeliveryError("bad payload")
    assert breaker.failures == 0
    for _ in range(2):
        with pytest.raises(TimeoutError), breaker.guard():
            raise TimeoutError()
    assert breaker.state == "open"


def test_snapshot_for_health_and_metrics(clock: FakeClock) -> None:
    breaker = make(clock, threshold=3, reset=60.0)
    assert breaker.snapshot() == {
        "state": "closed",
        "failures": 0,
        "failure_threshold": 3,
        "reset_timeout_s": 60.0,
        "opened_at": None,
        "retry_in": None,
        "probe_out": False,
        "opened_total": 0,
    }
    fail(breaker, 3)
    opened = clock.wall()
    clock.advance(15)
    snap = breaker.snapshot()
    assert snap["state"] == "open"
    assert snap["failures"] == 3
    assert snap["opened_at"] == opened.isoformat()
    assert snap["retry_in"] == pytest.approx(45.0)
    # A failed probe keeps "down since" at the outage's start.
    clock.advance(45)
    fail(breaker)
    assert breaker.snapshot()["opened_at"] == opened.isoformat()


def test_thresholds_must_be_sane(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=0, reset_timeout_s=30, clock=clock)
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=3, reset_timeout_s=0, clock=clock)


# --- registry ---------------------------------------------------------------------------


def test_registry_takes_thresholds_from_the_policy_table(clock: FakeClock) -> None:
    registry = BreakerRegistry(clock=clock, wall_clock=clock.wall)
    capi = registry.get("meta_capi")
    assert (capi.failure_threshold, capi.reset_timeout_s) == (5, 60.0)  # the spec's CAPI row
    for name in ("channel_send", "chatwoot", "piperun", "outbound_webhook"):
        breaker = registry.get(name)
        assert breaker.failure_threshold == 3
        assert 30.0 <= breaker.reset_timeout_s <= 60.0
    assert registry.get("meta_capi") is capi
    with pytest.raises(KeyError, match="carrier_pigeon"):
        registry.get("carrier_pigeon")


def test_registry_has_one_breaker_per_channel_or_endpoint(clock: FakeClock) -> None:
    registry = BreakerRegistry(clock=clock, wall_clock=clock.wall)
    select = registry.per_item("channel_send", lambda item: item["channel"])
    waha, instagram = select({"channel": "waha"}), select({"channel": "instagram"})
    assert waha is not instagram
    assert (waha.name, waha.reset_timeout_s) == ("channel_send:waha", 30.0)
    assert (instagram.name, instagram.reset_timeout_s) == ("channel_send:instagram", 60.0)
    hook = registry.per_item("outbound_webhook", lambda item: item.get("endpoint"))
    assert hook({"endpoint": "crm-a"}).name == "outbound_webhook:crm-a"
    assert hook({}).name == "outbound_webhook"

    fail(instagram, 3)
    snap = registry.snapshot()
    assert list(snap) == sorted(snap)
    assert snap["channel_send:instagram"]["state"] == "open"
    assert snap["channel_send:waha"]["state"] == "closed"
    assert "channel_send:waha" in registry


def test_every_integration_of_the_table_has_a_breaker_config() -> None:
    for name, spec in INTEGRATIONS.items():
        assert spec.failure_threshold >= 1, name
        assert spec.reset_timeout_s > 0, name

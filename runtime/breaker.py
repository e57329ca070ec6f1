"""Circuit breakers, one per integration (or per channel / webhook endpoint).

When a provider is down, retrying every queued item on its own backoff hammers it and
burns every item's attempts on an outage that is nobody's fault. After
`failure_threshold` consecutive transient failures the breaker opens: calls fail fast
(the dispatcher leaves items pending without counting an attempt) until
`reset_timeout_s` has passed; then it is half-open and lets exactly one probe through.
The probe's success closes it, its failure re-opens it for another reset timeout.

State lives in process memory on purpose: it is a cheap, local guess about a remote
service, and after a restart the first few failures rebuild it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from core.errors import Retryable
from core.logging import get_logger
from runtime.policies import integration_spec, is_transient

log = get_logger(__name__)

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class Permit:
    """Leave to make one call. `generation` ties the outcome to the breaker state it was
    granted in, so a slow call started before the breaker opened cannot close it (or
    re-open a half-open one) when it finally returns."""

    generation: int
    probe: bool


class CircuitOpenError(Retryable):
    """Failing fast: the integration is considered down for another `retry_in` seconds.

    Retryable by nature: nothing was sent, so trying later is always safe."""

    # What callers that still read the flag see (see runtime/policies.is_transient).
    retryable = True

    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"circuit {name!r} is open; next probe in {retry_in:.1f}s")
        self.name = name
        self.retry_in = retry_in
        self.retry_after = retry_in


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout_s <= 0:
            raise ValueError("reset_timeout_s must be positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._failures = 0  # consecutive transient failures
        self._opened_at: float | None = None  # None: closed
        self._opened_wall: datetime | None = None
        self._generation = 0
        self._probe_since: float | None = None  # a probe is out (half-open only)
        self.opened_total = 0

    # --- state ----------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.reset_timeout_s:
            return "open"
        return "half_open"

    @property
    def failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until a call may be let through again: 0 when closed or half-open
        (even with the probe out: the caller cannot know when it returns)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout_s - self._clock())

    # --- calls ----------------------------------------------------------------------

    def acquire(self) -> Permit | None:
        """A permit to call, or None to fail fast. Every permit must be settled with
        `record_success`, `record_failure` or `release`."""
        state = self.state
        if state == "closed":
            return Permit(self._generation, probe=False)
        if state == "open":
            return None
        now = self._clock()
        if self._probe_since is not None and now - self._probe_since < self.reset_timeout_s:
            return None
        # A probe out for longer than a whole reset timeout is presumed lost (a handler
        # that never returned): its late outcome is ignored, another probe goes.
        if self._probe_since is not None:
            self._generation += 1
            log.warning("circuit_probe_lost", breaker=self.name)
        self._probe_since = now
        log.info("circuit_half_open_probe", breaker=self.name)
        return Permit(self._generation, probe=True)

    def record_success(self, permit: Permit) -> None:
        if permit.generation != self._generation:
            return
        if self._opened_at is not None:
            log.info("circuit_closed", breaker=self.name, after_failures=self._failures)
            self._opened_at = None
            self._opened_wall = None
            self._probe_since = None
            self._generation += 1
        self._failures = 0

    def record_failure(self, permit: Permit) -> None:
        """A transient failure (the caller filters out permanent ones: a 400 says the
        service is up and answering)."""
        if permit.generation != self._generation:
            return
        self._failures += 1
        if permit.probe or (self._opened_at is None and self._failures >= self.failure_threshold):
            self._open()

    def release(self, permit: Permit) -> None:
        """Neither success nor failure (a permanent error, a cancelled call): frees the
        probe slot so the next caller can probe, and changes nothing else."""
        if permit.probe and permit.generation == self._generation:
            self._probe_since = None

    def _open(self) -> None:
        reopened = self._opened_at is not None
        self._opened_at = self._clock()
        if not reopened:  # shown as "down since": the outage's start, not the last probe
            self._opened_wall = self._wall_clock()
        self._probe_since = None
        self._generation += 1
        self.opened_total += 1
        log.warning(
            "circuit_reopened" if reopened else "circuit_opened",
            breaker=self.name,
            failures=self._failures,
            retry_in_s=self.reset_timeout_s,
        )

    @contextmanager
    def guard(self, counts: Callable[[BaseException], bool] = is_transient) -> Iterator[Permit]:
        """For direct calls outside the outbox (a token refresh): raises
        CircuitOpenError when open, records the outcome otherwise."""
        permit = self.acquire()
        if permit is None:
            raise CircuitOpenError(self.name, self.retry_in())
        try:
            yield permit
        except BaseException as exc:
            if isinstance(exc, Exception) and counts(exc):
                self.record_failure(permit)
            else:
                self.release(permit)
            raise
        self.record_success(permit)

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        return {
            "state": state,
            "failures": self._failures,
            "failure_threshold": self.failure_threshold,
            "reset_timeout_s": self.reset_timeout_s,
            "opened_at": self._opened_wall.isoformat() if self._opened_wall else None,
            "retry_in": None if state == "closed" else round(self.retry_in(), 3),
            "probe_out": state == "half_open" and self._probe_since is not None,
            "opened_total": self.opened_total,
        }


class BreakerRegistry:
    """Every breaker of the process, created on first use with the policy table's
    threshold and reset timeout, so /api/health and /metrics list them all."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
        reset_timeout_s: float | None = None,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        # CIRCUIT_RESET_S: one reset timeout for every breaker instead of the table's.
        self._reset_override = reset_timeout_s
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        """`name` is an integration of the table, or "integration:instance" for one
        breaker per channel or endpoint (KeyError for an unknown integration)."""
        breaker = self._breakers.get(name)
        if breaker is None:
            spec = integration_spec(name)
            breaker = CircuitBreaker(
                name,
                failure_threshold=spec.failure_threshold,
                reset_timeout_s=self._reset_override or spec.reset_timeout_s,
                clock=self._clock,
                wall_clock=self._wall_clock,
            )
            self._breakers[name] = breaker
        return breaker

    def per_item(
        self, integration: str, instance: Callable[[Any], str | None]
    ) -> Callable[[Any], CircuitBreaker]:
        """A dispatcher breaker selector: one breaker per `instance(item)` (the channel
        of a reply, the endpoint of a webhook), the integration's own when it is None."""

        def select(item: Any) -> CircuitBreaker:
            part = instance(item)
            return self.get(f"{integration}:{part}" if part else integration)

        return select

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: breaker.snapshot() for name, breaker in sorted(self._breakers.items())}

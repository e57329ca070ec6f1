"""Prometheus metrics: what an operator graphs and alerts on.

One registry per app (tests build many apps in one process). Counters and histograms
are updated where things happen; gauges that describe stored state (outbox depth,
dead letters, leads by temperature, circuit states) are refreshed from their source
when /metrics is scraped, so they are never stale and cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from core.records import OutboxStats


class StoredState(Protocol):
    """What a scrape reads from the store (the `Store` protocol satisfies it); the ground
    floor names only these two reads, so metrics never depend on the store layer."""

    async def outbox_stats_by_kind(self) -> dict[str, OutboxStats]: ...
    async def lead_counts(self) -> dict[str, int]: ...


# Turn latency buckets: our own work is milliseconds, the model's is seconds.
_OWN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_LLM_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0)
_CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}

# Webhook routes -> the channel label (the Meta route serves two products).
_ROUTE_CHANNEL = {
    "/webhooks/zapi": "zapi",
    "/webhook/text": "zapi",
    "/webhook/audio": "zapi",
    "/webhooks/waha": "waha",
    "/webhooks/meta": "meta",
    "/webhooks/chatwoot": "chatwoot",
    "/webhooks/crm": "crm",
}


def _outcome(status: int) -> str:
    if status < 300:
        return "accepted"
    if status in (401, 403):
        return "unauthorized"
    if status == 413:
        return "too_large"
    if status == 503:
        return "unavailable"
    return "rejected" if status < 500 else "error"


class Metrics:
    """`parts`: "ingest" (webhooks) and/or "runtime" (turns, outbox, leads, circuits).
    When turns run in a worker process, each process exports its own part and the web
    process's /metrics appends the worker's, so no metric family appears twice."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, parts: tuple[str, ...] = ("ingest", "runtime")) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingest = "ingest" in parts
        self.runtime = "runtime" in parts
        r = self.registry
        if self.ingest:
            self.webhooks = Counter(
                "sdr_webhooks_received",
                "Webhook requests by channel and outcome",
                ["channel", "outcome"],
                registry=r,
            )
        if not self.runtime:
            return
        self.turns = Counter(
            "sdr_turns",
            "Turns by kind (agent, fallback, opt_out...; yielded: an answer dropped because the lead wrote again)",
            ["kind"],
            registry=r,
        )
        self.turn_llm = Histogram(
            "sdr_turn_llm_seconds", "Time a turn waited on the model", buckets=_LLM_BUCKETS, registry=r
        )
        self.turn_own = Histogram(
            "sdr_turn_own_seconds",
            "A turn's own time (everything but the model)",
            buckets=_OWN_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "sdr_llm_tokens",
            "LLM tokens (in: prompt, cached included; cached; out)",
            ["direction"],
            registry=r,
        )
        self.debounce = Histogram(
            "sdr_debounce_wait_seconds",
            "From a burst's first message to its turn starting",
            buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60),
            registry=r,
        )
        self.outbox_depth = Gauge(
            "sdr_outbox_depth", "Pending + in-flight items per kind", ["kind"], registry=r
        )
        self.outbox_dead = Gauge(
            "sdr_outbox_dead", "Dead items per kind (see `main.py outbox list`)", ["kind"], registry=r
        )
        self.circuit = Gauge(
            "sdr_circuit_state",
            "Circuit breaker per integration: 0 closed, 1 half-open, 2 open",
            ["integration"],
            registry=r,
        )
        self.leads = Gauge("sdr_leads", "Leads by temperature", ["temperature"], registry=r)

    # --- events -----------------------------------------------------------------------
    def webhook(self, path: str, status: int) -> None:
        channel = _ROUTE_CHANNEL.get(path)
        if channel is not None and self.ingest:
            self.webhooks.labels(channel, _outcome(status)).inc()

    def turn(
        self,
        kind: str,
        *,
        llm_s: float,
        own_s: float,
        tokens_in: int = 0,
        tokens_out: int = 0,
        tokens_cached: int = 0,
    ) -> None:
        if not self.runtime:
            return
        self.turns.labels(kind).inc()
        if llm_s > 0:
            self.turn_llm.observe(llm_s)
        self.turn_own.observe(max(own_s, 0.0))
        if tokens_in:
            self.tokens.labels("in").inc(tokens_in)
        if tokens_out:
            self.tokens.labels("out").inc(tokens_out)
        if tokens_cached:  # the part of "in" served from OpenAI's prompt cache
            self.tokens.labels("cached").inc(tokens_cached)

    def debounced(self, wait_s: float) -> None:
        if self.runtime:
            self.debounce.observe(max(wait_s, 0.0))

    # --- scrape -------------------------------------------------------------------------
    async def render(
        self, store: StoredState, circuits: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    ) -> bytes:
        if self.runtime:
            await self._refresh(store, circuits)
        return generate_latest(self.registry)

    async def _refresh(
        self, store: StoredState, circuits: Callable[[], Mapping[str, Mapping[str, Any]]] | None
    ) -> None:
        by_kind = await store.outbox_stats_by_kind()
        self.outbox_depth.clear()
        self.outbox_dead.clear()
        for kind, stats in by_kind.items():
            self.outbox_depth.labels(kind).set(stats.pending + stats.inflight)
            self.outbox_dead.labels(kind).set(stats.dead)
        counts = await store.lead_counts()
        for temperature in ("frio", "morno", "quente"):
            self.leads.labels(temperature).set(counts.get(temperature, 0))
        if circuits is not None:
            for name, state in circuits().items():
                self.circuit.labels(name).set(_CIRCUIT_VALUES.get(str(state.get("state")), 0))

"""What the running app has done: Prometheus ``/metrics`` and the page's metrics panel.

Counts come from the decision service itself (one listener call per decided batch, so the hot
path pays a few dictionary updates per request, not per metric):

* ``/metrics`` (Prometheus text format, prometheus-client, one registry per app):
  ``fraudstream_decisions_total{decision}``, ``fraudstream_rule_fired_total{rule}``,
  ``fraudstream_shadow_rule_fired_total{rule}`` (rules in shadow mode: recorded, not scored),
  ``fraudstream_decision_latency_seconds`` (histogram of arrival -> decided),
  ``fraudstream_dead_letters_total``, ``fraudstream_duplicates_total``,
  ``fraudstream_late_total``, ``fraudstream_review_queue`` (open alerts), and
  ``fraudstream_live_subscribers``.
* ``GET /v1/metrics``: the panel's JSON: throughput over the last 10 s, latency p50/p99 of
  the last 10,000 decisions, totals by tier and alerts by rule since the decision store's
  first decision (``since``; the store's counts when the app started plus what it decided
  since, or since the start without a store), and for each of the last 5 minutes' seconds
  the decisions by tier and the latency p50/p99.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fraudstream.io.records import iso_ms
from fraudstream.web.guard import ReadAccess, json_response
from fraudstream.web.schemas import MetricsPanel
from fraudstream.web.service import DecisionService

if TYPE_CHECKING:
    from fraudstream.web.review import ReviewDesk

__all__ = ["Metrics", "metrics_router"]

TIERS = ("approve", "review", "decline")
SERIES_SECONDS = 300
THROUGHPUT_WINDOW_S = 10
LATENCY_SAMPLES = 10_000
SECOND_SAMPLES = 2_000
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class _ServiceCollector(Collector):
    """Counters the service keeps anyway, read at scrape time."""

    def __init__(
        self,
        service: DecisionService,
        desk: ReviewDesk,
        stored: tuple[dict[str, int], dict[str, int], str | None] = ({}, {}, None),
    ) -> None:
        self.service = service
        self.desk = desk

    def collect(self) -> Iterator[Any]:
        counts = self.service.counts
        for name, key, text in (
            ("fraudstream_dead_letters", "dead_letters", "Records rejected, with a reason"),
            ("fraudstream_duplicates", "duplicates", "Transaction ids seen before"),
            ("fraudstream_late", "late", "Records too late to decide"),
        ):
            yield CounterMetricFamily(name, text, value=counts[key])
        yield GaugeMetricFamily(
            "fraudstream_review_queue", "Alerts waiting for an analyst", value=self.desk.waiting()
        )
        yield GaugeMetricFamily(
            "fraudstream_live_subscribers",
            "Clients of the live decision feed",
            value=len(self.service.subscribers),
        )


class Metrics:
    """Counters for Prometheus and rolling figures for the page, fed by the service."""

    def __init__(
        self,
        service: DecisionService,
        desk: ReviewDesk,
        stored: tuple[dict[str, int], dict[str, int], str | None] = ({}, {}, None),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "fraudstream_decisions", "Decisions by tier", ["decision"], registry=self.registry
        )
        self.rules = Counter(
            "fraudstream_rule_fired", "Rules that fired", ["rule"], registry=self.registry
        )
        self.shadow_rules = Counter(
            "fraudstream_shadow_rule_fired",
            "Rules in shadow mode that fired (recorded, never scored)",
            ["rule"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fraudstream_decision_latency_seconds",
            "From a transaction's arrival to its decision",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(service, desk))
        self._tier_counters = {tier: self.decisions.labels(decision=tier) for tier in TIERS}
        # each rule's child counter, looked up once (``labels`` takes a lock and builds a key)
        self._rule_counters: dict[str, Any] = {}
        self._shadow_counters: dict[str, Any] = {}
        self.totals = dict.fromkeys(TIERS, 0)
        self.alerts_by_rule: dict[str, int] = {}
        stored_tiers, stored_rules, self.since = stored
        self.stored_totals = {tier: stored_tiers.get(tier, 0) for tier in TIERS}
        self.stored_alerts_by_rule = dict(stored_rules)
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        # one [second, approve, review, decline] row per second that saw decisions, and
        # beside it up to SECOND_SAMPLES of that second's latencies
        self.series: deque[list[int]] = deque(maxlen=SERIES_SECONDS)
        self.second_latencies: deque[list[float]] = deque(maxlen=SERIES_SECONDS)
        self.started = time.time()
        self.started_iso = iso_ms(self.started * 1000)
        service.listeners.append(self.observe)

    def observe(self, rows: list[dict[str, Any]], _summaries: list[dict[str, Any]]) -> None:
        """Counts one decided batch (a service listener)."""
        second = int(time.time())
        if not self.series or self.series[-1][0] != second:
            self.series.append([second, 0, 0, 0])
            self.second_latencies.append([])
        bucket = self.series[-1]
        sampled = self.second_latencies[-1]
        latencies = self.latencies
        observe = self.latency.observe
        alerts_by_rule = self.alerts_by_rule
        for row in rows:
            tier = row["decision"]
            self.totals[tier] += 1
            bucket[1 + TIERS.index(tier)] += 1
            latency = row["latency_ms"]
            latencies.append(latency)
            if len(sampled) < SECOND_SAMPLES:
                sampled.append(latency)
            observe(latency / 1000.0)
            for reason in row["reasons"]:
                self._child(self.rules, self._rule_counters, reason["rule"]).inc()
            for reason in row.get("shadow_reasons", ()):
                self._child(self.shadow_rules, self._shadow_counters, reason["rule"]).inc()
            if tier != "approve":
                for rule in {reason["rule"] for reason in row["reasons"]}:
                    alerts_by_rule[rule] = alerts_by_rule.get(rule, 0) + 1
        for tier in TIERS:
            counted = sum(1 for row in rows if row["decision"] == tier)
            if counted:
                self._tier_counters[tier].inc(counted)

    @staticmethod
    def _child(counter: Counter, children: dict[str, Any], rule: str) -> Any:
        child = children.get(rule)
        if child is None:
            child = children[rule] = counter.labels(rule=rule)
        return child

    def summary(self) -> dict[str, Any]:
        """The panel's figures."""
        now = int(time.time())
        recent = [row for row in self.series if row[0] > now - THROUGHPUT_WINDOW_S]
        window = min(THROUGHPUT_WINDOW_S, max(1.0, time.time() - self.started))
        throughput = sum(sum(row[1:]) for row in recent) / window
        samples = np.fromiter(self.latencies, dtype=np.float64)
        p50, p99, worst = (
            (float(np.percentile(samples, 50)), float(np.percentile(samples, 99)), samples.max())
            if len(samples)
            else (None, None, None)
        )
        return {
            "throughput_per_s": throughput,
            "latency_ms": {
                "p50": p50,
                "p99": p99,
                "max": None if worst is None else float(worst),
                "samples": len(samples),
            },
            "totals": {tier: self.stored_totals[tier] + self.totals[tier] for tier in TIERS},
            "totals_since_start": dict(self.totals),
            "alerts_by_rule": _added(self.stored_alerts_by_rule, self.alerts_by_rule),
            "since": self.since or self.started_iso,
            "started": self.started_iso,
            "series": [
                {"t": row[0], **dict(zip(TIERS, row[1:], strict=True)), **_percentiles(sampled)}
                for row, sampled in zip(self.series, self.second_latencies, strict=True)
                if row[0] > now - SERIES_SECONDS
            ],
        }


def _added(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
    """Counts of both, by key, largest first.

    >>> _added({"a": 1, "b": 5}, {"a": 5, "c": 1})
    {'a': 6, 'b': 5, 'c': 1}
    """
    out = dict(first)
    for key, count in second.items():
        out[key] = out.get(key, 0) + count
    return dict(sorted(out.items(), key=lambda item: (-item[1], item[0])))


def _percentiles(latencies: list[float]) -> dict[str, float]:
    """``p50_ms`` and ``p99_ms`` of one second's latencies (nothing for an empty second)."""
    if not latencies:
        return {}
    p50, p99 = np.percentile(np.asarray(latencies), [50, 99]).tolist()
    return {"p50_ms": p50, "p99_ms": p99}


def metrics_router(metrics: Metrics, reads: ReadAccess) -> APIRouter:
    """``GET /metrics`` (Prometheus, counts only: always open) and ``GET /v1/metrics``."""
    router = APIRouter()

    @router.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format 0.0.4)",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.get(
        "/v1/metrics",
        response_model=MetricsPanel,
        dependencies=reads.dependencies,
        responses=reads.responses,
        summary="Throughput, latency p50/p99, decisions by tier over time",
    )
    async def panel() -> Response:
        return json_response(200, metrics.summary())

    return router

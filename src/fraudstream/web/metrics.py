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
  the last 10,000 decisions, totals, and decisions by tier per second for the last 5 minutes.
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
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class _ServiceCollector(Collector):
    """Counters the service keeps anyway, read at scrape time."""

    def __init__(self, service: DecisionService, desk: ReviewDesk) -> None:
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

    def __init__(self, service: DecisionService, desk: ReviewDesk) -> None:
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
        self.totals = dict.fromkeys(TIERS, 0)
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        # one [second, approve, review, decline] row per second that saw decisions
        self.series: deque[list[int]] = deque(maxlen=SERIES_SECONDS)
        self.started = time.time()
        service.listeners.append(self.observe)

    def observe(self, rows: list[dict[str, Any]], _summaries: list[dict[str, Any]]) -> None:
        """Counts one decided batch (a service listener)."""
        second = int(time.time())
        if not self.series or self.series[-1][0] != second:
            self.series.append([second, 0, 0, 0])
        bucket = self.series[-1]
        latencies = self.latencies
        observe = self.latency.observe
        for row in rows:
            tier = row["decision"]
            self.totals[tier] += 1
            bucket[1 + TIERS.index(tier)] += 1
            latency = row["latency_ms"]
            latencies.append(latency)
            observe(latency / 1000.0)
            for reason in row["reasons"]:
                self.rules.labels(rule=reason["rule"]).inc()
            for reason in row.get("shadow_reasons", ()):
                self.shadow_rules.labels(rule=reason["rule"]).inc()
        for tier in TIERS:
            counted = sum(1 for row in rows if row["decision"] == tier)
            if counted:
                self._tier_counters[tier].inc(counted)

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
            "totals": dict(self.totals),
            "series": [
                {"t": row[0], **dict(zip(TIERS, row[1:], strict=True))}
                for row in self.series
                if row[0] > now - SERIES_SECONDS
            ],
        }


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

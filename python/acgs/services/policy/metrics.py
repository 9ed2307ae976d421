"""Prometheus metrics of the policy service.

The hot path only bumps plain integers and a bisect into a bucket list (no locks, no label
lookups); prometheus_client turns them into families when ``/metrics`` is scraped. Each uvicorn
worker keeps its own numbers, like prometheus_client without multiprocess mode.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from acgs.audit.decision_log import DecisionLog
    from acgs.services.policy.pipeline import DecisionPipeline

#: Decision latency buckets, seconds: from a cache hit (tens of microseconds) to a deadline.
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

#: ``endpoint`` label values of ``acgs_decision_duration_seconds``.
ENDPOINTS = ("data", "decision", "batch", "default")
OUTCOMES = ("allow", "deny", "undefined", "error", "other")


class LatencyHistogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(DURATION_BUCKETS, self.counts, strict=False):
            total += count
            out.append((repr(bound), total))
        out.append(("+Inf", total + self.counts[-1]))
        return out


class PolicyMetrics(Collector):
    """Counters of one service instance; collected into a registry of its own, so several
    apps in one process (tests, ``acgs serve``) do not collide."""

    def __init__(self) -> None:
        self.durations = {name: LatencyHistogram() for name in ENDPOINTS}
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.errors: dict[str, int] = {}
        self.pipeline: DecisionPipeline | None = None
        self.decision_log: DecisionLog | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        hist = HistogramMetricFamily(
            "acgs_decision_duration_seconds",
            "Time to answer a decision request, by endpoint (cache lookups and evaluation included)",
            labels=["endpoint"],
        )
        for name, h in self.durations.items():
            hist.add_metric([name], h.buckets(), h.sum)
        yield hist

        decisions = CounterMetricFamily(
            "acgs_decisions", "Decisions by outcome (other: a value that is neither allow nor deny)", labels=["outcome"]
        )
        for outcome, n in self.outcomes.items():
            decisions.add_metric([outcome], n)
        yield decisions

        errors = CounterMetricFamily("acgs_errors", "Errors answered, by code", labels=["code"])
        for code, n in sorted(self.errors.items()):
            errors.add_metric([code], n)
        yield errors

        dlog = self.decision_log
        yield CounterMetricFamily(
            "acgs_decision_logs_dropped",
            "Decision logs lost (only ever those still queued past the drain deadline at shutdown)",
            value=dlog.dropped if dlog is not None else 0,
        )
        if dlog is not None:
            yield CounterMetricFamily("acgs_decision_logs_written", "Decision logs appended to the audit log", value=dlog.written)
            yield CounterMetricFamily(
                "acgs_decision_logs_backpressure_waits", "Decisions that waited for room in the full log queue", value=dlog.waits
            )
            yield CounterMetricFamily(
                "acgs_decision_logs_failures", "Failed decision log appends (retried in async mode)", value=dlog.failures
            )
            yield CounterMetricFamily(
                "acgs_decision_logs_unacknowledged",
                "Decisions refused (503) in sync mode because the audit log did not acknowledge their event",
                value=dlog.unacknowledged,
            )
            yield GaugeMetricFamily("acgs_decision_logs_queued", "Decision logs waiting to be written", value=dlog.depth)

        pipeline = self.pipeline
        if pipeline is None:
            return
        stats = pipeline.cache_stats()
        cache = CounterMetricFamily(
            "acgs_cache_requests", "Decision cache lookups by level and result", labels=["level", "result"]
        )
        cache.add_metric(["l1", "hit"], stats["hits"])
        cache.add_metric(["l1", "miss"], stats["misses"])
        cache.add_metric(["l2", "hit"], pipeline.l2_counters.hits)
        cache.add_metric(["l2", "miss"], pipeline.l2_counters.misses)
        yield cache
        yield CounterMetricFamily("acgs_cache_evictions", "L1 entries evicted for capacity", value=stats["evictions"])
        yield CounterMetricFamily(
            "acgs_cache_expirations", "L1 entries dropped past their TTL", value=stats.get("expirations", 0)
        )
        entries = GaugeMetricFamily("acgs_cache_entries", "Entries in the L1 cache", labels=["level"])
        entries.add_metric(["l1"], stats["size"])
        yield entries
        yield CounterMetricFamily(
            "acgs_fast_path", "Decisions answered by the partial evaluator's fast path", value=stats["fast_path"]
        )
        yield CounterMetricFamily(
            "acgs_native_evaluations",
            "Decisions evaluated by the native evaluator of the constitution instead of its Wasm",
            value=stats.get("native", 0),
        )
        l2 = pipeline.l2
        if l2 is not None:
            cache_errors = CounterMetricFamily(
                "acgs_cache_errors", "Cache backend failures (timeouts, refused connections)", labels=["level"]
            )
            cache_errors.add_metric(["l2"], l2.errors)
            yield cache_errors
            yield GaugeMetricFamily(
                "acgs_cache_l2_up", "1 while the L2 backend is in use, 0 while it is skipped", value=int(l2.available)
            )
        info = GaugeMetricFamily(
            "acgs_bundle_info",
            "The loaded policy bundle (1) or none (0)",
            labels=["bundle_digest", "revision", "constitutional_hash"],
        )
        info.add_metric(
            [pipeline.bundle_digest, pipeline.revision, pipeline.constitutional_hash or ""], int(pipeline.loaded)
        )
        yield info


"""Prometheus metrics of the audit service (``acgs_audit_*``), in a registry of their own."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from acgs.audit.events import StoredCheckpoint
    from acgs.audit.log import AuditLog

#: Durable append latency buckets, seconds: one fsync takes a millisecond or more.
APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class AuditMetrics(Collector):
    def __init__(self) -> None:
        self.rejected = 0
        self.append_counts = [0] * (len(APPEND_BUCKETS) + 1)
        self.append_sum = 0.0
        self.verify_runs = 0
        self.verify_failures = 0
        self.verified_events = 0
        self.log_size = 0
        self.checkpoint_size = 0
        self.checkpoint_time = 0.0
        self.checkpoints_signed = 0
        self.audit_log: AuditLog | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def appended(self, seconds: float, last_index: int) -> None:
        self.append_counts[bisect_left(APPEND_BUCKETS, seconds)] += 1
        self.append_sum += seconds
        self.log_size = max(self.log_size, last_index + 1)

    def checkpoint_seen(self, cp: StoredCheckpoint) -> None:
        """Notes the latest signed checkpoint: its size and when it was signed."""
        self.checkpoint_size = max(self.checkpoint_size, cp.size)
        self.checkpoint_time = max(self.checkpoint_time, cp.created_us / 1e6)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        log = self.audit_log
        if log is not None:
            yield CounterMetricFamily("acgs_audit_events_appended", "Events appended durably", value=log.appended)
            yield CounterMetricFamily(
                "acgs_audit_events_duplicate", "Events acknowledged as already stored (same idempotency key)",
                value=log.duplicates,
            )  # fmt: skip
            commits = getattr(log.store, "commits", 0)
            events = getattr(log.store, "committed_events", 0)
            yield CounterMetricFamily("acgs_audit_commits", "Group-commit transactions", value=commits)
            yield GaugeMetricFamily(
                "acgs_audit_events_per_commit", "Average events per group commit", value=events / commits if commits else 0.0
            )
        yield CounterMetricFamily("acgs_audit_events_rejected", "Events refused with 422", value=self.rejected)
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(APPEND_BUCKETS, self.append_counts, strict=False):
            total += count
            buckets.append((repr(bound), total))
        buckets.append(("+Inf", total + self.append_counts[-1]))
        hist = HistogramMetricFamily(
            "acgs_audit_append_duration_seconds", "Time from request to durable acknowledgement of an append"
        )
        hist.add_metric([], buckets, self.append_sum)
        yield hist
        yield GaugeMetricFamily("acgs_audit_log_size", "Events in the log (as last seen by this process)", value=self.log_size)
        yield GaugeMetricFamily("acgs_audit_checkpoint_size", "Tree size of the latest signed checkpoint", value=self.checkpoint_size)
        yield GaugeMetricFamily(
            "acgs_audit_checkpoint_timestamp_seconds",
            "When the latest signed checkpoint this process has seen was signed, Unix time (0: none yet)",
            value=self.checkpoint_time,
        )
        yield CounterMetricFamily("acgs_audit_checkpoints_signed", "Checkpoints signed by this process", value=self.checkpoints_signed)
        yield CounterMetricFamily("acgs_audit_verify_runs", "Verifications run", value=self.verify_runs)
        yield CounterMetricFamily("acgs_audit_verify_failures", "Verifications that found a bad event", value=self.verify_failures)
        yield CounterMetricFamily("acgs_audit_verified_events", "Events re-hashed by verifications", value=self.verified_events)

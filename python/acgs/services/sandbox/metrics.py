"""Prometheus metrics of the sandbox controller (``acgs_sandbox_*``), in a registry of their
own: runs by runtime and outcome, limits reached, syscall violations, run time, each runtime's
availability and measured start-up time, and the run queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from acgs.services.common.observability import Histogram, service_registry

if TYPE_CHECKING:
    from acgs.services.sandbox.service import SandboxService

#: Wall time of a run, seconds: from a trivial script to a long timeout.
RUN_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Runtime label of runs that never got one (denied, or no runtime fit).
NO_RUNTIME: Final = "none"


class SandboxMetrics(Collector):
    """Runs finish on worker threads, so updates take a lock (a run costs milliseconds; the
    lock costs nothing next to it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: dict[tuple[str, str], int] = {}
        self.limits_hit: dict[tuple[str, str], int] = {}
        self.violations: dict[tuple[str, str], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.service: SandboxService | None = None
        self.registry = service_registry()
        self.registry.register(self)

    def finished(self, record: dict[str, Any]) -> None:
        """Counts one execution record in its final state."""
        runtime = str(record.get("runtime") or NO_RUNTIME)
        status = str(record.get("status"))
        with self._lock:
            key = (runtime, status)
            self.runs[key] = self.runs.get(key, 0) + 1
            for limit in record.get("limits_hit") or ():
                k = (runtime, str(limit))
                self.limits_hit[k] = self.limits_hit.get(k, 0) + 1
            for violation in record.get("violations") or ():
                k = (runtime, str(violation.get("action", "deny")))
                self.violations[k] = self.violations.get(k, 0) + int(violation.get("count", 1))
            if record.get("started_at") is not None:
                wall_ms = float((record.get("resource_usage") or {}).get("wall_ms", 0.0))
                hist = self.durations.get(runtime)
                if hist is None:
                    hist = self.durations[runtime] = Histogram(RUN_BUCKETS)
                hist.observe(wall_ms / 1000.0)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            runs = sorted(self.runs.items())
            limits = sorted(self.limits_hit.items())
            violations = sorted(self.violations.items())
            durations = [(name, h.buckets(), h.sum) for name, h in sorted(self.durations.items())]
        family = CounterMetricFamily(
            "acgs_sandbox_runs",
            "Executions finished, by runtime (none: never got one) and status (completed, timeout, killed, denied, error)",
            labels=["runtime", "status"],
        )
        for (runtime, status), n in runs:
            family.add_metric([runtime, status], n)
        yield family
        family = CounterMetricFamily(
            "acgs_sandbox_limits_hit", "Limits runs reached (timeout_s, cpu_seconds, memory_mb, pids, disk_mb)", labels=["runtime", "limit"]
        )
        for (runtime, limit), n in limits:
            family.add_metric([runtime, limit], n)
        yield family
        family = CounterMetricFamily(
            "acgs_sandbox_syscall_violations",
            "Syscalls the seccomp profile refused, by the rule's action (deny, enosys, kill)",
            labels=["runtime", "action"],
        )
        for (runtime, action), n in violations:
            family.add_metric([runtime, action], n)
        yield family
        hist = HistogramMetricFamily("acgs_sandbox_run_duration_seconds", "Wall time of runs that started", labels=["runtime"])
        for runtime, buckets, total in durations:
            hist.add_metric([runtime], buckets, total)
        yield hist
        service = self.service
        if service is None:
            return
        available = GaugeMetricFamily("acgs_sandbox_runtime_available", "1 if the runtime can run here", labels=["runtime"])
        startup = GaugeMetricFamily(
            "acgs_sandbox_runtime_startup_seconds",
            "Cold start of the runtime measured at start-up (a trial run of /usr/bin/true)",
            labels=["runtime"],
        )
        for name, rt_status in service.statuses.items():
            available.add_metric([name], int(rt_status.available))
            trial_ms = rt_status.details.get("trial_run_ms")
            if isinstance(trial_ms, int | float):
                startup.add_metric([name], trial_ms / 1000.0)
        yield available
        yield startup
        queue = service.queue.stats()
        yield GaugeMetricFamily("acgs_sandbox_runs_running", "Runs in progress", value=queue["running"])
        yield GaugeMetricFamily("acgs_sandbox_runs_waiting", "Runs queued for a free slot", value=queue["waiting"])

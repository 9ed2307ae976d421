"""Prometheus metrics of the evolution service (``acgs_evolution_*``), in a registry of their
own: submissions by the constitution's approval route, state transitions, reviews and how long
they took, and how many requests are in each state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from acgs.services.common.observability import Histogram, service_registry
from acgs.services.evolution.records import Status

#: Time from submission to a reviewer's final verdict, seconds: minutes to the review deadline.
REVIEW_BUCKETS: Final = (1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0)
#: The constitution's approval routes, and the route of a single action held for approval.
APPROVAL_TYPES: Final = ("auto_approve", "fast_track", "human_review", "rejected", "action_review")
VERDICTS: Final = ("approved", "rejected")


class EvolutionMetrics(Collector):
    def __init__(self) -> None:
        self.submitted = dict.fromkeys(APPROVAL_TYPES, 0)
        self.engine_faults = 0
        self.transitions: dict[tuple[str, str], int] = {}
        self.reviews = {verdict: Histogram(REVIEW_BUCKETS) for verdict in VERDICTS}
        #: Requests in each state, as the store last counted them (None: not counted yet).
        self.by_status: dict[str, int] | None = None
        self.registry = service_registry()
        self.registry.register(self)

    def submission(self, approval_type: str, engine_fault: bool) -> None:
        self.submitted[approval_type] = self.submitted.get(approval_type, 0) + 1
        if engine_fault:
            self.engine_faults += 1

    def transition(self, previous: Status | None, to: Status) -> None:
        key = (previous.value if previous is not None else "new", to.value)
        self.transitions[key] = self.transitions.get(key, 0) + 1

    def reviewed(self, verdict: str, seconds: float) -> None:
        self.reviews[verdict].observe(max(seconds, 0.0))

    def collect(self) -> Iterator[Metric]:
        submitted = CounterMetricFamily(
            "acgs_evolution_requests_submitted",
            "Change requests submitted, by the constitution's approval route",
            labels=["approval_type"],
        )
        for approval_type, n in self.submitted.items():
            submitted.add_metric([approval_type], n)
        yield submitted
        yield CounterMetricFamily(
            "acgs_evolution_assessment_faults",
            "Submissions rejected because the policy engine could not assess them (fail closed)",
            value=self.engine_faults,
        )
        transitions = CounterMetricFamily(
            "acgs_evolution_transitions",
            "State changes of change requests (from new: decided at submission)",
            labels=["from", "to"],
        )
        for (previous, to), n in sorted(self.transitions.items()):
            transitions.add_metric([previous, to], n)
        yield transitions
        reviews = HistogramMetricFamily(
            "acgs_evolution_review_duration_seconds",
            "Time from submission to a reviewer's final verdict, by verdict",
            labels=["verdict"],
        )
        for verdict, hist in self.reviews.items():
            reviews.add_metric([verdict], hist.buckets(), hist.sum)
        yield reviews
        if self.by_status is not None:
            states = GaugeMetricFamily(
                "acgs_evolution_requests", "Change requests in each state (counted by the expiry sweep)", labels=["status"]
            )
            for status, n in self.by_status.items():
                states.add_metric([status], n)
            yield states

"""The HTTP metrics every service exports, under the same names and labels:

- ``acgs_http_requests_total{service, route, method, code}``
- ``acgs_http_request_duration_seconds{service, route, method}`` (histogram)
- ``acgs_http_requests_in_flight{service}``: requests received and not yet answered

``route`` is the route's template (``/v1/data/{path}``), never the raw path, and ``unmatched``
for a request no route answered; ``method`` outside the usual verbs is ``other``. Both keep the
number of series bounded whatever clients send.

Recording a request bumps plain integers (no locks, no label lookups): the services record on
their event loop, and prometheus_client builds the families only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

#: Request latency buckets, seconds: from a cached decision to a slow sandbox run.
HTTP_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
UNMATCHED: Final = "unmatched"
_METHODS: Final = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class Histogram:
    """Bucket counts and a sum, turned into a Prometheus histogram at scrape time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            total += count
            out.append((repr(float(bound)), total))
        out.append(("+Inf", total + self.counts[-1]))
        return out


class RouteStats:
    """Requests of one route and method: a count per status code and a latency histogram."""

    __slots__ = ("codes", "counts", "sum")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.counts = [0] * (len(HTTP_BUCKETS) + 1)
        self.sum = 0.0


class HttpMetrics(Collector):
    """One service's HTTP counters. ``observe`` is on every request's path: one dict lookup
    for the route and method, one for the status, one bisect."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.routes: dict[tuple[str, str], RouteStats] = {}
        #: Requests started and not yet finished (``RequestObserver`` keeps it).
        self.in_flight = 0

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        stats = self.routes.get((route, method))
        if stats is None:
            stats = self._stats(route, method)
        codes = stats.codes
        codes[status] = codes.get(status, 0) + 1
        stats.counts[bisect_left(HTTP_BUCKETS, seconds)] += 1
        stats.sum += seconds

    def _stats(self, route: str, method: str) -> RouteStats:
        # A method outside the usual verbs is counted as "other" and never becomes a key.
        if method not in _METHODS:
            method = "other"
        stats = self.routes.get((route, method))
        if stats is None:
            stats = self.routes[(route, method)] = RouteStats()
        return stats

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "acgs_http_requests",
            "HTTP requests answered, by route template, method and status code",
            labels=["service", "route", "method", "code"],
        )
        durations = HistogramMetricFamily(
            "acgs_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template and method",
            labels=["service", "route", "method"],
        )
        for (route, method), stats in sorted(self.routes.items()):
            for code, n in sorted(stats.codes.items()):
                requests.add_metric([self.service, route, method, str(code)], n)
            buckets: list[tuple[str, float]] = []
            total = 0
            for bound, count in zip(HTTP_BUCKETS, stats.counts, strict=False):
                total += count
                buckets.append((repr(bound), total))
            buckets.append(("+Inf", total + stats.counts[-1]))
            durations.add_metric([self.service, route, method], buckets, stats.sum)
        yield requests
        yield durations
        in_flight = GaugeMetricFamily(
            "acgs_http_requests_in_flight", "HTTP requests received and not yet answered", labels=["service"]
        )
        in_flight.add_metric([self.service], self.in_flight)
        yield in_flight


def service_registry() -> CollectorRegistry:
    """A registry of one service's own: several services in one process (``acgs serve``,
    tests) each export only their own numbers, and none touches prometheus_client's global
    registry."""
    return CollectorRegistry(auto_describe=False)

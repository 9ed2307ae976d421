"""Observability shared by the four services: Prometheus metrics in a registry per service
with the same ``acgs_http_*`` families everywhere, structured logs carrying the request id and
decision id, and optional OpenTelemetry traces.

A service's ``create_app`` calls :func:`install_observability` (the policy service, whose
decision path bypasses FastAPI's middleware, calls :func:`observer_for` and observes requests
itself); the process calls :func:`configure_logging` once at start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from starlette.responses import PlainTextResponse, Response

from acgs.services.common.observability.context import current, note_decision
from acgs.services.common.observability.http import ObservedApp, RequestObserver, route_of
from acgs.services.common.observability.logs import JsonFormatter, TextFormatter, configure_logging
from acgs.services.common.observability.metrics import HttpMetrics, Histogram, service_registry
from acgs.services.common.observability.settings import ENV_NAMES, PARSERS, ObservabilitySettings
from acgs.services.common.observability.tracing import tracing_for

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider


def observer_for(
    service: str,
    registry: CollectorRegistry,
    settings: ObservabilitySettings | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> RequestObserver:
    """The service's request observer, its HTTP metrics and the process's metrics registered
    in ``registry``."""
    settings = settings or ObservabilitySettings.from_env()
    http = HttpMetrics(service)
    registry.register(http)
    ProcessCollector(registry=registry)
    return RequestObserver(
        service, http, access_log=settings.access_log, tracing=tracing_for(settings, service, tracer_provider)
    )


def install_observability(
    app: FastAPI,
    service: str,
    registry: CollectorRegistry,
    settings: ObservabilitySettings | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> RequestObserver:
    """Observes every request of ``app`` (as the outermost of its middleware so far: call it
    last in ``create_app``) and serves ``registry`` on ``GET /metrics`` unless the app has its
    own route there."""
    observer = observer_for(service, registry, settings, tracer_provider=tracer_provider)
    app.add_middleware(ObservedApp, observer=observer)
    if not any(getattr(route, "path", None) == "/metrics" for route in app.router.routes):

        async def metrics() -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

        app.add_api_route(
            "/metrics",
            metrics,
            methods=["GET"],
            tags=["operations"],
            summary="Prometheus metrics",
            response_class=PlainTextResponse,
        )
    app.state.observer = observer
    return observer


__all__ = [
    "ENV_NAMES",
    "PARSERS",
    "Histogram",
    "HttpMetrics",
    "JsonFormatter",
    "ObservabilitySettings",
    "ObservedApp",
    "RequestObserver",
    "TextFormatter",
    "configure_logging",
    "current",
    "install_observability",
    "note_decision",
    "observer_for",
    "route_of",
    "service_registry",
]

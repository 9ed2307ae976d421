"""Optional OpenTelemetry traces: a server span per request, exported over OTLP/HTTP. Only
when the settings turn tracing on and the ``otel`` extra (opentelemetry-sdk and its OTLP/HTTP
exporter) is installed; ACGS itself never imports OpenTelemetry otherwise."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.types import Scope

import acgs
from acgs.services.common.observability.settings import ObservabilitySettings

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

log = logging.getLogger("acgs.services.observability")


class Tracing:
    """Starts and ends one service's request spans; holds the OpenTelemetry modules it needs so
    a request pays no import lookups."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import context, propagate, trace

        self.tracer = tracer
        self._context = context
        self._propagate = propagate
        self._trace = trace

    def start(self, scope: Scope, request_id: str) -> tuple[Span, object]:
        """A server span for the request, its parent taken from a W3C ``traceparent`` header,
        made current; returns the span and the token that ``end`` detaches."""
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        parent = self._propagate.extract(carrier)
        method = scope["method"]
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"], "acgs.request_id": request_id},
        )
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        return span, token

    def end(self, span: Span, token: object, method: str, route: str, status: int, decision_id: str | None) -> None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if decision_id is not None:
            span.set_attribute("acgs.decision_id", decision_id)
        if status >= 500:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()
        self._context.detach(token)  # type: ignore[arg-type]

    @staticmethod
    def trace_id(span: Span) -> str:
        return format(span.get_span_context().trace_id, "032x")


def tracing_for(
    settings: ObservabilitySettings, service: str, provider: TracerProvider | None = None
) -> Tracing | None:
    """The service's tracing, or None when it is off or OpenTelemetry is not installed. Each
    service gets a provider of its own (not the global one), so four services in one process
    report under four names. ``provider`` replaces the OTLP one (tests pass an in-memory
    exporter's)."""
    if not settings.otel_enabled:
        return None
    if provider is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning(
                "ACGS_OTEL_ENABLED is on but opentelemetry-sdk or its OTLP/HTTP exporter is not installed "
                "(pip install 'acgs[otel]'); the %s service runs untraced",
                service,
            )
            return None
        resource = Resource.create(
            {
                "service.name": settings.otel_service_prefix + service,
                "service.namespace": "acgs",
                "service.version": acgs.__version__,
            }
        )
        sdk_provider = SdkTracerProvider(resource=resource)
        sdk_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{settings.otel_endpoint}/v1/traces")))
        provider = sdk_provider
    return Tracing(provider.get_tracer("acgs.services", acgs.__version__))

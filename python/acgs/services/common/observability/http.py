"""Per-request observation shared by the services: request id in and out (``X-Request-ID``),
the log context, the HTTP metrics, an optional span and an optional access log line.

``ObservedApp`` is the ASGI middleware the FastAPI services install; the policy service, whose
decision path bypasses FastAPI's middleware stack, calls ``RequestObserver.start`` and
``finish`` itself."""

from __future__ import annotations

import logging
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from acgs.services.common.observability.context import RequestContext, enter, leave, request_id_of
from acgs.services.common.observability.metrics import UNMATCHED, HttpMetrics

if TYPE_CHECKING:
    from acgs.services.common.observability.tracing import Tracing

access_log = logging.getLogger("acgs.access")


def route_of(scope: Scope) -> str:
    """The template of the route that answered (set in the scope by Starlette's router)."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class RequestObserver:
    """What one service does around every HTTP request."""

    def __init__(self, service: str, metrics: HttpMetrics, *, access_log: bool = False, tracing: Tracing | None = None) -> None:
        self.service = service
        self.metrics = metrics
        self.access_log = access_log
        self.tracing = tracing

    def start(self, scope: Scope) -> RequestContext:
        obs = RequestContext(self.service, request_id_of(scope["headers"]))
        obs.token = enter(obs)
        obs.started = perf_counter()
        self.metrics.in_flight += 1
        if self.tracing is not None:
            obs.span, obs.otel_token = self.tracing.start(scope, obs.request_id)
            obs.trace_id = self.tracing.trace_id(obs.span)
        return obs

    def finish(self, obs: RequestContext, scope: Scope, route: str, status: int, *, failed: bool = False) -> None:
        """Records the request. After a failure (an exception on its way to the server's error
        handler) the log context stays set, so the handler's log line still names the request;
        each request runs in a task of its own, so it ends there."""
        seconds = perf_counter() - obs.started
        method: str = scope["method"]
        self.metrics.in_flight -= 1
        self.metrics.observe(route, method, status, seconds)
        if obs.span is not None and self.tracing is not None:
            self.tracing.end(obs.span, obs.otel_token, method, route, status, obs.decision_id)
        if self.access_log:
            path: str = scope["path"]
            ms = round(seconds * 1000.0, 3)
            access_log.info(
                "%s %s %d %.3fms",
                method,
                path,
                status,
                ms,
                extra={"fields": {"method": method, "path": path, "route": route, "status": status, "duration_ms": ms}},
            )
        if not failed and obs.token is not None:
            leave(obs.token)


class ObservedApp:
    """ASGI middleware: every HTTP request through ``RequestObserver``."""

    def __init__(self, app: ASGIApp, observer: RequestObserver) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        observer = self.observer
        obs = observer.start(scope)
        status = [500]
        try:
            await self.app(scope, receive, with_request_id(send, obs, status))
        except BaseException:
            observer.finish(obs, scope, route_of(scope), status[0], failed=True)
            raise
        observer.finish(obs, scope, route_of(scope), status[0])


def with_request_id(send: Send, obs: RequestContext, status_box: list[int]) -> Send:
    """``send`` that adds the request id header and notes the status in ``status_box[0]``."""

    async def observed(message: Message) -> None:
        if message["type"] == "http.response.start":
            status_box[0] = message["status"]
            message["headers"] = [*message.get("headers", ()), obs.header]
        await send(message)

    return observed


__all__ = ["ObservedApp", "RequestObserver", "route_of", "with_request_id"]

"""The policy service's ASGI app: ``create_app(settings)`` loads the bundle, connects the L2
cache when configured, and mounts the routes. ``python -m acgs.services.policy`` serves it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import acgs
from acgs.cache import L2Cache
from acgs.services.common.errors import install_error_handlers
from acgs.services.policy.deps import PolicyService
from acgs.services.policy.metrics import PolicyMetrics
from acgs.services.policy.pipeline import DecisionPipeline
from acgs.services.policy.routes import router
from acgs.services.policy.settings import PolicySettings

log = logging.getLogger("acgs.services.policy")


def _endpoint_of(path: str) -> str:
    """The ``endpoint`` label of ``acgs_http_requests_total``: a fixed, small set."""
    if path.startswith("/v1/data"):
        return "data"
    if path.startswith("/v1/batch/"):
        return "batch"
    if path.startswith("/health"):
        return "health"
    if path == "/metrics":
        return "metrics"
    if path == "/":
        return "default"
    return "other"


class RequestCounter:
    """Counts every HTTP response, 404s and 405s from routing included (pure ASGI: a
    BaseHTTPMiddleware would cost a task per request)."""

    def __init__(self, app: ASGIApp, metrics: PolicyMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            self.metrics.request(_endpoint_of(scope["path"]), scope["method"], status)


def _l2_for(settings: PolicySettings) -> L2Cache | None:
    if not settings.redis_url:
        return None
    from acgs.cache.redis_l2 import RedisL2

    return RedisL2(
        settings.redis_url,
        ttl=settings.l2_ttl,
        timeout_ms=settings.redis_timeout_ms,
        retry_after=settings.redis_retry_after,
    )


def create_app(settings: PolicySettings | None = None) -> FastAPI:
    """The policy service for ``settings`` (default: from the environment). The bundle is
    loaded here, so the app answers without a lifespan run (ASGI test transports); a bundle
    that fails to load leaves the app up, unhealthy (503), denying every decision."""
    settings = settings or PolicySettings.from_env()
    pipeline = DecisionPipeline.load(
        settings.bundle,
        timeout_ms=settings.timeout_ms,
        memory_limit=settings.memory_limit,
        cache_size=settings.cache_size,
        cache_ttl=settings.cache_ttl,
        l2=_l2_for(settings),
    )
    if pipeline.load_error is not None:
        log.error("policy service starts without a bundle: %s", pipeline.load_error.message)
    metrics = PolicyMetrics()
    metrics.pipeline = pipeline
    service = PolicyService(settings=settings, pipeline=pipeline, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await pipeline.close()

    app = FastAPI(
        title="ACGS policy engine",
        version=acgs.__version__,
        description="OPA-compatible decisions over ACGS's constitution (port 8004).",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.policy = service
    app.include_router(router)
    install_error_handlers(app, metrics.error)
    app.add_middleware(RequestCounter, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from ``ACGS_*``."""
    return create_app(PolicySettings.from_env())

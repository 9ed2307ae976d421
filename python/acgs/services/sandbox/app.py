"""The sandbox controller's FastAPI application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from acgs.security import SecuritySettings, install_security
from acgs.services.common.observability import ObservabilitySettings, install_observability
from acgs.services.sandbox.access import ACCESS
from acgs.services.sandbox.metrics import SandboxMetrics
from acgs.services.sandbox.routes import router
from acgs.services.sandbox.service import SandboxService
from acgs.services.sandbox.settings import SandboxSettings
from acgs.registry.settings import RegistrySettings
from acgs.trust import open_facts

log = logging.getLogger("acgs.services.sandbox")


class _BodyLimit:
    """Refuse bodies over the limit before FastAPI reads them into memory."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                resp = JSONResponse(
                    {"code": "request_too_large", "message": f"request body over {self.limit} bytes"}, status_code=413
                )
                await resp(scope, receive, send)
                return
        seen = 0

        async def limited() -> dict[str, object]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                seen += len(body) if isinstance(body, bytes) else 0
                if seen > self.limit:
                    raise _TooLarge()
            return dict(message)

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            resp = JSONResponse({"code": "request_too_large", "message": f"request body over {self.limit} bytes"}, status_code=413)
            await resp(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(
    settings: SandboxSettings | None = None,
    service: SandboxService | None = None,
    *,
    security: SecuritySettings | None = None,
    observability: ObservabilitySettings | None = None,
    agent_registry: RegistrySettings | None = None,
) -> FastAPI:
    """The app; ``service`` (already started) replaces the one the lifespan would build.
    ``security`` (default: from the environment) turns on authentication and rate limits;
    ``observability`` (default: from the environment) sets request logging and tracing."""
    settings = settings or SandboxSettings.from_env()
    metrics = service.metrics if service is not None else SandboxMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = service is None
        svc = service or SandboxService(settings, metrics=metrics)
        if own:
            await asyncio.to_thread(svc.start)
        app.state.sandbox = svc
        for name, status in svc.statuses.items():
            log.info("runtime %s: %s", name, "available" if status.available else f"unavailable ({status.reason})")
        sec = security or SecuritySettings.from_env()
        facts = await open_facts(svc.engine.data, auth=sec.auth, redis_url=sec.redis_url, registry_settings=agent_registry)
        app.state.trusted_facts = facts
        try:
            yield
        finally:
            await facts.close()
            if own:
                await asyncio.to_thread(svc.close)

    app = FastAPI(
        title="ACGS sandbox controller",
        description="Runs agent code under bubblewrap or gVisor with the limits the constitution grants.",
        lifespan=lifespan,
    )
    app.include_router(router)
    if service is not None:
        app.state.sandbox = service

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse({"code": "invalid_request", "message": "invalid request", "errors": errors}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own errors (a body that is not JSON, an unknown path) in the service's
        # error shape rather than Starlette's {"detail": ...}.
        assert isinstance(exc, StarletteHTTPException)
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    install_security(app, ACCESS, security=security, registry=metrics.registry)
    install_observability(app, "sandbox", metrics.registry, observability)
    return app

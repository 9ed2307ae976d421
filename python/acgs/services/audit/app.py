"""The audit service's ASGI app: ``create_app(settings)`` opens the log (SQLite under the data
directory, or PostgreSQL), loads or creates the signing key, signs checkpoints in the
background as the log grows, and mounts the routes. ``python -m acgs.services.audit`` serves it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import acgs
from acgs.audit import keys
from acgs.audit.archive import Archiver, target_from_url
from acgs.audit.log import AuditLog
from acgs.audit.store import open_store
from acgs.errors import AcgsError, AuditArgumentError, AuditIntegrityError
from acgs.security import OPA_ERRORS, SecuritySettings, install_security
from acgs.services.audit import routes
from acgs.services.audit.access import ACCESS
from acgs.services.audit.limits import BodyLimit
from acgs.services.audit.metrics import AuditMetrics
from acgs.services.audit.settings import AuditSettings
from acgs.services.common.observability import ObservabilitySettings, install_observability

log = logging.getLogger("acgs.services.audit")


def _error(status: int, code: str, message: str, errors: list[dict[str, object]] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "errors": errors or []}, status_code=status)


def _field(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _install_error_handlers(app: FastAPI, metrics: AuditMetrics) -> None:
    async def on_rejected(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, routes.EventRejected)
        return _error(422, "invalid_event", exc.message)

    async def on_forbidden(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, routes.EventForbidden)
        metrics.rejected += 1
        return _error(403, "reserved_event_type", exc.message)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if request.url.path.startswith("/audit/event"):
            metrics.rejected += 1
        errors: list[dict[str, object]] = []
        for e in exc.errors():
            message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            errors.append({"field": _field(tuple(e.get("loc", ()))), "message": message, "type": e.get("type")})
        summary = "; ".join(f"{x['field']}: {x['message']}" for x in errors) or "invalid request"
        return _error(422, "invalid_event" if request.url.path.startswith("/audit/event") else "invalid_request", summary, errors)

    async def on_acgs_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AcgsError)
        if isinstance(exc, AuditArgumentError):
            return _error(400, exc.code, exc.message)
        if isinstance(exc, AuditIntegrityError):
            log.error("audit log integrity: %s", exc.message)
        else:
            log.exception("audit error on %s %s", request.method, request.url.path)
        return _error(500, exc.code, exc.message)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "internal error")

    app.add_exception_handler(routes.EventRejected, on_rejected)
    app.add_exception_handler(routes.EventForbidden, on_forbidden)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(AcgsError, on_acgs_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


async def _checkpoints(audit_log: AuditLog, metrics: AuditMetrics, interval: float) -> None:
    """Signs a checkpoint whenever the log grew, so proofs and exports have a recent one."""
    while True:
        await asyncio.sleep(interval)
        try:
            before = await audit_log.checkpoint(refresh=False)
            cp = await audit_log.checkpoint()
            if cp is not None:
                if before is None or before.size != cp.size:
                    metrics.checkpoints_signed += 1
                metrics.checkpoint_seen(cp)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background checkpoint failed; retrying in %.0fs", interval)


async def _archive(archiver: Archiver, interval: float) -> None:
    """Seals and archives complete segments as the log grows."""
    while True:
        try:
            await archiver.seal()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("archiving audit segments failed; retrying in %.0fs", interval)
        await asyncio.sleep(interval)


def archiver_for(settings: AuditSettings, audit_log: AuditLog) -> Archiver | None:
    if settings.segment_size <= 0:
        return None
    target = target_from_url(settings.resolved_archive(), endpoint_url=settings.archive_endpoint)
    return Archiver(audit_log, target, settings.segment_size)


def open_log(settings: AuditSettings) -> AuditLog:
    """The log the settings describe (not yet opened), with its signing key."""
    private_key = keys.load_or_create(settings.data_dir, settings.origin or keys.DEFAULT_ORIGIN)
    return AuditLog(
        open_store(settings.resolved_database_url()),
        private_key,
        origin=settings.origin,
        witness=settings.data_dir / keys.WITNESS_FILE,
    )


def create_app(
    settings: AuditSettings | None = None,
    *,
    audit_log: AuditLog | None = None,
    security: SecuritySettings | None = None,
    observability: ObservabilitySettings | None = None,
) -> FastAPI:
    """The service. The log is built from ``settings`` unless given; it is opened and closed
    with the app's lifespan. ``security`` (default: from the environment) turns on
    authentication and rate limits; ``observability`` (default: from the environment) sets
    request logging and tracing."""
    settings = settings or AuditSettings.from_env()
    audit_log = audit_log or open_log(settings)
    metrics = AuditMetrics()
    metrics.audit_log = audit_log

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await audit_log.open()
        tasks: list[asyncio.Task[None]] = []
        if settings.checkpoint_interval > 0:
            tasks.append(
                asyncio.create_task(
                    _checkpoints(audit_log, metrics, settings.checkpoint_interval), name="acgs-audit-checkpoints"
                )
            )
        publisher = None
        if settings.kafka_bootstrap:
            from acgs.audit.stream import KafkaPublisher, StreamRelay

            publisher = KafkaPublisher(settings.kafka_bootstrap, settings.kafka_topic)
            relay = StreamRelay(audit_log.store, publisher)
            tasks.append(asyncio.create_task(relay.run(), name="acgs-audit-stream"))
        archiver = archiver_for(settings, audit_log)
        if archiver is not None and settings.archive_interval > 0:
            tasks.append(asyncio.create_task(_archive(archiver, settings.archive_interval), name="acgs-audit-archive"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if publisher is not None:
                await publisher.close()
            await audit_log.close()

    app = FastAPI(
        title="ACGS audit engine",
        version=acgs.__version__,
        description="Append-only, hash-chained audit log with Merkle proofs and signed checkpoints (port 8003).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.audit_log = audit_log
    app.state.metrics = metrics
    _install_error_handlers(app, metrics)
    app.include_router(routes.router)
    app.add_middleware(BodyLimit, max_body=settings.max_body)
    install_security(app, ACCESS, security=security, style=OPA_ERRORS, registry=metrics.registry)
    install_observability(app, "audit", metrics.registry, observability)
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory acgs.services.audit.app:app_from_env``."""
    return create_app(AuditSettings.from_env())

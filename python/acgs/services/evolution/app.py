"""The evolution service's ASGI app: ``create_app(settings)`` loads the constitution, opens the
store, and runs the expiry sweep (and, when an audit sink is attached, the outbox relay)
alongside the routes. ``python -m acgs.services.evolution`` serves it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import acgs
from acgs.registry.settings import RegistrySettings
from acgs.security import SecuritySettings, install_security
from acgs.security.oidc import OidcSettings, OidcSignIn, with_sign_in
from acgs.services.common.observability import ObservabilitySettings, install_observability
from acgs.services.evolution import routes
from acgs.services.evolution.access import ACCESS
from acgs.services.evolution.assessment import Assessor
from acgs.services.evolution.audit import AuditSink, OutboxRelay
from acgs.services.evolution.metrics import EvolutionMetrics
from acgs.services.evolution.rollback import RollbackExecutor, load_executor
from acgs.services.evolution.settings import EvolutionSettings
from acgs.services.evolution.store import EvolutionStore, open_store
from acgs.services.evolution.webhooks import WebhookRelay
from acgs.services.evolution.workflow import Workflow, WorkflowError
from acgs.trust import open_facts

if TYPE_CHECKING:
    from acgs.trust.sessions import SessionLedger

log = logging.getLogger("acgs.services.evolution")


def _error(
    status: int, code: str, message: str, errors: list[dict[str, object]] | None = None, details: dict[str, object] | None = None
) -> JSONResponse:
    return JSONResponse({**(details or {}), "code": code, "message": message, "errors": errors or []}, status_code=status)


def _field(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _install_error_handlers(app: FastAPI) -> None:
    async def on_workflow_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, WorkflowError)
        return _error(exc.status, exc.code, exc.message, details=exc.details)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors: list[dict[str, object]] = []
        for e in exc.errors():
            message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            errors.append({"field": _field(tuple(e.get("loc", ()))), "message": message, "type": e.get("type")})
        summary = "; ".join(f"{x['field']}: {x['message']}" for x in errors) or "invalid request"
        return _error(422, "invalid_request", summary, errors)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "internal error")

    app.add_exception_handler(WorkflowError, on_workflow_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


async def _sweep(workflow: Workflow, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await workflow.expire_due()
            if expired:
                log.info("expired %d overdue evolution request(s)", expired)
            await workflow.count_by_status()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("expiry sweep failed; retrying in %.0fs", interval)


def create_app(
    settings: EvolutionSettings | None = None,
    *,
    store: EvolutionStore | None = None,
    assessor: Assessor | None = None,
    executor: RollbackExecutor | None = None,
    audit_sink: AuditSink | None = None,
    clock: Callable[[], float] = time.time,
    security: SecuritySettings | None = None,
    observability: ObservabilitySettings | None = None,
    agent_registry: RegistrySettings | None = None,
    session_ledger: SessionLedger | None = None,
    oidc: OidcSettings | None = None,
) -> FastAPI:
    """The service. Anything not passed is built from ``settings``: the assessor from the
    bundle, the store from the database URL, the rollback executor from its factory. With an
    ``audit_sink`` the outbox is relayed to it; without one, events wait in the outbox.
    ``security`` (default: from the environment) turns on authentication and rate limits;
    ``observability`` (default: from the environment) sets request logging and tracing;
    ``agent_registry`` (with authentication on) is where callers' trusted facts come from;
    ``session_ledger`` (``acgs.trust.sessions``, shared with the policy service in ``acgs
    serve``; or set as ``app.state.session_ledger`` before start-up) gives an action's decision
    its session's history and learns how reviewers decided it. ``oidc`` (default: from the
    environment, ``ACGS_OIDC_*``) lets reviewers sign in to the review page through an identity
    provider; it needs authentication on."""
    settings = settings or EvolutionSettings.from_env()
    oidc = oidc if oidc is not None else OidcSettings.from_env()
    sign_in = None
    if oidc.enabled:
        security = security if security is not None else SecuritySettings.from_env()
        if not security.auth:
            raise ValueError("ACGS_OIDC_ISSUER (single sign-on) needs authentication on: set ACGS_AUTH=1")
        sign_in = OidcSignIn(oidc)
    assessor = assessor or Assessor.load(str(settings.bundle), settings.entrypoint)
    store = store or open_store(settings.resolved_database_url())
    executor = executor or load_executor(settings.rollback_executor)
    own_sink = None
    if audit_sink is None and settings.audit_url:
        from acgs.audit.sink import HttpAuditSink

        audit_sink = own_sink = HttpAuditSink(settings.audit_url)
    metrics = EvolutionMetrics()
    workflow = Workflow(
        store,
        assessor,
        executor,
        review_timeout=settings.review_timeout,
        validity=settings.validity,
        clock=clock,
        metrics=metrics,
        session_ledger=session_ledger,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        problem = assessor.problem()
        if problem:
            log.error("evolution: %s; every request will be rejected until this is fixed", problem)
        try:
            await workflow.count_by_status()
        except Exception:
            log.exception("counting evolution requests by state failed; the sweep tries again")
        sec = security or SecuritySettings.from_env()
        facts = await open_facts(
            assessor.engine.data if assessor.engine is not None else None,
            auth=sec.auth,
            redis_url=sec.redis_url,
            registry_settings=agent_registry,
        )
        app.state.trusted_facts = facts
        workflow.session_ledger = getattr(app.state, "session_ledger", None)
        tasks = [asyncio.create_task(_sweep(workflow, settings.sweep_interval), name="acgs-evolution-sweep")]
        if audit_sink is not None:
            relay = OutboxRelay(store, audit_sink, interval=settings.relay_interval)
            tasks.append(asyncio.create_task(relay.run(), name="acgs-evolution-outbox-relay"))
        hooks = [
            WebhookRelay(store, url, settings.webhook_secret or "", interval=settings.relay_interval, timeout=settings.webhook_timeout)
            for url in settings.webhook_urls
        ]
        app.state.webhooks = hooks
        tasks.extend(asyncio.create_task(hook.run(), name=f"acgs-evolution-webhook-{i}") for i, hook in enumerate(hooks))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for hook in hooks:
                await hook.aclose()
            await facts.close()
            await store.close()
            if own_sink is not None:
                await own_sink.aclose()

    app = FastAPI(
        title="ACGS evolution oversight",
        version=acgs.__version__,
        description="Risk assessment by the constitution, review routes, deployment and rollback of agent changes.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.workflow = workflow
    app.state.metrics = metrics
    app.state.session_ledger = session_ledger
    _install_error_handlers(app)
    app.include_router(routes.router)
    gate = install_security(app, with_sign_in(ACCESS) if sign_in else ACCESS, security=security, registry=metrics.registry)
    if sign_in is not None and gate is not None:
        # After the gate, so the session cookie is read before the gate looks for a signed-in person.
        sign_in.install(app, ACCESS.browser)
        gate.sessions = sign_in
    install_observability(app, "evolution", metrics.registry, observability)
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory acgs.services.evolution.app:app_from_env``."""
    return create_app(EvolutionSettings.from_env())

"""The policy service's ASGI app: ``create_app(settings)`` loads the bundle, connects the L2
cache when configured, and mounts the routes. ``python -m acgs.services.policy`` serves it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

import acgs
from acgs.cache import L2Cache
from acgs.security import OPA_ERRORS, Gate, SecuritySettings, SiteGuard, install_security
from acgs.services.common.errors import INTERNAL_ERROR, ServiceError, install_error_handlers
from acgs.services.common.http import Reply
from acgs.services.common.observability import ObservabilitySettings, configure_logging, observer_for
from acgs.services.common.observability.http import RequestObserver, route_of, with_request_id
from acgs.services.common.observability.metrics import UNMATCHED
from acgs.services.policy import routes
from acgs.services.policy.access import ACCESS
from acgs.services.policy.deps import PolicyService
from acgs.services.policy.metrics import PolicyMetrics
from acgs.services.policy.pipeline import DecisionPipeline
from acgs.services.policy.settings import PolicySettings
from acgs.trust import facts_for
from acgs.trust.sessions import SessionLedger, history_max_of, open_ledger

if TYPE_CHECKING:
    from acgs.audit.decision_log import DecisionLog
    from acgs.registry.settings import RegistrySettings

log = logging.getLogger("acgs.services.policy")


_DATA = "/v1/data/"
_BATCH = "/v1/batch/data/"
#: ``route`` labels of the decision paths, the templates of the FastAPI routes they stand for.
_DATA_ROUTE = "/v1/data/{path}"
_BATCH_ROUTE = "/v1/batch/data/{path}"
_DEFAULT_ROUTE = "/"


class PolicyApp(FastAPI):
    """FastAPI for everything, except that decision requests skip its routing, dependency
    solving and response classes: they go straight to the handlers in ``routes`` (the same
    ones the FastAPI routes call, which stay for the OpenAPI document). On a decision that takes
    microseconds, FastAPI's per-request machinery would cost more than the decision.

    Every HTTP request, the fast ones included, goes through the service's ``RequestObserver``
    (request id, log context, ``acgs_http_*`` metrics, optional span)."""

    policy: PolicyService
    #: Host, Origin and content-type checks, always on (installed by ``create_app``).
    site: SiteGuard
    #: Authentication, roles and rate limits; None when off (installed by ``create_app``).
    gate: Gate | None = None
    observer: RequestObserver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        service = self.policy
        observer = self.observer
        obs = observer.start(scope)
        reply: Reply | None = None
        # A request refused before routing (by the site guard or the gate) has no route: "unmatched".
        if path.startswith(_DATA):
            route = _DATA_ROUTE
        elif path.startswith(_BATCH):
            route = _BATCH_ROUTE
        else:
            route = _DEFAULT_ROUTE if path == "/" else UNMATCHED
        try:
            if (denial := self.site.check(scope)) is not None or (
                self.gate is not None and (denial := await self.gate.admit(scope)) is not None
            ):
                reply = Reply(denial.body, denial.status, headers=denial.headers)
            elif method == "POST":
                if path.startswith(_DATA):
                    reply = await routes.data_post(service, scope, receive, path[len(_DATA) :])
                elif path.startswith(_BATCH):
                    reply = await routes.batch_post(service, scope, receive, path[len(_BATCH) :])
                elif path == "/":
                    reply = await routes.default_post(service, scope, receive)
            elif method == "GET" and path.startswith(_DATA):
                reply = await routes.data_get(service, scope, receive, path[len(_DATA) :])
        except ServiceError as err:
            service.metrics.error(err.metric_code)
            reply = Reply(err.payload(), err.status, headers=err.headers)
        except Exception:
            log.exception("unhandled error on %s %s", method, path)
            service.metrics.error(INTERNAL_ERROR)
            reply = Reply(ServiceError(500, INTERNAL_ERROR, "internal error").payload(), 500)
        if reply is not None:
            await reply.send(send, obs.header)
            observer.finish(obs, scope, route, reply.status)
            return
        status = [500]
        try:
            await super().__call__(scope, receive, with_request_id(send, obs, status))
        except BaseException:
            observer.finish(obs, scope, route_of(scope), status[0], failed=True)
            raise
        observer.finish(obs, scope, route_of(scope), status[0])


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


def _decision_log_for(settings: PolicySettings, pipeline: DecisionPipeline) -> DecisionLog | None:
    """The decision log the settings ask for, or None. ``local`` appends to the audit log's
    SQLite file under the data directory (group commit, shared with an audit service there);
    a URL sends batches to the audit service. Either way, in ``async`` mode batches go through
    the audit outbox file this process claims under ``decision_outbox_dir``."""
    target = settings.decision_log
    if not target or target.lower() in ("off", "none", "false", "0"):
        return None
    if not target.startswith(("http://", "https://")) and target.lower() != "local":
        raise ValueError(f"ACGS_POLICY_DECISION_LOG={target!r}: use local, an http(s):// URL of the audit service, or off")
    from acgs.audit.decision_log import PRODUCER, DecisionLog
    from acgs.audit.outbox import Claim, SqliteOutbox

    claim = Claim(settings.decision_outbox_dir)

    def closing(then: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            try:
                await then()
            finally:
                claim.release()

        return close

    common: dict[str, Any] = {
        "outbox": SqliteOutbox.open(claim.path, PRODUCER),
        "bundle_digest": pipeline.bundle_digest if pipeline.loaded else "",
        "constitutional_hash": pipeline.constitutional_hash,
        "include_input": settings.decision_log_input,
        "mode": settings.decision_log_mode,
        "capacity": settings.decision_log_queue,
    }
    if target.startswith(("http://", "https://")):
        from acgs.audit.sink import HttpAuditSink

        http_sink = HttpAuditSink(target)
        return DecisionLog(http_sink, on_close=closing(http_sink.aclose), **common)
    from acgs.audit import keys
    from acgs.audit.log import AuditLog
    from acgs.audit.sink import LocalAuditSink
    from acgs.audit.store import open_store

    audit_log = AuditLog(
        open_store(f"sqlite:///{settings.data_dir / 'audit.sqlite3'}"), keys.load_or_create(settings.data_dir)
    )
    return DecisionLog(LocalAuditSink(audit_log), on_open=audit_log.open, on_close=closing(audit_log.close), **common)


def create_app(
    settings: PolicySettings | None = None,
    *,
    security: SecuritySettings | None = None,
    observability: ObservabilitySettings | None = None,
    agent_registry: RegistrySettings | None = None,
    session_ledger: SessionLedger | None = None,
) -> PolicyApp:
    """The policy service for ``settings`` and ``security`` (default: from the environment).
    The bundle is loaded here, so the app answers without a lifespan run (ASGI test
    transports); a bundle that fails to load leaves the app up, unhealthy (503), denying every
    decision. ``observability`` (default: from the environment) sets request logging and
    tracing. ``session_ledger``: the record of each session's tool decisions, when another
    part of the process shares it (``acgs serve``); by default one of the app's own, in Redis
    when the usage counters are, else in process (``app.state.session_ledger`` either way)."""
    settings = settings or PolicySettings.from_env()
    pipeline = DecisionPipeline.load(
        settings.bundle,
        timeout_ms=settings.timeout_ms,
        memory_limit=settings.memory_limit,
        cache_size=settings.cache_size,
        cache_ttl=settings.cache_ttl,
        native=settings.native,
        evaluator=settings.evaluator,
        l2=_l2_for(settings),
    )
    if pipeline.load_error is not None:
        log.error("policy service starts without a bundle: %s", pipeline.load_error.message)
    metrics = PolicyMetrics()
    metrics.pipeline = pipeline
    decision_log = _decision_log_for(settings, pipeline)
    metrics.decision_log = decision_log
    sec = security if security is not None else SecuritySettings.from_env()
    # What the constitution may believe about each caller (acgs.trust): built here for every
    # evaluation, never taken from the request.
    facts = facts_for(
        pipeline.data, auth=sec.auth, redis_url=sec.redis_url or settings.redis_url, registry_settings=agent_registry
    )
    # Each session's tool decisions, kept by the service: the history the session rules read.
    own_ledger = session_ledger is None
    ledger = session_ledger if session_ledger is not None else open_ledger(
        history_max_of(pipeline.data),
        redis_url=sec.redis_url or settings.redis_url,
        timeout_ms=settings.redis_timeout_ms,
        retry_after=settings.redis_retry_after,
    )
    service = PolicyService(
        settings=settings, pipeline=pipeline, metrics=metrics, decision_log=decision_log, facts=facts, sessions=ledger
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await facts.start()
        if decision_log is not None:
            decision_log.start()
        yield
        if decision_log is not None:
            await decision_log.close()
        await pipeline.close()
        await facts.close()
        if own_ledger:
            await ledger.close()

    app = PolicyApp(
        title="ACGS policy engine",
        version=acgs.__version__,
        description="OPA-compatible decisions over ACGS's constitution (port 8004).",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.policy = service
    app.state.policy = service
    app.state.session_ledger = ledger
    app.observer = observer_for("policy", metrics.registry, observability)
    app.state.observer = app.observer
    app.include_router(routes.router)
    if facts.registry is not None:
        # The agent registry's admin routes (role admin): what each agent is trusted with.
        from acgs.registry.routes import agent_routes

        app.include_router(agent_routes(facts.registry))
    install_error_handlers(app, metrics.error)
    app.gate = install_security(app, ACCESS, security=security, style=OPA_ERRORS, registry=metrics.registry)
    app.site = app.state.site_guard
    return app


def app_from_env() -> PolicyApp:
    """Factory for ``uvicorn --factory`` and worker processes: settings from ``ACGS_*``. Each
    worker process configures its own logging here, as ``serve`` did in the parent."""
    observability = ObservabilitySettings.from_env()
    configure_logging(observability)
    return create_app(PolicySettings.from_env(), observability=observability)

"""Putting the site guard and the gate in front of a service: ``install_security(app, ACCESS)``
in its ``create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from acgs.security.access import Access
from acgs.security.gate import ACGS_ERRORS, ErrorStyle, Gate
from acgs.security.keys import KeyStore
from acgs.security.settings import SecuritySettings
from acgs.security.site import SiteGuard, SiteMiddleware


class SecurityMiddleware:
    """Pure ASGI middleware: refusals leave before routing, admitted requests carry their
    principal in the scope."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            denial = await self.gate.admit(scope)
            if denial is not None:
                await denial.send(send)
                return
        await self.app(scope, receive, send)


def install_security(
    app: FastAPI,
    access: Access,
    *,
    security: SecuritySettings | None = None,
    style: ErrorStyle = ACGS_ERRORS,
    registry: CollectorRegistry | None = None,
    store: KeyStore | None = None,
) -> Gate | None:
    """Guards ``app`` with ``access`` under ``security`` (default: from the environment).

    The site guard (Host, Origin, content type: see ``acgs.security.site``) is always
    installed, outside everything else but observability, and kept in ``app.state.site_guard``.
    The gate (credentials, roles, rate limits) is installed and returned only with
    authentication on or a rate limit; otherwise None. The counters of both join ``registry``
    (the service's ``/metrics``) when given; the gate is closed with the app's lifespan."""
    settings = security if security is not None else SecuritySettings.from_env()
    guard = SiteGuard(settings, service=access.service, style=style, forms=access.browser)
    gate = _install_gate(app, access, settings, style, registry, store) if settings.enforcing else None
    # Added last, so it runs first: a foreign Host is refused before credentials are looked at.
    app.add_middleware(SiteMiddleware, guard=guard)
    app.state.site_guard = guard
    if registry is not None:
        registry.register(guard.metrics)
    return gate


def _install_gate(
    app: FastAPI,
    access: Access,
    settings: SecuritySettings,
    style: ErrorStyle,
    registry: CollectorRegistry | None,
    store: KeyStore | None,
) -> Gate:
    gate = Gate(settings, access, style=style, store=store)
    app.add_middleware(SecurityMiddleware, gate=gate)
    app.state.security_gate = gate
    if registry is not None:
        registry.register(gate.metrics)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            try:
                yield state
            finally:
                await gate.close()

    app.router.lifespan_context = lifespan
    return gate

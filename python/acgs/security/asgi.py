"""Putting the gate in front of a service: ``install_security(app, ACCESS)`` in its
``create_app``."""

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
    """Guards ``app`` with ``access`` under ``security`` (default: from the environment). With
    authentication off and no rate limit nothing is installed and None is returned: the
    service runs exactly as without this call. The gate's counters join ``registry`` (the
    service's ``/metrics``) when given; the gate is closed with the app's lifespan."""
    settings = security if security is not None else SecuritySettings.from_env()
    if not settings.enforcing:
        return None
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

"""Dependency aliases for the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from acgs.services.sandbox.service import SandboxService


def get_service(request: Request) -> SandboxService:
    service: SandboxService = request.app.state.sandbox
    return service


Service = Annotated[SandboxService, Depends(get_service)]

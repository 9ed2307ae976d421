"""The sandbox controller (port 8001): runs agent code under bubblewrap or gVisor, with the
limits, runtime and network the constitution (``acgs.sandbox``) grants, reports the syscalls
it refused, and audits every run under its decision id."""

from __future__ import annotations

from acgs.services.common.serving import run_service
from acgs.services.sandbox.app import create_app
from acgs.services.sandbox.service import SandboxService
from acgs.services.sandbox.settings import SandboxSettings

__all__ = ["SandboxService", "SandboxSettings", "create_app", "serve"]


def serve(settings: SandboxSettings | None = None) -> None:
    """Runs the controller under uvicorn until stopped (one worker: runs, cgroups and work
    dirs belong to one process)."""
    run_service(create_app, settings or SandboxSettings.from_env())

"""Sandbox runtimes, one module each behind the :class:`~.base.Runtime` protocol: bubblewrap
and gVisor run here; Firecracker and Docker are detected and explain why they cannot."""

from __future__ import annotations

from acgs.services.sandbox.runtimes.base import (
    Job,
    Outcome,
    Runtime,
    RuntimeName,
    RuntimeStatus,
    RuntimeUnavailable,
)
from acgs.services.sandbox.runtimes.bwrap import BwrapRuntime
from acgs.services.sandbox.runtimes.docker import DockerRuntime
from acgs.services.sandbox.runtimes.firecracker import FirecrackerRuntime
from acgs.services.sandbox.runtimes.gvisor import GvisorRuntime
from acgs.services.sandbox.runtimes.launch import Host

__all__ = [
    "BwrapRuntime",
    "DockerRuntime",
    "FirecrackerRuntime",
    "GvisorRuntime",
    "Host",
    "Job",
    "Outcome",
    "Runtime",
    "RuntimeName",
    "RuntimeStatus",
    "RuntimeUnavailable",
    "all_runtimes",
]


def all_runtimes(host: Host, gvisor_platform: str = "ptrace") -> dict[str, Runtime]:
    return {
        "bwrap": BwrapRuntime(host),
        "gvisor": GvisorRuntime(host, platform=gvisor_platform),
        "firecracker": FirecrackerRuntime(),
        "docker": DockerRuntime(),
    }

"""Firecracker: detected, not driven. A microVM per run is the strongest isolation the
constitution knows, but it needs the ``firecracker`` VMM, ``/dev/kvm`` and a guest kernel and
root filesystem with the languages in them; this module says which of those the host lacks."""

from __future__ import annotations

import os
from pathlib import Path

from acgs.services.sandbox.runtimes.base import Job, Outcome, RuntimeName, RuntimeStatus, RuntimeUnavailable, tool_version, which

ISOLATION = "hardware virtualisation (KVM microVM with its own guest kernel)"


class FirecrackerRuntime:
    name: RuntimeName = "firecracker"

    def __init__(self, binary: str | None = None, kvm: Path = Path("/dev/kvm")) -> None:
        self.binary = binary or which("firecracker")
        self.kvm = kvm

    def probe(self) -> RuntimeStatus:
        details: dict[str, object] = {"kvm": str(self.kvm) if self.kvm.exists() else None}
        if self.binary is None:
            return RuntimeStatus(
                "firecracker",
                False,
                ISOLATION,
                "no firecracker binary on PATH (Debian 12 does not package it; PyPI has only API clients)",
                None,
                details,
            )
        version = tool_version([self.binary, "--version"])
        if not self.kvm.exists():
            return RuntimeStatus("firecracker", False, ISOLATION, f"{self.kvm} does not exist (no KVM)", version, details)
        if not os.access(self.kvm, os.R_OK | os.W_OK):
            return RuntimeStatus("firecracker", False, ISOLATION, f"{self.kvm} is not accessible", version, details)
        return RuntimeStatus(
            "firecracker",
            False,
            ISOLATION,
            "firecracker and KVM are present, but ACGS ships no guest kernel and root filesystem to boot yet",
            version,
            details,
        )

    def run(self, job: Job) -> Outcome:
        raise RuntimeUnavailable(f"runtime firecracker is not available on this host: {self.probe().reason}")

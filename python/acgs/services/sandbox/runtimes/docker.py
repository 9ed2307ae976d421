"""Docker: detected, not driven. A container under a Docker daemon isolates like bwrap
(namespaces, seccomp) but hands the run to a root daemon; this module says whether a daemon
answers here."""

from __future__ import annotations

import os
from pathlib import Path

from acgs.services.sandbox.runtimes.base import Job, Outcome, RuntimeName, RuntimeStatus, RuntimeUnavailable, which

ISOLATION = "namespaces and seccomp under the Docker daemon"


def _socket_path() -> Path:
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return Path(host.removeprefix("unix://"))
    return Path("/var/run/docker.sock")


class DockerRuntime:
    name: RuntimeName = "docker"

    def __init__(self, binary: str | None = None, sock: Path | None = None) -> None:
        self.binary = binary or which("docker")
        self.sock = sock or _socket_path()

    def probe(self) -> RuntimeStatus:
        details: dict[str, object] = {"socket": str(self.sock), "cli": self.binary}
        if not self.sock.exists():
            cli = "a docker CLI is installed but " if self.binary else ""
            return RuntimeStatus(
                "docker", False, ISOLATION, f"{cli}no Docker daemon socket at {self.sock}", None, details
            )
        return RuntimeStatus(
            "docker",
            False,
            ISOLATION,
            "a Docker daemon is present, but ACGS does not drive it yet (bwrap gives the same isolation without a root daemon)",
            None,
            details,
        )

    def run(self, job: Job) -> Outcome:
        raise RuntimeUnavailable(f"runtime docker is not available on this host: {self.probe().reason}")

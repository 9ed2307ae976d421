"""What every runtime shares: the :class:`Runtime` protocol, the job it runs, the outcome it
reports, and how a host describes whether it can use it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from acgs.errors import AcgsError
from acgs.services.sandbox.limits import Limits

RuntimeName = Literal["bwrap", "gvisor", "firecracker", "docker"]
Status = Literal["completed", "timeout", "killed", "denied", "error"]

#: Inside every sandbox: the work dir (cwd and HOME) and the user the code runs as.
WORKSPACE = "/workspace"
SANDBOX_UID = 65534
SANDBOX_GID = 65534


class RuntimeUnavailable(AcgsError):
    """The requested runtime cannot run on this host; the message says why."""

    code = "runtime_unavailable"


@dataclass(frozen=True, slots=True)
class Job:
    """One run, after the constitution admitted it: ``argv`` runs in :data:`WORKSPACE`."""

    execution_id: str
    language: str
    argv: tuple[str, ...]
    files: Mapping[str, bytes]
    stdin: bytes
    limits: Limits
    output_cap: int


@dataclass(slots=True)
class Outcome:
    status: Status
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    cpu_s: float = 0.0
    #: The run's memory peak from its cgroup (see schemas.ResourceUsage).
    max_rss_mb: float = 0.0
    wall_ms: float = 0.0
    violations: list[dict[str, Any]] = field(default_factory=list)
    #: Names of the limits the run reached (``timeout_s``, ``cpu_seconds``, ``memory_mb``,
    #: ``pids``, ``disk_mb``); a reached limit is not always fatal (pids, disk).
    limits_hit: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    name: RuntimeName
    available: bool
    #: Isolation strength rank from the constitution is the policy's business; this says
    #: what the runtime isolates in words for GET /runtimes.
    isolation: str
    reason: str | None = None
    version: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "available": self.available,
            "isolation": self.isolation,
            "reason": self.reason,
            "version": self.version,
            "details": dict(self.details),
        }


class Runtime(Protocol):
    """A way to run a :class:`Job` isolated from the host. ``run`` blocks (the queue runs it
    in a worker thread) and always cleans up what it created, whatever happens."""

    name: RuntimeName

    def probe(self) -> RuntimeStatus:
        """Whether this host can use the runtime, and why not; cheap enough to call at start."""
        ...

    def run(self, job: Job) -> Outcome: ...


#: Read-only host files the languages' runtimes look for (all world-readable, none secret).
ETC_FILES = ("ld.so.cache", "alternatives")
#: Only when the run may use the network. Not resolv.conf: the run gets a generated one
#: naming its own resolver (see ``network.py``).
ETC_NET_FILES = ("hosts", "nsswitch.conf", "ssl", "ca-certificates")

PASSWD = f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:ACGS sandbox:{WORKSPACE}:/usr/sbin/nologin\n".encode()
GROUP = f"sandbox:x:{SANDBOX_GID}:\n".encode()



def which(binary: str) -> str | None:
    return shutil.which(binary)


def tool_version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, timeout=10, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None

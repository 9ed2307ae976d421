"""Settings of the sandbox controller: one frozen object, read from ``ACGS_*`` environment
variables (``ACGS_DATA_DIR`` is shared by every service)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from acgs import default_bundle_path
from acgs.errors import InvalidInputError
from acgs.services.common.env import flag, names, non_negative_int, positive_float
from acgs.services.sandbox.seccomp import DEFAULT_PROFILE

RUNTIME_NAMES = ("bwrap", "gvisor", "firecracker", "docker")


def default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    return Path(xdg) / "acgs" if xdg else Path.home() / ".local" / "share" / "acgs"


def default_runs_dir() -> Path:
    # Not under the data dir: the sandbox user must be able to traverse every parent of
    # its work dir, and a home directory is usually closed to it.
    return Path(tempfile.gettempdir()) / f"acgs-sandbox-{os.geteuid()}"


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """Everything the controller can be told. Defaults suit one node."""

    host: str = "127.0.0.1"
    port: int = 8001
    #: Where the executions database lives (``sandbox.sqlite3``).
    data_dir: Path = field(default_factory=default_data_dir)
    #: The executions database; defaults to ``<data_dir>/sandbox.sqlite3``.
    database: Path | None = None
    #: Host-side run state: per-run tmpfs work dirs, OCI bundles, runsc state.
    runs_dir: Path = field(default_factory=default_runs_dir)
    #: The constitution consulted before every run (``acgs.sandbox``).
    bundle: Path = field(default_factory=default_bundle_path)
    seccomp_profile: Path = DEFAULT_PROFILE
    #: Runs executing at once; the rest wait in the queue.
    concurrency: int = 2
    #: Runs allowed to wait; past this POST /execute answers 429.
    max_queue: int = 32
    #: Bytes of stdout and of stderr kept per run.
    output_cap: int = 64 * 1024
    #: Largest request body (code, files and stdin included).
    max_body_bytes: int = 16 * 1024 * 1024
    #: CPU quota of one run in cores (the run's CPU *time* budget comes from the constitution).
    cpu_cores: float = 1.0
    #: Name of the cgroup (in every hierarchy) under which runs get their groups.
    cgroup_parent: str = "acgs-sandbox"
    #: The order in which ``runtime: auto`` tries the runtimes the constitution allows.
    auto_order: tuple[str, ...] = ("bwrap", "gvisor", "firecracker", "docker")
    #: Count the syscalls the seccomp profile refuses (bwrap: user notification, a round trip
    #: to the controller per refused call and per mount while bwrap sets up). Off, they are
    #: still refused, but not reported.
    monitor_syscalls: bool = True
    #: bwrap sandboxes kept started and waiting for a run (``runtimes/pool.py``); 0 turns the
    #: warm pool off and every run starts cold.
    pool_size: int = 2
    #: The disk cap (tmpfs size, MiB) of the warm sandboxes: runs asking for another take the
    #: cold path. The constitution's default.
    pool_disk_mb: int = 1024
    #: gVisor platform (this host's runsc: ptrace or kvm).
    gvisor_platform: str = "ptrace"
    #: The audit service (``http://127.0.0.1:8003``) the outbox of execution events is delivered
    #: to; None keeps events in the sandbox database's outbox.
    audit_url: str | None = None
    log_level: str = "info"

    @property
    def database_path(self) -> Path:
        return self.database or self.data_dir / "sandbox.sqlite3"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> SandboxSettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_NAMES.get(f.name)
            if name is None or name not in env:
                continue
            try:
                values[f.name] = _PARSERS[f.name](env[name])
            except ValueError as exc:
                raise InvalidInputError(f"{name}={env[name]!r}: {exc}") from exc
        values.update(overrides)
        settings = cls(**values)
        bad = [r for r in settings.auto_order if r not in RUNTIME_NAMES]
        if bad:
            raise InvalidInputError(f"auto_order names unknown runtimes {bad}")
        if settings.concurrency < 1:
            raise InvalidInputError("concurrency must be at least 1")
        if settings.pool_size and settings.pool_disk_mb < 1:
            raise InvalidInputError("pool_disk_mb must be at least 1")
        return settings


ENV_NAMES: dict[str, str] = {
    "host": "ACGS_SANDBOX_HOST",
    "port": "ACGS_SANDBOX_PORT",
    "data_dir": "ACGS_DATA_DIR",
    "database": "ACGS_SANDBOX_DATABASE",
    "runs_dir": "ACGS_SANDBOX_RUNS_DIR",
    "bundle": "ACGS_SANDBOX_BUNDLE",
    "seccomp_profile": "ACGS_SANDBOX_SECCOMP_PROFILE",
    "concurrency": "ACGS_SANDBOX_CONCURRENCY",
    "max_queue": "ACGS_SANDBOX_MAX_QUEUE",
    "output_cap": "ACGS_SANDBOX_OUTPUT_CAP",
    "max_body_bytes": "ACGS_SANDBOX_MAX_BODY_BYTES",
    "cpu_cores": "ACGS_SANDBOX_CPU_CORES",
    "cgroup_parent": "ACGS_SANDBOX_CGROUP_PARENT",
    "auto_order": "ACGS_SANDBOX_AUTO_ORDER",
    "gvisor_platform": "ACGS_SANDBOX_GVISOR_PLATFORM",
    "monitor_syscalls": "ACGS_SANDBOX_MONITOR_SYSCALLS",
    "pool_size": "ACGS_SANDBOX_POOL_SIZE",
    "pool_disk_mb": "ACGS_SANDBOX_POOL_DISK_MB",
    "audit_url": "ACGS_SANDBOX_AUDIT_URL",
    "log_level": "ACGS_LOG_LEVEL",
}


def _cgroup_name(text: str) -> str:
    parts = [p for p in text.strip("/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError("must be a relative cgroup path")
    return "/".join(parts)


_PARSERS: dict[str, Any] = {
    "host": str,
    "port": non_negative_int,
    "data_dir": Path,
    "database": Path,
    "runs_dir": Path,
    "bundle": Path,
    "seccomp_profile": Path,
    "concurrency": non_negative_int,
    "max_queue": non_negative_int,
    "output_cap": non_negative_int,
    "max_body_bytes": non_negative_int,
    "cpu_cores": positive_float,
    "cgroup_parent": _cgroup_name,
    "auto_order": names,
    "gvisor_platform": str,
    "monitor_syscalls": flag,
    "pool_size": non_negative_int,
    "pool_disk_mb": non_negative_int,
    "audit_url": lambda text: text or None,
    "log_level": str,
}

"""bubblewrap: Linux namespaces and seccomp around the host kernel.

bwrap starts as the unprivileged sandbox user (the controller switches to it first, so the
sandbox's processes are that user on the host too, not root in a user namespace), then builds
new user, pid, net, ipc, uts and cgroup namespaces with no capabilities and no nested user
namespaces, binds ``/usr`` read-only, and runs the command in the run's tmpfs as
:data:`WORKSPACE`. The enforcement filter from the seccomp profile goes in with ``--seccomp``;
the notification filter installed before bwrap lets the controller count what the profile
refuses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from acgs.services.sandbox.limits import Limits, MiB, Rlimits
from acgs.services.sandbox.runtimes.base import (
    SANDBOX_GID,
    SANDBOX_UID,
    WORKSPACE,
    Job,
    Outcome,
    RuntimeName,
    RuntimeStatus,
    ETC_FILES,
    ETC_NET_FILES,
    GROUP,
    PASSWD,
    RuntimeUnavailable,
    tool_version,
    which,
)
from acgs.services.sandbox.runtimes.launch import Host, Launch, outcome, run_resources, spawn_and_watch
from acgs.services.sandbox.runtimes.pool import WarmPool, launcher_problem
from acgs.services.sandbox.seccomp import Mode, enforcement_filter
from acgs.services.sandbox.workdir import WorkDir

ISOLATION = (
    "user, pid, net, ipc, uts and cgroup namespaces; uid 65534 with no capabilities and "
    "no_new_privs; read-only /usr; private tmpfs work dir; seccomp denylist; cgroup limits"
)

#: bwrap's --json-status-fd in its own descriptor table (the sandbox never sees it: bwrap
#: closes it in the sandbox's processes). After the warm pool's launcher's 6 and 7.
STATUS_FD = 8
#: The host's top-level directories that merged-/usr Debian makes symlinks into /usr.
_USR_LINKS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class BwrapRuntime:
    name: RuntimeName = "bwrap"

    def __init__(self, host: Host, binary: str | None = None) -> None:
        self.host = host
        self.binary = binary or which("bwrap")
        self.mode = Mode.STANDALONE if host.notify_unavailable else Mode.SUPERVISED
        self._filter = enforcement_filter(host.profile, self.mode)
        self.pool: WarmPool | None = None

    def start_pool(self, size: int, disk_mb: int) -> str | None:
        """Keep ``size`` sandboxes warm for runs with ``disk_mb`` (see ``pool.py``); returns why
        not when the pool cannot run here."""
        if size <= 0:
            return "turned off (pool size 0)"
        if self.binary is None:
            return "bwrap is not installed"
        problem = launcher_problem()
        if problem is not None:
            return problem
        if self.pool is None:
            self.pool = WarmPool(self, size, disk_mb)
            self.pool.start()
        return None

    def close_pool(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def probe(self) -> RuntimeStatus:
        details: dict[str, object] = {
            "seccomp_profile": self.host.profile.name,
            "syscall_monitoring": "user notification"
            if self.mode is Mode.SUPERVISED
            else f"off ({self.host.notify_unavailable})",
            "cgroups": self.host.layout.describe(),
        }
        if self.binary is None:
            return RuntimeStatus("bwrap", False, ISOLATION, "bwrap is not installed (Debian package bubblewrap)", None, details)
        version = tool_version([self.binary, "--version"])
        if os.geteuid() != 0:
            return RuntimeStatus(
                "bwrap", False, ISOLATION, "the controller must run as root (tmpfs work dirs, cgroups)", version, details
            )
        missing = self.host.layout.missing()
        if missing:
            return RuntimeStatus(
                "bwrap", False, ISOLATION, f"no cgroup controller for {', '.join(missing)}", version, details
            )
        # Whether namespaces, cgroups and the tmpfs really work is what the controller's
        # trial run at start finds out (SandboxService.probe).
        return RuntimeStatus("bwrap", True, ISOLATION, None, version, details)

    def run(self, job: Job) -> Outcome:
        if self.binary is None:
            raise RuntimeUnavailable("bwrap is not installed")
        started = time.monotonic()
        if self.pool is not None:
            warm = self.pool.run(job, started)
            if warm is not None:
                return warm
        # bwrap's monitor and the pid-1 reaper count against the pids limit.
        with run_resources(self.host, job, extra_pids=2, memory_overhead_mb=0) as (cg, wd):
            launch = self._launch(job, wd)
            watched, supervisor = spawn_and_watch(self.host, job, cg, launch, started=started)
            full = wd.full()
            return outcome(job, watched, cg, full, supervisor)

    # -----------------------------------------------------------------------------------------

    def _namespace_args(self, *, network: bool) -> list[str]:
        args = [
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--disable-userns",
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_GID),
            "--hostname", "sandbox",
            "--cap-drop", "ALL",
            "--die-with-parent",
            "--new-session",
        ]  # fmt: skip
        if not network:
            args.insert(0, "--unshare-net")
        return args

    @staticmethod
    def _usr_links() -> list[str]:
        args: list[str] = []
        for name in _USR_LINKS:
            p = Path("/") / name
            if p.is_symlink():
                args += ["--symlink", os.readlink(p), f"/{name}"]
            elif p.is_dir() and name in ("bin", "sbin", "lib", "lib64"):
                args += ["--ro-bind", str(p), f"/{name}"]
        return args

    def _launch(self, job: Job, wd: WorkDir) -> Launch:
        return self.launch_for(job.argv, job.limits, wd)

    def launch_for(
        self,
        command: Sequence[str],
        limits: Limits,
        wd: WorkDir,
        *,
        rlimits: Rlimits | None = None,
        extra_fds: Mapping[int, int] | None = None,
    ) -> Launch:
        """bwrap's argv and descriptors for ``command`` in ``wd`` under ``limits``; the warm
        pool starts its launcher through this too, so both paths build the same sandbox."""
        fds: list[int] = []
        status_r = -1
        try:
            for name, data in (("acgs-seccomp", self._filter), ("acgs-passwd", PASSWD), ("acgs-group", GROUP)):
                fds.append(_memfd(name, data))
            # bwrap's monitor writes the command's exit code here as it ends: the watch
            # loop has it one hand-off sooner than from the fork server's report.
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            fds.append(status_w)
        except OSError:
            for fd in fds + ([status_r] if status_r >= 0 else []):
                os.close(fd)
            raise
        # The numbers these descriptors get in the child, which bwrap's argv names.
        seccomp_fd, passwd_fd, group_fd, status_fd = 3, 4, 5, STATUS_FD
        argv = [self.binary or "bwrap", *self._namespace_args(network=limits.network)]
        argv += ["--ro-bind", "/usr", "/usr", *self._usr_links(), "--perms", "0755", "--dir", "/etc"]
        etc = list(ETC_FILES) + (list(ETC_NET_FILES) if limits.network else [])
        for name in etc:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        argv += [
            # Plain files in bwrap's root, read-only once the root is remounted below.
            "--perms", "0644", "--file", str(passwd_fd), "/etc/passwd",
            "--perms", "0644", "--file", str(group_fd), "/etc/group",
            "--proc", "/proc",
            # A minimal /dev rather than bwrap's --dev: every mount here is a round trip to
            # the supervisor during setup, and the code needs no terminals.
            "--tmpfs", "/dev",
            "--dev-bind", "/dev/null", "/dev/null",
            "--dev-bind", "/dev/zero", "/dev/zero",
            "--dev-bind", "/dev/random", "/dev/random",
            "--dev-bind", "/dev/urandom", "/dev/urandom",
            "--symlink", "/proc/self/fd", "/dev/fd",
            "--symlink", "/proc/self/fd/0", "/dev/stdin",
            "--symlink", "/proc/self/fd/1", "/dev/stdout",
            "--symlink", "/proc/self/fd/2", "/dev/stderr",
            # POSIX shared memory (multiprocessing needs it), memory-backed like any tmpfs.
            "--perms", "1777", "--size", str(min(limits.disk_mb, 64) * MiB), "--tmpfs", "/dev/shm",
            "--bind", str(wd.workspace), WORKSPACE,
            "--bind", str(wd.tmp), "/tmp",
            # The root bwrap builds and /dev belong to the sandbox user: make them read-only
            # so the work dir and /tmp are the only places it can write.
            "--remount-ro", "/dev",
            "--remount-ro", "/",
            "--chdir", WORKSPACE,
            "--clearenv",
            "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "HOME", WORKSPACE,
            "--setenv", "TMPDIR", "/tmp",
            "--setenv", "LANG", "C.UTF-8",
            # Bytecode caches would only eat the run's disk limit: the work dir dies with it.
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--seccomp", str(seccomp_fd),
            "--json-status-fd", str(status_fd),
            "--",
            *command,
        ]  # fmt: skip
        return Launch(
            argv=argv,
            rlimits=rlimits or Rlimits.for_limits(limits, address_space=self.host.layout.memory is None),
            drop_to=(SANDBOX_UID, SANDBOX_GID),
            pass_fds={**dict(zip((seccomp_fd, passwd_fd, group_fd, status_fd), fds)), **(extra_fds or {})},
            supervise_syscalls=self.mode is Mode.SUPERVISED,
            close_after_spawn=fds,
            status_read=status_r,
        )

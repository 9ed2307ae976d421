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

import json
import os
import select
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
from acgs.services.sandbox.runtimes import network
from acgs.services.sandbox.runtimes.launch import Host, Launch, Started, outcome, run_resources, spawn_and_watch
from acgs.services.sandbox.runtimes.pool import WarmPool, launcher_problem
from acgs.services.sandbox.seccomp import Mode, enforcement_filter
from acgs.services.sandbox.workdir import WorkDir

ISOLATION = (
    "user, pid, net, ipc, uts and cgroup namespaces (with network: slirp4netns and an egress "
    "filter in the run's own network namespace); uid 65534 with no capabilities and "
    "no_new_privs; read-only /usr; private tmpfs work dir; seccomp denylist; cgroup limits"
)

#: bwrap's --json-status-fd in its own descriptor table (the sandbox never sees it: bwrap
#: closes it in the sandbox's processes). After the warm pool's launcher's 6 and 7.
STATUS_FD = 8
#: With network: the generated resolv.conf, and the descriptor bwrap waits on before it execs
#: the command (written once the run's network and its filter are in place).
RESOLV_FD = 9
BLOCK_FD = 10
#: How long the sandbox may take to report its namespaces (bwrap's setup).
NAMESPACE_TIMEOUT_S = 10.0
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
            # What a run allowed the network gets (never the host's namespace).
            "network": network.tools_problem() or "own namespace: slirp4netns and an egress filter",
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
        if job.limits.network:
            problem = network.tools_problem()
            if problem is not None:
                raise RuntimeUnavailable(problem)
        # bwrap's monitor and the pid-1 reaper count against the pids limit (and slirp4netns).
        extra = 3 if job.limits.network else 2
        with run_resources(self.host, job, extra_pids=extra, memory_overhead_mb=0) as (cg, wd):
            if not job.limits.network:
                launch = self._launch(job, wd)
                watched, supervisor = spawn_and_watch(self.host, job, cg, launch, started=started)
                return outcome(job, watched, cg, wd.full(), supervisor)
            block_r, block_w = os.pipe2(os.O_CLOEXEC)
            attach = _NetworkAttach(block_w, cg.procs_files())
            try:
                launch = self.launch_for(job.argv, job.limits, wd, extra_fds={BLOCK_FD: block_r})
                launch.close_after_spawn.append(block_r)
                block_r = -1
                watched, supervisor = spawn_and_watch(
                    self.host, job, cg, launch, started=started, on_started=attach.start
                )
            finally:
                if block_r >= 0:
                    os.close(block_r)
                attach.close()
            if attach.error is not None:
                said = bytes(watched.stderr.data).decode(errors="replace").strip()[-300:]
                raise RuntimeUnavailable(
                    f"cannot give the run its network: {attach.error}" + (f" (bwrap: {said})" if said else "")
                )
            return outcome(job, watched, cg, wd.full(), supervisor)

    # -----------------------------------------------------------------------------------------

    def _namespace_args(self, *, network: bool) -> list[str]:
        # Always a network namespace of its own: with network, slirp4netns serves it (the
        # host's namespace, its loopback and abstract sockets, is never shared).
        args = [
            "--unshare-net",
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
        if network:
            args += ["--block-fd", str(BLOCK_FD)]
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
            if limits.network:
                fds.append(_memfd("acgs-resolv", network.RESOLV_CONF))
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
        if limits.network:
            argv += ["--perms", "0644", "--file", str(RESOLV_FD), "/etc/resolv.conf"]
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
            pass_fds={**dict(zip((seccomp_fd, passwd_fd, group_fd, status_fd, RESOLV_FD), fds)), **(extra_fds or {})},
            supervise_syscalls=self.mode is Mode.SUPERVISED,
            close_after_spawn=fds,
            status_read=status_r,
        )


class _NetworkAttach:
    """Gives a started bwrap sandbox its network while bwrap waits on ``--block-fd``: reads
    the sandbox's pid and namespace from the status pipe, attaches slirp4netns, installs the
    egress filter, and only then lets bwrap exec the command. Runs in a thread of its own,
    because the watch loop must answer bwrap's setup notifications meanwhile. On any failure
    the sandbox is killed before bwrap could read the end of the block pipe (an end of file
    there would let the command start)."""

    def __init__(self, block_w: int, cgroup_procs: list[Path]) -> None:
        self.block_w = block_w
        self.cgroup_procs = cgroup_procs
        self.net: network.UserNet | None = None
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, s: Started) -> Callable[[], None]:
        self._thread = threading.Thread(target=self._attach, args=(s,), name="acgs-sandbox-net", daemon=True)
        self._thread.start()
        return self.close

    def _attach(self, s: Started) -> None:
        nsfd = -1
        try:
            deadline = time.monotonic() + NAMESPACE_TIMEOUT_S
            pid, inode = _namespace_report(s.status, deadline)
            nsfd = network.open_namespace_of(pid, inode)
            net = network.UserNet.attach(
                nsfd, self.cgroup_procs, until_settled=lambda: _wait_until_blocked(pid, deadline)
            )
            with self._lock:
                if self.block_w < 0:  # closed meanwhile: the run is over
                    net.close()
                    return
                self.net = net
                os.write(self.block_w, b"1")
        except Exception as exc:
            message = exc.message if isinstance(exc, RuntimeUnavailable) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.error = message
                s.kill()
        finally:
            if nsfd >= 0:
                os.close(nsfd)

    def close(self) -> None:
        """After the run: wait for the thread, stop slirp4netns, close the block pipe."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self.block_w >= 0:
                os.close(self.block_w)
                self.block_w = -1
            if self.net is not None:
                self.net.close()
                self.net = None


def _wait_until_blocked(pid: int, deadline: float) -> None:
    """Wait until bwrap's sandbox process waits on the block descriptor: bwrap reports the
    pid as soon as it exists, but the process still sets up its own loopback (and mounts)
    first, and slirp4netns configuring the namespace meanwhile makes that fail."""
    path = f"/proc/{pid}/syscall"
    want = f"0 {hex(BLOCK_FD)} "  # read(BLOCK_FD, ...)
    while True:
        try:
            with open(path) as f:
                if f.read().startswith(want):
                    return
        except OSError as exc:
            raise RuntimeUnavailable(f"the sandbox went away during its setup: {exc}") from exc
        if time.monotonic() > deadline:
            raise RuntimeUnavailable("the sandbox did not finish its setup in time")
        time.sleep(0.0005)


def _namespace_report(fd: int, deadline: float) -> tuple[int, int]:
    """The sandbox's pid and network namespace inode from bwrap's first JSON status line.
    Read a byte at a time so nothing after that line (the exit code, which the watch loop
    reads) is consumed."""
    if fd < 0:
        raise RuntimeUnavailable("bwrap's status pipe is missing")
    line = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeUnavailable("the sandbox did not report its namespaces in time")
        if not poller.poll(int(left * 1000) + 1):
            continue
        try:
            chunk = os.read(fd, 1)
        except BlockingIOError:
            continue
        if not chunk:
            raise RuntimeUnavailable("bwrap ended before the sandbox started")
        line += chunk
        if len(line) > 4096:
            raise RuntimeUnavailable("bwrap's status report is malformed")
    try:
        doc = json.loads(line)
        return int(doc["child-pid"]), int(doc["net-namespace"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeUnavailable(f"bwrap's status report is malformed: {exc}") from exc

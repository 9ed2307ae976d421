"""The host side of a run, shared by the runtimes that start a local process: the run's
cgroup and work dir, the child's setup between fork and exec, the watch loop, the outcome,
and the cleanup that happens whatever the run did."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from acgs.services.sandbox.forkserver import ForkServer, ForkServerError, Spawned
from acgs.services.sandbox.limits import Cgroup, Layout, Limits, Rlimits
from acgs.services.sandbox.runtimes.base import SANDBOX_GID, SANDBOX_UID, Job, Outcome, RuntimeUnavailable, Status
from acgs.services.sandbox.seccomp import Profile, Supervisor, notification_filter
from acgs.services.sandbox.supervise import Watched, watch
from acgs.services.sandbox.workdir import Instance, WorkDir, check_files

MiB = 1024 * 1024
#: How long the child may take to hand over its seccomp listener.
LISTENER_TIMEOUT_S = 10.0


@dataclass
class Host:
    """What the runtimes share on this host: one per controller process."""

    layout: Layout
    instance: Instance
    cgroup_parent: str
    profile: Profile
    #: CPU quota of one run, in cores (the CPU *time* budget is the request's cpu_seconds).
    cpu_cores: float
    #: None when syscalls can be supervised here, else why not.
    notify_unavailable: str | None
    forkserver: ForkServer = field(default_factory=ForkServer)
    _notification_filter: bytes | None = field(default=None, repr=False)

    def notification_filter(self) -> bytes:
        if self._notification_filter is None:
            self._notification_filter = notification_filter(self.profile)
        return self._notification_filter

    def cgroup_path(self, execution_id: str) -> str:
        return f"{self.cgroup_parent}/{self.instance.cgroup_name}/{execution_id}"


@dataclass
class Launch:
    """How a runtime starts its process for one job."""

    argv: list[str]
    rlimits: Rlimits
    #: Host uid/gid to switch to before exec; None keeps the controller's (runsc needs root).
    drop_to: tuple[int, int] | None
    #: Descriptors the child gets, by number in the child (the argv may name them).
    pass_fds: dict[int, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=lambda: {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    #: Install the notification filter and supervise the run's syscalls.
    supervise_syscalls: bool = False
    #: Descriptors the runtime opened for this launch, closed once the child has them.
    close_after_spawn: list[int] = field(default_factory=list)
    #: Read end of bwrap's --json-status-fd, handed to the Started process (-1: none).
    status_read: int = -1


@contextmanager
def run_resources(host: Host, job: Job, *, extra_pids: int, memory_overhead_mb: int) -> Iterator[tuple[Cgroup, WorkDir]]:
    """The run's cgroup and work dir, removed on the way out whatever happened."""
    files = check_files(job.files, job.limits.disk_mb * MiB)
    limits = job.limits
    if memory_overhead_mb:
        limits = Limits(
            limits.cpu_seconds, limits.memory_mb + memory_overhead_mb, limits.disk_mb, limits.timeout_s, limits.pids, limits.network
        )
    try:
        cg = Cgroup.create(
            host.layout, host.cgroup_path(job.execution_id), limits, cpu_cores=host.cpu_cores, extra_pids=extra_pids
        )
    except OSError as exc:
        raise RuntimeUnavailable(f"cannot create the run's cgroup: {exc}") from exc
    try:
        wd = WorkDir.create(host.instance.dir, job.execution_id, job.limits.disk_mb, SANDBOX_UID, SANDBOX_GID, files)
    except BaseException:
        cg.remove()
        raise
    try:
        yield cg, wd
    finally:
        try:
            cg.remove()
        finally:
            wd.remove()


@dataclass
class Started:
    """A runtime process started inside its cgroup: its pidfd, the read ends of its output,
    and the supervisor of its syscalls. :meth:`close` releases the controller's descriptors."""

    proc: Spawned
    cg: Cgroup
    stdout: int
    stderr: int
    supervisor: Supervisor | None
    on_kill: Callable[[], None] | None = None
    #: bwrap's JSON status pipe (the command's exit code as bwrap's monitor sees it), or -1.
    status: int = -1
    #: The watch loop saw the process end (no kill needed at close).
    exited: bool = False
    closed: bool = False

    def kill(self) -> None:
        self.cg.kill()
        try:
            signal.pidfd_send_signal(self.proc.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.on_kill is not None:
            self.on_kill()

    def close(self) -> None:
        """Kill the process if it still runs, then close the controller's descriptors."""
        if self.closed:
            return
        self.closed = True
        if not self.exited and not self.proc.exit.done():
            self.cg.kill()
            try:
                signal.pidfd_send_signal(self.proc.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        fds = [self.proc.pidfd, self.stdout, self.stderr]
        if self.status >= 0:
            fds.append(self.status)
        if self.supervisor is not None:
            fds.append(self.supervisor.listener)
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def start_process(
    host: Host, cg: Cgroup, launch: Launch, stdin_fd: int, *, on_kill: Callable[[], None] | None = None
) -> Started:
    """Start ``launch`` inside ``cg`` through the fork server, with ``stdin_fd`` as its stdin,
    and take over its seccomp listener when it supervises syscalls."""
    own: list[int] = []  # descriptors to close on the way out
    parent_sock: socket.socket | None = None
    child_sock: socket.socket | None = None
    proc: Spawned | None = None
    started: Started | None = None
    try:
        procs_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in cg.procs_files()]
        own += procs_fds
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        own += [out_r, out_w, err_r, err_w]
        program = None
        if launch.supervise_syscalls:
            parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            program = host.notification_filter()
        proc = host.forkserver.spawn(
            launch.argv,
            launch.env,
            {0: stdin_fd, 1: out_w, 2: err_w, **launch.pass_fds},
            procs=procs_fds,
            rlimits=launch.rlimits.values,
            drop_to=launch.drop_to,
            filter_program=program,
            listener_sock=child_sock.fileno() if child_sock is not None else None,
        )
        # From here the Started object owns the pidfd and the read ends.
        own.remove(out_r)
        own.remove(err_r)
        started = Started(proc, cg, out_r, err_r, None, on_kill, status=launch.status_read)
        launch.status_read = -1
        # Only the child may hold the write ends, or the pipes never reach EOF.
        for fd in (out_w, err_w):
            os.close(fd)
            own.remove(fd)
        if parent_sock is not None:
            assert child_sock is not None
            child_sock.close()
            child_sock = None
            parent_sock.settimeout(LISTENER_TIMEOUT_S)
            try:
                _, fds, _, _ = socket.recv_fds(parent_sock, 1, 1)
            except (OSError, TimeoutError) as exc:
                raise RuntimeUnavailable(f"the sandbox did not hand over its seccomp listener: {exc}") from exc
            if not fds:
                raise RuntimeUnavailable("the sandbox did not hand over its seccomp listener")
            os.set_inheritable(fds[0], False)
            started.supervisor = Supervisor(host.profile, fds[0], started.kill)
        return started
    except ForkServerError as exc:
        raise RuntimeUnavailable(f"cannot start {os.path.basename(launch.argv[0])}: {exc}") from exc
    except BaseException:
        if started is not None:
            started.close()
        raise
    finally:
        for fd in own + launch.close_after_spawn:
            try:
                os.close(fd)
            except OSError:
                pass
        launch.close_after_spawn.clear()
        if launch.status_read >= 0:  # never handed to a Started
            os.close(launch.status_read)
            launch.status_read = -1
        for s in (parent_sock, child_sock):
            if s is not None:
                s.close()


def watch_started(s: Started, job: Job, launch_name: str, *, started: float) -> Watched:
    """Watch a started process to its end (output, deadline, CPU budget, notifications)."""
    watched = watch(
        s.proc,
        s.stdout,
        s.stderr,
        limits=job.limits,
        cgroup=s.cg,
        supervisor=s.supervisor,
        output_cap=job.output_cap,
        started=started,
        kill=s.kill,
        status=s.status if s.status >= 0 else None,
    )
    s.exited = watched.returncode is not None and not watched.killed
    if watched.exit is not None and watched.exit.error is not None:
        raise RuntimeUnavailable(f"cannot start {launch_name}: {watched.exit.error}")
    return watched


def spawn_and_watch(
    host: Host,
    job: Job,
    cg: Cgroup,
    launch: Launch,
    *,
    started: float,
    on_kill: Callable[[], None] | None = None,
    on_started: Callable[[Started], Callable[[], None]] | None = None,
) -> tuple[Watched, Supervisor | None]:
    """Start ``launch`` inside ``cg`` (through the fork server) and watch it to the end.
    ``on_started`` runs as soon as the process exists, before the watch loop (which must run
    meanwhile: it answers bwrap's setup notifications); what it returns is called once the
    process has ended, before its descriptors are closed."""
    stdin_fd = os.memfd_create("acgs-stdin", os.MFD_CLOEXEC)
    s: Started | None = None
    finish: Callable[[], None] | None = None
    try:
        if job.stdin:
            os.write(stdin_fd, job.stdin)
            os.lseek(stdin_fd, 0, os.SEEK_SET)
        s = start_process(host, cg, launch, stdin_fd, on_kill=on_kill)
        os.close(stdin_fd)
        stdin_fd = -1
        if on_started is not None:
            finish = on_started(s)
        watched = watch_started(s, job, os.path.basename(launch.argv[0]), started=started)
        return watched, s.supervisor
    finally:
        if stdin_fd >= 0:
            os.close(stdin_fd)
        try:
            if finish is not None:
                if s is not None and not s.exited:
                    s.kill()
                finish()
        finally:
            if s is not None:
                s.close()


def outcome(job: Job, watched: Watched, cg: Cgroup, wd_full: bool, supervisor: Supervisor | None) -> Outcome:
    """Name what ended the run and which limits it reached."""
    violations = supervisor.report() if supervisor is not None else []
    hit: list[str] = []
    rc = watched.returncode
    exit_code = rc if rc is None or rc >= 0 else 128 - rc
    cpu_s = watched.cpu_s
    if cpu_s is None and watched.exit is not None:
        cpu_s = watched.exit.utime + watched.exit.stime
    oom = cg.oom_killed()
    status: Status
    if watched.timed_out:
        status = "timeout"
        hit.append("timeout_s")
    elif watched.cpu_exceeded or (cpu_s is not None and cpu_s > job.limits.cpu_seconds and exit_code in (137, 152)):
        # 152 = 128 + SIGXCPU: the per-process RLIMIT_CPU backstop fired first.
        status = "killed"
        hit.append("cpu_seconds")
    elif oom:
        status = "killed"
        hit.append("memory_mb")
    elif any(v["action"] == "kill" for v in violations):
        status = "killed"
    elif watched.killed and watched.returncode is not None and exit_code is not None and exit_code >= 128:
        status = "killed"
    else:
        status = "completed"
    if oom and "memory_mb" not in hit:
        hit.append("memory_mb")
    if cg.pids_limit_reached():
        hit.append("pids")
    if wd_full:
        hit.append("disk_mb")
    # ru_maxrss only where there is no memory cgroup: it includes the fork server's image.
    peak = cg.memory_peak_mb()
    if peak is None and watched.exit is not None:
        peak = watched.exit.maxrss_kb / 1024
    return Outcome(
        status=status,
        exit_code=exit_code,
        stdout=bytes(watched.stdout.data),
        stderr=bytes(watched.stderr.data),
        stdout_truncated=watched.stdout.truncated,
        stderr_truncated=watched.stderr.truncated,
        cpu_s=round(cpu_s or 0.0, 4),
        max_rss_mb=round(peak or 0.0, 2),
        wall_ms=round(watched.wall_ms, 2),
        violations=violations,
        limits_hit=hit,
    )

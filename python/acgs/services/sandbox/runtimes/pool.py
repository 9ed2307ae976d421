"""The warm pool of bubblewrap sandboxes: sandboxes started before any request, each waiting
for the one run it will ever get.

A warm sandbox is everything a cold bwrap run builds that does not depend on the request: the
run's cgroup (memory, pids, CPU quota), its tmpfs work dir of the pool's size, the fork
server's child (joined to the cgroup, rlimits set, uid 65534, notification filter installed),
bwrap with the same namespaces, mounts, environment and enforcement filter, and the supervisor
that answered bwrap's setup notifications. The command bwrap execs is the launcher
(``launcher/launcher.c``), run through a descriptor so that nothing of it is visible in the
sandbox's filesystem, and it blocks on its control socket.

At hand-off the controller, from outside, sets the request's memory and pids limits on the
cgroup, writes the request's files into the work dir through its host path (nothing but the
controller has written there: the launcher has run no code yet), and sends the launcher the
run's rlimits, argv and stdin (a memfd). The launcher lowers its rlimits to the run's, closes
its own descriptors and execs the command: from there the run is watched, reported and torn
down like a cold one. A sandbox serves one run and is then destroyed; a background thread
keeps the pool full and removes used sandboxes.

A request the pool cannot serve exactly as the cold path would (network allowed, a disk cap
other than the pool's) takes the cold path, and so does any request that finds the pool empty.
"""

from __future__ import annotations

import collections
import logging
import os
import resource
import secrets
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from acgs.errors import AcgsError
from acgs.services.sandbox.limits import Cgroup, Limits, MiB, Rlimits
from acgs.services.sandbox.runtimes.base import SANDBOX_GID, SANDBOX_UID, Job, Outcome, RuntimeUnavailable
from acgs.services.sandbox.runtimes.launch import Started, outcome, start_process, watch_started
from acgs.services.sandbox.workdir import WorkDir, check_files

if TYPE_CHECKING:
    from acgs.services.sandbox.runtimes.bwrap import BwrapRuntime

log = logging.getLogger("acgs.services.sandbox")

#: The launcher binary, built from ``launcher/launcher.c`` by ``make sandbox-launcher``
#: (part of ``make dev``) and shipped in the wheel as package data (``make wheel``): a static
#: executable, so it runs inside the sandbox whatever libc the host has.
LAUNCHER = Path(__file__).resolve().parent.parent / "launcher" / "acgs-launcher"
#: Descriptor numbers in the sandbox: after bwrap's 3-5 (seccomp filter, passwd, group).
CONTROL_FD = 6
SELF_FD = 7
#: Largest hand-off message (argv and rlimits); larger requests take the cold path. Below
#: a Unix socket's default send buffer (a packet must fit in it whole) and the launcher's
#: 1 MiB.
MAX_MESSAGE = 64 * 1024
#: How long a sandbox may take to start before the pool gives up on it.
WARM_TIMEOUT_S = 20.0
#: The memory and pids limits of the first waiting sandboxes: the constitution's default
#: limits (later ones take the last run's). Set to the run's at hand-off when they differ.
WAITING_MEMORY_MB = 512
WAITING_PIDS = 64
#: Pause after a failed warm-up, doubling up to the maximum, so a broken host costs little.
RETRY_S = 0.5
RETRY_MAX_S = 30.0

#: bwrap's monitor and pid-1 reaper count against pids, as on the cold path.
EXTRA_PIDS = 2


def launcher_problem(path: Path = LAUNCHER) -> str | None:
    """None when the launcher is built, else why the pool cannot run."""
    if not path.is_file():
        return f"the launcher is not built ({path.name}: `make sandbox-launcher` in a source tree; wheels carry it)"
    if not os.access(path, os.X_OK):
        return f"the launcher {path} is not executable"
    return None


@dataclass
class Warm:
    """One pre-started sandbox."""

    name: str
    cg: Cgroup
    wd: WorkDir
    started: Started
    control: socket.socket
    #: The memory and pids limits its cgroup has now.
    limits: Limits


def _message(job: Job, rlimits: Rlimits) -> bytes:
    parts = [struct.pack("<I", len(rlimits.values))]
    parts += [struct.pack("<IQ", which, value) for which, value in rlimits.values]
    args = [a.encode() for a in job.argv]
    parts.append(struct.pack("<I", len(args)))
    parts += [a + b"\0" for a in args]
    return b"".join(parts)


class WarmPool:
    """Up to ``size`` warm sandboxes for one :class:`BwrapRuntime`. Thread-safe."""

    def __init__(self, runtime: BwrapRuntime, size: int, disk_mb: int, launcher: Path = LAUNCHER) -> None:
        self.runtime = runtime
        self.host = runtime.host
        self.size = size
        self.disk_mb = disk_mb
        self.launcher = launcher
        self._ready: collections.deque[Warm] = collections.deque()
        self._used: collections.deque[tuple[Warm | None, Cgroup | None, WorkDir | None]] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False  # the thread is warming or removing
        self._in_use = 0  # taken and not yet retired
        self._thread: threading.Thread | None = None
        #: The limits a waiting sandbox's cgroup gets: the constitution's defaults at first,
        #: then the last run's, so that a run like the one before needs no write at hand-off.
        self._waiting_limits = Limits(
            cpu_seconds=1, memory_mb=WAITING_MEMORY_MB, disk_mb=disk_mb, timeout_s=1, pids=WAITING_PIDS, network=False
        )
        self.served = 0
        self.cold = 0
        self.failures = 0
        self.last_error: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._refill, name="acgs-sandbox-pool", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop refilling and destroy every sandbox, waiting and used."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=WARM_TIMEOUT_S + 10)
            self._thread = None
        with self._cond:
            waiting = list(self._ready)
            self._ready.clear()
        for w in waiting:
            self._destroy(w, None, None)
        self._remove_used()

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until used sandboxes are removed and the pool is full again (tests)."""
        end = time.monotonic() + timeout
        with self._cond:
            while not self._closed and (self._used or self._busy or self._wanted()):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def waiting(self) -> list[str]:
        with self._cond:
            return [w.name for w in self._ready]

    def describe(self) -> dict[str, object]:
        with self._cond:
            return {
                "size": self.size,
                "disk_mb": self.disk_mb,
                "ready": len(self._ready),
                "served": self.served,
                "cold_runs": self.cold,
                "warm_up_failures": self.failures,
                "last_error": self.last_error,
            }

    # -- runs ----------------------------------------------------------------------------------

    def serves(self, job: Job) -> bool:
        """Whether a warm sandbox runs ``job`` exactly as the cold path would."""
        # An argument with a NUL byte cannot be exec'd: the cold path reports that error.
        return (
            not job.limits.network
            and job.limits.disk_mb == self.disk_mb
            and bool(job.argv)
            and not any("\0" in a for a in job.argv)
        )

    def run(self, job: Job, started: float) -> Outcome | None:
        """Run ``job`` in a warm sandbox; None when none is ready (the caller goes cold)."""
        if not self.serves(job):
            return None
        rlimits = Rlimits.for_limits(job.limits, address_space=self.host.layout.memory is None)
        message = _message(job, rlimits)
        if len(message) > MAX_MESSAGE:
            return None
        files = check_files(job.files, job.limits.disk_mb * MiB)
        w = self._take()
        if w is None:
            with self._cond:
                self.cold += 1
            return None
        handed = False
        try:
            try:
                if (w.limits.memory_mb, w.limits.pids) != (job.limits.memory_mb, job.limits.pids):
                    w.cg.set_limits(job.limits, cpu_cores=self.host.cpu_cores, extra_pids=EXTRA_PIDS)
                self._waiting_limits = job.limits
            except OSError as exc:
                # E.g. a memory limit below what bwrap already uses: the cold path gives
                # that run the limit from its first byte.
                log.info("warm sandbox %s cannot take the run's limits (%s); running cold", w.name, exc)
                return None
            w.wd.write_files(files, SANDBOX_UID, SANDBOX_GID)
            stdin_fd = os.memfd_create("acgs-stdin", os.MFD_CLOEXEC)
            try:
                if job.stdin:
                    os.write(stdin_fd, job.stdin)
                    os.lseek(stdin_fd, 0, os.SEEK_SET)
                try:
                    socket.send_fds(w.control, [message], [stdin_fd])
                except OSError as exc:
                    log.info("warm sandbox %s is gone (%s); running cold", w.name, exc)
                    return None
            finally:
                os.close(stdin_fd)
            handed = True
            w.control.close()
            watched = watch_started(w.started, job, "bwrap", started=started)
            full = w.wd.full()
            out = outcome(job, watched, w.cg, full, w.started.supervisor)
            with self._cond:
                self.served += 1
            return out
        finally:
            if not handed:
                w.control.close()
            # Nothing of the run may outlive its result: stop what is left now, remove the
            # empty groups and the tmpfs in the background.
            w.started.close()
            if w.cg.has_processes():
                w.cg.kill()
            self._retire(w)

    def _take(self) -> Warm | None:
        with self._cond:
            while self._ready:
                w = self._ready.popleft()
                if not w.started.proc.exit.done():
                    # Not replaced until the run is over: starting a sandbox takes more CPU
                    # than a short run, and the run would pay for it on a busy host.
                    self._in_use += 1
                    return w
                self._used.append((w, None, None))
                self._cond.notify_all()
            return None

    def _retire(self, w: Warm) -> None:
        with self._cond:
            self._in_use -= 1
            self._used.append((w, None, None))
            self._cond.notify_all()

    def _wanted(self) -> bool:
        return len(self._ready) + self._in_use < self.size

    # -- the background thread -----------------------------------------------------------------

    def _refill(self) -> None:
        pause = RETRY_S
        while True:
            with self._cond:
                while not self._closed and not self._used and not self._wanted():
                    self._cond.wait()
                if self._closed:
                    return
                self._busy = True
            try:
                if self._used:
                    self._remove_used()
                    continue
                if not self._wanted():
                    continue
                try:
                    w = self._warm()
                except (AcgsError, OSError) as exc:
                    msg = exc.message if isinstance(exc, AcgsError) else str(exc)
                    log.warning("warm sandbox failed to start: %s (retrying in %.1f s)", msg, pause)
                    with self._cond:
                        self.failures += 1
                        self.last_error = msg
                        self._cond.wait(pause)
                    pause = min(pause * 2, RETRY_MAX_S)
                    continue
                pause = RETRY_S
                with self._cond:
                    if self._closed:
                        self._used.append((w, None, None))
                    else:
                        self._ready.append(w)
                    self._cond.notify_all()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _remove_used(self) -> None:
        while True:
            with self._cond:
                if not self._used:
                    return
                w, cg, wd = self._used.popleft()
            self._destroy(w, cg, wd)
            with self._cond:
                self._cond.notify_all()

    def _destroy(self, w: Warm | None, cg: Cgroup | None, wd: WorkDir | None) -> None:
        if w is not None:
            try:
                w.control.close()
            except OSError:
                pass
            w.started.close()
            cg, wd = w.cg, w.wd
        try:
            if cg is not None:
                cg.remove()
        finally:
            if wd is not None:
                try:
                    wd.remove()
                except AcgsError as exc:
                    log.warning("cannot remove a warm sandbox's work dir: %s", exc.message)

    def _warm(self) -> Warm:
        """Start one sandbox and wait until its launcher is ready."""
        name = f"warm-{secrets.token_hex(8)}"
        last = self._waiting_limits
        waiting = Limits(
            cpu_seconds=1, memory_mb=last.memory_mb, disk_mb=self.disk_mb, timeout_s=1, pids=last.pids, network=False
        )
        host = self.host
        try:
            cg = Cgroup.create(
                host.layout, host.cgroup_path(name), waiting, cpu_cores=host.cpu_cores, extra_pids=EXTRA_PIDS
            )
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot create a warm sandbox's cgroup: {exc}") from exc
        wd: WorkDir | None = None
        started: Started | None = None
        ours: socket.socket | None = None
        try:
            wd = WorkDir.create(host.instance.dir, name, self.disk_mb, SANDBOX_UID, SANDBOX_GID, {})
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            fds = [theirs.detach()]
            try:
                fds.append(os.open(self.launcher, os.O_RDONLY | os.O_CLOEXEC))
                fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
                # The run's own rlimits are set by the launcher (lowering only): until then
                # CPU and address space are unbounded, the rest is the cold path's.
                inf = resource.RLIM_INFINITY
                cold = Rlimits.for_limits(waiting, address_space=host.layout.memory is None).values
                waiting_rlimits = Rlimits(
                    tuple((w, inf if w in (resource.RLIMIT_CPU, resource.RLIMIT_AS) else v) for w, v in cold)
                )
                launch = self.runtime.launch_for(
                    ("/proc/self/fd/" + str(SELF_FD), str(CONTROL_FD), str(SELF_FD)),
                    waiting,
                    wd,
                    rlimits=waiting_rlimits,
                    extra_fds={CONTROL_FD: fds[0], SELF_FD: fds[1]},
                )
                started = start_process(host, cg, launch, fds[2])
            finally:
                for fd in fds:
                    os.close(fd)
            self._wait_ready(started, ours)
            return Warm(name, cg, wd, started, ours, waiting)
        except BaseException:
            if ours is not None:
                ours.close()
            if started is not None:
                started.close()
            try:
                cg.remove()
            finally:
                if wd is not None:
                    wd.remove()
            raise

    def _wait_ready(self, s: Started, control: socket.socket) -> None:
        """Answer bwrap's setup notifications until the launcher says it is ready."""
        poller = select.poll()
        poller.register(control.fileno(), select.POLLIN)
        poller.register(s.proc.pidfd, select.POLLIN)
        listener = s.supervisor.listener if s.supervisor is not None else None
        if listener is not None:
            poller.register(listener, select.POLLIN)
        end = time.monotonic() + WARM_TIMEOUT_S
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeUnavailable("a warm sandbox did not start in time")
            for fd, _ in poller.poll(int(left * 1000) + 1):
                if fd == control.fileno():
                    if control.recv(1) != b"R":
                        raise RuntimeUnavailable(f"a warm sandbox's launcher failed: {self._stderr(s)}")
                    if s.supervisor is not None and not s.supervisor.enforcing:
                        raise RuntimeUnavailable("a warm sandbox's launcher ran before bwrap loaded its filter")
                    return
                if fd == s.proc.pidfd:
                    raise RuntimeUnavailable(f"a warm sandbox exited while starting: {self._stderr(s)}")
                if listener is not None and fd == listener and s.supervisor is not None:
                    if not s.supervisor.handle():
                        poller.unregister(listener)
                        listener = None

    @staticmethod
    def _stderr(s: Started) -> str:
        os.set_blocking(s.stderr, False)
        try:
            return os.read(s.stderr, 2000).decode(errors="replace").strip() or "no message"
        except OSError:
            return "no message"

"""Watching a started sandbox until it ends: its output (capped), the wall-clock deadline,
the CPU budget of its whole cgroup, and the seccomp notifications of its syscalls, all from
one poll loop in the run's worker thread."""

from __future__ import annotations

import concurrent.futures
import errno
import os
import re
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from acgs.services.sandbox.forkserver import Exit, Spawned
from acgs.services.sandbox.limits import Cgroup, Limits
from acgs.services.sandbox.seccomp import Supervisor

#: How often the cgroup's CPU counter is read; a spin overshoots its budget by at most this.
CPU_POLL_S = 0.05
#: After the sandbox's first process exits, how long a straggler holding its output open is
#: waited for before the group is killed.
EXIT_GRACE_S = 0.5
#: After a kill, how long the loop waits for the pipes to close before giving up on them.
KILL_GRACE_S = 3.0
_READ = 65536
_IN = select.POLLIN | select.POLLPRI
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


@dataclass(slots=True)
class Stream:
    cap: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def feed(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            # Keep draining so the writer never blocks on a full pipe; drop the rest.
            self.truncated = True


@dataclass(slots=True)
class Watched:
    stdout: Stream
    stderr: Stream
    returncode: int | None = None
    exit: Exit | None = None
    timed_out: bool = False
    cpu_exceeded: bool = False
    killed: bool = False
    cpu_s: float | None = None
    wall_ms: float = 0.0


def watch(
    proc: Spawned,
    stdout: int,
    stderr: int,
    *,
    limits: Limits,
    cgroup: Cgroup,
    supervisor: Supervisor | None,
    output_cap: int,
    started: float,
    kill: Callable[[], None],
    status: int | None = None,
) -> Watched:
    """``status``: bwrap's --json-status-fd, whose ``exit-code`` gives the exit status as soon
    as the process ends, without waiting for the fork server's report."""
    out = Watched(Stream(output_cap), Stream(output_cap))
    status_text = bytearray()
    if status is not None:
        os.set_blocking(status, False)
    streams = {stdout: out.stdout, stderr: out.stderr}
    poller = select.poll()
    for fd in streams:
        os.set_blocking(fd, False)
        poller.register(fd, _IN)
    listener = supervisor.listener if supervisor is not None else None
    if listener is not None:
        poller.register(listener, _IN)
    # Readable when the process exits, so the loop never sleeps past the exit.
    exit_fd: int | None = proc.pidfd
    poller.register(proc.pidfd, _IN)
    exit_seen = False
    deadline = started + limits.timeout_s
    exited_at: float | None = None
    killed_at: float | None = None
    next_cpu = time.monotonic() + CPU_POLL_S

    def do_kill() -> None:
        nonlocal killed_at
        if killed_at is None:
            killed_at = time.monotonic()
            out.killed = True
            kill()

    while True:
        now = time.monotonic()
        if now >= deadline and exited_at is None and killed_at is None:
            out.timed_out = True
            do_kill()
        if now >= next_cpu:
            next_cpu = now + CPU_POLL_S
            used = cgroup.cpu_seconds()
            if used is not None:
                out.cpu_s = used
                if used > limits.cpu_seconds and exited_at is None and killed_at is None:
                    out.cpu_exceeded = True
                    do_kill()
        if out.returncode is None:
            code = _status_exit_code(status, status_text) if exit_seen and status is not None else None
            if code is not None:
                out.returncode = code
            else:
                _reap(proc, out, block=exit_seen)
            if out.returncode is not None:
                exited_at = time.monotonic()
                if listener is not None:
                    # Everything in the sandbox dies with its first process; the listener
                    # has nothing more to say.
                    poller.unregister(listener)
                    listener = None
        if out.returncode is not None:
            if not streams:
                break
            assert exited_at is not None
            if killed_at is None and time.monotonic() - exited_at > EXIT_GRACE_S:
                do_kill()
            if killed_at is not None and time.monotonic() - killed_at > KILL_GRACE_S:
                break
        wait = min(max(deadline - now, 0.0), next_cpu - now, 0.02 if out.returncode is not None else 1.0)
        for fd, ev in poller.poll(max(0, int(wait * 1000)) or 1):
            if fd == exit_fd:
                poller.unregister(fd)
                exit_fd = None
                exit_seen = True
                continue
            if fd == listener and supervisor is not None:
                if ev & _IN:
                    if not supervisor.handle():
                        poller.unregister(fd)
                        listener = None
                elif ev & _GONE:
                    poller.unregister(fd)
                    listener = None
                continue
            stream = streams.get(fd)
            if stream is None:
                continue
            try:
                chunk = os.read(fd, _READ)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                chunk = b""
            if chunk:
                stream.feed(chunk)
            else:
                poller.unregister(fd)
                del streams[fd]
    if out.returncode is None:
        do_kill()
        _reap(proc, out, block=True)
    out.wall_ms = (time.monotonic() - started) * 1000
    final = cgroup.cpu_seconds()
    if final is not None:
        out.cpu_s = final
    return out


_EXIT_CODE = re.compile(rb'"exit-code"\s*:\s*(\d+)')


def _status_exit_code(fd: int, text: bytearray) -> int | None:
    """The exit code bwrap's monitor wrote before it exited (it writes it just before), or
    None when it wrote none (it was killed): then the fork server's report is waited for."""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        if not chunk:
            break
        text += chunk
    found = _EXIT_CODE.findall(bytes(text))
    return int(found[-1]) if found else None


def _reap(proc: Spawned, out: Watched, block: bool = False) -> None:
    """The exit status, which the fork server (the process's parent) reports just after the
    pidfd turns readable."""
    if not block and not proc.exit.done():
        return
    try:
        ex = proc.exit.result(timeout=10 if block else 0)
    except (concurrent.futures.TimeoutError, OSError):
        out.returncode = -1
        return
    out.exit = ex
    out.returncode = ex.returncode

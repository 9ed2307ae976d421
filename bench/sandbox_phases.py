#!/usr/bin/env python3
"""Where a bwrap run's start-up time goes: timestamps at each phase of BwrapRuntime.run for
`/usr/bin/true`, cold and through the warm pool, printed as medians (and minima) per phase.

The phases' functions are wrapped with timers here (nothing in the controller is changed):
cgroup creation, tmpfs work dir, bwrap's argv, the fork server's spawn (fork + reply), the
child's setup until it hands over its seccomp listener, bwrap's own setup (until it loads its
filter: the last notification before the command runs), the command until its exit is
reported, the outcome (cgroup and tmpfs reads), and the removal of cgroup and tmpfs. For the
warm pool: the hand-off (limits, files, message), the command until its exit, the outcome
and the kill check; the removal then happens in the pool's thread.

Needs root and bubblewrap. Usage: python bench/sandbox_phases.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from acgs.services.sandbox import limits, seccomp, workdir  # noqa: E402
from acgs.services.sandbox.runtimes import BwrapRuntime, Host, Job  # noqa: E402
from acgs.services.sandbox.runtimes import bwrap as bwrap_mod  # noqa: E402
from acgs.services.sandbox.runtimes import launch as launch_mod  # noqa: E402
from acgs.services.sandbox.runtimes import pool as pool_mod  # noqa: E402

LIMITS = limits.Limits(cpu_seconds=10, memory_mb=256, disk_mb=16, timeout_s=30, pids=32, network=False)
marks: list[tuple[str, float]] = []
CALLER = threading.get_ident()


def mark(name: str) -> None:
    # Only the caller's thread: the pool's thread creates and removes sandboxes meanwhile.
    if threading.get_ident() == CALLER:
        marks.append((name, time.perf_counter()))


def timed(owner: Any, attr: str, name: str) -> None:
    orig: Callable[..., Any] = getattr(owner, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(f"{name}:start")
        try:
            return orig(*args, **kwargs)
        finally:
            mark(f"{name}:end")

    setattr(owner, attr, wrapper)


def instrument() -> None:
    timed(limits.Cgroup, "create", "cgroup create")
    timed(workdir.WorkDir, "create", "tmpfs work dir")
    timed(bwrap_mod.BwrapRuntime, "_launch", "bwrap argv")
    timed(launch_mod.ForkServer, "spawn", "fork server spawn")
    timed(launch_mod, "outcome", "outcome")
    timed(bwrap_mod, "outcome", "outcome")
    timed(pool_mod, "outcome", "outcome")
    timed(limits.Cgroup, "remove", "cgroup removal")
    timed(workdir.WorkDir, "remove", "tmpfs removal")
    timed(limits.Cgroup, "set_limits", "hand-off: limits")
    timed(workdir.WorkDir, "write_files", "hand-off: files")
    orig_recv = socket.recv_fds

    def recv_fds(sock: socket.socket, bufsize: int, maxfds: int, flags: int = 0) -> Any:
        out = orig_recv(sock, bufsize, maxfds, flags)
        if bufsize == 1:
            mark("listener received")
        return out

    socket.recv_fds = recv_fds  # type: ignore[assignment]
    orig_send = socket.send_fds

    def send_fds(sock: socket.socket, buffers: Any, fds: Any, *rest: Any) -> Any:
        out = orig_send(sock, buffers, fds, *rest)
        # The fork server's request (cold) or the run's message to the launcher (warm).
        mark("sent with descriptors")
        return out

    socket.send_fds = send_fds  # type: ignore[assignment]
    orig_handle = seccomp.Supervisor.handle

    def handle(self: seccomp.Supervisor) -> bool:
        was = self.enforcing
        out = orig_handle(self)
        if self.enforcing and not was:
            mark("bwrap loaded its filter")
        return out

    seccomp.Supervisor.handle = handle  # type: ignore[method-assign]


def phases(runs: list[list[tuple[str, float]]]) -> list[tuple[str, float, float]]:
    spans: dict[str, list[float]] = defaultdict(list)
    order: list[str] = []
    for run in runs:
        for (a, ta), (b, tb) in zip(run, run[1:]):
            key = f"{a} -> {b}"
            if key not in order:
                order.append(key)
            spans[key].append((tb - ta) * 1000)
        spans["TOTAL"].append((run[-1][1] - run[0][1]) * 1000)
    order.append("TOTAL")
    return [(k, statistics.median(spans[k]), min(spans[k])) for k in order]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--python", action="store_true", help="time `python3 -c pass` instead of /usr/bin/true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (cgroups, tmpfs work dirs)", file=sys.stderr)
        return 2
    command = ("/usr/bin/python3", "-c", "pass") if args.python else ("/usr/bin/true",)
    instrument()
    root = Path(tempfile.mkdtemp(prefix="acgs-bench-phases-"))
    os.chmod(root, 0o711)
    instance = workdir.Instance(root / "runs")
    layout = limits.detect_layout()
    host = Host(layout, instance, "acgs-bench", seccomp.load_profile(), 1.0, seccomp.notification_available())
    cold = BwrapRuntime(host)
    warm = BwrapRuntime(host)
    results: dict[str, list[list[tuple[str, float]]]] = {"cold": [], "warm pool": []}
    try:
        why_not = warm.start_pool(1, LIMITS.disk_mb)
        if why_not is not None or warm.pool is None:
            raise SystemExit(f"no warm pool: {why_not}")
        for i in range(args.runs + 3):
            for name, rt in (("cold", cold), ("warm pool", warm)):
                for r in (cold, warm):
                    if r.pool is not None:
                        r.pool.settle()
                marks.clear()
                mark("call")
                out = rt.run(Job(f"phase-{i}-{name[0]}", "bench", command, {}, b"", LIMITS, 4096))
                mark("returned")
                if out.status != "completed":
                    raise SystemExit(f"a run failed: {out}")
                if i >= 3:
                    results[name].append(list(marks))
    finally:
        warm.close_pool()
        limits.remove_instance(layout, "acgs-bench", instance.cgroup_name)
        instance.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.runs} runs of {' '.join(command)} each; ms")
    for name, runs in results.items():
        print(f"\n{name}:\n| phase | median ms | min ms |\n| --- | ---: | ---: |")
        for k, med, low in phases(runs):
            print(f"| {k} | {med:.2f} | {low:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Start-up overhead of the sandbox runtimes over a bare process, for `/usr/bin/true` and
`python3 -c pass`, written to bench/results/sandbox.md (and sandbox.json in the benchmarks'
JSON schema).

Rows, each timed from the caller's side until the run is over and cleaned up:
  bare            the command itself (subprocess.run)
  bwrap alone     bubblewrap with the hardened flags of the project's sandbox note, no
                  cgroups, no seccomp, no work dir: the floor bwrap itself sets
  ACGS bwrap      BwrapRuntime.run: cgroup (memory, pids, cpu), rlimits, uid drop, tmpfs work
                  dir, seccomp filter, syscall supervision, output capture, cleanup
  ACGS bwrap, no monitoring   the same with syscall supervision off (refused, not counted)
  ACGS bwrap, warm pool       BwrapRuntime.run with the warm pool on (2 sandboxes): the same
                  limits, filters and supervision, applied to a sandbox started beforehand;
                  timed from the call to the outcome, as the rows above; the used sandbox's
                  cgroup and tmpfs are removed afterwards in the pool's thread, which also
                  starts its replacement: the benchmark waits for that, untimed, before the
                  next variant, so the refill's CPU does not land on another row
  ACGS gVisor     GvisorRuntime.run (runsc, ptrace platform), same limits and cleanup

Needs root, bubblewrap and runsc. Usage (repo venv, extension built):
  python bench/sandbox_startup.py [--runs 40] [--gvisor-runs 15] [--wait-quiet SECONDS]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from acgs.services.sandbox import limits, seccomp, workdir  # noqa: E402
from acgs.perf.results import Results, run_metadata  # noqa: E402
from acgs.services.sandbox.runtimes import BwrapRuntime, GvisorRuntime, Host, Job  # noqa: E402

COMMANDS = {"/usr/bin/true": ("/usr/bin/true",), "python3 -c pass": ("/usr/bin/python3", "-c", "pass")}
LIMITS = limits.Limits(cpu_seconds=10, memory_mb=256, disk_mb=16, timeout_s=30, pids=32, network=False)
BWRAP_ALONE = [
    "bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
    "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
    "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
    "--tmpfs", "/tmp", "--clearenv", "--setenv", "PATH", "/usr/bin", "--",
]  # fmt: skip


def interleaved(
    variants: dict[str, Callable[[], object]],
    runs: int,
    warmup: int = 3,
    after: dict[str, Callable[[], object]] | None = None,
) -> dict[str, list[float]]:
    """Round-robin over the variants, so that load from other processes (the project's
    machines are shared) falls on all of them alike. ``after[name]`` runs untimed after that
    variant: the warm pool refills there, so that its work does not land on the next
    variant's timing."""
    out: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(warmup + runs):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            if i >= warmup:
                out[name].append((time.perf_counter() - t) * 1000)
            if after and name in after:
                after[name]()
    return out


def wait_quiet(limit_s: float) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end and os.getloadavg()[0] > 0.5:
        time.sleep(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--gvisor-runs", type=int, default=15)
    ap.add_argument("--wait-quiet", type=float, default=0, help="wait up to this long for load < 0.5 first")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sandbox.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (cgroups, tmpfs work dirs)", file=sys.stderr)
        return 2
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    load_before = os.getloadavg()
    runs_root = Path(tempfile.mkdtemp(prefix="acgs-bench-sandbox-"))
    os.chmod(runs_root, 0o711)
    instance = workdir.Instance(runs_root / "runs")
    layout = limits.detect_layout()
    profile = seccomp.load_profile()
    monitored = Host(layout, instance, "acgs-bench", profile, 1.0, seccomp.notification_available())
    unmonitored = Host(layout, instance, "acgs-bench", profile, 1.0, "off for the benchmark")
    rows: list[tuple[str, str, list[float]]] = []
    n = 0

    def job(argv: tuple[str, ...]) -> Job:
        nonlocal n
        n += 1
        return Job(f"bench-{n}", "bench", argv, {}, b"", LIMITS, 4096)

    def check(out: object) -> None:
        status = getattr(out, "status", None)
        if status != "completed" or getattr(out, "exit_code", None) != 0:
            raise SystemExit(f"a benchmark run failed: {out}")

    try:
        bwrap_rt = BwrapRuntime(monitored)
        bwrap_quiet = BwrapRuntime(unmonitored)
        pooled = BwrapRuntime(monitored)
        why_not = pooled.start_pool(2, LIMITS.disk_mb)
        if why_not is not None or pooled.pool is None:
            raise SystemExit(f"no warm pool: {why_not}")
        pool = pooled.pool
        pool.settle()
        gvisor_rt = GvisorRuntime(monitored) if shutil.which("runsc") else None
        for label, argv in COMMANDS.items():
            variants: dict[str, Callable[[], object]] = {
                "bare": lambda: subprocess.run(argv, check=True),
                "bwrap alone": lambda: subprocess.run(BWRAP_ALONE + list(argv), check=True),
                "ACGS bwrap": lambda: check(bwrap_rt.run(job(argv))),
                "ACGS bwrap, no monitoring": lambda: check(bwrap_quiet.run(job(argv))),
                "ACGS bwrap, warm pool": lambda: check(pooled.run(job(argv))),
            }
            for name, times in interleaved(variants, args.runs, after={"ACGS bwrap, warm pool": pool.settle}).items():
                rows.append((label, name, times))
            if gvisor_rt is not None:
                g = gvisor_rt
                times = interleaved({"gvisor": lambda: check(g.run(job(argv)))}, args.gvisor_runs, 2)["gvisor"]
                rows.append((label, "ACGS gVisor (ptrace)", times))
        pool_state = pool.describe()
    finally:
        if "pooled" in locals():
            pooled.close_pool()
        limits.remove_instance(layout, "acgs-bench", instance.cgroup_name)
        instance.close()
        shutil.rmtree(runs_root, ignore_errors=True)
    load_after = os.getloadavg()

    bare = {label: statistics.median(t) for label, name, t in rows if name == "bare"}
    lines = [
        "# Sandbox start-up overhead",
        "",
        f"Written by `bench/sandbox_startup.py` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {platform.node() and 'the project machine type'}, {os.cpu_count()} CPUs, kernel {platform.release()};"
        f" load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.",
        f"bwrap: {subprocess.run(['bwrap', '--version'], capture_output=True, text=True).stdout.strip()};"
        f" runsc: {subprocess.run(['runsc', '--version'], capture_output=True, text=True).stdout.splitlines()[0] if shutil.which('runsc') else 'absent'}.",
        "Every time is the caller's: start, run, wait, and (for ACGS rows) the cleanup of cgroup and work dir.",
        "The bare, bwrap-alone and ACGS bwrap rows run round-robin, so load from other processes falls on",
        "all of them alike; the minimum is the closest to an idle machine.",
        f"Warm pool: {pool_state['served']} runs served warm, {pool_state['cold_runs']} found it empty and ran cold"
        " (their times are in the warm-pool row too).",
        "",
        "| command | runtime | runs | median ms | p90 ms | min ms | median over bare ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, name, t in rows:
        q = statistics.quantiles(t, n=10)
        med = statistics.median(t)
        lines.append(
            f"| `{label}` | {name} | {len(t)} | {med:.1f} | {q[-1]:.1f} | {min(t):.1f} | {med - bare[label]:+.1f} |"
        )
    lines.append("")
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    res = Results("sandbox", {**run_metadata(ROOT), "runs": args.runs, "gvisor_runs": args.gvisor_runs})
    subjects = {"ACGS bwrap": "acgs", "ACGS bwrap, no monitoring": "acgs, no syscall monitoring",
                "ACGS bwrap, warm pool": "acgs, warm pool",
                "ACGS gVisor (ptrace)": "acgs, gVisor (ptrace)"}
    for label, name, t in rows:
        # The bare process and bwrap alone are floors to read ACGS's overhead against, not peers.
        res.add(f"sandbox start-up, {label}", subjects.get(name, name), "median start-up to clean-up",
                statistics.median(t), "ms", role="acgs" if name in subjects else "baseline")
    res.write(args.out.with_suffix(".json"))
    print(f"wrote {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

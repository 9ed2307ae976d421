#!/usr/bin/env python3
"""Where one unique-input decision request's CPU goes in the policy service (1 worker).

Starts the service as ``bench/http/run.py`` does (the constitution bundle, cache on, every input
different under wrk's vary.lua), then, while wrk runs:

- the worker's CPU time per request (user + system, from /proc/<pid>/stat, divided by the
  requests wrk completed): a figure that contention on a shared machine changes far less than
  requests per second;
- a py-spy sample of the worker (``--format raw``; py-spy must be installed in the venv) whose
  stacks are sorted into the parts of a request's path: each sample goes to the innermost frame
  that belongs to a part (so the engine's call counts as "engine", not as the route calling it).

Usage: python bench/http/breakdown.py [--duration S] [--rate HZ] [--connections C] [--workload vary|hit]
    [--native] [--raw FILE] [--no-profile]
Prints a Markdown table; ``--out FILE`` also writes it. ``--native`` samples native frames too
(the Rust core, orjson, the system calls) at the price of pausing the worker at each sample
(use a low ``--rate``); ``--raw FILE`` keeps py-spy's stacks, ``--classify FILE --cpu-us N``
sorts kept stacks again; ``--no-profile`` gives the CPU per request alone.

``--ab DIR --rounds N``: no profile; instead the service from DIR (a ``python`` directory
holding another version of the ``acgs`` package, e.g. ``git archive HEAD python/acgs`` with the
built extension copied in) against this tree's, N interleaved rounds, each reporting worker
CPU per request, requests/s and p99: a before/after on the same machine in the same minutes.
A measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import run as http_run  # noqa: E402  (bench/http/run.py: the servers and wrk driver)

#: (part, test on one frame "function (file:line)"), innermost match wins; first match in this
#: list wins among parts that match the same frame. The first four only match with --native.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("socket write (system call; the kernel's loopback TCP)", ("write (libc", "writev (libc")),
    ("socket read (system call)", ("read (libc", "recv (libc")),
    ("waiting in epoll (idle, or the kernel's wakeups)", ("epoll_pwait", "epoll_wait")),
    ("Rust core (cache key and lookup, fast path, native evaluation, exact JSON)",
     ("acgs_core::", "acgs_rego::", "lru::", "aho_corasick", "_acgs.abi3")),  # fmt: skip
    ("orjson (parse, write)", ("orjson",)),
    ("engine call (Rust: cache, fast path, evaluation)", ("decide_cached_json", "decide_json", "evaluate_cached_json")),
    ("decision log", ("decision_log.py", "outbox.py")),
    ("exact input re-write (Rust)", ("_exact (",)),
    ("request JSON parse (orjson)", ("_loads (", "parse_json (", "_input_of_body (")),
    ("trusted facts (acgs.trust)", ("acgs/trust/",)),
    ("auth, limits, site guard (acgs.security)", ("acgs/security/",)),
    ("decision metrics and response encode", ("_respond (", "json_reply (", "note_decision (", "prometheus_client/")),
    ("body read", ("read_body (",)),
    ("request observer (id, log context, http metrics)", ("observability/",)),
    ("decision pipeline (Python)", ("pipeline.py",)),
    ("policy route (Python)", ("policy/routes.py",)),
    ("policy app dispatch", ("policy/app.py",)),
    ("response send (ASGI -> transport)", ("common/http.py",)),
    ("uvicorn HTTP parse and ASGI cycle", ("uvicorn/", "httptools")),
    ("event loop (uvloop / asyncio)", ("uvloop", "asyncio/", "loop.c", "uv_run", "uv__")),
]


def part_of(stack: list[str]) -> str | None:
    """The part a sample belongs to; None for a thread other than the event loop's (the
    thread pool's idle workers)."""
    if any("Thread._bootstrap" in frame for frame in stack):
        return None
    for frame in reversed(stack):  # innermost first
        for part, needles in PARTS:
            if any(n in frame for n in needles):
                return part
    return "other"


cpu_seconds = http_run.cpu_seconds


def measure(server: http_run.Server, workload: str, duration: int, connections: int) -> tuple[float, http_run.Run]:
    """Worker CPU µs per request and wrk's figures, for one run on a started server."""
    assert server.proc is not None
    url = f"{server.base}/v1/data/{http_run.POLICY['entrypoint']}"
    http_run.wrk(url, workload, 1, connections, 1)  # warm-up
    cpu0 = cpu_seconds(server.proc.pid)
    run = http_run.wrk(url, workload, duration, connections, 1)
    return (cpu_seconds(server.proc.pid) - cpu0) / max(run.requests, 1) * 1e6, run


def granian_server() -> http_run.Server:
    """This tree's service under granian (Rust HTTP server, ASGI interface, one worker): for
    ``--ab granian``, an experiment on the server alone."""
    server = http_run.acgs_server(1, 10_000)
    exe = Path(sys.executable).with_name("granian")
    server.argv = [str(exe), "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(server.port),
                   "--workers", "1", "--loop", "uvloop", "--log-level", "warning", "--no-ws",
                   "acgs.services.policy.app:app_from_env"]  # fmt: skip
    server.name = "ACGS under granian"
    return server


def ab(args: argparse.Namespace) -> None:
    variants = [("before", str(args.ab)), ("after", str(ROOT / "python"))]
    if str(args.ab) == "granian":
        variants = [("before", str(ROOT / "python")), ("after", "granian")]
    results: dict[str, list[tuple[float, http_run.Run]]] = {name: [] for name, _ in variants}
    lines = [f"A/B ({args.workload} workload, wrk 1 thread, {args.connections} connections, {args.duration} s per run):", ""]
    for round_no in range(args.rounds):
        for name, path in variants:
            server = granian_server() if path == "granian" else http_run.acgs_server(1, 10_000)
            if path != "granian":
                server.env["PYTHONPATH"] = path
            with server:
                cpu_us, run = measure(server, args.workload, args.duration, args.connections)
            results[name].append((cpu_us, run))
            line = (
                f"round {round_no + 1} {name:6} {cpu_us:6.1f} µs CPU/request  {run.requests_per_s:8,.0f} req/s  "
                f"p99 {run.p99_ms:7.2f} ms  errors {run.errors}  load {http_run.loadavg()}"
            )
            print(line, flush=True)
            lines.append("    " + line)
    lines.append("")
    med = {name: (statistics.median(c for c, _ in rs), statistics.median(r.requests_per_s for _, r in rs),
                  statistics.median(r.p99_ms for _, r in rs)) for name, rs in results.items()}  # fmt: skip
    for name, (cpu_us, rps, p99) in med.items():
        lines.append(f"median {name}: {cpu_us:.1f} µs CPU/request, {rps:,.0f} req/s, p99 {p99:.2f} ms")
    b, a = med["before"], med["after"]
    lines.append(f"after vs before: CPU/request {a[0] / b[0]:.2f}x, req/s {a[1] / b[1]:.2f}x")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def classify(raw: Path) -> Counter[str]:
    """Samples per part, from py-spy's raw output."""
    samples: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        part = part_of(stack.split(";"))
        if part is not None:
            samples[part] += int(count)
    return samples


def table(samples: Counter[str], cpu_us: float) -> list[str]:
    total = sum(samples.values())
    lines = ["| part of the request path | share of samples | ~µs per request |", "| --- | ---: | ---: |"]
    for part, n in samples.most_common():
        lines.append(f"| {part} | {n / total:.1%} | {cpu_us * n / total:.1f} |")
    lines.append(f"| total ({total} samples) | 100% | {cpu_us:.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workload", choices=("vary", "hit"), default="vary")
    ap.add_argument("--no-profile", action="store_true", help="CPU per request only (no py-spy)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--raw", type=Path, help="also keep py-spy's raw stacks here")
    ap.add_argument("--native", action="store_true", help="py-spy --native (pauses the worker at each sample)")
    ap.add_argument("--ab", type=Path, help="before/after: the python directory of the version to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--classify", type=Path, help="only sort an earlier --raw file into parts (with --cpu-us)")
    ap.add_argument("--cpu-us", type=float, default=0.0, help="the CPU per request of the --classify run")
    args = ap.parse_args()
    if args.classify:
        print("\n".join(table(classify(args.classify), args.cpu_us)))
        return
    import acgs

    http_run.POLICY = http_run.POLICIES["constitution"]
    http_run.POLICY["input"] = {**acgs.SEED_REQUEST, "action": "data.analyze_private"}
    if args.ab:
        ab(args)
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with http_run.acgs_server(1, 10_000) as server:
        assert server.proc is not None
        pid = server.proc.pid
        url = f"{server.base}/v1/data/{http_run.POLICY['entrypoint']}"
        http_run.wrk(url, args.workload, 1, args.connections, 1)  # warm-up
        load_before = http_run.loadavg()
        cpu0 = cpu_seconds(pid)
        run = http_run.wrk(url, args.workload, args.duration, args.connections, 1)
        cpu_us = (cpu_seconds(pid) - cpu0) / run.requests * 1e6
        load_after = http_run.loadavg()
        samples: Counter[str] = Counter()
        if not args.no_profile:
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "raw.txt"
                spy_proc = subprocess.Popen(
                    [spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--duration", str(args.duration),
                     "--format", "raw", "--output", str(raw), *(["--native"] if args.native else ["--nonblocking"])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
                time.sleep(0.5)
                http_run.wrk(url, args.workload, args.duration, args.connections, 1)
                spy_proc.wait(30)
                if args.raw:
                    shutil.copy(raw, args.raw)
                samples = classify(raw)
    total = sum(samples.values())
    lines = [
        f"Worker CPU per request: {cpu_us:.0f} µs ({run.requests_per_s:,.0f} req/s, p99 {run.p99_ms:.2f} ms, "
        f"{args.workload} workload, load average {load_before} / {load_after})",
        "",
    ]
    if total:
        lines += table(samples, cpu_us)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

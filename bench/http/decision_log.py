#!/usr/bin/env python3
"""What decision logs cost the policy service: throughput and latency with decision logs off,
``async`` (answered once queued) and ``sync`` (answered once the audit service acknowledged the
event as durable; concurrent decisions share one append), under the same wrk load as
bench/http/run.py, against one audit service on loopback (SQLite by default, its embedded
store; ``--database-url`` for PostgreSQL).

Workloads, on the constitution's ``acgs/main/decision`` with ``{"input": ...}``:
  hit    the same input on every request (answered from the decision cache, so the decision
         log is most of the work)
  vary   every input differs (full evaluation on every request)

Configurations are interleaved round by round; the median round is reported in
bench/results/decision-log.md. This is a measurement, not a test.

Usage: python bench/http/decision_log.py [--duration S] [--rounds N] [--connections C] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as http  # noqa: E402  (bench/http/run.py: servers, wrk, machine facts)

RESULTS = http.ROOT / "bench" / "results" / "decision-log.md"
MODES = ("off", "async", "sync")


def audit_server(data_dir: Path, database_url: str | None) -> http.Server:
    port = http.free_port()
    env = {
        "ACGS_DATA_DIR": str(data_dir),
        "ACGS_LOG_LEVEL": "warning",
        "PYTHONPATH": str(http.ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    if database_url:
        env["ACGS_AUDIT_DATABASE_URL"] = database_url
    return http.Server(
        "audit", [sys.executable, "-m", "acgs.services.audit", "--port", str(port)], env, port, "/health"
    )


def policy_server(mode: str, audit_url: str) -> http.Server:
    server = http.acgs_server(1, 10_000)
    server.name = f"ACGS, decision log {mode}"
    if mode != "off":
        server.env["ACGS_POLICY_DECISION_LOG"] = audit_url
        server.env["ACGS_POLICY_DECISION_LOG_MODE"] = mode
    return server


def log_size(audit_url: str) -> int:
    with urllib.request.urlopen(audit_url + "/health", timeout=5) as r:
        size: int = json.loads(r.read())["size"]
        return size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per configuration (median reported)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--database-url", help="audit store (default: SQLite in a temporary data directory)")
    ap.add_argument("--quick", action="store_true", help="3 s runs, 1 round: a smoke test of the harness")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 3, 1
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: run `bash scripts/setup.sh --bench`")
    import acgs

    http.POLICY = http.POLICIES["constitution"]
    # An action the fast path does not cover, as bench/http/run.py does for this policy.
    http.POLICY["input"] = {**acgs.SEED_REQUEST, "action": "data.analyze_private"}
    load_before = http.loadavg()
    started = dt.datetime.now(dt.timezone.utc)
    series: dict[tuple[str, str], http.Series] = {}
    logged: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="acgs-bench-dlog-") as tmp, audit_server(Path(tmp), args.database_url) as audit:
        for round_no in range(args.rounds):
            for workload in ("hit", "vary"):
                for mode in MODES:
                    with policy_server(mode, audit.base) as server:
                        url = f"{server.base}/v1/data/{http.POLICY['entrypoint']}"
                        http.wrk(url, workload, 1, args.connections, args.threads)  # warm-up
                        size_before = log_size(audit.base)
                        result = http.wrk(url, workload, args.duration, args.connections, args.threads)
                    # The service drained its queue on shutdown: what it logged is in the log now.
                    events = log_size(audit.base) - size_before
                    series.setdefault((mode, workload), http.Series(server.name, workload)).runs.append(result)
                    logged.setdefault(f"{mode}/{workload}", []).append(events / max(result.requests, 1))
                    print(
                        f"round {round_no + 1} {workload:4} {mode:5} {result.requests_per_s:8.0f} req/s "
                        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}  "
                        f"events/request {events / max(result.requests, 1):.3f}  load {http.loadavg()}",
                        flush=True,
                    )
    write_results(args, series, logged, load_before, started)


def write_results(
    args: argparse.Namespace,
    series: dict[tuple[str, str], http.Series],
    logged: dict[str, list[float]],
    load_before: str,
    started: dt.datetime,
) -> None:
    m = http.machine()
    store = "PostgreSQL" if args.database_url else "SQLite (WAL, synchronous=FULL)"
    lines = [
        "# Decision logs: what each mode costs the policy service",
        "",
        f"`bench/http/decision_log.py` on {started:%Y-%m-%d %H:%M} UTC: the policy service (1 worker, constitution",
        f"bundle, `acgs/main/decision` with `{{\"input\": ...}}`) under wrk ({args.threads} thread, {args.connections}",
        f"connections, {args.duration} s per run, median of {args.rounds} interleaved rounds), logging to one audit",
        f"service on loopback ({store}). Machine: {m['cpu']}; load average before: {load_before}.",
        *([f"Note: {args.note}"] if args.note else []),
        "",
        "| workload | decision log | req/s | vs off | p50 ms | p99 ms | errors | events per answered request |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload in ("hit", "vary"):
        base = series[("off", workload)].median().requests_per_s
        for mode in MODES:
            r = series[(mode, workload)].median()
            share = logged[f"{mode}/{workload}"]
            lines.append(
                f"| {workload} | {mode} | {r.requests_per_s:,.0f} | {r.requests_per_s / base:.2f}× | "
                f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {sorted(share)[len(share) // 2]:.3f} |"
            )
    lines += [
        "",
        "wrk, the policy service and the audit service share the same cores, so every figure includes",
        "that contention. `async` answers before the event is durable (a crash loses what is queued);",
        "`sync` answers only once the audit service acknowledged it. Events per answered request can",
        "exceed 1: decisions still in flight when wrk stops are logged but not counted by wrk.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

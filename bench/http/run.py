#!/usr/bin/env python3
"""HTTP load benchmark: the ACGS policy service against `opa run --server`, side by side.

Both servers serve the same Rego and data (ACGS the bundle `opa build -t wasm` made from it,
OPA the sources), on loopback, under the same load generator (wrk, one Lua POST script), and
both answer the same OPA Data API request: POST /v1/data/<entrypoint> {"input": ...}.

With `--policy constitution` both serve a copy of the constitution whose decision rate limit
(100 a minute per caller) is out of reach: see constitution_for_bench.

Workloads:
  hit    the same input on every request (ACGS answers from its decision cache; OPA has none
         and evaluates each time)
  vary   every input differs (wrk's vary.lua puts a counter into the input), so no cache can
         answer: ACGS with its cache on (every request a miss) and with cache_size=0

ACGS runs under uvicorn with 1 and 2 worker processes; OPA with its defaults (GOMAXPROCS = all
cores). Each configuration is measured `--rounds` times, interleaved with the others so drift
in machine load hits all alike; the median round is reported. Results go to
bench/results/http.md and, in the benchmarks' JSON schema, bench/results/http.json. This is a
measurement, not a test.

Usage: python bench/http/run.py [--duration S] [--rounds N] [--connections C] [--quick]
Run from the repo venv with the extension built (`make bench-http` does both).
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OPA = Path(os.environ.get("OPA", Path.home() / ".local/bin/opa"))
RESULTS = ROOT / "bench" / "results" / "http.md"
#: A results file's hand-written part, from this heading on, survives a new run.
KEPT = "## Where the time goes"

# Each policy: the sources OPA serves, the bundle ACGS serves (built from them by
# policies/build.sh), the entrypoint asked and the input sent.
POLICIES: dict[str, dict[str, Any]] = {
    "example": {
        "opa_args": [str(ROOT / "policies" / "example")],
        "bundle": ROOT / "python" / "acgs" / "bundles" / "example.tar.gz",
        "entrypoint": "acgs/example/decision",
        "input": {
            "action": "data.read_public",
            "context": {
                "environment": {"sandbox_enabled": True, "audit_enabled": True},
                "agent": {"trust_level": 0.9},
                "responsible_party": "user@example.com",
                "session_id": "sess_123456",
            },
        },
    },
    "constitution": {
        "opa_args": ["--ignore", "*_test.rego", "acgs:" + str(ROOT / "policies" / "acgs")],
        "bundle": ROOT / "python" / "acgs" / "bundles" / "constitution.tar.gz",
        "entrypoint": "acgs/main/decision",
        # acgs.SEED_REQUEST with an action the fast path does not cover, so ACGS evaluates
        # the full constitution like OPA does (the seed's own action is on the fast path).
        "input": None,
    },
}
POLICY: dict[str, Any] = POLICIES["example"]


#: The decisions a minute the bench variant of the constitution allows one caller: past the
#: shipped limit (100) every answer would be a rate-limit deny carrying a changing count, so
#: the `hit` workload would never hit, and ACGS (which counts the caller's requests) and OPA
#: (which does not) would not decide the same thing.
BENCH_DECISIONS_PER_MINUTE = 1_000_000_000


def _raised(constitution: dict[str, Any]) -> dict[str, Any]:
    constitution["rate_limits"]["per_minute"]["decision"] = BENCH_DECISIONS_PER_MINUTE
    return constitution


def constitution_for_bench(workdir: Path) -> None:
    """Points POLICY at a copy of the constitution whose decision rate limit is out of reach:
    the bundle (ACGS) with its data.json replaced, and the sources (OPA) with the same data.
    Only data changes: the rules, and so the native evaluator's pinned digests, stay the same."""
    bundle = workdir / "constitution-bench.tar.gz"
    with tarfile.open(POLICY["bundle"]) as src, tarfile.open(bundle, "w:gz") as dst:
        for member in src.getmembers():
            f = src.extractfile(member) if member.isfile() else None
            if f is not None and member.name.lstrip("/") == "data.json":
                data = json.loads(f.read())
                _raised(data["acgs"]["constitution"])
                body = json.dumps(data).encode()
                member.size = len(body)
                f = io.BytesIO(body)
            dst.addfile(member, f)
    sources = workdir / "acgs"
    shutil.copytree(ROOT / "policies" / "acgs", sources, ignore=shutil.ignore_patterns("*_test.rego"))
    data_file = sources / "constitution" / "data.json"
    data_file.write_text(json.dumps(_raised(json.loads(data_file.read_text()))))
    POLICY["bundle"] = bundle
    POLICY["opa_args"] = ["--ignore", "*_test.rego", "acgs:" + str(sources)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    health: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            self.argv, env={**os.environ, **self.env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_http(self.base + self.health)
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


def acgs_server(workers: int, cache_size: int) -> Server:
    port = free_port()
    return Server(
        f"ACGS ({workers} worker{'s' if workers > 1 else ''}{', cache off' if cache_size == 0 else ''})",
        [sys.executable, "-m", "acgs.services.policy", "--port", str(port), "--workers", str(workers)],
        {
            "ACGS_POLICY_BUNDLE": str(POLICY["bundle"]),
            "ACGS_POLICY_CACHE_SIZE": str(cache_size),
            "ACGS_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        },
        port,
        "/health",
    )


def opa_server() -> Server:
    port = free_port()
    return Server(
        "OPA server",
        [str(OPA), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error", *POLICY["opa_args"]],
        {},
        port,
        "/health",
    )


@dataclass
class Run:
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: The server's CPU (user + system, all its processes) per request: far steadier than
    #: requests/s when other work shares the machine.
    cpu_us: float | None = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants (a server's worker processes)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)  # ppid, utime+stime
    tree = {pid}
    for _ in range(4):
        tree |= {p for p, (ppid, _) in stats.items() if ppid in tree}
    return sum(stats[p][1] for p in tree if p in stats)


@dataclass
class Series:
    server: str
    workload: str
    runs: list[Run] = field(default_factory=list)
    l1_hit_share: float | None = None
    fast_path_share: float | None = None

    def median(self) -> Run:
        ordered = sorted(self.runs, key=lambda r: r.requests_per_s)
        return ordered[len(ordered) // 2]


def wrk(url: str, workload: str, duration: int, connections: int, threads: int) -> Run:
    body = json.dumps({"input": POLICY["input"]}, separators=(",", ":"))
    env = dict(os.environ)
    if workload == "hit":
        script = HERE / "post.lua"
        env["WRK_BODY"] = body
    else:
        script = HERE / "vary.lua"
        env["WRK_BODY_TEMPLATE"] = body.replace('"sess_123456"', '"sess_%s"')
        env["WRK_NONCE"] = os.urandom(6).hex()
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(script), url],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(data["errors"].values())
    return Run(
        requests=data["requests"],
        requests_per_s=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
    )


def counters(base: str) -> dict[str, float]:
    """L1 hits and misses and fast-path answers, from the service's /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    names = {
        'acgs_cache_requests_total{level="l1",result="hit"}': "hits",
        'acgs_cache_requests_total{level="l1",result="miss"}': "misses",
        "acgs_fast_path_total": "fast_path",
    }
    out = dict.fromkeys(names.values(), 0.0)
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in names:
            out[names[name]] = float(value)
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import uvicorn

    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "os": platform.platform(),
        "python": platform.python_version(),
        "server": f"uvicorn {uvicorn.__version__} ({loop}, httptools)",
        "opa": first_line([str(OPA), "version"]),
        "wrk": first_line(["wrk", "--version"]),
    }


def check_same_answers(acgs_base: str, opa_base: str) -> None:
    """Both servers must give the same result before anything is timed."""
    url = f"/v1/data/{POLICY['entrypoint']}"
    base = POLICY["input"]
    for trust in (0.9, 0.5):
        doc = {"input": {**base, "context": {**base["context"], "agent": {**base["context"]["agent"], "trust_level": trust}}}}
        a, o = post(acgs_base + url, doc), post(opa_base + url, doc)
        if a.get("result") != o.get("result"):
            raise SystemExit(f"ACGS and OPA disagree on trust {trust}: {a} vs {o}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per configuration (median reported)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (it shares the cores with the servers)")
    ap.add_argument("--quick", action="store_true", help="3 s runs, 1 round: a smoke test of the harness")
    ap.add_argument("--note", default="", help="free text for the results file (e.g. how busy the machine was)")
    ap.add_argument("--policy", choices=sorted(POLICIES), default="example")
    ap.add_argument("--out", type=Path, help="results file (default: bench/results/http.md, http-<policy>.md for others)")
    args = ap.parse_args()
    global POLICY
    POLICY = POLICIES[args.policy]
    workdir = Path(tempfile.mkdtemp(prefix="acgs-bench-http-"))
    atexit.register(shutil.rmtree, workdir, True)
    if POLICY["input"] is None:
        import acgs

        POLICY["input"] = {**acgs.SEED_REQUEST, "action": "data.analyze_private"}
        constitution_for_bench(workdir)
    if args.out is None:
        args.out = RESULTS if args.policy == "example" else RESULTS.with_name(f"http-{args.policy}.md")
    if args.quick:
        args.duration, args.rounds = 3, 1
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: run `bash scripts/setup.sh --bench`")
    if not OPA.exists():
        raise SystemExit(f"{OPA} not found: run `make opa`")

    configs: list[tuple[str, Any]] = [
        ("hit", lambda: acgs_server(1, 10_000)),
        ("hit", lambda: acgs_server(2, 10_000)),
        ("hit", opa_server),
        ("vary", lambda: acgs_server(1, 10_000)),
        ("vary", lambda: acgs_server(2, 10_000)),
        ("vary", lambda: acgs_server(1, 0)),
        ("vary", lambda: acgs_server(2, 0)),
        ("vary", opa_server),
    ]
    series: dict[tuple[str, str], Series] = {}
    load_before = loadavg()
    started = dt.datetime.now(dt.timezone.utc)
    with opa_server() as opa, acgs_server(1, 10_000) as acgs:
        check_same_answers(acgs.base, opa.base)
    for round_no in range(args.rounds):
        for workload, make in configs:
            with make() as server:
                url = f"{server.base}/v1/data/{POLICY['entrypoint']}"
                wrk(url, workload, 1, args.connections, args.threads)  # warm-up: connections, caches
                acgs_one = server.name.startswith("ACGS") and "2 workers" not in server.name
                before = counters(server.base) if acgs_one else {}
                assert server.proc is not None
                cpu0 = cpu_seconds(server.proc.pid)
                run = wrk(url, workload, args.duration, args.connections, args.threads)
                run.cpu_us = (cpu_seconds(server.proc.pid) - cpu0) / max(run.requests, 1) * 1e6
                s = series.setdefault((server.name, workload), Series(server.name, workload))
                s.runs.append(run)
                if acgs_one:
                    after = counters(server.base)
                    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
                    s.l1_hit_share = hits / (hits + misses) if hits + misses else 0.0
                    s.fast_path_share = (after["fast_path"] - before["fast_path"]) / run.requests if run.requests else 0.0
                print(
                    f"round {round_no + 1} {workload:4} {server.name:28} {run.requests_per_s:9.0f} req/s "
                    f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:7.2f} ms  CPU {run.cpu_us:6.1f} µs/req  errors {run.errors}  "
                    f"load {loadavg()}",
                    flush=True,
                )
    write_results(args, series, load_before, started)


def write_results(args: argparse.Namespace, series: dict[tuple[str, str], Series], load_before: str, started: dt.datetime) -> None:
    facts = machine()
    lines = [
        "# HTTP load: ACGS policy service vs OPA server",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC by `bench/http/run.py` "
        f"(wrk {args.threads} thread, {args.connections} connections, {args.duration} s per run, "
        f"median of {args.rounds} interleaved rounds).",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in facts.items()),
        f"| load average before / after | {load_before} / {loadavg()} |",
        "",
    ]
    if args.note:
        lines += [args.note, ""]
    lines += [
        f"Same request to both: `POST /v1/data/{POLICY['entrypoint']}` with `{{\"input\": ...}}` (policy "
        f"`{args.policy}`: OPA serves its Rego sources, ACGS the bundle built from them). `hit`: the same",
        "input every time. `vary`: a counter in the input makes every request unique.",
        "",
    ]
    for workload, title in (("hit", "Cache-hit workload (same input)"), ("vary", "Cache-disabled workload (every input differs)")):
        rows = [s for (name, w), s in series.items() if w == workload]
        opa = next((s.median() for s in rows if s.server == "OPA server"), None)
        lines += [
            f"## {title}",
            "",
            "| server | requests/s | p50 ms | p99 ms | server CPU µs/req | req/s vs OPA | p99 vs OPA | L1 hit share "
            "| fast path share | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in rows:
            m = s.median()
            ratio = f"{m.requests_per_s / opa.requests_per_s:.2f}x" if opa else "-"
            p99 = f"{m.p99_ms / opa.p99_ms:.2f}x" if opa else "-"
            share = "-" if s.l1_hit_share is None else f"{s.l1_hit_share:.0%}"
            fast = "-" if s.fast_path_share is None else f"{s.fast_path_share:.0%}"
            cpu = statistics.median(r.cpu_us for r in s.runs if r.cpu_us is not None) if s.runs[0].cpu_us is not None else None
            lines.append(
                f"| {s.server} | {m.requests_per_s:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
                f"{'-' if cpu is None else f'{cpu:.0f}'} | {ratio} | {p99} | {share} | "
                f"{fast} | {sum(r.errors for r in s.runs)} |"
            )
        lines += ["", "All rounds (requests/s): " + "; ".join(
            f"{s.server}: " + ", ".join(f"{r.requests_per_s:,.0f}" for r in s.runs) for s in rows
        ), ""]  # fmt: skip
    lines += [
        "Ratios: requests/s above 1x and p99 below 1x favour ACGS. \"L1 hit share\" and \"fast path",
        "share\" are read from ACGS's own /metrics around each 1-worker run (the last round's): they",
        "show the workload is what it claims. The fast path answers constitution decisions the",
        "constitution's data marks as decidable without evaluation; it is not a cache.",
        "wrk runs on the same 2 cores as the servers, so every figure includes that contention.",
        "\"server CPU µs/req\": user + system CPU of the server's processes during the timed run over",
        "the requests it answered (median of the rounds); it moves far less with other load on the machine",
        "than requests/s does, and is what bench/http/breakdown.py splits into the parts of a request.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # The analysis written by hand under KEPT (bench/http/breakdown.py's figures) stays.
    previous = args.out.read_text() if args.out.exists() else ""
    kept = previous[previous.index(KEPT) :] if KEPT in previous else ""
    args.out.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    print(f"wrote {args.out}")
    json_results(args, series, facts).write(args.out.with_suffix(".json"))
    print(f"wrote {args.out.with_suffix('.json')}")


def json_results(args: argparse.Namespace, series: dict[tuple[str, str], Series], facts: dict[str, str]) -> Any:
    """The median rounds in the schema every benchmark writes. ACGS with 2 workers is the
    subject compared with OPA's server, which uses every core."""
    sys.path.insert(0, str(ROOT / "python"))
    from acgs.perf.results import Results, run_metadata

    res = Results(args.out.stem, {**run_metadata(ROOT), **facts, "rounds": args.rounds, "duration_s": args.duration,
                                  "connections": args.connections, "quick": args.quick})
    titles = {"hit": "same input (cache hits)", "vary": "every input differs"}
    for (name, workload), s in series.items():
        m = s.median()
        benchmark = f"HTTP {args.policy}, {titles[workload]}"
        if name == "OPA server":
            subject, role = "OPA server", "peer"
        else:
            subject = "acgs" if name == "ACGS (2 workers)" else "acgs, " + name.removeprefix("ACGS (").rstrip(")")
            role = "acgs"
        res.add(benchmark, subject, "requests per second", m.requests_per_s, "req/s", role=role, better="higher")
        res.add(benchmark, subject, "p99 latency", m.p99_ms, "ms", role=role)
        cpus = [r.cpu_us for r in s.runs if r.cpu_us is not None]
        if cpus:
            res.add(benchmark, subject, "server CPU per request", statistics.median(cpus), "µs", role=role)
    return res


if __name__ == "__main__":
    main()

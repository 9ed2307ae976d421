#!/usr/bin/env python3
"""Runs every host benchmark in one go and writes bench/results/latest.md.

Hosts, all on the same policy.wasm (bench/bundles/*.tar.gz) and the same input bytes:
  Rust    ACGS (acgs-core) and rust-opa-wasm, criterion (bench/rust)
  Python  ACGS's Python API and opa-py-wasm, pytest-benchmark (bench/test_bench_python.py)
  Go      OPA's own evaluator, `opa bench` on the same Rego, data and input

Also ACGS's own decision benchmarks on the shipped constitution (criterion bench `decide`,
bench/test_bench_decide.py), which have no peer.

Usage: python bench/run.py [--quick] [--skip-rust] [--skip-python] [--skip-opa]
Run it from the repo venv (`make bench` does) so the built `acgs` module is importable.
Besides results/latest.md it writes results/hosts.json (the schema of acgs.perf.results).
Peers come from requirements.lock (the `bench` extra), which `make setup` installs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

Get = Callable[[str], Optional[float]]

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "python"))

from acgs.perf.results import Results, Role, run_metadata  # noqa: E402

CASES = {"small": "bench/small/allow", "medium": "bench/medium/decision"}
THREADS = 2
OPA = Path(os.environ.get("OPA", Path.home() / ".local/bin/opa"))
TARGET = Path(os.environ.get("ACGS_BENCH_TARGET_DIR", Path.home() / ".cache/acgs/target-bench"))


def sh(cmd: list[str], **kw: object) -> str:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, **kw).stdout  # type: ignore[call-overload, no-any-return]


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, text=True, capture_output=True, check=False).stdout.strip()
        return out.splitlines()[0] if out else "?"
    except OSError:
        return "?"


def machine_facts() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) // 1024 // 1024} GiB"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": first_line(["nproc"]),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "rustc": first_line(["rustc", "--version"]),
        "python": platform.python_version(),
        "opa": "OPA " + first_line([str(OPA), "version"]).split()[-1],
        "git": first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_busy_seconds() -> float:
    """CPU time all processes on the machine have used since boot, in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def wait_quiet(limit_s: float) -> None:
    """Waits (up to limit_s) for a minute in which other processes use < 0.2 cores."""
    deadline = time.monotonic() + limit_s
    while True:
        busy0, own0, t0 = cpu_busy_seconds(), own_cpu_seconds(), time.monotonic()
        time.sleep(20)
        others = (cpu_busy_seconds() - busy0 - (own_cpu_seconds() - own0)) / (time.monotonic() - t0)
        print(f"wait-quiet: other processes use {others:.2f} cores", flush=True)
        if others < 0.2 or time.monotonic() > deadline:
            return


def lock_version(name: str) -> str:
    text = (BENCH / "rust/Cargo.lock").read_text()
    versions = re.findall(rf'name = "{re.escape(name)}"\nversion = "([^"]+)"', text)
    return ", ".join(versions) or "?"


def check_bundles() -> None:
    """The committed bundles must be what the pinned OPA builds from bench/policies."""
    with tempfile.TemporaryDirectory() as tmp:
        sh(["bash", str(BENCH / "policies/build.sh")], env={**os.environ, "OUT": tmp, "OPA": str(OPA)})
        for name in CASES:
            if (Path(tmp) / f"{name}.tar.gz").read_bytes() != (BENCH / f"bundles/{name}.tar.gz").read_bytes():
                sys.exit(f"bench/bundles/{name}.tar.gz is stale: run bench/policies/build.sh and commit it")


# ---- Rust (criterion) ----------------------------------------------------------------------


def run_rust(quick: bool) -> dict[str, float]:
    env = {**os.environ, "CARGO_TARGET_DIR": str(TARGET)}
    if quick:
        env["BENCH_QUICK"] = "1"
    crit = TARGET / "criterion"
    shutil.rmtree(crit, ignore_errors=True)
    subprocess.run(
        ["cargo", "bench", "--quiet", "--manifest-path", str(BENCH / "rust/Cargo.toml"),
         "--bench", "hosts", "--bench", "decide"],
        env=env,
        check=True,
    )
    out: dict[str, float] = {}
    for meta in crit.glob("**/new/benchmark.json"):
        info = json.loads(meta.read_text())
        est = json.loads((meta.parent / "estimates.json").read_text())
        point = (est.get("slope") or est["mean"])["point_estimate"]
        out[f"{info['group_id']}/{info['function_id']}"] = float(point)
    return out


# ---- Python (pytest-benchmark) -----------------------------------------------------------------


def pytest_benchmark(test_file: Path, report: Path, quick: bool) -> list[dict]:  # type: ignore[type-arg]
    cmd = [
        sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider",
        "--benchmark-only", f"--benchmark-json={report}", "--benchmark-columns=median,mean,ops,rounds",
    ]
    if quick:
        cmd.append("--benchmark-max-time=0.2")
    else:
        cmd += ["--benchmark-min-rounds=20", "--benchmark-max-time=3"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(report.read_text())["benchmarks"]  # type: ignore[no-any-return]


def run_python(quick: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        hosts = pytest_benchmark(BENCH / "test_bench_python.py", Path(tmp) / "python.json", quick)
        decide = pytest_benchmark(BENCH / "test_bench_decide.py", Path(tmp) / "decide.json", quick)
    out: dict[str, float] = {}
    for b in hosts:
        # Median: Python timings have a long tail (GC, the GIL); batch figures become per eval.
        ns = b["stats"]["median"] * 1e9 / b.get("extra_info", {}).get("batch", 1)
        out[f"{b['group']}/{b['name'].split('[')[0].removeprefix('test_')}"] = ns
    for b in decide:
        out[f"{b['group']}/{b['param']}"] = b["stats"]["median"] * 1e9
    return out


# ---- OPA's evaluator (opa bench) ---------------------------------------------------------------


def run_opa(quick: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    count = "1" if quick else "5"
    for name, ep in CASES.items():
        text = sh(
            [
                str(OPA), "bench", "--metrics=false", "-f", "gobench", "--count", count,
                "-d", str(BENCH / "policies" / name), "-i", str(BENCH / "inputs" / f"{name}.json"),
                "data." + ep.replace("/", "."),
            ]
        )
        per_op = [float(m) for m in re.findall(r"([\d.]+) ns/op", text)]
        out[name] = statistics.median(per_op)
    return out


# ---- report ------------------------------------------------------------------------------------


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "—"
    return f"{ns / 1000:,.2f} µs" if ns >= 1000 else f"{ns:,.0f} ns"


def fmt_rate(ns: float | None) -> str:
    return "—" if ns is None else f"{1e9 / ns:,.0f}"


def ratio(peer: float | None, ours: float | None) -> str:
    if peer is None or ours is None:
        return "—"
    return f"{peer / ours:.2f}×"


def report(facts: dict[str, str], versions: dict[str, str], rust: dict[str, float], py: dict[str, float],
           opa: dict[str, float], load_before: str, load_after: str) -> tuple[str, list[str]]:
    def row(label: str, get: Get, base: Get | None) -> str:
        cells = [label]
        for name in CASES:
            v = get(name)
            cells.append(fmt_ns(v))
        for name in CASES:
            if base is None:
                cells.append("—")
            else:
                cells.append(ratio(get(name), base(name)))
        return "| " + " | ".join(cells) + " |"

    acgs_rs: Get = lambda n: rust.get(f"single/{n}/acgs")  # noqa: E731
    acgs_py: Get = lambda n: py.get(f"{n}/evaluate/acgs_evaluate")  # noqa: E731
    acgs_pyj: Get = lambda n: py.get(f"{n}/raw/acgs_evaluate_json")  # noqa: E731
    lines = [
        "# Host benchmarks: ACGS vs other OPA Wasm hosts and OPA's evaluator",
        "",
        f"Generated by `bench/run.py` on {facts['date']} (commit {facts['git']}).",
        "",
        "## Machine",
        "",
        f"- CPU: {facts['cpu']}; `nproc`: {facts['nproc']}; memory: {facts['memory']}; kernel {facts['kernel']}",
        f"- load average before / after the run: {load_before} / {load_after}; other processes used "
        f"{facts['others']}" + (" (**a busy machine: 2-thread figures understate scaling**)"
                                 if float(facts["others"].split()[0]) > 0.2 else ""),
        f"- {facts['rustc']}; Python {facts['python']}; {facts['opa']}",
        "- peers: " + "; ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "Same `policy.wasm` and data for every Wasm host (the committed bundles), the same input bytes",
        "for every host; `opa bench` runs the same Rego, data.json and input. Each host's result is",
        "checked to equal ACGS's before timing.",
        "",
        "## One evaluation (time per eval; ratio = peer time / ACGS time, >1 means ACGS is faster)",
        "",
        "| host | small | medium | ACGS speed-up, small | ACGS speed-up, medium |",
        "| --- | --- | --- | --- | --- |",
        "| **Rust API** (criterion) | | | | |",
        row("ACGS `Engine::evaluate` (input validated, JSON out)", acgs_rs, None),
        row("rust-opa-wasm `Policy::evaluate` (raw JSON in/out)", lambda n: rust.get(f"single/{n}/opa-wasm"), acgs_rs),
        row("OPA evaluator, `opa bench` (Go, not Wasm)", lambda n: opa.get(n), acgs_rs),
        "| **Python API** (pytest-benchmark, median) | | | | |",
        row("ACGS `evaluate(dict)`", acgs_py, None),
        row("opa-py-wasm `evaluate(dict)`", lambda n: py.get(f"{n}/evaluate/opa_py_wasm_evaluate"), acgs_py),
        row("ACGS `evaluate_json(bytes)` (bytes out)", acgs_pyj, None),
        row("opa-py-wasm `evaluate(bytes)` (parsed out)", lambda n: py.get(f"{n}/raw/opa_py_wasm_evaluate_bytes"), acgs_pyj),
        row("OPA evaluator, `opa bench`, vs ACGS Python `evaluate`", lambda n: opa.get(n), acgs_py),
        "",
        f"## Throughput on {THREADS} threads (evaluations per second, all threads together)",
        "",
        "Scaling = this rate / the same host's one-thread rate (2.00× is perfect on 2 cores).",
        "Ratio = ACGS rate / peer rate (>1 means ACGS is faster).",
        "",
        "| host | small evals/s | medium evals/s | scaling, small | scaling, medium | ACGS advantage, small | ACGS advantage, medium |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def trow(label: str, get: Get, single: Get, base: Get | None) -> str:
        cells = [label] + [fmt_rate(get(n)) for n in CASES]
        cells += [ratio(single(n), get(n)) for n in CASES]
        cells += ["—"] * len(CASES) if base is None else [ratio(get(n), base(n)) for n in CASES]
        return "| " + " | ".join(cells) + " |"

    acgs_t: Get = lambda n: rust.get(f"threads2/{n}/acgs")  # noqa: E731
    acgs_pyt: Get = lambda n: py.get(f"{n}/threads2/acgs_evaluate_many")  # noqa: E731
    opa_rs: Get = lambda n: rust.get(f"single/{n}/opa-wasm")  # noqa: E731
    opa_py: Get = lambda n: py.get(f"{n}/evaluate/opa_py_wasm_evaluate")  # noqa: E731
    lines += [
        "| **Rust** | | | | | | |",
        trow("ACGS, one `Engine` shared by 2 threads", acgs_t, acgs_rs, None),
        trow("ACGS `evaluate_many(threads=2)`", lambda n: rust.get(f"threads2/{n}/acgs-evaluate_many"), acgs_rs, None),
        trow("rust-opa-wasm, one instance per thread", lambda n: rust.get(f"threads2/{n}/opa-wasm"), opa_rs, acgs_t),
        "| **Python** | | | | | | |",
        trow("ACGS `evaluate_many(threads=2)`", acgs_pyt, acgs_py, None),
        trow("ACGS `evaluate` from 2 Python threads", lambda n: py.get(f"{n}/threads2/acgs_evaluate_in_threads"),
             acgs_py, None),
        trow("opa-py-wasm `evaluate` from 2 Python threads (pool of 2)",
             lambda n: py.get(f"{n}/threads2/opa_py_wasm_evaluate_in_threads"), opa_py, acgs_pyt),
        "",
        "Single-thread rates for reference (1e9 / time per eval): "
        + "; ".join(f"ACGS Rust {n} {fmt_rate(acgs_rs(n))}/s" for n in CASES) + ".",
        "",
    ]

    # The goal: ACGS the fastest Wasm host by >= 1.5x, and faster than `opa bench`.
    verdicts = []
    for n in CASES:
        for label, peer, ours in [
            ("Rust: rust-opa-wasm / ACGS", rust.get(f"single/{n}/opa-wasm"), acgs_rs(n)),
            ("Python: opa-py-wasm / ACGS", py.get(f"{n}/evaluate/opa_py_wasm_evaluate"), acgs_py(n)),
        ]:
            if peer is not None and ours is not None:
                r = peer / ours
                verdicts.append(f"- {n}, {label} = {r:.2f}× → {'met' if r >= 1.5 else 'NOT met'} (goal ≥ 1.5×)")
        base, theirs = acgs_rs(n), opa.get(n)
        if theirs is not None and base is not None:
            r = theirs / base
            verdicts.append(f"- {n}, `opa bench` / ACGS (Rust) = {r:.2f}× → {'met' if r > 1 else 'NOT met'} (goal > 1×)")
    lines += ["## Goal check", "", *verdicts, "",
              "See bench/README.md for how to read these figures and where ACGS's time goes.", ""]
    return "\n".join(lines), verdicts


def hosts_results(rust: dict[str, float], py: dict[str, float], opa: dict[str, float], run: dict[str, object]) -> Results:
    """The same figures in the schema every benchmark writes (bench/results/*.json)."""
    res = Results("hosts", run)
    per_eval, rate = "time per evaluation", "evaluations per second, 2 threads"

    def put(table: dict[str, float], key: str, benchmark: str, subject: str, role: Role = "acgs",
            throughput: bool = False) -> None:
        v = table.get(key)
        if v is None:
            return
        if throughput:
            res.add(benchmark, subject, rate, 1e9 / v, "evals/s", role=role, better="higher")
        else:
            res.add(benchmark, subject, per_eval, v, "ns", role=role)

    for n in CASES:
        b = f"{n} policy, Rust API"
        put(rust, f"single/{n}/acgs", b, "acgs")
        put(rust, f"single/{n}/acgs-no-deadline", b, "acgs, no deadline")
        put(rust, f"single/{n}/acgs-cache-hit", b, "acgs, cache hit")
        put(rust, f"single/{n}/opa-wasm", b, "rust-opa-wasm", "peer")
        put(opa, n, b, "opa bench", "peer")
        b = f"{n} policy, Python evaluate(dict)"
        put(py, f"{n}/evaluate/acgs_evaluate", b, "acgs")
        put(py, f"{n}/evaluate/acgs_evaluate_cache_hit", b, "acgs, cache hit")
        put(py, f"{n}/evaluate/opa_py_wasm_evaluate", b, "opa-py-wasm", "peer")
        put(opa, n, b, "opa bench", "peer")
        b = f"{n} policy, Python evaluate_json(bytes)"
        put(py, f"{n}/raw/acgs_evaluate_json", b, "acgs")
        put(py, f"{n}/raw/opa_py_wasm_evaluate_bytes", b, "opa-py-wasm", "peer")
        b = f"{n} policy, Rust API, 2 threads"
        put(rust, f"threads2/{n}/acgs", b, "acgs", throughput=True)
        put(rust, f"threads2/{n}/acgs-evaluate_many", b, "acgs evaluate_many", throughput=True)
        put(rust, f"threads2/{n}/opa-wasm", b, "rust-opa-wasm", "peer", throughput=True)
        b = f"{n} policy, Python, 2 threads"
        put(py, f"{n}/threads2/acgs_evaluate_many", b, "acgs", throughput=True)
        put(py, f"{n}/threads2/acgs_evaluate_in_threads", b, "acgs evaluate from 2 threads", throughput=True)
        put(py, f"{n}/threads2/opa_py_wasm_evaluate_in_threads", b, "opa-py-wasm", "peer", throughput=True)
    for variant in ("cache-hit", "fast-path", "full-evaluation/native", "full-evaluation/wasm"):
        name = variant.replace("/", ", ")
        py_variant = variant.replace("/", "-")
        put(rust, f"decide/constitution/{variant}", f"constitution decide, {name}, Rust API", "acgs")
        put(py, f"decide(dict)/{py_variant}", f"constitution decide(dict), {name}, Python", "acgs")
        put(py, f"decide_json(bytes)/{py_variant}", f"constitution decide_json(bytes), {name}, Python", "acgs")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs, for checking the harness")
    ap.add_argument("--skip-rust", action="store_true")
    ap.add_argument("--skip-python", action="store_true")
    ap.add_argument("--skip-opa", action="store_true")
    ap.add_argument("--out", type=Path, default=BENCH / "results/latest.md")
    ap.add_argument("--json", type=Path, default=BENCH / "results/hosts.json",
                    help="the same figures in the benchmarks' JSON schema")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to SECONDS for the machine to be idle (other builds skew 2-thread figures)")
    args = ap.parse_args()

    facts = machine_facts()
    check_bundles()
    if not args.skip_rust:
        # Build first so compile time is not counted as the run's own CPU below.
        subprocess.run(["cargo", "bench", "--no-run", "--quiet", "--manifest-path", str(BENCH / "rust/Cargo.toml")],
                       env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)}, check=True)
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    load_before = loadavg()
    busy0, own0, t0 = cpu_busy_seconds(), own_cpu_seconds(), time.monotonic()
    rust = {} if args.skip_rust else run_rust(args.quick)
    py = {} if args.skip_python else run_python(args.quick)
    opa = {} if args.skip_opa else run_opa(args.quick)
    wall = time.monotonic() - t0
    others = max(0.0, cpu_busy_seconds() - busy0 - (own_cpu_seconds() - own0)) / wall
    load_after = loadavg()
    facts["others"] = f"{others:.2f} cores on average over the {wall:.0f} s run"

    versions = {
        "opa-wasm (crate)": lock_version("opa-wasm"),
        "wasmtime (Rust, shared by ACGS and opa-wasm)": lock_version("wasmtime"),
        "criterion": lock_version("criterion"),
    }
    try:
        from importlib.metadata import version

        for dist in ["opa-py-wasm", "wasmtime", "pytest-benchmark"]:
            versions[f"{dist} (PyPI)"] = version(dist)
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    text, verdicts = report(facts, versions, rust, py, opa, load_before, load_after)
    if args.quick:
        text = text.replace("# Host benchmarks", "# Host benchmarks (QUICK RUN, not for comparison)", 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    meta = {**run_metadata(ROOT), "others_cores": round(others, 2), "quick": args.quick, "versions": versions}
    hosts_results(rust, py, opa, meta).write(args.json)
    print()
    print(text)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()

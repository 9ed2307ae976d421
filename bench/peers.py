#!/usr/bin/env python3
"""ACGS against other Rego engines, side by side in one run: CPU time per evaluation on the same
policies and inputs, and a check that every engine returns the same decisions.

Engines:
  acgs        ACGS's OPA Wasm host (acgs-core `wasm::Policy`), the committed bundle's policy.wasm
  acgs-plan   ACGS's plan evaluator (crates/acgs-plan) on the same bundle's plan.json
  regorus     the Rust crate (pinned in bench/rust/Cargo.toml): its interpreter and its RVM
  opa bench   the pinned OPA CLI's evaluator (Go), GOMAXPROCS=1
  regopy      rego-cpp's Python binding (PyPI `regopy`): its interpreter and its compiled bundle
The first four (Rust) run in one process: criterion bench `peers` in bench/rust, timed in thread
CPU time. `opa bench` reports wall time per evaluation, scaled here by the share of a core the
process had (its CPU time over its wall time), as the quick suite does. regopy runs in this
process, timed with time.thread_time.

Policies: the shipped constitution (acgs/main, acgs/evolution and acgs/sandbox decisions; inputs:
the seeds of crates/acgs-plan/tests/corpus), and bench/policies/rbac and bench/policies/gateway
(inputs: their inputs.jsonl). Every engine evaluates each case's inputs in turn; the figure is
the mean over them.

Usage: .venv/bin/python bench/peers.py [--quick] [--only rbac,gateway] [--skip-rust] [--skip-opa]
                                       [--skip-regopy]
Writes bench/results/peers.json (acgs-bench/1) and bench/results/peers.md. regopy is not in the
lockfile: `pip install regopy==1.5.2` into the venv first, or it is reported as not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def _load_results_module() -> Any:
    """acgs.perf.results by its path: the schema without importing the acgs package, whose
    extension this benchmark does not need (its Rust side is built in bench/rust)."""
    spec = importlib.util.spec_from_file_location("acgs_perf_results", ROOT / "python/acgs/perf/results.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_results = _load_results_module()
Results = _results.Results


def run_metadata() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "python"))
    try:
        meta: dict[str, Any] = _results.run_metadata(ROOT)
    except ImportError:  # the extension is not built: the same facts, ACGS's version from the manifest
        text = (ROOT / "Cargo.toml").read_text()
        m = re.search(r'^version = "([^"]+)"', text, re.M)
        meta = {
            "commit": _results._first_line(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT) or "unknown",
            "acgs": m.group(1) if m else "?",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cores": os.cpu_count(),
            "cpu": _results._cpu_model(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    return meta

OPA = Path(os.environ.get("OPA", Path.home() / ".local/bin/opa"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR_BENCH", Path.home() / ".cache/acgs/bench-target"))
RUST = BENCH / "rust"
METRIC = "cpu_time_per_eval"
# subject in the results -> label in peers.md
LABELS = {
    "acgs": "ACGS Wasm (acgs-core wasm::Policy)",
    "acgs-plan": "ACGS plan evaluator (acgs-plan)",
    "regorus-interpreter": "regorus interpreter",
    "regorus-rvm": "regorus RVM (compiled)",
    "opa-bench": "`opa bench` (Go, GOMAXPROCS=1)",
    "regopy-interpreter": "regopy (rego-cpp) interpreter",
    "regopy-bundle": "regopy (rego-cpp) compiled bundle",
}
RUST_SUBJECT = {"acgs-wasm": "acgs", "acgs-plan": "acgs-plan", "regorus-interpreter": "regorus-interpreter",
                "regorus-rvm": "regorus-rvm"}
ACGS = ("acgs", "acgs-plan")


def cargo_env() -> dict[str, str]:
    return {**os.environ, "CARGO_TARGET_DIR": str(TARGET)}


def lock_version(name: str) -> str:
    text = (RUST / "Cargo.lock").read_text()
    m = re.search(rf'name = "{re.escape(name)}"\nversion = "([^"]+)"', text)
    return m.group(1) if m else "?"


# ---- what every engine returns -----------------------------------------------------------------


def rust_check(only: str) -> dict[str, Any]:
    """Every Rust engine's value on every input (src/bin/peers_check.rs), with the cases'
    sources and inputs, which the other peers then use."""
    subprocess.run(["cargo", "build", "--quiet", "--release", "--manifest-path", str(RUST / "Cargo.toml"),
                    "--bin", "peers_check"], env=cargo_env(), check=True)
    out = subprocess.run([str(TARGET / "release/peers_check"), only], env=cargo_env(), check=True,
                         capture_output=True, text=True)
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def bundle_data(bundle: Path) -> str:
    with tarfile.open(ROOT / bundle, "r:gz") as t:
        member = next(m for m in t.getmembers() if m.name.lstrip("/") == "data.json")
        f = t.extractfile(member)
        assert f is not None
        return f.read().decode()


class OpaCli:
    """`opa eval` and `opa bench` on a case's Rego sources and its bundle's data document."""

    def __init__(self, case: dict[str, Any], scratch: Path, name: str) -> None:
        data = scratch / f"{name}-data.json"
        data.write_text(bundle_data(Path(case["bundle"])))
        self.args = [a for src in case["sources"] for a in ("-d", str(ROOT / src))] + ["-d", str(data)]
        self.query = "data." + case["entrypoint"].replace("/", ".")
        self.env = {**os.environ, "GOMAXPROCS": "1"}

    def _run(self, input_text: str, *args: str) -> str:
        out = subprocess.run([str(OPA), *args, *self.args, "--stdin-input", self.query], input=input_text.encode(),
                             capture_output=True, env=self.env, check=False, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"opa {args[0]}: {(out.stderr or out.stdout).decode().strip()[:300]}")
        return out.stdout.decode()

    def value(self, input_text: str) -> Any:
        result = json.loads(self._run(input_text, "eval", "-f", "json")).get("result")
        return result[0]["expressions"][0]["value"] if result else None

    def cpu_ns(self, input_text: str) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        text = self._run(input_text, "bench", "--metrics=false", "--benchmem=false", "-f", "gobench", "--count", "1")
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        per_op = re.findall(r"([\d.]+) ns/op", text)
        if not per_op:
            raise RuntimeError(f"opa bench printed no ns/op: {text.strip()[:300]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return float(per_op[0]) * (min(1.0, cpu / wall) if wall > 0 else 1.0)


def one_line(reason: str) -> str:
    """An engine's error on one line: its `error:` lines and the first place it points at."""
    lines = [ln.strip() for ln in reason.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:") and ln != "error: Compilation error:"]
    where = next((ln.removeprefix("--> ") for ln in lines if ln.startswith("-->")), "")
    text = errors[-1] if errors else (lines[0] if lines else "")
    return f"{text} ({where})" if where else text


def regopy_error(exc: BaseException) -> str:
    """rego-cpp's errors are long S-expressions; keep the message and where it points."""
    text = str(exc)
    msgs = re.findall(r"errormsg \d+:([^)\n]+)", text)
    head = "; ".join(dict.fromkeys(msgs)) or text.splitlines()[0][:200]
    line = re.search(r"^-- (\S+:\d+:\d+)", text, re.M)
    offset = re.search(r"\(error \d+:([^|\s]+)\|(\d+)\|", text)
    if line:
        head += f" (first at {line.group(1)})"
    elif offset:
        path, at = offset.group(1), int(offset.group(2))
        try:  # rego-cpp gives a byte offset: say which line that is
            line_no = (ROOT / path).read_bytes()[:at].count(b"\n") + 1
            head += f" (first at {path}:{line_no})"
        except OSError:
            head += f" (first at {path} byte {at})"
    return head


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """rego-cpp prints every parse error (to standard output or error) as well as raising it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


class Regopy:
    """rego-cpp through regopy: the interpreter (`query`) or a compiled bundle
    (`build` then `query_bundle_entrypoint`), input set as JSON text each time."""

    def __init__(self, case: dict[str, Any], compiled: bool) -> None:
        import regopy  # noqa: PLC0415 - optional peer

        self.compiled = compiled
        self.entrypoint = case["entrypoint"]
        self.query = "data." + self.entrypoint.replace("/", ".")
        rego = regopy.Interpreter()
        for src in case["sources"]:
            rego.add_module(src, (ROOT / src).read_text())
        rego.add_data_json(bundle_data(Path(case["bundle"])))
        if compiled:
            self.bundle = rego.build("x = " + self.query, [self.entrypoint])
            rego = regopy.Interpreter()
        self.rego = rego

    def eval(self, input_text: str) -> Any:
        self.rego.set_input_term(input_text)
        if self.compiled:
            return self.rego.query_bundle_entrypoint(self.bundle, self.entrypoint)
        return self.rego.query(self.query)

    def value(self, input_text: str) -> Any:
        out = json.loads(str(self.eval(input_text)))
        exprs = out.get("expressions") if isinstance(out, dict) else None
        return exprs[0] if exprs else None


def cpu_per_call(call: Callable[[str], Any], inputs: list[str], seconds: float, rounds: int) -> float:
    """Median over rounds of this thread's CPU time per call, cycling through the inputs."""
    per: list[float] = []
    for _ in range(rounds):
        n, start = 0, time.thread_time_ns()
        while True:
            for text in inputs:
                call(text)
            n += len(inputs)
            spent = time.thread_time_ns() - start
            if spent >= seconds * 1e9:
                break
        per.append(spent / n)
    return statistics.median(per)


# ---- timing of the Rust engines ------------------------------------------------------------------


def rust_bench(only: str, quick: bool) -> dict[tuple[str, str], float]:
    env = {**cargo_env(), "PEERS_ONLY": only}
    if quick:
        env["BENCH_QUICK"] = "1"
    crit = TARGET / "criterion"
    for case in only.split(","):
        subprocess.run(["rm", "-rf", str(crit / case)], check=False)
    subprocess.run(["nice", "cargo", "bench", "--quiet", "--manifest-path", str(RUST / "Cargo.toml"), "--bench", "peers"],
                   env=env, check=True)
    out: dict[tuple[str, str], float] = {}
    for meta in crit.glob("*/*/new/benchmark.json"):
        info = json.loads(meta.read_text())
        if info["group_id"] not in only.split(","):
            continue
        est = json.loads((meta.parent / "estimates.json").read_text())
        point = (est.get("slope") or est["mean"])["point_estimate"]
        out[(info["group_id"], info["function_id"])] = float(point)
    return out


# ---- the run -----------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, numbers compared by value (1 == 1.0)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) or _norm(a) == _norm(b)


def _norm(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def compare(name: str, ref: list[Any], got: list[Any]) -> list[str]:
    return [
        f"input {i}: ACGS Wasm {json.dumps(r, sort_keys=True)[:160]} vs {json.dumps(g, sort_keys=True)[:160]}"
        for i, (r, g) in enumerate(zip(ref, got))
        if not same(r, g)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--only", default="constitution-main,constitution-evolution,constitution-sandbox,rbac,gateway")
    ap.add_argument("--skip-rust", action="store_true", help="no criterion run (results of the other peers only)")
    ap.add_argument("--skip-opa", action="store_true")
    ap.add_argument("--skip-regopy", action="store_true")
    ap.add_argument("--json", type=Path, default=BENCH / "results/peers.json")
    ap.add_argument("--md", type=Path, default=BENCH / "results/peers.md")
    args = ap.parse_args()
    seconds, rounds = (0.3, 1) if args.quick else (1.0, 3)

    load_before = os.getloadavg()
    check = rust_check(args.only)
    times: dict[tuple[str, str], float] = {}
    status: dict[tuple[str, str], str] = {}  # (case, subject) -> why it has no figure, or a disagreement
    agree: dict[tuple[str, str], str] = {}
    scratch_dir = tempfile.TemporaryDirectory(prefix="acgs-peers-")
    scratch = Path(scratch_dir.name)

    for name, case in check.items():
        inputs: list[str] = case["inputs"]
        engines = case["engines"]
        ref_entry = engines["acgs-wasm"]
        if ref_entry["status"] != "ok":
            raise SystemExit(f"{name}: ACGS's Wasm cannot run the case: {ref_entry.get('reason')}")
        ref = ref_entry["results"]
        if any(r is None for r in ref):
            print(f"{name}: note: the decision is undefined on some inputs", file=sys.stderr)
        for engine, entry in engines.items():
            subject = RUST_SUBJECT[engine]
            if entry["status"] != "ok":
                status[(name, subject)] = f"{entry['status']}: {one_line(entry['reason'])}"
                continue
            bad = compare(name, ref, entry["results"])
            agree[(name, subject)] = "same on all inputs" if not bad else f"{len(bad)} of {len(inputs)} differ"
            for line in bad:
                print(f"DISAGREEMENT {name} {subject} {line}", file=sys.stderr)
            if bad:
                status[(name, subject)] = "disagrees: " + "; ".join(bad[:3])
        if not args.skip_opa:
            opa = OpaCli(case, scratch, name)
            try:
                bad = compare(name, ref, [opa.value(t) for t in inputs])
                agree[(name, "opa-bench")] = "same on all inputs" if not bad else f"{len(bad)} of {len(inputs)} differ"
                for line in bad:
                    print(f"DISAGREEMENT {name} opa {line}", file=sys.stderr)
                times[(name, "opa-bench")] = statistics.mean(opa.cpu_ns(t) for t in inputs)
            except RuntimeError as e:
                status[(name, "opa-bench")] = f"error: {e}"
        if not args.skip_regopy:
            for compiled, subject in ((False, "regopy-interpreter"), (True, "regopy-bundle")):
                try:
                    with quiet_stderr():
                        peer = Regopy(case, compiled)
                        got = [peer.value(t) for t in inputs]
                except ImportError:
                    status[(name, subject)] = "not installed (pip install regopy==1.5.2)"
                    continue
                except Exception as e:  # noqa: BLE001 - rego-cpp raises RegoError, a plain Exception
                    status[(name, subject)] = f"unsupported: {regopy_error(e)}"
                    continue
                bad = compare(name, ref, got)
                agree[(name, subject)] = "same on all inputs" if not bad else f"{len(bad)} of {len(inputs)} differ"
                for line in bad:
                    print(f"DISAGREEMENT {name} {subject} {line}", file=sys.stderr)
                times[(name, subject)] = cpu_per_call(peer.eval, inputs, seconds, rounds)

    scratch_dir.cleanup()
    if not args.skip_rust:
        for (case_name, engine), ns in rust_bench(args.only, args.quick).items():
            times[(case_name, RUST_SUBJECT[engine])] = ns
    load_after = os.getloadavg()

    meta = run_metadata()
    meta.update({
        "note": "measured under load (shared 2-core machine, nice); indicative" if load_before[0] > 1.0 else "",
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "regorus": lock_version("regorus"),
        "regopy": _dist_version("regopy"),
        "opa": _first_line([str(OPA), "version"]),
        "quick": args.quick,
    })
    res = Results("peers", meta)
    for (case_name, subject), ns in sorted(times.items()):
        if (case_name, subject) in status and status[(case_name, subject)].startswith("disagrees"):
            continue  # a figure for different answers is not a comparison
        res.add(case_name, subject, METRIC, ns, "ns", role="acgs" if subject in ACGS else "peer")
    res.write(args.json)
    args.md.write_text(report(check, times, status, agree, meta))
    print(args.md.read_text())


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version  # noqa: PLC0415

        return version(name)
    except Exception:  # noqa: BLE001
        return "not installed"


def _first_line(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "?"


def fmt(ns: float | None) -> str:
    if ns is None:
        return "—"
    return f"{ns / 1000:,.1f} µs" if ns < 1e6 else f"{ns / 1e6:,.2f} ms"


def report(check: dict[str, Any], times: dict[tuple[str, str], float], status: dict[tuple[str, str], str],
           agree: dict[tuple[str, str], str], meta: dict[str, Any]) -> str:
    cases = list(check)
    subjects = list(LABELS)
    lines = [
        "# ACGS against other Rego engines",
        "",
        f"Written by `bench/peers.py` on {meta['date']} (commit {meta['commit']}, {meta['cores']} cores, {meta['cpu']}).",
        f"Load average before / after: {meta['load_before']} / {meta['load_after']}."
        + (" **Measured under load** (other jobs running, this run under `nice`): the figures are"
           " indicative, the ratios less affected than the absolute times since every engine is timed"
           " in its own CPU time." if meta.get("note") else ""),
        f"Versions: regorus {meta['regorus']} (crate), regopy {meta['regopy']}, {meta['opa']}.",
        "",
        "CPU time per evaluation, JSON text in and out, mean over each case's inputs (evaluated in turn).",
        "",
        "| engine | " + " | ".join(cases) + " |",
        "| --- | " + " | ".join("---:" for _ in cases) + " |",
    ]
    for s in subjects:
        cells = []
        for c in cases:
            t = times.get((c, s))
            cells.append(fmt(t) if t is not None and not status.get((c, s), "").startswith("disagrees") else "n/a")
        lines.append(f"| {LABELS[s]} | " + " | ".join(cells) + " |")
    lines += ["", "How many times faster ACGS is (the peer's time over ACGS's):", ""]
    lines += ["| ACGS path vs peer | " + " | ".join(cases) + " |", "| --- | " + " | ".join("---:" for _ in cases) + " |"]
    for ours in ACGS:
        for s in subjects:
            if s in ACGS:
                continue
            cells = []
            for c in cases:
                a, b = times.get((c, ours)), times.get((c, s))
                cells.append(f"{b / a:,.1f}×" if a and b else "n/a")
            lines.append(f"| {'plan' if ours == 'acgs-plan' else 'Wasm'} vs {LABELS[s]} | " + " | ".join(cells) + " |")
    cells = []
    for c in cases:
        a, b = times.get((c, "acgs-plan")), times.get((c, "acgs"))
        cells.append(f"{b / a:,.2f}×" if a and b else "n/a")
    lines.append("| plan vs Wasm | " + " | ".join(cells) + " |")
    lines += ["", "## Same answers?", "",
              "Every engine's decision on every input compared with ACGS's Wasm (the reference):", ""]
    for c in cases:
        for s in subjects:
            if s == "acgs":
                continue
            why = status.get((c, s))
            verdict = agree.get((c, s))
            if why or verdict:
                lines.append(f"- {c}, {LABELS[s]}: {why or verdict}")
    lines += ["", "## Cases", ""]
    for c, case in check.items():
        lines.append(f"- **{c}**: `{case['entrypoint']}` from `{case['bundle']}`, {len(case['inputs'])} inputs; "
                     f"Rego for the non-Wasm peers: {', '.join('`' + s + '`' for s in case['sources'])}")
    lines += [
        "",
        "## How each engine is called",
        "",
        "- ACGS Wasm: `acgs_core::wasm::Policy::compile` on the bundle's `policy.wasm` and data, one instance,"
        " `Instance::eval(entrypoint, input bytes, Format::Json)`, default limits (deadline on). This is the"
        " Wasm alone, without the engine's cache, fast path or hand-written evaluator.",
        "- ACGS plan: `Plan::from_json(bundle.plan_json())`, data parsed once, per call `Val::parse(input)`,"
        " `Plan::eval_value(.., Limits::default())`, `Val::to_json`.",
        "- regorus: `Engine::add_policy` for each source, `add_data`; interpreter `set_input` + `eval_rule`;"
        " RVM: `compile_with_entrypoint`, `Compiler::compile_from_policy`, one `RegoVM` reused with"
        " `set_input` + `execute`. Input `Value::from_json_str`, output `to_json_str`. regorus"
        f" {meta['regorus']} lacks `io.jwt.decode`: its interpreter gets one as a host extension"
        " (`Engine::add_extension`, Rust, in bench/rust/src/peers.rs); the RVM takes no extensions.",
        "- `opa bench`: `-d` each source and the bundle's data.json, `--stdin-input`, GOMAXPROCS=1, one run per"
        " input (Go's benchmark loop, about a second each), ns/op scaled by the process's CPU share.",
        "- regopy: `add_module` for each source, `add_data_json`; per call `set_input_term(json)` and `query`"
        " (interpreter) or `query_bundle_entrypoint` on a bundle from `build` (compiled). Timed with"
        " `time.thread_time` (median of 3 rounds).",
        "",
        "Reproduce: `make bench-peers` (or `.venv/bin/python bench/peers.py`; `--quick` for a smoke run).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The CI performance gate: this checkout (the candidate) against a base commit, both built and
measured in the same run, on this machine, on the same inputs.

    python bench/gate.py                  # `make bench-gate`: exit 1 when the candidate is slower
    python bench/gate.py --base v0.1.0    # any revision as the base

The base is, in order: --base, $ACGS_GATE_BASE, the commit named in bench/gate-base (the last
main that landed), the merge-base with origin/main when this is a branch, else the previous
commit. The candidate is the checkout as it is on disk, committed or not. Each side's Python
sources come from `git archive` of its tree; its extension module is built by cargo into a cache
outside the clone (one command, one directory, for both sides), keyed by the Rust sources' git
trees, so sources built once (by an earlier run, or the other side) cost nothing again.

Each side runs in its own process (bench/gate_worker.py with that side's `acgs` on PYTHONPATH).
Rounds interleave the two, alternating which goes first, and time each benchmark in thread CPU
time; python/acgs/perf/gate.py turns the rounds into a noise band and a verdict. Where valgrind
is installed each side's instructions per call are counted too (callgrind), a signal load does
not move. Peer ratios are not part of this rule: they are a report (`acgs bench`, `make bench`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acgs.perf.gate import Comparison, Verdict

ROOT = Path(__file__).resolve().parent.parent

WORKER = ROOT / "bench" / "gate_worker.py"
BASE_FILE = ROOT / "bench" / "gate-base"
CACHE = Path(os.environ.get("ACGS_CACHE_DIR", Path.home() / ".cache" / "acgs")) / "gate"
RUST_PATHS = ("crates", "Cargo.toml", "Cargo.lock")
MODULE = "_acgs.abi3.so"
# Instructions are counted over this many calls per benchmark (after 20 warm-up calls).
COUNT_CALLS = 200


def log(message: str) -> None:
    print(f"gate: {message}", file=sys.stderr, flush=True)


def git(*args: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def commit_of(rev: str) -> str:
    return git("rev-parse", "--verify", f"{rev}^{{commit}}")


def resolve_base(explicit: str | None) -> tuple[str, str]:
    """The base commit and where it came from."""
    if explicit:
        return commit_of(explicit), "--base"
    if os.environ.get("ACGS_GATE_BASE"):
        return commit_of(os.environ["ACGS_GATE_BASE"]), "$ACGS_GATE_BASE"
    if BASE_FILE.exists():
        words = BASE_FILE.read_text().split()
        if words:
            sha = commit_of(words[0])
            if sha != commit_of("HEAD"):
                return sha, "bench/gate-base"
    head = commit_of("HEAD")
    with contextlib.suppress(RuntimeError):
        merge_base = git("merge-base", "HEAD", "origin/main")
        if merge_base and merge_base != head:
            return merge_base, "merge-base with origin/main"
    return commit_of("HEAD^"), "the previous commit"


def snapshot() -> str:
    """A git tree of this checkout as it is on disk (tracked and untracked files, not ignored
    ones), written to the object store without touching the index or any ref: the candidate."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}

        def run(*args: str) -> str:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, env=env,
                                  check=True).stdout.strip()

        run("read-tree", "HEAD")
        run("add", "-A", "--", ".")
        return run("write-tree")


def rust_key(tree: str) -> str:
    """Names the Rust sources of a tree: the git ids of its crates/ tree and Cargo files."""
    ids = [git("rev-parse", f"{tree}:{p}") for p in RUST_PATHS]
    return hashlib.sha256(" ".join(ids).encode()).hexdigest()[:24]


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def extract(tree: str, dest: Path, *paths: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", tree, *paths],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def build_module(tree: str) -> Path:
    """The extension module of a tree's Rust sources, from the cache or built now. Both sides
    are built by this one command in this one directory, so equal sources give the same bytes
    (a module built elsewhere, by maturin, lays its code out differently and measured a few
    per cent apart from an equal one)."""
    module = CACHE / "modules" / rust_key(tree) / MODULE
    if module.exists():
        return module
    module.parent.mkdir(parents=True, exist_ok=True)
    src = CACHE / "src"  # one fixed place: cargo's artifacts and file paths stay the same
    shutil.rmtree(src, ignore_errors=True)
    extract(tree, src)
    target = CACHE / "target"
    log(f"building the extension module of tree {tree[:10]} in {target} ...")
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "acgs-py", "--lib"], cwd=src, env=env, check=True)
    shutil.copy2(target / "release" / "lib_acgs.so", module.with_suffix(".tmp"))
    module.with_suffix(".tmp").rename(module)
    return module


def prepare(tree: str) -> Path:
    """A directory holding a tree's `acgs` package with its extension module, for PYTHONPATH."""
    tree = git("rev-parse", f"{tree}^{{tree}}")
    with cache_lock():
        out = CACHE / "builds" / tree
        if (out / ".ready").exists():
            return out / "python"
        shutil.rmtree(out, ignore_errors=True)
        extract(tree, out, "python")
        shutil.copy2(build_module(tree), out / "python" / "acgs" / MODULE)
        (out / ".ready").write_text(tree + "\n")
        return out / "python"


class Side:
    """A worker process holding one build."""

    def __init__(self, name: str, python_dir: Path, inputs: Path, slowdown: int, workdir: Path) -> None:
        self.name = name
        self.python_dir = python_dir
        self.inputs = inputs
        self.slowdown = slowdown
        self.workdir = workdir
        self.env = {**os.environ, "PYTHONPATH": str(python_dir), "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "--inputs", str(inputs), "--slowdown", str(slowdown)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self.env, cwd=workdir,
        )

    def ask(self, **request: Any) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker exited ({self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the {self.name} worker: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def instructions(self, benchmark: str, calls: int = COUNT_CALLS) -> float:
        """Instructions per call, counted by callgrind between the worker's two getppid() calls."""
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            out = Path(tmp) / "callgrind.out"
            done = subprocess.run(
                ["valgrind", "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={out}",
                 sys.executable, str(WORKER), "--inputs", str(self.inputs), "--slowdown", str(self.slowdown),
                 "--count", benchmark, str(calls)],
                capture_output=True, text=True, env=self.env, cwd=self.workdir, check=False,
            )
            # Part 1 runs up to the first getppid() (start-up), part 2 between the two (the calls).
            part = Path(f"{out}.2")
            if done.returncode != 0 or not part.exists():
                raise RuntimeError(f"callgrind on the {self.name} side failed: {done.stderr.strip()[-500:]}")
            for line in part.read_text().splitlines():
                if line.startswith("totals:") or line.startswith("summary:"):
                    return int(line.split()[1]) / calls
            raise RuntimeError(f"callgrind wrote no totals in {part.name}")


def inputs_file(directory: Path, seed: dict[str, Any]) -> Path:
    path = directory / "inputs.json"
    path.write_text(json.dumps({
        "seed": seed,
        "full": {**seed, "action": "data.analyze_private"},  # not covered by the fast path
        "example": {k: seed[k] for k in ("action", "context")},
    }))
    return path


def fmt_ns(ns: float) -> str:
    return f"{ns / 1000:,.2f} µs" if ns >= 1000 else f"{ns:,.0f} ns"


def percent(ratio: float) -> str:
    return f"{ratio - 1:+.1%}"


def table(verdicts: list[Verdict]) -> str:
    lines = [
        "| benchmark | base per call | candidate per call | change (median round) | noise band | "
        "instructions per call, base → candidate | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in verdicts:
        c = v.comparison
        lo, hi = c.band(v.confidence)
        base = sorted(c.base_ns)[len(c.base_ns) // 2]
        cand = sorted(c.candidate_ns)[len(c.candidate_ns) // 2]
        r = c.instruction_ratio
        instr = (f"{c.base_instructions:,.0f} → {c.candidate_instructions:,.0f} ({percent(r)})"
                 if r is not None else "not counted")
        lines.append(f"| {c.name} | {fmt_ns(base)} | {fmt_ns(cand)} | {percent(c.ratio)} | "
                     f"{percent(lo)} to {percent(hi)} | {instr} | {'ok' if v.ok else 'FAIL'} |")
    return "\n".join(lines)


def measure(sides: tuple[Side, Side], comparisons: list[Comparison], rounds: int, seconds: float) -> None:
    base, candidate = sides
    for i in range(rounds):
        for c in comparisons:
            order = [(base, c.base_ns), (candidate, c.candidate_ns)]
            if i % 2:
                order.reverse()
            for side, sink in order:
                sink.append(float(side.ask(op="time", name=c.name, seconds=seconds)["ns"]))
        log(f"round {i + 1}/{rounds}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ACGS performance gate: candidate (this checkout) against a base commit.")
    parser.add_argument("--base", help="the base revision (default: see the module's docstring)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per benchmark (default 15)")
    parser.add_argument("--seconds", type=float, default=0.2, help="CPU seconds per batch of calls (default 0.2)")
    parser.add_argument("--tolerance", type=float, help="allowed slowdown, past the noise band (default 0.05)")
    parser.add_argument("--instruction-tolerance", type=float,
                        help="allowed growth of instructions per call (default 0.03)")
    parser.add_argument("--confidence", type=float, help="of the noise band (default 0.95)")
    parser.add_argument("--benchmark", action="append", help="only these benchmarks (repeatable)")
    parser.add_argument("--instructions", action=argparse.BooleanOptionalAction, default=None,
                        help="count instructions with callgrind (default: when valgrind is installed)")
    parser.add_argument("--slowdown", type=int, default=int(os.environ.get("ACGS_BENCH_SLOWDOWN", "1")),
                        help="make each measured candidate call N calls, to see the gate fail ($ACGS_BENCH_SLOWDOWN)")
    parser.add_argument("--json", type=Path, help="also write the figures and verdicts to this file")
    args = parser.parse_args(argv)

    base_rev, why = resolve_base(args.base)
    log(f"base {base_rev[:10]} ({why}), candidate: this checkout")
    base_dir = prepare(base_rev)
    candidate_tree = snapshot()
    candidate_dir = prepare(candidate_tree)
    # The verdict rules and the seed request are the candidate's own, from the build measured.
    sys.path.insert(0, str(candidate_dir))
    import acgs
    from acgs.perf import gate as rules

    tolerance = rules.DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    instruction_tolerance = (rules.DEFAULT_INSTRUCTION_TOLERANCE if args.instruction_tolerance is None
                             else args.instruction_tolerance)
    confidence = rules.DEFAULT_CONFIDENCE if args.confidence is None else args.confidence
    count = args.instructions if args.instructions is not None else shutil.which("valgrind") is not None

    with tempfile.TemporaryDirectory(prefix="acgs-gate-") as tmp:
        workdir = Path(tmp)
        inputs = inputs_file(workdir, dict(acgs.SEED_REQUEST))
        sides = (Side("base", base_dir, inputs, 1, workdir), Side("candidate", candidate_dir, inputs, args.slowdown, workdir))
        try:
            listed: list[list[str]] = []
            for side in sides:
                answer = side.ask(op="list")
                if not Path(answer["acgs"]).resolve().is_relative_to(side.python_dir.resolve()):
                    raise RuntimeError(f"the {side.name} worker imported {answer['acgs']}, not its own build")
                listed.append(answer["benchmarks"])
                for n, reason in answer["unsupported"].items():
                    log(f"{n}: not measured, the {side.name} build cannot run it ({reason})")
            names = [n for n in listed[1] if n in listed[0] and (not args.benchmark or n in args.benchmark)]
            if not names:
                log("no benchmark both builds support")
                return 2
            comparisons = [rules.Comparison(n) for n in names]
            measure(sides, comparisons, args.rounds, args.seconds)

            def judge() -> list[Verdict]:
                return [rules.Verdict(c, tolerance, instruction_tolerance, confidence) for c in comparisons]

            unsettled = [v for v in judge() if v.unsettled or v.slower_in_time]
            if unsettled:
                # A burst of load can spoil many rounds of one benchmark, and a worker process can
                # be unlucky for its whole life (seen after the full test suite: one Wasm benchmark
                # 6-34% slower on one side over 30 rounds, identical code and instruction counts,
                # gone in a new process). A real slowdown survives a second set of rounds in fresh
                # worker processes, started in the other order; that set replaces the first.
                for v in unsettled:
                    log(f"first set: {v.message()}")
                log(f"measuring {', '.join(v.comparison.name for v in unsettled)} again in fresh workers")
                for s in sides:
                    s.close()
                candidate_side = Side("candidate", candidate_dir, inputs, args.slowdown, workdir)
                sides = (Side("base", base_dir, inputs, 1, workdir), candidate_side)
                for v in unsettled:
                    v.comparison.base_ns.clear()
                    v.comparison.candidate_ns.clear()
                measure(sides, [v.comparison for v in unsettled], args.rounds, args.seconds)
            if count:
                # Counts do not depend on what else runs, so the two sides count at once.
                with ThreadPoolExecutor(max_workers=2) as pool:
                    for c in comparisons:
                        log(f"counting instructions: {c.name}")
                        base_count = pool.submit(sides[0].instructions, c.name)
                        c.candidate_instructions = sides[1].instructions(c.name)
                        c.base_instructions = base_count.result()
        finally:
            for s in sides:
                s.close()

    verdicts = judge()
    print(table(verdicts))
    if args.slowdown > 1:
        print(f"(candidate deliberately slowed: each measured call made {args.slowdown} calls)")
    print()
    for v in verdicts:
        print(("ok    " if v.ok else "FAIL  ") + v.message())
    failed = not all(v.ok for v in verdicts)
    print(f"gate: {'FAILED' if failed else 'passed'} (base {base_rev[:10]}, {why})")
    if args.json:
        args.json.write_text(json.dumps({
            "schema": "acgs-bench-gate/1",
            "run": {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
                    "base": base_rev, "base_from": why, "candidate_tree": candidate_tree,
                    "rounds": args.rounds, "seconds": args.seconds, "slowdown": args.slowdown},
            "tolerance": tolerance, "instruction_tolerance": instruction_tolerance, "confidence": confidence,
            "benchmarks": [{
                "name": v.comparison.name, "base_ns": v.comparison.base_ns, "candidate_ns": v.comparison.candidate_ns,
                "ratio": v.comparison.ratio, "band": list(v.comparison.band(v.confidence)),
                "base_instructions": v.comparison.base_instructions,
                "candidate_instructions": v.comparison.candidate_instructions, "ok": v.ok,
            } for v in verdicts],
        }, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

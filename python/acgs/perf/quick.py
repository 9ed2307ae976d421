"""The quick suite: ACGS next to a peer measured in the same run, on the same bundle and the
same input bytes, reported as the ratio peer time / ACGS time (above 1: ACGS is faster).

Ratios rather than absolute times, because the project's machines are shared and CI machines
differ: load that slows both sides alike leaves the ratio alone. Each pair is measured over
several rounds, the pairs interleaved and the order within a pair alternating, and the median
round's ratio is kept, so a burst of load from another process spoils one round, not the result.

Pairs, on the two bundles the package ships (the example policy and the constitution, the
latter with an action the fast path does not cover so that both sides evaluate it in full):

- ``opa-py-wasm``: ACGS ``Engine.evaluate_json`` against opa-py-wasm (wasmtime-py) on the
  bundle's own ``policy.wasm`` and ``data.json``, in this process and thread.
- ``opa bench``: ACGS ``Engine.evaluate_json`` against OPA's own evaluator, ``opa bench`` on
  the Rego sources and data the bundle was compiled from (a checkout's policies/), with
  ``GOMAXPROCS=1`` so that, like ACGS here, it runs on one core.

Every side is timed in CPU time (ACGS and opa-py-wasm: the thread's; OPA: its wall time per
evaluation scaled by the share of a core the process had), which time slices taken by other
processes do not inflate.

ACGS runs with its decision cache off and the fast path off: every call evaluates the policy,
as the peers do. Before anything is timed each peer's result is checked to equal ACGS's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import acgs
from acgs.perf.results import Results

PEER_WASM = "opa-py-wasm"
PEER_OPA = "opa bench"
PEERS = (PEER_WASM, PEER_OPA)

Clock = Callable[[], float]
CLOCKS: dict[str, Clock] = {"cpu": time.thread_time, "wall": time.perf_counter}


@dataclass(frozen=True)
class Workload:
    name: str
    bundle: Path
    entrypoint: str
    input: bytes  # compact JSON, the same bytes for every subject
    # `opa` arguments loading the Rego and data the bundle was compiled from, relative to a
    # checkout (policies/build.sh); compiled bundles keep only what the Wasm needs.
    opa_sources: tuple[str, ...]

    def files(self) -> dict[str, bytes]:
        with tarfile.open(self.bundle) as tar:
            out: dict[str, bytes] = {}
            for member in tar.getmembers():
                f = tar.extractfile(member) if member.isfile() else None
                if f is not None:
                    out[member.name.lstrip("/")] = f.read()
            return out


def workloads() -> tuple[Workload, ...]:
    example_input = {
        "action": "data.read_public",
        "context": {
            "environment": {"sandbox_enabled": True, "audit_enabled": True},
            "agent": {"trust_level": 0.9},
            "responsible_party": "user@example.com",
            "session_id": "sess_123456",
        },
    }
    constitution_input = {**acgs.SEED_REQUEST, "action": "data.analyze_private"}
    compact = {"separators": (",", ":")}
    return (
        Workload("example", acgs.default_bundle_path().with_name("example.tar.gz"), "acgs/example/decision",
                 json.dumps(example_input, **compact).encode(),  # type: ignore[arg-type]
                 ("-d", "policies/example")),
        Workload("constitution", acgs.default_bundle_path(), "acgs/main/decision",
                 json.dumps(constitution_input, **compact).encode(),  # type: ignore[arg-type]
                 ("--ignore", "*_test.rego", "-d", "acgs:policies/acgs")),
    )


class PeerUnavailable(Exception):
    """The peer cannot be measured here (not installed, or it disagrees with ACGS)."""


class _Calls:
    """Times a Python call in batches of about ``batch_seconds``; returns ns per call."""

    def __init__(self, call: Callable[[], object], clock: Clock) -> None:
        self.call = call
        self.clock = clock
        self.n = 0

    def _time(self, n: int) -> float:
        call, clock = self.call, self.clock
        began = clock()
        for _ in range(n):
            call()
        return (clock() - began) * 1e9 / n

    def measure(self, batch_seconds: float) -> float:
        if self.n == 0:
            # Calibrate on a tenth of a batch (which also warms the call path up).
            n, spent = 1, 0.0
            while spent < batch_seconds / 10:
                spent = self._time(n) * n / 1e9
                n *= 2
            self.n = max(1, int(batch_seconds * 1e9 / max(self._time(n), 1.0)))
        return self._time(self.n)


class _OpaBench:
    """One ``opa bench`` run per round on the Rego sources the bundle was compiled from.

    Go's benchmark loop reports wall time per evaluation, which on a shared machine counts the
    time slices other processes took. The run's CPU time over its wall time is the share of a
    core OPA actually had (at most one: ``GOMAXPROCS=1``), so wall time per evaluation times
    that share is its CPU time per evaluation, comparable with ACGS's thread CPU time."""

    def __init__(self, opa: str, workload: Workload, checkout: Path) -> None:
        self.opa = opa
        self.cwd = checkout
        self.sources = list(workload.opa_sources)
        self.input = workload.input
        self.query = "data." + workload.entrypoint.replace("/", ".")
        self.env = {**os.environ, "GOMAXPROCS": "1"}

    def _run(self, *args: str) -> str:
        out = subprocess.run(
            [self.opa, *args, *self.sources, "--stdin-input", self.query],
            input=self.input, capture_output=True, env=self.env, cwd=self.cwd, check=False, timeout=300,
        )
        if out.returncode != 0:
            raise PeerUnavailable(f"opa {args[0]} failed: {(out.stderr or out.stdout).decode().strip()}")
        return out.stdout.decode()

    def result(self) -> Any:
        return json.loads(self._run("eval", "-f", "json"))["result"][0]["expressions"][0]["value"]

    def measure(self, batch_seconds: float) -> float:
        del batch_seconds  # Go's benchmark loop picks its own length (about a second)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        text = self._run("bench", "--metrics=false", "--benchmem=false", "-f", "gobench", "--count", "1")
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        per_op = re.findall(r"([\d.]+) ns/op", text)
        if not per_op:
            raise PeerUnavailable(f"opa bench printed no ns/op: {text.strip()}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        share = min(1.0, cpu / wall) if wall > 0 else 1.0
        return float(per_op[0]) * share


@dataclass
class Pair:
    workload: Workload
    peer: str
    clock: str = "cpu"
    acgs_ns: list[float] = field(default_factory=list)
    peer_ns: list[float] = field(default_factory=list)
    skipped: str | None = None
    _acgs: _Calls | None = field(default=None, repr=False)
    _peer: _Calls | _OpaBench | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.workload.name}/{self.peer}"

    @property
    def ratios(self) -> list[float]:
        return [p / max(a, 1e-9) for a, p in zip(self.acgs_ns, self.peer_ns, strict=True)]

    @property
    def median_round(self) -> int | None:
        """The round whose ratio is the median (the upper middle one for an even count), so the
        figures reported for each side are a real round's and divide to the ratio."""
        r = self.ratios
        if not r:
            return None
        return sorted(range(len(r)), key=r.__getitem__)[len(r) // 2]

    @property
    def ratio(self) -> float | None:
        i = self.median_round
        return None if i is None else self.ratios[i]

    def step(self, round_no: int, batch_seconds: float) -> None:
        """One round: both sides once, ACGS first on even rounds and second on odd ones."""
        if self.skipped is not None or self._acgs is None or self._peer is None:
            return
        sides: list[tuple[_Calls | _OpaBench, list[float]]] = [(self._acgs, self.acgs_ns), (self._peer, self.peer_ns)]
        if round_no % 2:
            sides.reverse()
        try:
            times = [(side.measure(batch_seconds), sink) for side, sink in sides]
        except PeerUnavailable as exc:
            self.skipped = str(exc)
            return
        for t, sink in times:
            sink.append(t)


def _slowed(call: Callable[[], object], slowdown: int) -> Callable[[], object]:
    """The ACGS call made ``slowdown`` times per measured call: real extra work, injected in the
    harness (never in the product), to watch the ratios fall (`acgs bench --slowdown`)."""
    if slowdown <= 1:
        return call

    def run() -> object:
        result = None
        for _ in range(slowdown):
            result = call()
        return result

    return run


def _acgs_call(workload: Workload, engine: acgs.Engine, slowdown: int) -> Callable[[], object]:
    raw, entrypoint, evaluate = workload.input, workload.entrypoint, engine.evaluate_json
    return _slowed(lambda: evaluate(raw, entrypoint), slowdown)


def _opa_py_wasm(workload: Workload, expected: Any) -> Callable[[], object]:
    try:
        import opapywasm  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as exc:
        raise PeerUnavailable("opa-py-wasm is not installed (pip install 'acgs[bench]', or `make setup` in a checkout)") from exc
    files = workload.files()
    # It warns on every instance whose module asks for more than its default initial memory,
    # which OPA's modules do; the warning says nothing about the measurement.
    logging.getLogger("opapywasm.runtime").setLevel(logging.ERROR)
    policy = opapywasm.OpaWasmPolicy.from_wasm_bytes(
        files["policy.wasm"],
        config=opapywasm.PolicyConfig(pool_size=1, default_entrypoint=workload.entrypoint),
    )
    policy.set_data(json.loads(files["data.json"]))
    raw, entrypoint = workload.input, workload.entrypoint
    theirs = policy.evaluate_raw(raw, entrypoint)
    if theirs != expected:
        raise PeerUnavailable(f"opa-py-wasm disagrees with ACGS: {theirs!r} != {expected!r}")
    evaluate = policy.evaluate
    return lambda: evaluate(raw, entrypoint)


def find_opa(explicit: str | None = None) -> str | None:
    """The OPA CLI: ``explicit``, else $OPA, else `opa` on PATH, else ~/.local/bin/opa (where
    `make opa` installs the pinned release)."""
    for candidate in (explicit, os.environ.get("OPA"), shutil.which("opa"), str(Path.home() / ".local/bin/opa")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def plan(
    peers: Sequence[str] = PEERS,
    names: Sequence[str] | None = None,
    *,
    opa: str | None = None,
    slowdown: int = 1,
    checkout: Path | None = None,
) -> list[Pair]:
    """Loads every subject and checks the results agree; a peer that cannot run is marked
    skipped with the reason. ``checkout`` is a clone of the repository, whose policies/ holds
    the Rego sources `opa bench` needs (the package ships only the compiled bundles)."""
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise ValueError(f"unknown peers {sorted(unknown)}; known: {list(PEERS)}")
    chosen = [w for w in workloads() if names is None or w.name in names]
    pairs: list[Pair] = []
    opa_path = find_opa(opa) if PEER_OPA in peers else None
    for w in chosen:
        # The Wasm host against the peers' hosts on the same module: the native evaluator of
        # the constitution would not be a like-for-like pair (bench/test_bench_decide.py and
        # the criterion decide bench compare it with the Wasm).
        engine = acgs.Engine.load(w.bundle, cache_size=0, fast_path=False, native=False)
        expected = json.loads(engine.evaluate_json(w.input, w.entrypoint))
        for peer in peers:
            pair = Pair(w, peer)
            pair._acgs = _Calls(_acgs_call(w, engine, slowdown), CLOCKS[pair.clock])
            try:
                if peer == PEER_WASM:
                    pair._peer = _Calls(_opa_py_wasm(w, expected), CLOCKS[pair.clock])
                else:
                    if opa_path is None:
                        raise PeerUnavailable("the OPA CLI was not found (set $OPA or run `make opa`)")
                    if checkout is None or not (checkout / "policies" / "acgs").is_dir():
                        raise PeerUnavailable("the Rego sources are not here (opa bench needs a checkout's policies/)")
                    bench = _OpaBench(opa_path, w, checkout)
                    theirs = bench.result()
                    ours = expected[0]["result"] if expected else None
                    if theirs != ours:
                        raise PeerUnavailable(f"OPA disagrees with ACGS: {theirs!r} != {ours!r}")
                    pair._peer = bench
            except PeerUnavailable as exc:
                pair.skipped = str(exc)
            pairs.append(pair)
    return pairs


def measure(
    pairs: Sequence[Pair],
    rounds: int,
    batch_seconds: float,
    progress: Callable[[Pair], None] | None = None,
) -> None:
    """Runs ``rounds`` rounds over all pairs, interleaved."""
    for round_no in range(rounds):
        for pair in pairs:
            pair.step(round_no, batch_seconds)
            if progress is not None:
                progress(pair)


def ratios(pairs: Iterable[Pair]) -> dict[str, float]:
    return {p.name: r for p in pairs if (r := p.ratio) is not None}


def to_results(pairs: Iterable[Pair], run: dict[str, Any]) -> Results:
    res = Results("quick", run)
    for p in pairs:
        i = p.median_round
        if i is None:
            continue
        metric = f"time per evaluation ({p.clock} time, median round)"
        res.add(p.name, "acgs", metric, p.acgs_ns[i], "ns")
        res.add(p.name, p.peer, metric, p.peer_ns[i], "ns", role="peer")
    return res

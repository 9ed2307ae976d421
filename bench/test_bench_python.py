"""Python benchmarks: ACGS's Python API against opa-py-wasm (a PyPI OPA Wasm SDK on wasmtime-py).

Both load the same committed bundle (bench/bundles/*.tar.gz): ACGS reads the bundle, and
opa-py-wasm gets the bundle's own policy.wasm and data.json. Run with
``pytest bench/test_bench_python.py --benchmark-only`` (bench/run.py does it for you); these
are measurements, not tests, and ``make test`` does not collect them.

Per-evaluation pairs:
- ``evaluate``: a Python dict in, a Python value out (ACGS ``evaluate``, opa-py-wasm ``evaluate``).
- ``raw``: JSON bytes in, validated (ACGS ``evaluate_json`` returns the result set as bytes;
  opa-py-wasm has no bytes-out call, so its ``evaluate`` of bytes also parses the result).
Two threads: a batch of ``BATCH`` evaluations spread over two threads (ACGS ``evaluate_many``
with ``threads=2``; and both hosts' ``evaluate`` called from two Python threads). The figures
are per batch; bench/run.py divides by ``BATCH``.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

import acgs

HERE = Path(__file__).resolve().parent
CASES = {"small": "bench/small/allow", "medium": "bench/medium/decision"}
BATCH = 400
THREADS = 2

try:
    import opapywasm
except ImportError:  # the peer is optional: the `bench` extra installs it
    opapywasm = None

needs_peer = pytest.mark.skipif(opapywasm is None, reason="opa-py-wasm is not installed (the bench extra)")


class Case:
    def __init__(self, name: str) -> None:
        self.name = name
        self.entrypoint = CASES[name]
        self.bundle = HERE / "bundles" / f"{name}.tar.gz"
        # One compact line, as a client would send it; every host gets these same bytes.
        self.input_obj = json.loads((HERE / "inputs" / f"{name}.json").read_bytes())
        self.input_raw = json.dumps(self.input_obj, separators=(",", ":")).encode()

    def bundle_files(self) -> tuple[bytes, Any]:
        """policy.wasm and data.json out of the bundle, byte for byte what ACGS loads."""
        with tarfile.open(self.bundle) as tar:
            files = {m.name.lstrip("/"): tar.extractfile(m) for m in tar.getmembers() if m.isfile()}
            wasm = files["policy.wasm"].read()  # type: ignore[union-attr]
            data = json.load(io.BytesIO(files["data.json"].read()))  # type: ignore[union-attr]
        return wasm, data


_engines: dict[str, tuple[Case, Any, Any]] = {}


def setup(name: str) -> tuple[Case, Any, Any]:
    """ACGS engine and opa-py-wasm policy for a case, loaded once and checked to agree."""
    if name in _engines:
        return _engines[name]
    case = Case(name)
    # The decision cache is off so every call evaluates, as the peers do; a cache hit is
    # measured on its own (test_acgs_evaluate_cache_hit).
    engine = acgs.Engine.load(str(case.bundle), cache_size=0)
    ours = engine.evaluate(case.input_obj, case.entrypoint)
    assert ours is not None, f"{name}: ACGS result is undefined"
    peer = None
    if opapywasm is not None:
        wasm, data = case.bundle_files()
        # Defaults as documented (epoch deadline on, like ACGS); the pool holds one instance
        # per benchmark thread.
        peer = opapywasm.OpaWasmPolicy.from_wasm_bytes(
            wasm, config=opapywasm.PolicyConfig(pool_size=THREADS, default_entrypoint=case.entrypoint)
        )
        peer.set_data(data)
        theirs = peer.evaluate(case.input_obj, case.entrypoint)
        assert theirs == ours, f"{name}: hosts disagree: {theirs!r} != {ours!r}"
        raw = json.loads(engine.evaluate_json(case.input_raw, case.entrypoint))
        assert peer.evaluate_raw(case.input_raw, case.entrypoint) == raw
    _engines[name] = (case, engine, peer)
    return _engines[name]


def in_threads(call: Callable[[], Any]) -> Callable[[], None]:
    """Runs ``BATCH`` calls split over ``THREADS`` Python threads, all started together."""
    per = BATCH // THREADS

    def run() -> None:
        gate = threading.Barrier(THREADS)

        def work() -> None:
            gate.wait()
            for _ in range(per):
                call()

        workers = [threading.Thread(target=work) for _ in range(THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    return run


@pytest.mark.parametrize("name", list(CASES))
class TestSingle:
    def test_acgs_evaluate(self, benchmark: Any, name: str) -> None:
        case, engine, _ = setup(name)
        benchmark.group = f"{name}/evaluate"
        benchmark(engine.evaluate, case.input_obj, case.entrypoint)

    def test_acgs_evaluate_cache_hit(self, benchmark: Any, name: str) -> None:
        case, _, _ = setup(name)
        cached = acgs.Engine.load(str(case.bundle))
        benchmark.group = f"{name}/evaluate"
        benchmark(cached.evaluate, case.input_obj, case.entrypoint)

    @needs_peer
    def test_opa_py_wasm_evaluate(self, benchmark: Any, name: str) -> None:
        case, _, peer = setup(name)
        benchmark.group = f"{name}/evaluate"
        benchmark(peer.evaluate, case.input_obj, case.entrypoint)

    def test_acgs_evaluate_json(self, benchmark: Any, name: str) -> None:
        case, engine, _ = setup(name)
        benchmark.group = f"{name}/raw"
        benchmark(engine.evaluate_json, case.input_raw, case.entrypoint)

    @needs_peer
    def test_opa_py_wasm_evaluate_bytes(self, benchmark: Any, name: str) -> None:
        case, _, peer = setup(name)
        benchmark.group = f"{name}/raw"
        benchmark(peer.evaluate, case.input_raw, case.entrypoint)


@pytest.mark.parametrize("name", list(CASES))
class TestThreads:
    def test_acgs_evaluate_many(self, benchmark: Any, name: str) -> None:
        case, engine, _ = setup(name)
        batch = [case.input_obj] * BATCH
        benchmark.group = f"{name}/threads2"
        benchmark.extra_info["batch"] = BATCH
        benchmark(engine.evaluate_many, batch, case.entrypoint, threads=THREADS)

    def test_acgs_evaluate_in_threads(self, benchmark: Any, name: str) -> None:
        case, engine, _ = setup(name)
        benchmark.group = f"{name}/threads2"
        benchmark.extra_info["batch"] = BATCH
        benchmark(in_threads(lambda: engine.evaluate(case.input_obj, case.entrypoint)))

    @needs_peer
    def test_opa_py_wasm_evaluate_in_threads(self, benchmark: Any, name: str) -> None:
        case, _, peer = setup(name)
        benchmark.group = f"{name}/threads2"
        benchmark.extra_info["batch"] = BATCH
        benchmark(in_threads(lambda: peer.evaluate(case.input_obj, case.entrypoint)))

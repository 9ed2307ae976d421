#!/usr/bin/env python3
"""One side of the performance gate (bench/gate.py): a process that imports one build of ACGS
(the base's or the candidate's, from PYTHONPATH) and times its hot paths on request.

It imports nothing of ACGS but the `acgs` package under test, and takes its requests from the
driver, so the same file drives any two builds on the same bytes; what a build lacks (an option
an older engine did not have) is reported as unsupported, never guessed. Protocol: one JSON
request per line on stdin, one JSON answer per line on stdout.

    {"op": "list"}  -> {"benchmarks": [...], "unsupported": {name: why}, "acgs": the package's file}
    {"op": "time", "name": N, "seconds": S}  -> {"ns": CPU ns per call, "calls": n}

``--count BENCHMARK N`` instead runs N calls of one benchmark for an instruction counter.

Every figure is this thread's CPU time, which time slices taken by other processes do not
inflate. ``--slowdown K`` makes each measured call K calls: real extra work in the harness, for
showing that the gate catches a slower candidate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import acgs

Call = Callable[[], object]

def _bytes(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _engine(name: str, **options: Any) -> Any:
    bundle = acgs.default_bundle_path()
    if name != "constitution":
        bundle = bundle.with_name(f"{name}.tar.gz")
    return acgs.Engine.load(bundle, **options)


def _benchmarks(inputs: dict[str, Any]) -> dict[str, Callable[[], Call]]:
    """Each benchmark builds its engine and returns the call to time. ``inputs`` come from the
    driver (the candidate's seed request and variants), so both sides get the same bytes:
    ``seed`` (answered by the fast path), ``full`` (an action the fast path leaves to full
    evaluation) and ``example`` (for the example policy)."""
    seed, full, example = inputs["seed"], inputs["full"], inputs["example"]

    def decide(body: dict[str, Any], **options: Any) -> Callable[[], Call]:
        def make() -> Call:
            engine, raw = _engine("constitution", **options), _bytes(body)
            decide_json = engine.decide_json
            return lambda: decide_json(raw)

        return make

    def evaluate(bundle: str, body: dict[str, Any], entrypoint: str, **options: Any) -> Callable[[], Call]:
        def make() -> Call:
            engine, raw = _engine(bundle, **options), _bytes(body)
            evaluate_json = engine.evaluate_json
            return lambda: evaluate_json(raw, entrypoint)

        return make

    return {
        # The decision as the policy service makes it: the shipped constitution's evaluator.
        "decide/full": decide(full, cache_size=0, fast_path=False),
        "decide/fast-path": decide(seed, cache_size=0),
        "decide/cache-hit": decide(full),  # the fast path's answers are not cached
        # The plan evaluator, which runs every other policy by default.
        "plan/constitution": evaluate("constitution", full, "acgs/main/decision", cache_size=0, fast_path=False,
                                      native=False, evaluator="plan"),
        "plan/example": evaluate("example", example, "acgs/example/decision", cache_size=0, fast_path=False,
                                 evaluator="plan"),
        # The Wasm host, the reference and the fallback for a bundle without a usable plan.
        "wasm/constitution": evaluate("constitution", full, "acgs/main/decision", cache_size=0, fast_path=False,
                                      native=False, evaluator="wasm"),
        "wasm/example": evaluate("example", example, "acgs/example/decision", cache_size=0, fast_path=False,
                                 evaluator="wasm"),
    }


class Worker:
    def __init__(self, inputs: dict[str, Any], slowdown: int, only: str | None = None) -> None:
        self.slowdown = slowdown
        self.calls: dict[str, Call] = {}
        self.unsupported: dict[str, str] = {}
        for name, make in _benchmarks(inputs).items():
            if only is not None and name != only:
                continue
            try:
                call = make()
                call()  # a build that cannot answer is unsupported, not timed
            except Exception as exc:  # noqa: BLE001 - any failure means this build lacks it
                self.unsupported[name] = f"{type(exc).__name__}: {exc}"
                continue
            self.calls[name] = self._slowed(call)

    def _slowed(self, call: Call) -> Call:
        if self.slowdown <= 1:
            return call
        k = self.slowdown

        def run() -> object:
            result = None
            for _ in range(k):
                result = call()
            return result

        return run

    def time(self, name: str, seconds: float) -> dict[str, Any]:
        call, clock = self.calls[name], time.thread_time
        n, spent = 1, 0.0
        # Calls per batch: doubled until a batch lasts a tenth of the asked time (a warm-up too).
        while spent < seconds / 10:
            n *= 2
            began = clock()
            for _ in range(n):
                call()
            spent = clock() - began
        n = max(1, int(n * seconds / max(spent, 1e-9)))
        began = clock()
        for _ in range(n):
            call()
        return {"ns": (clock() - began) * 1e9 / n, "calls": n}

    def run_calls(self, name: str, calls: int) -> None:
        call = self.calls[name]
        for _ in range(calls):
            call()

    def count(self, name: str, calls: int) -> None:
        """``calls`` calls between two getppid() system calls, which an instruction counter
        started with ``--dump-before=getppid`` takes as the edges of the region to count."""
        self.run_calls(name, 20)  # warm: caches, lazily built tables, the allocator's pools
        os.getppid()
        self.run_calls(name, calls)
        os.getppid()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "list":
            return {"benchmarks": list(self.calls), "unsupported": self.unsupported, "acgs": acgs.__file__}
        if op == "time":
            return self.time(str(request["name"]), float(request["seconds"]))
        raise ValueError(f"unknown op {op!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", required=True, help="JSON file: the requests to time (from the driver)")
    parser.add_argument("--slowdown", type=int, default=1)
    parser.add_argument("--count", nargs=2, metavar=("BENCHMARK", "N"),
                        help="run N calls of one benchmark between two getppid() calls and exit "
                             "(under callgrind --dump-before=getppid)")
    args = parser.parse_args()
    with open(args.inputs, encoding="utf-8") as f:
        inputs = json.load(f)
    if args.count:
        name, n = args.count
        worker = Worker(inputs, args.slowdown, only=name)
        if name not in worker.calls:
            sys.exit(f"{name}: {worker.unsupported.get(name, 'no such benchmark')}")
        worker.count(name, int(n))
        return
    worker = Worker(inputs, args.slowdown)
    for line in sys.stdin:
        try:
            answer = worker.handle(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which fails the gate
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

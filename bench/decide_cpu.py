"""CPU time of `decide` through the Python API, immune to other processes' load: process time
per call, best of 15 rounds (7 in `full` mode). `time` measures cache hits; `full` measures full
evaluations (cache and fast path off) by the native evaluator and by the Wasm, side by side;
`count` only makes cache-hit calls, for instruction counting under callgrind (see
bench/results/decide.md).

    python bench/decide_cpu.py [BUNDLE] [N] [time|full|count]
"""

from __future__ import annotations

import copy
import json
import sys
import time
from typing import Any

import acgs


def main() -> None:
    bundle = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else str(acgs.default_bundle_path())
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    mode = sys.argv[3] if len(sys.argv) > 3 else "time"
    request: dict[str, Any] = copy.deepcopy(acgs.SEED_REQUEST)
    # Off the fast path, so the cache answers.
    request["context"]["benefit_assessment"] = 0.9
    raw = json.dumps(request).encode()
    if mode == "full":
        full(bundle, n, request)
        return
    engine = acgs.Engine.load(bundle)
    for _ in range(4):
        engine.decide_json(raw)
    assert json.loads(engine.decide_json(raw))["cache_hit"]
    if mode == "count":
        for _ in range(n):
            engine.decide_json(raw)
        return
    cases: list[tuple[str, Any, Any]] = [
        ("decide_json(bytes)", engine.decide_json, raw),
        ("decide(dict)", engine.decide, request),
    ]
    for name, call, arg in cases:
        best = float("inf")
        for _ in range(15):
            start = time.process_time()
            for _ in range(n):
                call(arg)
            best = min(best, (time.process_time() - start) / n * 1e6)
        print(f"{name} cache hit: {best:.2f} us CPU per call")


def full(bundle: str, n: int, assessed: dict[str, Any]) -> None:
    """Full evaluations of the seed request and of an assessed one (off the fast path anyway),
    native and Wasm in the same run; prints the ratio."""
    requests = {"seed": json.dumps(acgs.SEED_REQUEST).encode(), "assessed": json.dumps(assessed).encode()}
    engines = {
        "native": acgs.Engine.load(bundle, cache_size=0, fast_path=False),
        "wasm": acgs.Engine.load(bundle, cache_size=0, fast_path=False, native=False),
    }
    if engines["native"].native != {"enabled": True, "error": None}:
        raise SystemExit(f"the native evaluator is off for this bundle: {engines['native'].native}")
    for label, raw in requests.items():
        best: dict[str, float] = {}
        for name, engine in engines.items():
            calls = n if name == "native" else max(1, n // 20)
            best[name] = float("inf")
            for _ in range(7):
                start = time.process_time()
                for _ in range(calls):
                    engine.decide_json(raw)
                best[name] = min(best[name], (time.process_time() - start) / calls * 1e6)
        print(
            f"{label} full evaluation: native {best['native']:.2f} us, wasm {best['wasm']:.2f} us CPU per call "
            f"({best['wasm'] / best['native']:.1f}x)"
        )


if __name__ == "__main__":
    main()

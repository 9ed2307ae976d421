"""CPU time of `decide` on a cache hit through the Python API, immune to other processes'
load: process time per call, best of 15 rounds. `count` mode only makes the calls, for
instruction counting under callgrind (see bench/results/decide.md).

    python bench/decide_cpu.py [BUNDLE] [N] [time|count]
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


if __name__ == "__main__":
    main()

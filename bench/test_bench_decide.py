"""In-process decisions on the shipped constitution through the Python API: a decision-cache
hit, the fast path and a full evaluation (by the native evaluator and by the Wasm), with dicts (``decide``) and bytes (``decide_json``).
Run with ``pytest bench/test_bench_decide.py`` (``make bench`` runs it too)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

import acgs

SEED = acgs.SEED_REQUEST
# A benefit assessment takes the request off the fast path, so the cache or a full
# evaluation answers it.
ASSESSED: dict[str, Any] = copy.deepcopy(SEED)
ASSESSED["context"]["benefit_assessment"] = 0.9  # type: ignore[index]

BUNDLE = acgs.default_bundle_path()
CACHED = acgs.Engine.load(BUNDLE)
FAST = acgs.Engine.load(BUNDLE, cache_size=0)
FULL = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False)
WASM = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False, native=False)

CASES = {
    "cache-hit": (CACHED, ASSESSED, (True, False)),
    "fast-path": (FAST, SEED, (False, True)),
    "full-evaluation-native": (FULL, SEED, (False, False)),
    "full-evaluation-wasm": (WASM, SEED, (False, False)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_decide(benchmark: Any, case: str) -> None:
    engine, request, want = CASES[case]
    engine.decide(request)
    d = engine.decide(request)
    assert (d["cache_hit"], d["fast_path"]) == want
    benchmark.group = "decide(dict)"
    benchmark(engine.decide, request)


@pytest.mark.parametrize("case", list(CASES))
def test_decide_json(benchmark: Any, case: str) -> None:
    engine, request, _ = CASES[case]
    raw = json.dumps(request).encode()
    engine.decide_json(raw)
    benchmark.group = "decide_json(bytes)"
    benchmark(engine.decide_json, raw)

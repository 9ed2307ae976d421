"""The partial evaluator (the fast path in the Rust core) against full evaluation of the real
constitution: on 100,000 generated requests it must serve exactly the requests the contract in
the constitution's data says it may (checked against the Python reading of that contract) and
answer each with exactly the decision full evaluation (the Wasm) gives."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import acgs
from acgs.errors import ConstitutionalHashMismatch, InvalidInputError
from acgs.trust import admit
from tests.test_constitution import BUNDLE, CONSTITUTION, fast_path_route, main_request

REQUESTS = int(os.environ.get("ACGS_DIFFERENTIAL_REQUESTS", "100000"))
META = {"decision_id", "bundle_digest", "cache_hit", "fast_path", "evaluation_time_ms"}


def test_fast_path_equals_full_evaluation() -> None:
    fast = acgs.Engine.load(BUNDLE, cache_size=0)
    full = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False, native=False)
    info = fast.fast_path
    assert info is not None and info["error"] is None and info["skipped"] == [], info
    assert info["deny_actions"] == len(CONSTITUTION["fast_path"]["deny_actions"])
    assert info["allow_actions"] == len(CONSTITUTION["fast_path"]["allow_actions"])
    declared = CONSTITUTION["constitutional_hash"]

    rng = random.Random("acgs-partial-evaluator")
    served: list[tuple[Any, dict[str, Any]]] = []
    counts = {"allow": 0, "deny": 0, "full": 0, "refused": 0}
    for _ in range(REQUESTS):
        request = main_request(rng)
        raw = json.dumps(request).encode()
        h = request.get("constitutional_hash") if isinstance(request, dict) else None
        try:
            answer = fast.decide_cached_json(raw)
        except ConstitutionalHashMismatch:
            assert isinstance(h, str) and h != declared, request
            counts["refused"] += 1
            continue
        except InvalidInputError:
            assert not isinstance(request, dict) or not isinstance(h, str | None), request
            counts["refused"] += 1
            continue
        # decide drops a client's "trusted": the contract is checked on the admitted request.
        request = json.loads(admit(raw, None))
        route = fast_path_route(request)
        counts[route] += 1
        if answer is None:
            assert route == "full", f"the contract allows the fast path for {raw!r}"
            continue
        decision = json.loads(answer)
        assert decision["fast_path"] is True
        assert route != "full", f"the fast path served a request the contract excludes: {raw!r}"
        served.append((request, {k: v for k, v in decision.items() if k not in META}))

    # Every fast answer equals full evaluation of the same request.
    want = full.evaluate_many([r for r, _ in served], "acgs/main/decision")
    mismatches = [(r, got, w) for (r, got), w in zip(served, want, strict=True) if got != w]
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"
    # The generator must reach every route, or this proves little.
    assert min(counts.values()) > REQUESTS // 50, counts
    assert fast.cache_stats()["fast_path"] == len(served)

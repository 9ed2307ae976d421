"""The decision pipeline through the Python API: decide, the L1 cache and its hooks for a
second-level cache, the fast path, and fail-closed denies. Uses the small constitution in
tests/fixtures/pipeline (same shape as the real one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import acgs
from acgs.errors import ConstitutionalHashMismatch, InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures"
HASH = "cdd01ef066bc6cf2"


def request(action: str = "data.read_public", trust: float = 1.0, sandbox: bool = True) -> dict[str, Any]:
    return {
        "type": "constitutional_evaluation",
        "constitutional_hash": HASH,
        "action": action,
        "context": {"environment": {"sandbox_enabled": sandbox}, "agent": {"trust_level": trust}},
    }


@pytest.fixture
def engine() -> acgs.Engine:
    return acgs.Engine.load(FIXTURES / "pipeline.tar.gz", timeout_ms=100)


def test_decide_returns_the_policy_decision_with_ids(engine: acgs.Engine) -> None:
    assert engine.constitutional_hash == HASH
    d = engine.decide(request(trust=0.85))
    assert d["allow"] is True and d["compliance_score"] == 0.93
    assert d["reasons"] == []
    assert d["constitutional_hash"] == HASH
    assert d["bundle_digest"] == engine.bundle_digest
    assert d["cache_hit"] is False and d["fast_path"] is False
    assert len(d["decision_id"]) == 36
    again = engine.decide(request(trust=0.85))
    assert again["cache_hit"] is True
    assert again["decision_id"] != d["decision_id"]
    stats = engine.cache_stats()
    # Two entries: the canonical one, and the alias of the repeated request's exact bytes
    # that lets a third ask skip parsing.
    assert stats["hits"] == 1 and stats["misses"] == 1 and stats["size"] == 2
    # The same through bytes.
    body = json.loads(engine.decide_json(json.dumps(request(trust=0.85)).encode()))
    assert body["cache_hit"] is True and body["compliance_score"] == d["compliance_score"]


def test_fast_path_serves_what_the_data_declares(engine: acgs.Engine) -> None:
    info = engine.fast_path
    assert info is not None and info["deny_actions"] == 2 and info["allow_actions"] == 2
    d = engine.decide(request("data.read_public"))
    assert d["fast_path"] is True and d["allow"] is True
    full = acgs.Engine.load(FIXTURES / "pipeline.tar.gz", cache_size=0, fast_path=False)
    want = full.evaluate(request("data.read_public"), "acgs/main/decision")
    assert {k: v for k, v in d.items() if k in want} == want
    assert engine.cache_stats()["fast_path"] == 1


def test_second_level_cache_hooks(engine: acgs.Engine) -> None:
    raw = json.dumps(request(trust=0.9)).encode()
    assert engine.decide_cached_json(raw) is None
    key = engine.cache_key(raw, "acgs/main/decision")
    assert isinstance(key, bytes) and len(key) == 16
    # Key order and whitespace do not change the key; any value does.
    assert engine.cache_key(json.dumps(request(trust=0.9), indent=2, sort_keys=True), "acgs/main/decision") == key
    assert engine.cache_key(json.dumps(request(trust=0.91)), "acgs/main/decision") != key
    result_set = engine.evaluate_json(raw, "acgs/main/decision")
    other = acgs.Engine.load(FIXTURES / "pipeline.tar.gz")
    other.cache_put(key, result_set)
    hit = other.decide_cached_json(raw)
    assert hit is not None and json.loads(hit)["cache_hit"] is True
    with pytest.raises(InvalidInputError):
        other.cache_put(b"short", result_set)


def test_bad_requests_raise_and_faults_deny(engine: acgs.Engine) -> None:
    with pytest.raises(ConstitutionalHashMismatch) as exc:
        engine.decide({**request(), "constitutional_hash": "ffffffffffffffff"})
    assert exc.value.code == "constitutional_hash_mismatch"
    with pytest.raises(InvalidInputError):
        engine.decide_json(b"{not json")
    with pytest.raises(InvalidInputError):
        engine.decide([1, 2])
    d = engine.decide(request("test.slow"))
    assert d["allow"] is False and d["compliance_score"] == 0
    assert d["error"]["code"] == "evaluation_timeout"
    assert "could not be made" in d["reasons"][0]
    assert engine.decide(request("data.read_public"))["allow"] is True


def test_decide_many_keeps_order(engine: acgs.Engine) -> None:
    reqs = [request(trust=t / 100) for t in range(50, 100)]
    out = engine.decide_many(reqs, threads=2)
    assert [d["evaluation_details"]["trust"] for d in out] == [t / 100 for t in range(50, 100)]


def test_cache_can_be_turned_off_and_ttl_checked() -> None:
    e = acgs.Engine.load(FIXTURES / "pipeline.tar.gz", cache_size=0)
    e.decide(request(trust=0.85))
    assert e.decide(request(trust=0.85))["cache_hit"] is False
    assert e.cache_stats()["capacity"] == 0
    with pytest.raises(InvalidInputError):
        acgs.Engine.load(FIXTURES / "pipeline.tar.gz", cache_ttl=-1)
    assert acgs.Engine.load(FIXTURES / "pipeline.tar.gz", cache_ttl=None).decide(request())["allow"]


def test_non_deterministic_bundles_are_not_cached() -> None:
    e = acgs.Engine.load(FIXTURES / "clock.tar.gz")
    first = e.evaluate({}, "clock/now")
    e.evaluate({}, "clock/now")
    assert e.cache_stats()["size"] == 0 and e.cache_stats()["hits"] == 0
    assert isinstance(first, int)


def test_evaluate_cached_json_answers_only_from_l1_or_the_fast_path(engine: acgs.Engine) -> None:
    assert engine.cacheable is True
    raw = json.dumps(request(trust=0.9)).encode()
    assert engine.evaluate_cached_json(raw, "acgs/main/allow") is None
    full = engine.evaluate_json(raw, "acgs/main/allow")
    assert engine.evaluate_cached_json(raw, "acgs/main/allow") == full
    fast = engine.evaluate_cached_json(json.dumps(request()).encode(), "acgs/main/decision")
    assert fast is not None and json.loads(fast)[0]["result"]["allow"] is True
    assert acgs.Engine.load(FIXTURES / "clock.tar.gz").cacheable is False

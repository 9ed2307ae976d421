"""The policy service (port 8004) over real bundles compiled by the pinned OPA: OPA's Data API,
the seed's flat decision, fail-closed faults, batches, health and metrics, a real Redis as the
L2 cache, and an unmodified OPA client library over a real uvicorn."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import acgs
from acgs.services.policy import PolicySettings, create_app
from acgs.services.policy.pipeline import DECISION_META
from tests.services.conftest import RedisServer, ServerThread, client_for

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
STRESS = ROOT / "tests" / "fixtures" / "stress.tar.gz"
#: Raw bodies are JSON: the services refuse a body not declared as JSON (415).
JSON_BODY = {"content-type": "application/json"}
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAILCLOSED = FIXTURES / "failclosed.tar.gz"
CLOCK = ROOT / "tests" / "fixtures" / "clock.tar.gz"  # clock/now reads the clock
EXAMPLE = ROOT / "python" / "acgs" / "bundles" / "example.tar.gz"
PIPELINE = ROOT / "tests" / "fixtures" / "pipeline.tar.gz"  # a small constitution (acgs/main/decision)
PIPELINE_HASH = "cdd01ef066bc6cf2"
CONSTITUTION = ROOT / "python" / "acgs" / "bundles" / "constitution.tar.gz"
FIXTURE_HASH = "f1c0ffee00000001"  # declared in fixtures/failclosed/data.json

GOOD = {
    "action": "data.read_public",
    "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": 0.9}},
}
LOW_TRUST = {**GOOD, "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": 0.5}}}
DECISION_KEYS = {"decision_id", "bundle_digest", "cache_hit", "evaluation_time_ms", "constitutional_hash"}


def make_app(bundle: Path | None = None, **settings: Any) -> FastAPI:
    return create_app(PolicySettings(bundle=bundle or EXAMPLE, **settings))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(make_app()):
        yield c


@pytest.fixture
async def failclosed() -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(make_app(FAILCLOSED, timeout_ms=50)):
        yield c


def opa_error(response: httpx.Response, status: int, detail: str | None = None) -> dict[str, Any]:
    """OPA's error body, with ACGS's specific code in errors[0] when given."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) <= {"code", "message", "errors"} and body["code"] and body["message"]
    assert "result" not in body and "allow" not in body
    if detail is not None:
        assert body["errors"][0]["code"] == detail
    return body


# -- OPA Data API -----------------------------------------------------------------------------


async def test_post_data_returns_result_and_decision_id(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/data/acgs/example/allow", json={"input": GOOD})
    assert r.status_code == 200
    body = r.json()
    assert body["result"] is True and set(body) == {"result", "decision_id"}
    r = await client.post("/v1/data/acgs/example/decision", json={"input": LOW_TRUST})
    assert r.json()["result"] == {
        "allow": False,
        "reasons": ["trust level 0.5 is below the minimum 0.8"],
        "action": "data.read_public",
    }
    ids = {(await client.post("/v1/data/acgs/example/allow", json={"input": GOOD})).json()["decision_id"] for _ in range(5)}
    assert len(ids) == 5


async def test_get_data_with_input_parameter(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/data/acgs/example/allow", params={"input": json.dumps(GOOD)})
    assert r.json()["result"] is True
    r = await client.get("/v1/data/acgs/example/allow", params={"input": json.dumps(LOW_TRUST)})
    assert r.json()["result"] is False
    opa_error(await client.get("/v1/data/acgs/example/allow", params={"input": "{nope"}), 400)


async def test_undefined_has_no_result_key(client: httpx.AsyncClient) -> None:
    for path in ("/v1/data/acgs/example/nothing_here", "/v1/data/acgs/example/decision/no_such_key", "/v1/data/other"):
        r = await client.post(path, json={"input": GOOD})
        assert r.status_code == 200
        assert set(r.json()) == {"decision_id"}, path
    # "decision" is undefined without an action; "allow" has a default: false, not undefined
    r = await client.post("/v1/data/acgs/example/decision", json={"input": None})
    assert set(r.json()) == {"decision_id"}
    r = await client.post("/v1/data/acgs/example/allow", json={"input": None})
    assert r.json()["result"] is False


async def test_paths_inside_entrypoints_data_and_packages(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/data/acgs/example/decision/allow", json={"input": GOOD})
    assert r.json()["result"] is True
    r = await client.post("/v1/data/acgs/example/decision/reasons/0", json={"input": LOW_TRUST})
    assert r.json()["result"] == "trust level 0.5 is below the minimum 0.8"
    r = await client.get("/v1/data/acgs/example/min_trust")
    assert r.json()["result"] == 0.8
    # a package: its data merged with the value of every entrypoint in it
    r = await client.post("/v1/data/acgs/example", json={"input": GOOD})
    doc = r.json()["result"]
    assert doc["min_trust"] == 0.8 and doc["allow"] is True and doc["decision"]["allow"] is True
    r = await client.post("/v1/data", json={"input": LOW_TRUST})
    assert r.json()["result"]["acgs"]["example"]["allow"] is False
    r = await client.get("/v1/data/")
    assert r.json()["result"]["acgs"]["example"]["min_trust"] == 0.8


async def test_missing_input_key_evaluates_without_input_and_warns(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/data/acgs/example/allow", json={"nothing": 1})
    body = r.json()
    assert body["result"] is False
    assert body["warning"]["code"] == "api_usage_warning"
    r = await client.post("/v1/data/acgs/example/allow")
    assert r.json()["result"] is False and "warning" not in r.json()


async def test_query_flags(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/data/acgs/example/allow?pretty=true&metrics=true&provenance=true", json={"input": GOOD})
    assert r.text.startswith("{\n  ")
    body = r.json()
    assert body["result"] is True
    assert body["metrics"]["timer_server_handler_ns"] > 0
    assert body["metrics"]["counter_server_query_cache_hit"] in (0, 1)
    assert body["provenance"]["version"] == acgs.__version__
    assert "revision" in body["provenance"]["bundles"]["acgs"]


async def test_gzip_request_body(client: httpx.AsyncClient) -> None:
    raw = gzip.compress(json.dumps({"input": GOOD}).encode())
    r = await client.post("/v1/data/acgs/example/allow", content=raw, headers={**JSON_BODY, "content-encoding": "gzip"})
    assert r.json()["result"] is True
    bad = await client.post("/v1/data/acgs/example/allow", content=b"not gzip", headers={**JSON_BODY, "content-encoding": "gzip"})
    opa_error(bad, 400)
    opa_error(await client.post("/v1/data/x", content=b"{}", headers={**JSON_BODY, "content-encoding": "br"}), 415)


async def test_default_decision_post_root() -> None:
    async for c in client_for(make_app(default_decision="acgs/example/decision")):
        r = await c.post("/", json=GOOD)
        assert r.json() == {"allow": True, "reasons": [], "action": "data.read_public"}
        opa_error(await c.post("/"), 404)  # no input: the decision is undefined
    async for c in client_for(make_app()):  # acgs/main/decision is not in the example bundle
        body = opa_error(await c.post("/", json=GOOD), 404)
        assert body["code"] == "undefined_document"


async def test_errors_use_opa_error_body(client: httpx.AsyncClient) -> None:
    opa_error(await client.post("/v1/data/acgs/example/allow", content=b"{nope", headers=JSON_BODY), 400)
    opa_error(await client.post("/v1/data/acgs/example/allow", content=b"[1, 2]", headers=JSON_BODY), 400)
    opa_error(await client.post("/v1/data/acgs/example/allow", content=b'{"input": NaN}', headers=JSON_BODY), 400)
    deep = "[" * 5000 + "]" * 5000
    opa_error(await client.post("/v1/data/acgs/example/allow", content=f'{{"input": {deep}}}'.encode(), headers=JSON_BODY), 400)
    opa_error(await client.get("/no/such/endpoint"), 404)
    body = opa_error(await client.put("/v1/data/acgs/example/min_trust", json=1), 405)
    assert body["code"] == "invalid_operation"
    opa_error(await client.post("/v1/query", json={"query": "data.x"}), 501)


async def test_wrong_type_for_constitutional_hash_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/data/acgs/example/decision", json={**GOOD, "constitutional_hash": 123})
    opa_error(r, 400, "invalid_input")


async def test_oversized_bodies_get_413() -> None:
    async for c in client_for(make_app(max_body_bytes=1000)):
        big = {"input": {**GOOD, "pad": "x" * 2000}}
        opa_error(await c.post("/v1/data/acgs/example/allow", json=big), 413)

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            yield b'{"input": {"pad": "'
            for _ in range(10):
                yield b"x" * 200
            yield b'"}}'

        opa_error(await c.post("/v1/data/acgs/example/allow", content=chunks(), headers=JSON_BODY), 413)
        bomb = gzip.compress(json.dumps({"input": {"pad": "x" * 100_000}}).encode())
        assert len(bomb) < 1000
        opa_error(await c.post("/v1/data/acgs/example/allow", content=bomb, headers={**JSON_BODY, "content-encoding": "gzip"}), 413)
        # under the limit still works
        r = await c.post("/v1/data/acgs/example/allow", json={"input": GOOD})
        assert r.json()["result"] is True


# -- the seed's flat decision ---------------------------------------------------------------


async def test_bare_body_gets_the_flat_decision(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/data/acgs/example/decision", json=LOW_TRUST)
    assert r.status_code == 200
    body = r.json()
    assert body["allow"] is False and body["reasons"] == ["trust level 0.5 is below the minimum 0.8"]
    assert DECISION_KEYS <= set(body) and "result" not in body
    assert body["bundle_digest"] == acgs.Engine.load(EXAMPLE).bundle_digest
    assert body["constitutional_hash"] is None  # the example bundle declares none
    assert body["cache_hit"] is False and body["evaluation_time_ms"] >= 0
    again = (await client.post("/v1/data/acgs/example/decision", json=LOW_TRUST)).json()
    assert again["cache_hit"] is True and again["allow"] is False
    assert again["decision_id"] != body["decision_id"]
    # "type" alone also marks a bare request
    r = await client.post("/v1/data/acgs/example/decision", json={"type": "constitutional_evaluation"})
    assert r.json()["allow"] is False and "decision_id" in r.json()


async def test_flat_decision_checks_the_constitutional_hash(failclosed: httpx.AsyncClient) -> None:
    body = (await failclosed.post("/v1/data/failclosed/decision", json={"action": "x", "n": 3})).json()
    assert body["allow"] is True and body["constitutional_hash"] == FIXTURE_HASH
    ok = await failclosed.post("/v1/data/failclosed/decision", json={"action": "x", "constitutional_hash": FIXTURE_HASH})
    assert ok.status_code == 200 and ok.json()["allow"] is True
    before = (await failclosed.get("/metrics")).text
    # would take far past the deadline if evaluated; rejected before evaluation instead
    bad = {"action": "x", "constitutional_hash": "cdd01ef066bc6cf2", "n": 10**9}
    err = opa_error(await failclosed.post("/v1/data/failclosed/decision", json=bad), 400, "constitutional_hash_mismatch")
    assert FIXTURE_HASH in err["message"]
    opa_error(await failclosed.post("/v1/data/failclosed/allow", json={"input": bad}), 400, "constitutional_hash_mismatch")
    # named outside an input, on a path that is not a decision: held to it all the same
    opa_error(await failclosed.post("/v1/data/failclosed/value", json={"constitutional_hash": "x"}), 400)
    after = (await failclosed.get("/metrics")).text
    assert _sample(before, 'acgs_cache_requests_total{level="l1",result="miss"}') == _sample(
        after, 'acgs_cache_requests_total{level="l1",result="miss"}'
    )
    assert _sample(after, 'acgs_errors_total{code="constitutional_hash_mismatch"}') == 3


async def test_example_bundle_rejects_any_named_hash(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/data/acgs/example/decision", json={**GOOD, "constitutional_hash": "cdd01ef066bc6cf2"})
    assert "declares none" in opa_error(r, 400, "constitutional_hash_mismatch")["message"]


async def test_seed_example_flow_on_the_constitution() -> None:
    """Done-when 1: the seed's example flow through REST is allowed at 0.96 with both hashes;
    a mismatched constitutional hash is a 400."""
    seed = acgs.SEED_REQUEST
    async for c in client_for(make_app(CONSTITUTION)):
        body = (await c.post("/v1/data/acgs/main/decision", json=seed)).json()
        assert body["allow"] is True and body["compliance_score"] == pytest.approx(0.96)
        assert body["constitutional_hash"] == "cdd01ef066bc6cf2" and len(body["bundle_digest"]) == 64
        for key in ("reasons", "conditions", "evaluation_details", "decision_id", "cache_hit", "evaluation_time_ms"):
            assert key in body
        opa_error(
            await c.post("/v1/data/acgs/main/decision", json={**seed, "constitutional_hash": "0" * 16}),
            400,
            "constitutional_hash_mismatch",
        )
        health = (await c.get("/health")).json()
        assert health["constitutional_hash"] == "cdd01ef066bc6cf2"
        # the same request in OPA's shape, and the service's default bundle is this one
        r = await c.post("/v1/data/acgs/main/decision", json={"input": seed})
        assert r.json()["result"]["allow"] is True and r.json()["result"]["compliance_score"] == pytest.approx(0.96)
        assert (await c.post("/v1/data/acgs/main/allow", json={"input": seed})).json()["result"] is True
    assert PolicySettings().bundle == acgs.default_bundle_path() == CONSTITUTION


async def test_native_evaluator_is_reported_and_can_be_turned_off() -> None:
    """With the shipped constitution, cache misses are evaluated natively (health says so, the
    metric counts them); ACGS_POLICY_NATIVE=false runs the bundle's plan, ACGS_EVALUATOR=wasm
    its Wasm; all answer the same."""
    request = {**acgs.SEED_REQUEST, "context": {**acgs.SEED_REQUEST["context"], "benefit_assessment": 0.9}}
    answers = {}
    for native, evaluator, runs in ((True, "auto", "native"), (False, "auto", "plan"), (False, "wasm", "wasm")):
        async for c in client_for(make_app(CONSTITUTION, native=native, evaluator=evaluator, cache_size=0)):
            health = (await c.get("/health")).json()
            assert health["evaluator"] == runs
            body = (await c.post("/v1/data/acgs/main/decision", json=request)).json()
            answers[runs] = {k: v for k, v in body.items() if k not in DECISION_META}
            metrics = (await c.get("/metrics")).text
            assert _sample(metrics, "acgs_native_evaluations_total") == (1 if native else 0)
    assert answers["native"] == answers["plan"] == answers["wasm"] and answers["native"]["allow"] is True
    async for c in client_for(make_app(EXAMPLE)):
        assert (await c.get("/health")).json()["evaluator"] == "plan"
    assert PolicySettings.from_env({"ACGS_POLICY_NATIVE": "false"}).native is False


# -- failing closed ---------------------------------------------------------------------------


async def test_engine_faults_on_decisions_are_denies(failclosed: httpx.AsyncClient) -> None:
    # the same policy allows when it evaluates ...
    assert (await failclosed.post("/v1/data/failclosed/decision", json={"action": "a", "n": 5})).json()["allow"] is True
    # ... and a deadline makes it a deny with the fault named
    for _ in range(2):  # a fault is never cached
        r = await failclosed.post("/v1/data/failclosed/decision", json={"action": "a", "n": 10**9})
        assert r.status_code == 200
        body = r.json()
        assert body["allow"] is False and body["compliance_score"] == 0
        assert "evaluation exceeded its deadline" in body["reasons"][0]
        assert body["error"]["code"] == "evaluation_timeout"
        assert body["cache_hit"] is False and body["constitutional_hash"] == FIXTURE_HASH
    r = await failclosed.post("/v1/data/failclosed/decision", json={"input": {"n": 10**9}})
    assert r.status_code == 200
    assert r.json()["result"]["allow"] is False and r.json()["warning"]["code"] == "evaluation_timeout"
    r = await failclosed.post("/v1/data/failclosed/allow", json={"input": {"n": 10**9}})
    assert r.json()["result"] is False and r.json()["warning"]["code"] == "evaluation_timeout"
    r = await failclosed.post("/v1/data/failclosed/decision/allow", json={"input": {"n": 10**9}})
    assert r.json()["result"] is False
    # a value that is not a decision has no safe stand-in: an error, no result
    opa_error(await failclosed.post("/v1/data/failclosed/value", json={"input": {"n": 10**9}}), 500, "evaluation_timeout")
    # and the engine goes on serving
    assert (await failclosed.post("/v1/data/failclosed/allow", json={"input": {"n": 2}})).json()["result"] is True
    metrics = (await failclosed.get("/metrics")).text
    assert _sample(metrics, 'acgs_decisions_total{outcome="error"}') == 6
    assert _sample(metrics, 'acgs_errors_total{code="evaluation_timeout"}') == 7


async def test_memory_cap_is_a_deny() -> None:
    async for c in client_for(make_app(FAILCLOSED, timeout_ms=20_000, memory_limit=32 << 20)):
        r = await c.post("/v1/data/failclosed/decision", json={"action": "a", "mem": 10**7})
        body = r.json()
        assert r.status_code == 200 and body["allow"] is False
        assert body["error"]["code"] == "resource_limit_exceeded"
        assert (await c.post("/v1/data/failclosed/decision", json={"action": "a", "mem": 2})).json()["allow"] is True


async def test_stress_bundle_faults_are_errors_not_results() -> None:
    async for c in client_for(make_app(STRESS, timeout_ms=50, memory_limit=32 << 20)):
        # stress/spin allocates nothing while it loops, so only the deadline can stop it; stress/hog
        # allocates in one builtin call, so only the memory cap can (see tests/fixtures/stress).
        spin = {"items": list(range(2000)), "stop": -1}
        opa_error(await c.post("/v1/data/stress/spin", json={"input": spin}), 500, "evaluation_timeout")
        assert (await c.post("/v1/data/stress/spin", json={"input": {**spin, "items": list(range(10))}})).json()["result"] == 10
    async for c in client_for(make_app(STRESS, timeout_ms=60_000, memory_limit=32 << 20)):
        opa_error(await c.post("/v1/data/stress/hog", json={"input": {"n": 10**8}}), 500, "resource_limit_exceeded")
        assert (await c.post("/v1/data/stress/hog", json={"input": {"n": 2}})).json()["result"] == 2


async def test_missing_bundle_serves_unhealthy_and_denies(tmp_path: Path) -> None:
    async for c in client_for(make_app(tmp_path / "missing.tar.gz")):
        health = await c.get("/health")
        assert health.status_code == 503
        assert health.json()["bundle_loaded"] is False and "cannot read" in health.json()["error"]
        r = await c.post("/v1/data/acgs/main/decision", json=GOOD)
        assert r.status_code == 503
        body = r.json()
        assert body["allow"] is False and body["compliance_score"] == 0
        assert body["error"]["code"] == "bundle_not_loaded"
        r = await c.post("/v1/data/acgs/main/allow", json={"input": GOOD})
        assert r.status_code == 503 and r.json()["result"] is False
        opa_error(await c.post("/v1/data/acgs/main/score", json={"input": GOOD}), 503, "bundle_not_loaded")
        r = await c.post("/v1/batch/data/acgs/main/decision", json={"inputs": [GOOD]})
        assert r.json()["results"][0]["result"]["allow"] is False


# -- caching ----------------------------------------------------------------------------------


async def test_inputs_that_differ_anywhere_do_not_share_a_cache_entry(client: httpx.AsyncClient) -> None:
    first = (await client.post("/v1/data/acgs/example/decision", json=GOOD)).json()
    assert first["allow"] is True
    tweaked = {**GOOD, "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": 0.79}}}
    second = (await client.post("/v1/data/acgs/example/decision", json=tweaked)).json()
    assert second["cache_hit"] is False and second["allow"] is False


async def test_nondeterministic_bundles_are_never_cached() -> None:
    async for c in client_for(make_app(CLOCK)):
        first = (await c.post("/v1/data/clock/now?metrics=true", json={"input": {}})).json()
        second = (await c.post("/v1/data/clock/now?metrics=true", json={"input": {}})).json()
        assert first["result"] != second["result"]
        assert second["metrics"]["counter_server_query_cache_hit"] == 0


async def test_cache_size_zero_disables_l1() -> None:
    async for c in client_for(make_app(cache_size=0)):
        for _ in range(2):
            assert (await c.post("/v1/data/acgs/example/decision", json=GOOD)).json()["cache_hit"] is False


# -- batch ------------------------------------------------------------------------------------


async def test_batch_keyed_inputs(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/batch/data/acgs/example/allow",
        json={"inputs": {"good": GOOD, "low": LOW_TRUST, "empty": {}}},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["batch_decision_id"]
    assert {k: v["result"] for k, v in body["responses"].items()} == {"good": True, "low": False, "empty": False}
    assert all("decision_id" in v for v in body["responses"].values())


async def test_batch_list_keeps_order_and_matches_single_calls(client: httpx.AsyncClient) -> None:
    inputs = [
        {**GOOD, "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": i / 100}}}
        for i in range(60, 100)
    ]
    r = await client.post("/v1/batch/data/acgs/example/decision", json={"inputs": inputs})
    results = [x["result"] for x in r.json()["results"]]
    singles = [(await client.post("/v1/data/acgs/example/decision", json={"input": i})).json()["result"] for i in inputs]
    assert results == singles
    assert [x["allow"] for x in results] == [i >= 80 for i in range(60, 100)]
    # the second time every input is a cache hit, same answers
    again = (await client.post("/v1/batch/data/acgs/example/decision", json={"inputs": inputs})).json()
    assert [x["result"] for x in again["results"]] == results


async def test_batch_common_input_is_merged_under_each_input(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/batch/data/acgs/example/allow",
        json={
            "common_input": GOOD,
            "inputs": [{}, {"context": {"agent": {"trust_level": 0.1}}}, {"action": "system.execute_shell"}],
        },
    )
    assert [x["result"] for x in r.json()["results"]] == [True, False, False]


async def test_batch_isolates_faults_per_input(failclosed: httpx.AsyncClient) -> None:
    r = await failclosed.post(
        "/v1/batch/data/failclosed/decision",
        json={"inputs": [{"n": 3}, {"n": 10**9}, {"constitutional_hash": "nope"}, {"n": 4}]},
    )
    assert r.status_code == 207
    results = r.json()["results"]
    assert results[0]["result"]["allow"] is True and results[3]["result"]["allow"] is True
    assert results[1]["result"]["allow"] is False and results[1]["warning"]["code"] == "evaluation_timeout"
    assert results[2]["http_status_code"] == "400" and results[2]["errors"][0]["code"] == "constitutional_hash_mismatch"
    r = await failclosed.post("/v1/batch/data/failclosed/value", json={"inputs": {"a": {"n": 1}, "b": {"n": 10**9}}})
    assert r.status_code == 207
    assert r.json()["responses"]["a"]["result"] == 1
    assert r.json()["responses"]["b"]["code"] == "internal_error"


async def test_batch_tells_null_from_undefined(failclosed: httpx.AsyncClient) -> None:
    r = await failclosed.post("/v1/batch/data/failclosed/nothing", json={"inputs": [{}, {}]})
    assert [("result" in x, x.get("result")) for x in r.json()["results"]] == [(True, None), (True, None)]
    r = await failclosed.post("/v1/batch/data/failclosed/none_such", json={"inputs": [{}]})
    assert "result" not in r.json()["results"][0]


async def test_batch_rejects_malformed_and_oversized_requests() -> None:
    async for c in client_for(make_app(max_batch=3)):
        opa_error(await c.post("/v1/batch/data/acgs/example/allow", json={"inputs": 5}), 400)
        opa_error(await c.post("/v1/batch/data/acgs/example/allow", json=[GOOD]), 400)
        opa_error(await c.post("/v1/batch/data/acgs/example/allow", json={"inputs": [], "common_input": 1}), 400)
        opa_error(await c.post("/v1/batch/data/acgs/example/allow", json={"inputs": [GOOD] * 4}), 413)
        r = await c.post("/v1/batch/data/acgs/example/allow", json={"inputs": []})
        assert r.status_code == 200 and r.json()["results"] == []


# -- health and metrics -----------------------------------------------------------------------


async def test_health(failclosed: httpx.AsyncClient) -> None:
    r = await failclosed.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["bundle_loaded"] is True and body["constitutional_hash"] == FIXTURE_HASH
    assert body["bundle_digest"] == acgs.Engine.load(FAILCLOSED).bundle_digest
    assert "failclosed/decision" in body["entrypoints"] and body["l2"] == "disabled"
    assert (await failclosed.get("/health?bundles")).status_code == 200


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


async def test_metrics(client: httpx.AsyncClient) -> None:
    await client.post("/v1/data/acgs/example/decision", json=GOOD)
    await client.post("/v1/data/acgs/example/decision", json=GOOD)
    await client.post("/v1/data/acgs/example/allow", json={"input": LOW_TRUST})
    await client.post("/v1/data/acgs/example/nope", json={"input": GOOD})
    await client.post("/v1/data/acgs/example/allow", content=b"{", headers=JSON_BODY)
    await client.post("/v1/batch/data/acgs/example/allow", json={"inputs": [GOOD, LOW_TRUST]})
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert _sample(text, 'acgs_decision_duration_seconds_count{endpoint="decision"}') == 2
    assert _sample(text, 'acgs_decision_duration_seconds_count{endpoint="data"}') == 2
    assert _sample(text, 'acgs_decision_duration_seconds_count{endpoint="batch"}') == 1
    assert _sample(text, 'acgs_decisions_total{outcome="allow"}') == 3
    assert _sample(text, 'acgs_decisions_total{outcome="deny"}') == 2
    assert _sample(text, 'acgs_decisions_total{outcome="undefined"}') == 1
    assert _sample(text, 'acgs_cache_requests_total{level="l1",result="hit"}') == 2  # decision again, GOOD/LOW in batch
    assert _sample(text, 'acgs_cache_requests_total{level="l2",result="hit"}') == 0
    assert _sample(text, 'acgs_errors_total{code="invalid_parameter"}') == 1
    assert _sample(text, 'acgs_http_requests_total{code="200",method="POST",route="/v1/data/{path}",service="policy"}') == 4
    assert _sample(text, 'acgs_http_requests_total{code="400",method="POST",route="/v1/data/{path}",service="policy"}') == 1
    assert "acgs_fast_path_total" in text and "acgs_bundle_info{" in text


def _l1(text: str) -> tuple[float, float]:
    return (
        _sample(text, 'acgs_cache_requests_total{level="l1",result="hit"}'),
        _sample(text, 'acgs_cache_requests_total{level="l1",result="miss"}'),
    )


async def test_l1_counts_each_request_once(client: httpx.AsyncClient) -> None:
    """A request is one L1 look-up in the metrics, whatever path it takes: the cache-only probe
    before an evaluation counts the miss, the evaluation's own look-up does not count again."""
    start = _l1((await client.get("/metrics")).text)

    async def delta() -> tuple[float, float]:
        now = _l1((await client.get("/metrics")).text)
        return now[0] - start[0], now[1] - start[1]

    other = {**GOOD, "context": {**GOOD["context"], "agent": {"trust_level": 0.93}}}
    await client.post("/v1/data/acgs/example/decision", json=other)  # flat decision: miss
    assert await delta() == (0, 1)
    await client.post("/v1/data/acgs/example/decision", json=other)
    assert await delta() == (1, 1)
    await client.post("/v1/data/acgs/example/allow", json={"input": other})  # data API: miss
    assert await delta() == (1, 2)
    await client.post("/v1/data/acgs/example/allow", json={"input": other})
    assert await delta() == (2, 2)


async def test_l1_counts_each_constitution_decision_once() -> None:
    """The constitution's decision through the engine's pipeline without the native evaluator
    (probe, then evaluation): one miss, then one hit."""
    app = make_app(CONSTITUTION, native=False)
    request = {**acgs.SEED_REQUEST, "context": {**acgs.SEED_REQUEST["context"], "benefit_assessment": 0.91}}
    try:
        async for c in client_for(app):
            start = _l1((await c.get("/metrics")).text)
            first = (await c.post("/v1/data/acgs/main/decision", json=request)).json()
            assert first["cache_hit"] is False and first["fast_path"] is False
            now = _l1((await c.get("/metrics")).text)
            assert (now[0] - start[0], now[1] - start[1]) == (0, 1)
            second = (await c.post("/v1/data/acgs/main/decision", json=request)).json()
            assert second["cache_hit"] is True
            now = _l1((await c.get("/metrics")).text)
            assert (now[0] - start[0], now[1] - start[1]) == (1, 1)
    finally:
        await app.state.policy.pipeline.close()


async def test_opa_management_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/policies")).json() == {"result": []}
    opa_error(await client.get("/v1/policies/example.rego"), 404)
    config = (await client.get("/v1/config")).json()["result"]
    assert config["port"] == 8004
    status = (await client.get("/v1/status")).json()["result"]
    assert status["plugins"]["bundle"]["state"] == "OK"
    assert (await client.get("/openapi.json")).json()["paths"]["/v1/data/{path}"]


def test_settings_from_environment() -> None:
    s = PolicySettings.from_env(
        {"ACGS_POLICY_PORT": "9000", "ACGS_POLICY_CACHE_SIZE": "0", "ACGS_REDIS_URL": "redis://u:secret@h:1/0",
         "ACGS_POLICY_TIMEOUT_MS": ""}  # fmt: skip
    )
    assert (s.port, s.cache_size, s.timeout_ms) == (9000, 0, None)
    assert "secret" not in json.dumps(s.public())
    with pytest.raises(ValueError, match="ACGS_POLICY_PORT"):
        PolicySettings.from_env({"ACGS_POLICY_PORT": "eighty"})
    with pytest.raises(ValueError, match="ACGS_POLICY_CACHE_TTL"):
        PolicySettings.from_env({"ACGS_POLICY_CACHE_TTL": "-1"})


# -- Redis L2 ---------------------------------------------------------------------------------


async def _flush_l2(app: FastAPI) -> None:
    l2 = app.state.policy.pipeline.l2
    await l2.flush_writes()


def pipeline_request(action: str = "analysis.run", trust: float = 0.85, **extra: Any) -> dict[str, Any]:
    """A request to the small constitution in tests/fixtures/pipeline (acgs/main/decision)."""
    return {
        "type": "constitutional_evaluation",
        "constitutional_hash": PIPELINE_HASH,
        "action": action,
        "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": trust}},
        **extra,
    }


async def test_constitution_decisions_go_through_the_engine_pipeline() -> None:
    async for c in client_for(make_app(PIPELINE, timeout_ms=100)):
        flat = (await c.post("/v1/data/acgs/main/decision", json=pipeline_request())).json()
        assert flat["allow"] is True and flat["compliance_score"] == 0.93 and flat["fast_path"] is False
        assert flat["constitutional_hash"] == PIPELINE_HASH and flat["cache_hit"] is False
        again = (await c.post("/v1/data/acgs/main/decision", json=pipeline_request())).json()
        assert again["cache_hit"] is True
        # the fast path: an action the constitution's data marks safe, under its conditions
        fast = (await c.post("/v1/data/acgs/main/decision", json=pipeline_request("data.read_public", 1))).json()
        assert fast["fast_path"] is True and fast["allow"] is True
        # OPA's shape on the same pipeline: the decision without the pipeline's own keys
        opa = (await c.post("/v1/data/acgs/main/decision", json={"input": pipeline_request()})).json()
        assert opa["result"] == {k: v for k, v in flat.items() if k not in DECISION_META}
        denied = (await c.post("/v1/data/acgs/main/decision", json={"input": pipeline_request("system.execute_shell")}))
        assert denied.json()["result"]["allow"] is False
        # faults inside the engine's pipeline are denies too
        slow = (await c.post("/v1/data/acgs/main/decision", json=pipeline_request("test.slow"))).json()
        assert slow["allow"] is False and slow["error"]["code"] == "evaluation_timeout"
        slow_opa = (await c.post("/v1/data/acgs/main/decision", json={"input": pipeline_request("test.slow")})).json()
        assert slow_opa["result"]["allow"] is False and slow_opa["warning"]["code"] == "evaluation_timeout"
        malformed = (await c.post("/v1/data/acgs/main/decision", json=pipeline_request("test.malformed"))).json()
        assert malformed["allow"] is False and "error" in malformed
        opa_error(
            await c.post("/v1/data/acgs/main/decision", json=pipeline_request(constitutional_hash="0" * 16)),
            400,
            "constitutional_hash_mismatch",
        )
        text = (await c.get("/metrics")).text
        assert _sample(text, "acgs_fast_path_total") == 2  # data.read_public and the dangerous action
        assert _sample(text, 'acgs_decisions_total{outcome="error"}') == 3


async def test_l2_hits_across_nodes(redis_server: RedisServer) -> None:
    node_a = make_app(PIPELINE, redis_url=redis_server.url)
    node_b = make_app(PIPELINE, redis_url=redis_server.url)
    try:
        async for a in client_for(node_a):
            first = (await a.post("/v1/data/acgs/main/decision", json=pipeline_request(trust=0.7))).json()
            assert first["cache_hit"] is False and first["fast_path"] is False
            await _flush_l2(node_a)
        async for b in client_for(node_b):
            # key order differs, the canonical key does not
            request = pipeline_request(trust=0.7)
            reordered = dict(reversed(list(request.items())))
            second = (await b.post("/v1/data/acgs/main/decision", json=reordered)).json()
            assert second["cache_hit"] is True
            assert {k: second[k] for k in ("allow", "reasons")} == {k: first[k] for k in ("allow", "reasons")}
            third = (await b.post("/v1/data/acgs/main/decision", json=request)).json()
            assert third["cache_hit"] is True  # now from B's own L1
            # OPA's shape shares the same entries: B writes one, A reads it
            r = await b.post("/v1/data/acgs/main/decision", json={"input": pipeline_request(trust=0.95)})
            assert r.json()["result"]["allow"] is True
            await _flush_l2(node_b)
            text = (await b.get("/metrics")).text
            assert _sample(text, 'acgs_cache_requests_total{level="l2",result="hit"}') == 1
            assert _sample(text, 'acgs_cache_requests_total{level="l2",result="miss"}') == 1
            assert (await b.get("/health")).json()["l2"] == "up"
        async for a in client_for(node_a):
            r = await a.post("/v1/data/acgs/main/decision?metrics=true", json={"input": pipeline_request(trust=0.95)})
            assert r.json()["result"]["allow"] is True
            assert r.json()["metrics"]["counter_server_query_cache_hit"] == 1
            # the fast path answers before L2 is asked, and is not written there
            fast = (await a.post("/v1/data/acgs/main/decision", json=pipeline_request("data.read_public", 1))).json()
            assert fast["fast_path"] is True
            text = (await a.get("/metrics")).text
            assert _sample(text, 'acgs_cache_requests_total{level="l2",result="hit"}') == 1
    finally:
        await node_a.state.policy.pipeline.close()
        await node_b.state.policy.pipeline.close()


async def test_native_evaluations_skip_l2(redis_server: RedisServer) -> None:
    """With the native evaluator the constitution's misses are decided without asking Redis
    (a round trip costs more than the evaluation); with it off, L2 is in the path."""
    import redis

    request = {**acgs.SEED_REQUEST, "context": {**acgs.SEED_REQUEST["context"], "benefit_assessment": 0.9}}
    for native in (True, False):
        with redis.Redis.from_url(redis_server.url) as r:
            r.flushall()
        app = make_app(CONSTITUTION, redis_url=redis_server.url, native=native)
        try:
            async for c in client_for(app):
                body = (await c.post("/v1/data/acgs/main/decision", json=request)).json()
                assert body["allow"] is True and body["cache_hit"] is False
                await _flush_l2(app)
                text = (await c.get("/metrics")).text
                assert _sample(text, 'acgs_cache_requests_total{level="l2",result="miss"}') == (0 if native else 1)
                with redis.Redis.from_url(redis_server.url) as r:
                    assert len(r.keys("acgs:l2:*")) == (0 if native else 1)
        finally:
            await app.state.policy.pipeline.close()


async def test_l2_values_are_checked_before_use(redis_server: RedisServer) -> None:
    import redis

    app = make_app(PIPELINE, redis_url=redis_server.url)
    try:
        async for c in client_for(app):
            await c.post("/v1/data/acgs/main/decision", json=pipeline_request(trust=0.5))
            await _flush_l2(app)
            with redis.Redis.from_url(redis_server.url) as r:
                keys = r.keys("acgs:l2:*")
                assert len(keys) == 1
                r.set(keys[0], b"not a result set")
        async for c in client_for(other := make_app(PIPELINE, redis_url=redis_server.url)):
            body = (await c.post("/v1/data/acgs/main/decision", json=pipeline_request(trust=0.5))).json()
            assert body["cache_hit"] is False and body["allow"] is False
        await other.state.policy.pipeline.close()
    finally:
        await app.state.policy.pipeline.close()


async def test_redis_outage_degrades_to_l1_and_recovers(redis_server: RedisServer) -> None:
    import redis

    app = make_app(PIPELINE, redis_url=redis_server.url, redis_retry_after=0.2)
    try:
        async for c in client_for(app):
            assert (await c.post("/v1/data/acgs/main/decision", json=pipeline_request())).json()["allow"] is True
            await _flush_l2(app)
            redis_server.stop()  # killed: connections refused
            for trust in (0.5, 0.85, 0.95):
                r = await asyncio.wait_for(
                    c.post("/v1/data/acgs/main/decision", json=pipeline_request(trust=trust)), 10
                )
                assert r.status_code == 200 and r.json()["allow"] is (trust >= 0.8)
            again = (await c.post("/v1/data/acgs/main/decision", json=pipeline_request(trust=0.5))).json()
            assert again["cache_hit"] is True  # L1 goes on
            text = (await c.get("/metrics")).text
            assert _sample(text, 'acgs_cache_errors_total{level="l2"}') >= 1
            assert (await c.get("/health")).json()["l2"] == "down"
            assert (await c.get("/health")).status_code == 200

            redis_server.start()  # back, empty, same port
            await asyncio.sleep(0.3)
            fresh = pipeline_request(trust=0.9)
            assert (await c.post("/v1/data/acgs/main/decision", json=fresh)).json()["allow"] is True
            await _flush_l2(app)
            assert (await c.get("/health")).json()["l2"] == "up"
            with redis.Redis.from_url(redis_server.url) as rc:
                assert len(rc.keys("acgs:l2:*")) == 1  # written again after recovery

            redis_server.freeze()  # hung: accepts, never answers; each command has a deadline
            r = await asyncio.wait_for(c.post("/v1/data/acgs/main/decision", json=pipeline_request(trust=0.99)), 10)
            assert r.json()["allow"] is True and r.json()["cache_hit"] is False
            redis_server.thaw()
    finally:
        await app.state.policy.pipeline.close()


# -- an unmodified OPA client over a real uvicorn ---------------------------------------------


@pytest.fixture
def served() -> Iterator[ServerThread]:
    with ServerThread(make_app()) as server:
        yield server


def test_opa_python_client_works_unchanged(served: ServerThread) -> None:
    from opa_client import OpaClient

    client = OpaClient(host="127.0.0.1", port=served.port)
    try:
        assert client.check_connection()
        assert client.check_health()
        assert client.check_health(query={"bundles": True})
        assert client.query_rule(GOOD, "acgs.example", "allow")["result"] is True
        assert client.query_rule(LOW_TRUST, "acgs.example", "allow")["result"] is False
        decision = client.query_rule(LOW_TRUST, "acgs.example", "decision")["result"]
        assert decision["reasons"] == ["trust level 0.5 is below the minimum 0.8"]
        assert client.get_data("acgs/example/min_trust")["result"] == 0.8
        assert client.get_policies_list() == []
        assert "acgs_decisions_total" in client.get_metrics()
    finally:
        client.close_connection()


async def test_opa_async_client_works_unchanged(served: ServerThread) -> None:
    from opa_client import AsyncOpaClient

    async with AsyncOpaClient(host="127.0.0.1", port=served.port) as client:
        assert await client.check_health()
        result = await client.query_rule(GOOD, "acgs.example", "allow")
        assert result["result"] is True


def test_raw_http_against_uvicorn(served: ServerThread) -> None:
    """The seed's call over a real socket, as an agent sends it."""
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}") as c:
        body = c.post("/v1/data/acgs/example/decision", json=GOOD).json()
        assert body["allow"] is True and DECISION_KEYS <= set(body)
        assert c.request("HEAD", "/v1/data/acgs/example/allow").status_code == 405


def test_acgs_serve_runs_the_service_with_workers() -> None:
    """`acgs serve --service policy` as a user starts it: a subprocess, two uvicorn workers."""
    import os
    import subprocess
    import sys
    import time

    from tests.services.conftest import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "ACGS_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "acgs", "serve", "--service", "policy", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Two workers each import and load the bundle: slow on a busy machine.
        deadline = time.monotonic() + 90
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["bundle_loaded"] is True
        body = httpx.post(f"http://127.0.0.1:{port}/v1/data/acgs/main/decision", json=acgs.SEED_REQUEST).json()
        assert body["allow"] is True and body["constitutional_hash"] == "cdd01ef066bc6cf2"
    finally:
        proc.terminate()
        proc.wait(20)

"""Numbers decide nothing by their spelling in the sandbox controller and the evolution service.

Each request carries one number at, a hair above or a hair below a bound that
``policies/acgs/sandbox.rego`` or ``evolution.rego`` compares (trust tiers, the unit interval,
every limit's maximum for a trusted and an untrusted agent, the performance deltas' maxima and
the scores where evolution routing turns), spelt the many ways ``test_numbers.spellings`` spells
it. The service's answer is compared with OPA's (``opa eval`` on the constitution's sources,
reading each number as spelt) on the same input: zero mismatches.

- Sandbox: the constitution reads the client's literal (``ExecuteRequest.keep_exact_numbers``).
  Before, the body was parsed into doubles first: ``trust_level: 0.79999999999999999999`` was
  0.8 and earned the high tier's network, ``cpu_seconds: 600.00000000000000001`` was allowed.
- Evolution: a performance delta a double does not hold exactly is refused (422); every other
  one reaches the constitution as the exact value sent. Before, ``latency_delta:
  0.06015000000000000001`` was read as 0.06015 and auto-approved a change OPA sends to review.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import acgs
from acgs.services.common.http import exact_result, json_reply
from acgs.services.evolution import EvolutionSettings
from acgs.services.evolution.app import create_app as evolution_app
from acgs.services.sandbox import SandboxService
from acgs.services.sandbox.app import create_app as sandbox_app
from tests.security.test_numbers import CONSTITUTION, _below, spellings
from tests.services.sandbox_fixtures import sandbox_service
from tests.test_bundles import pinned_opa

__all__ = ["sandbox_service"]  # the module-scoped real sandbox controller

ROOT = Path(__file__).resolve().parents[2]
HASH = CONSTITUTION["constitutional_hash"]
PLACEHOLDER = '"@@number@@"'
JSON_HEADERS = {"content-type": "application/json"}


def opa_decisions(entrypoint: str, inputs: list[bytes]) -> list[dict[str, Any]]:
    """OPA's decisions on ``inputs`` (raw JSON: OPA keeps each number's literal)."""
    proc = subprocess.run(
        [str(pinned_opa()), "eval", "--format", "json", "--stdin-input", "--ignore", "*_test.rego",
         "-d", "acgs:" + str(ROOT / "policies" / "acgs"),
         f"[d | some x in input; d := data.{entrypoint.replace('/', '.')} with input as x]"],
        input=b"[" + b",".join(inputs) + b"]", capture_output=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out: list[dict[str, Any]] = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    assert len(out) == len(inputs)
    return out


#: The caller's facts with authentication off, as the services build them (the count of calls
#: appears only past the constitution's per-minute limit, which these tests never reach).
TRUSTED = b', "trusted": {"principal": {"id": "127.0.0.1", "via": "address", "roles": []}}}'


def with_facts(raw: bytes) -> bytes:
    return raw[:-1] + TRUSTED


def callers(app: FastAPI, per_caller: int = 8) -> Iterator[TestClient]:
    """Clients from distinct loopback addresses, ``per_caller`` requests each (yield one per
    request), so that no per-minute counter reaches the constitution's limit. The app's
    lifespan is run by the fixture."""
    n = 0
    while True:
        n += 1
        c = TestClient(app, base_url="http://localhost", client=(f"127.0.{n // 250}.{n % 250 + 1}", 50000))
        for _ in range(per_caller):
            yield c


def fill(doc: dict[str, Any], path: list[str]) -> Iterator[tuple[str, bytes]]:
    """``doc`` with the number at ``path`` spelt every way around the bound already there."""
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    bound = json.dumps(node[path[-1]])
    node[path[-1]] = "@@number@@"
    template = json.dumps(doc)
    assert template.count(PLACEHOLDER) == 1
    for literal in spellings(bound) + hairs(bound):
        yield literal, template.replace(PLACEHOLDER, literal).encode()


def hairs(text: str) -> list[str]:
    """Numbers a hair from ``text`` that a double reads as ``text`` (or its neighbour) but that
    OPA's arithmetic (64-bit mantissas where ``spellings``' hairs at 1e-20 vanish) still tells
    apart: after arithmetic, as evolution scores are computed, these are the ones that count."""
    decimal = text if "." in text else f"{text}.0"
    out = [decimal + "0" * k + "1" for k in (10, 12, 14)]
    if text.lstrip("-") not in ("0", "0.0"):
        out += [_below(text, places) for places in (16, 17, 18)]
    return out


# -- sandbox ----------------------------------------------------------------------------------------

SB = CONSTITUTION["sandbox"]
RL = CONSTITUTION["resource_limits"]
#: The largest limits the constitution grants (the high tier has no caps of its own).
MAXIMA = {
    "cpu_seconds": RL["cpu_cores"] * RL["execution_time_seconds"],
    "memory_mb": RL["memory_gb"] * 1024,
    "disk_mb": RL["disk_gb"] * 1024,
    "timeout_s": RL["execution_time_seconds"],
    "pids": SB["max_pids"],
}
TIERS = {t["name"]: t for t in SB["trust_tiers"]}


def run_request(trust: Any, limits: dict[str, Any]) -> dict[str, Any]:
    # firecracker: the strongest runtime, never refused for its strength, and absent on this
    # host, so an allowed run ends as a 422 without running anything.
    return {
        "agent_id": "agent-numbers",
        "agent": {"trust_level": trust},
        "language": "python",
        "code": "print(1)",
        "runtime": "firecracker",
        "limits": limits,
        "constitutional_hash": HASH,
    }


def sandbox_cases() -> list[tuple[str, bytes]]:
    raws: list[tuple[str, bytes]] = []
    high, medium, low = TIERS["high"], TIERS["medium"], TIERS["low"]
    # Trust: the high tier's network, the medium tier against the low tier's cpu cap, [0, 1].
    for bound, limits in (
        (high["min_trust"], {"network": True}),
        (medium["min_trust"], {"cpu_seconds": low["max_limits"]["cpu_seconds"] + 40}),
        (0, {}),
        (1, {"network": True}),
    ):
        raws += fill(run_request(bound, limits), ["agent", "trust_level"])
    # Every limit at the constitution's maximum (high trust) and at the low tier's cap.
    for name, maximum in MAXIMA.items():
        raws += fill(run_request(0.9, {name: maximum}), ["limits", name])
        raws += fill(run_request(0.1, {name: low["max_limits"][name]}), ["limits", name])
    # Limits must be positive, and the integer ones integers (fractions at 0 and near 1).
    for name in ("cpu_seconds", "pids"):
        raws += fill(run_request(0.9, {name: 0}), ["limits", name])
        raws += fill(run_request(0.9, {name: 1}), ["limits", name])
    return raws


SANDBOX_CASES = sandbox_cases()


@pytest.fixture(scope="module")
def sandbox(sandbox_service: SandboxService) -> Iterator[FastAPI]:
    if sandbox_service.statuses["firecracker"].available:
        pytest.skip("firecracker runs here: allowed runs would run")
    app = sandbox_app(sandbox_service.settings, service=sandbox_service)
    with TestClient(app, base_url="http://localhost"):
        yield app


def past_a_double(literal: str) -> bool:
    """Whether ``literal`` lies beyond a double's range (``1e400``, ``1e-400``)."""
    value = float(literal)
    return value in (float("inf"), float("-inf")) or (value == 0 and Decimal(literal) != 0)


#: The controller's own refusal of a limit the constitution allowed but no run can get
#: (``cpu_seconds: 1e-400`` is positive, and 0 as a double): stricter than the constitution.
UNENFORCEABLE = ["the constitution allowed the run with a non-positive limit"]


def test_sandbox_admission_decides_on_the_exact_numbers(sandbox: FastAPI) -> None:
    """Allow or deny, effective limits and reasons as OPA gives them. For numbers past a
    double's range only allow or deny is compared: there OPA's own ``round`` is inexact
    (``round(100e400) != 100e400`` in OPA 1.22.3), so the integer check of a limit says "not an
    integer" in OPA and "exceeds the maximum" in ACGS; both deny."""
    expected = opa_decisions("acgs/sandbox/decision", [with_facts(raw) for _, raw in SANDBOX_CASES])
    allowed = sum(d["allow"] is True for d in expected)
    assert len(SANDBOX_CASES) > 200 and 40 < allowed < len(SANDBOX_CASES) - 40, (len(SANDBOX_CASES), allowed)
    mismatches = []
    for (literal, raw), want, client in zip(SANDBOX_CASES, expected, callers(sandbox), strict=False):
        r = client.post("/execute", content=raw, headers=JSON_HEADERS)
        got = r.json()
        assert r.status_code in (403, 422), (raw, r.text)
        # 403: the constitution denied; 422: it allowed, and no runtime here is as strong.
        if r.status_code == 422:
            assert got["status"] == "error" and "not available" in got["error"], got
        decided = {"allow": r.status_code == 422, "limits": got["limits"], "reasons": got["reasons"]}
        if want["allow"] and got["reasons"] == UNENFORCEABLE:
            assert min(v for k, v in want["limits"].items() if k != "network") == 0, (raw, want)
            continue
        keys = ["allow"] if past_a_double(literal) else list(decided)
        if {k: decided[k] for k in keys} != {k: want[k] for k in keys}:
            mismatches.append((raw, decided, want))
    assert not mismatches, f"{len(mismatches)} of {len(SANDBOX_CASES)} mismatch OPA: " + "\n".join(map(repr, mismatches))


def test_a_hair_below_the_high_tier_earns_no_network(sandbox: FastAPI) -> None:
    """The plainest attack: a trust level a double rounds up into the high tier."""
    body = json.dumps(run_request("@", {"network": True})).replace('"@"', "0.79999999999999999999")
    r = TestClient(sandbox, base_url="http://localhost", client=("127.1.0.1", 50000)).post(
        "/execute", content=body, headers=JSON_HEADERS
    )
    assert r.status_code == 403, r.text
    assert r.json()["reasons"] == ["network access is not allowed for this agent"]


def test_a_run_request_that_repeats_a_key_is_refused(sandbox: FastAPI) -> None:
    """Python keeps the last of two equal keys, other parsers the first: never evaluated."""
    body = json.dumps(run_request(0.1, {})).replace('"agent": {', '"agent": {"trust_level": 0.9}, "agent": {', 1)
    r = TestClient(sandbox, base_url="http://localhost", client=("127.1.0.2", 50000)).post(
        "/execute", content=body, headers=JSON_HEADERS
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request" and "repeats the key" in r.json()["message"]


# -- evolution --------------------------------------------------------------------------------------

EV = CONSTITUTION["evolution"]
CHANGE: dict[str, Any] = {
    "agent_id": "agent-numbers",
    "type": "minor_update",
    "requested_by": "alice@example.com",
    "constitutional_hash": HASH,
    "changes": {"lines_changed": 40},
    "rollback_plan": {"procedure": "redeploy", "steps": [{"action": "notify", "params": {}}], "tested": True, "automated": True},
    "performance_analysis": {"complexity_delta": 0, "memory_delta": 0, "latency_delta": 0, "resource_delta": 0},
}


def change(**deltas: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(CHANGE))
    doc["performance_analysis"].update(deltas)
    return doc


def route_delta(threshold: float, base: dict[str, Any], name: str) -> float:
    """The ``name`` delta that puts the evolution score half a rounding step below
    ``threshold`` (so that it rounds up to it): the exact point where routing turns."""
    scale = CONSTITUTION["scoring"]["scale"]
    w = EV["weights"]
    rest = w["risk"] * (1 - EV["base_risk"]["minor_update"]) + w["constitutional"] + w["rollback"]
    others = sum(max(0.0, 1 - max(base.get(k, 0), 0) / m) for k, m in EV["performance_max_delta"].items() if k != name)
    n = len(EV["performance_max_delta"])
    target = (threshold - 0.5 / scale - rest) / w["performance"] * n - others
    return float(f"{(1 - target) * EV['performance_max_delta'][name]:.10g}")


def evolution_cases() -> list[tuple[str, bytes]]:
    raws: list[tuple[str, bytes]] = []
    for name, maximum in EV["performance_max_delta"].items():
        raws += fill(change(**{name: maximum}), ["performance_analysis", name])
    raws += fill(change(latency_delta=0), ["performance_analysis", "latency_delta"])
    auto = route_delta(EV["routing"]["auto_approve"], {}, "latency_delta")
    raws += fill(change(latency_delta=auto), ["performance_analysis", "latency_delta"])
    slow = {"latency_delta": EV["performance_max_delta"]["latency_delta"]}
    fast = route_delta(EV["routing"]["fast_track"], slow, "complexity_delta")
    raws += fill(change(complexity_delta=fast, **slow), ["performance_analysis", "complexity_delta"])
    return raws


EVOLUTION_CASES = evolution_cases()
DECIDED = ("approval_type", "evolution_score", "risk_score", "reasons", "violations", "conditions")


@pytest.fixture(scope="module")
def evolution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    tmp = tmp_path_factory.mktemp("evolution")
    settings = EvolutionSettings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'evolution.sqlite3'}", sweep_interval=3600.0)
    app = evolution_app(settings)
    with TestClient(app, base_url="http://localhost"):
        yield app


def test_evolution_decides_on_the_exact_numbers(evolution: FastAPI) -> None:
    expected = opa_decisions("acgs/evolution/decision", [with_facts(raw) for _, raw in EVOLUTION_CASES])
    routes = {d["approval_type"] for d in expected}
    assert {"auto_approve", "fast_track", "human_review"} <= routes, routes
    mismatches, refused = [], 0
    for (literal, raw), want, client in zip(EVOLUTION_CASES, expected, callers(evolution), strict=False):
        r = client.post("/evolution/request", content=raw, headers=JSON_HEADERS)
        if r.status_code == 422:
            # Only a number past a double's largest (1e400): the request model takes finite
            # doubles (a clear refusal, never a decision on another number).
            assert float(literal) in (float("inf"), float("-inf")), (raw, r.text)
            assert "finite number" in r.text, r.text
            refused += 1
            continue
        assert r.status_code == 201, (raw, r.text)
        got = r.json()
        if {k: got[k] for k in DECIDED} != {k: want[k] for k in DECIDED}:
            mismatches.append((raw, {k: got[k] for k in DECIDED}, want))
    assert not mismatches, f"{len(mismatches)} of {len(EVOLUTION_CASES)} mismatch OPA: " + "\n".join(map(repr, mismatches))
    assert refused < len(EVOLUTION_CASES) // 10, refused


def test_a_hair_past_the_routing_point_is_not_auto_approved(evolution: FastAPI) -> None:
    """The plainest attack: at the routing point the change is auto-approved; a hair more
    latency, which a double reads as the routing point itself, goes to review (as in OPA)."""
    auto = route_delta(EV["routing"]["auto_approve"], {}, "latency_delta")
    hair = repr(auto) + "0" * 12 + "1"
    assert float(hair) == auto
    template = json.dumps(change(latency_delta="@"))
    client = TestClient(evolution, base_url="http://localhost", client=("127.1.0.3", 50000))
    at = client.post("/evolution/request", content=template.replace('"@"', repr(auto)), headers=JSON_HEADERS)
    assert at.status_code == 201 and at.json()["approval_type"] == "auto_approve", at.text
    body = template.replace('"@"', hair)
    (want,) = opa_decisions("acgs/evolution/decision", [with_facts(body.encode())])
    assert want["approval_type"] == "fast_track", want
    past = client.post("/evolution/request", content=body, headers=JSON_HEADERS)
    assert past.status_code == 201, past.text
    assert past.json()["approval_type"] == "fast_track", past.json()


def test_a_change_request_that_repeats_a_key_is_refused(evolution: FastAPI) -> None:
    body = json.dumps(change()).replace('"latency_delta": 0', '"latency_delta": 0.9, "latency_delta": 0', 1)
    r = TestClient(evolution, base_url="http://localhost", client=("127.1.0.4", 50000)).post("/evolution/request", content=body, headers=JSON_HEADERS)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_request" and "repeats the key" in r.json()["message"]


def test_lines_changed_is_an_exact_integer_or_refused(evolution: FastAPI) -> None:
    """``changes.lines_changed`` is compared with the large-change threshold: an integer, exact
    in Python; other spellings and integers past 64 bits are refused, never rounded."""
    client = TestClient(evolution, base_url="http://localhost", client=("127.1.0.5", 50000))
    threshold = EV["risk_factors"]["large_change"]["lines_threshold"]
    template = json.dumps(CHANGE).replace('"lines_changed": 40', '"lines_changed": @')
    for literal, large in ((str(threshold), False), (str(threshold + 1), True)):
        r = client.post("/evolution/request", content=template.replace("@", literal), headers=JSON_HEADERS)
        assert r.status_code == 201, r.text
        assert ("large_change" in {f["name"] for f in r.json()["factors"]}) is large
    for literal in (f"{threshold}.0", f"{threshold}e0", f"{threshold}.00000000000000000001", str(1 << 64)):
        r = client.post("/evolution/request", content=template.replace("@", literal), headers=JSON_HEADERS)
        assert r.status_code == 422, (literal, r.text)
        assert "lines_changed" in r.text


# -- replies ----------------------------------------------------------------------------------------


def test_a_reply_can_carry_the_evaluators_numbers_as_written() -> None:
    """``exact_result``: a result echoing ``10.000000000000000001`` reaches the reply as that,
    where the Python value would be written ``10.0``."""
    engine = acgs.Engine.load(acgs.default_bundle_path(), cache_size=0)
    body = json.dumps(run_request(0.9, {"cpu_seconds": "@"})).replace('"@"', "10.000000000000000001")
    result_set = engine.evaluate_json(body.encode(), "acgs/sandbox/decision")
    assert b'"cpu_seconds":10.000000000000000001' in result_set
    exact = exact_result(result_set)
    assert exact is not None
    as_python = json_reply({"decision_id": "d", "result": orjson.loads(result_set)[0]["result"]}).body
    assert b'"cpu_seconds":10.0,' in as_python
    for pretty in (False, True):
        reply = json_reply({"decision_id": "d", "result": exact}, pretty=pretty).body
        assert b'"cpu_seconds":10.000000000000000001' in reply
        assert orjson.loads(reply) == orjson.loads(as_python)
    # Not exactly one result: the caller keeps the Python value.
    for not_one in (b"[]", b'[{"result":1},{"result":2}]', b'[{"other":1}]', b'{"result":1}', b""):
        assert exact_result(not_one) is None


def test_the_policy_service_replies_with_the_evaluators_numbers() -> None:
    """Through the policy service's Data API (single, batch, default decision), a result that
    echoes ``10.000000000000000001`` carries it as written, not as the double ``10.0``."""
    from acgs.services.policy import PolicySettings
    from acgs.services.policy import create_app as policy_app

    app = policy_app(PolicySettings(bundle=acgs.default_bundle_path(), default_decision="acgs/sandbox/decision"))
    body = json.dumps(run_request(0.9, {"cpu_seconds": "@"})).replace('"@"', "10.000000000000000001")
    with TestClient(app, base_url="http://localhost") as client:
        for path, content in (
            ("/v1/data/acgs/sandbox/decision", '{"input":' + body + "}"),
            ("/v1/data/acgs/sandbox/decision?pretty=true", '{"input":' + body + "}"),
            ("/v1/batch/data/acgs/sandbox/decision", '{"inputs":[' + body + "]}"),
            ("/", body),
        ):
            r = client.post(path, content=content, headers=JSON_HEADERS)
            assert r.status_code == 200, (path, r.text)
            assert b'"cpu_seconds":10.000000000000000001' in r.content.replace(b" ", b""), (path, r.text)
        # A result with nothing a double could change is written from the Python value.
        plain = body.replace("10.000000000000000001", "10")
        r = client.post("/v1/data/acgs/sandbox/decision", content='{"input":' + plain + "}", headers=JSON_HEADERS)
        assert b'"cpu_seconds":10' in r.content

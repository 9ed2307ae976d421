"""The constitution bundle through the ACGS Wasm host: the documented decisions, the same answers
as OPA itself on thousands of generated requests, and the fast-path contract.

`fast_path_route` below is a second, independent reading of the contract's ops (the Rego one is
policies/acgs/fast_path.rego); the partial evaluator in the Rust core must agree with both.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

import acgs

from .test_bundles import pinned_opa

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "python" / "acgs" / "bundles" / "constitution.tar.gz"
CONSTITUTION = json.loads((ROOT / "policies" / "acgs" / "constitution" / "data.json").read_text())
HASH = CONSTITUTION["constitutional_hash"]
FAST_PATH = CONSTITUTION["fast_path"]
# More generated requests for a local soak: ACGS_CONSTITUTION_SAMPLES=100000 pytest -k depend
SAMPLES = int(os.environ.get("ACGS_CONSTITUTION_SAMPLES", "5000"))
ENTRYPOINTS = ["acgs/main/decision", "acgs/main/allow", "acgs/evolution/decision", "acgs/sandbox/decision",
               "acgs/fast_path/route", "acgs/tools/decision"]

SEED: dict[str, Any] = {
    "type": "constitutional_evaluation",
    "constitutional_hash": HASH,
    "action": "data.read_public",
    "context": {
        "environment": {"sandbox_enabled": True, "audit_enabled": True, "isolation_level": "strict"},
        "agent": {
            "trust_level": 0.9,
            "requested_resources": {"cpu_cores": 2, "memory_gb": 4, "disk_gb": 10, "network_mbps": 10},
            "capabilities": ["data_read", "compute_analysis"],
        },
        "responsible_party": "user@example.com",
        "explanation": "Reading public dataset for analysis",
        "urgency": "normal",
        "session_id": "sess_123456",
    },
}


@pytest.fixture(scope="module", params=["native", "wasm"])
def engine(request: pytest.FixtureRequest) -> acgs.Engine:
    """The shipped bundle with acgs/main/decision evaluated by the native evaluator, and by the
    Wasm alone: every test here (OPA's own answers included) holds for both."""
    native = request.param == "native"
    engine = acgs.Engine.load(BUNDLE, native=native)
    assert (engine.native is not None) == native
    return engine


def test_entrypoints(engine: acgs.Engine) -> None:
    assert engine.entrypoints == ENTRYPOINTS


def test_seed_flow_is_allowed_at_0_96(engine: acgs.Engine) -> None:
    decision = engine.evaluate(SEED, "acgs/main/decision")
    assert decision["allow"] is True
    assert decision["compliance_score"] == 0.96
    assert decision["constitutional_hash"] == HASH
    assert engine.evaluate(SEED, "acgs/main/allow") is True


def test_documented_100_mbps_example_is_denied(engine: acgs.Engine) -> None:
    request = copy.deepcopy(SEED)
    request["context"]["agent"]["requested_resources"]["network_mbps"] = 100
    decision = engine.evaluate(request, "acgs/main/decision")
    assert decision["allow"] is False
    assert "requested resource network_mbps 100 exceeds the limit 10" in decision["reasons"]


@pytest.mark.parametrize("bad", [None, 3, "x", [], {}, {"action": 5}])
def test_malformed_input_is_a_deny_not_an_error(engine: acgs.Engine, bad: Any) -> None:
    assert engine.evaluate(bad, "acgs/main/decision")["allow"] is False
    assert engine.evaluate(bad, "acgs/main/allow") is False
    assert engine.evaluate(bad, "acgs/evolution/decision")["approval_type"] == "rejected"
    assert engine.evaluate(bad, "acgs/sandbox/decision")["allow"] is False
    assert engine.evaluate(bad, "acgs/tools/decision")["outcome"] == "deny"


# ---------------------------------------------------------------------------
# Generated requests

PATTERN_TEXTS = ["then RM -RF / it", "x | SH", "load \u0130NSMOD mod", "see /etc/shadow", "plain words"]
ABSENT = object()


def pick(rng: random.Random, options: list[Any]) -> Any:
    return options[rng.randrange(len(options))]


def put(doc: dict[str, Any], path: list[str], value: Any) -> None:
    """Sets (or with ABSENT removes) doc[path], creating objects on the way when possible."""
    for key in path[:-1]:
        nxt = doc.get(key)
        if not isinstance(nxt, dict):
            if value is ABSENT:
                return
            nxt = doc[key] = {}
        doc = nxt
    if value is ABSENT:
        doc.pop(path[-1], None)
    else:
        doc[path[-1]] = value


def main_request(rng: random.Random) -> Any:
    if rng.random() < 0.02:
        return pick(rng, [None, 1, "data.read_public", [SEED], True])
    req = copy.deepcopy(SEED)
    actions = (
        CONSTITUTION["safe_actions"]
        + CONSTITUTION["dangerous_actions"]
        + CONSTITUTION["explanation_required_actions"]
        + CONSTITUTION["actions"]
        + ["report.other", "", 5, "network.ddos_attack_v2", "tool.run: insmod x"]
        # Other spellings of listed actions: case, white space, invisible and look-alike
        # characters, full-width letters, the Kelvin sign, stray dots.
        + ["DATA.EXFILTRATE", " data.exfiltrate\t", "Data.Read_Public", "data.exfiltrate\u200b",
           "d\u0430ta.read_public", "\uff44ata.exfiltrate", "networ\u212a.raw_socket", "data..read_public",
           ".data.read_public", "data.read_public.", "data.read-public", "\u0130", "x" * 129, "a.b"]
    )
    put(req, ["action"], pick(rng, actions + CONSTITUTION["safe_actions"] * 6 + [ABSENT]))
    limits = CONSTITUTION["resource_limits"]
    # Each field keeps the seed's value most of the time, so many requests stay eligible.
    choices: list[tuple[list[str], list[Any]]] = [
        (["constitutional_hash"], [ABSENT, "0000000000000000", 7]),
        (["type"], [ABSENT, "data_access", "evolution_approval", "bogus", 3]),
        (["context", "environment", "sandbox_enabled"], [False, ABSENT, "true"]),
        (["context", "environment", "audit_enabled"], [False, ABSENT, 1]),
        (["context", "agent", "trust_level"], [0.8, 1, 0.79, 1.2, 0, ABSENT, "0.9", 0.95]),
        (["context", "responsible_party"], ["", ABSENT, 5, "ops@example.com"]),
        (["context", "explanation"], PATTERN_TEXTS + [ABSENT, "", 7, "x" * 60]),
        (["context", "code"], ["print(1)", "open('/dev/mem')", None]),
        (["context", "benefit_assessment"], [0, 0.2, 0.5, 1, 1.5, "x"]),
        (["context", "harm_risk_assessment"], [0, 0.1, 0.3, -1]),
        (["context", "fairness_assessment"], [1, 0.85, 0.95]),
        (["context", "overrides_user_preference"], [True, False, "no"]),
        (["context", "user_consent"], [True, False, "yes"]),
        (["context", "affects_protected_groups"], [True, False, 1]),
        (["trusted"], [{}, {"request_count_1m": 0}, {"request_count_1m": 100}, {"request_count_1m": 101},
                       {"request_count_1m": -1}, {"request_count_1m": "5"}, 7,
                       {"request_count_1m": 3, "agent": {"trust_level": 0.5}},
                       {"request_count_1m": 3, "agent": {"trust_level": 0.95}},
                       {"agent": {"trust_level": 0.8}}, {"agent": {"trust_level": 2}},
                       {"agent": {"trust_level": "1"}}, {"agent": 7}, {"agent": {}},
                       {"principal": {"id": "a"}, "agent": {"trust_level": 0.9, "tier": "x"}}]),
        (["context", "session_id"], ["sess_other", ABSENT, 42]),
        (["context", "current_usage_count"], [0, 10**6]),
        (["context"], ["garbage", []]),
        (["context", "agent"], [None, {"trust_level": 0.9}]),
    ]
    optional = {"code", "benefit_assessment", "harm_risk_assessment", "fairness_assessment",
                "overrides_user_preference", "user_consent", "affects_protected_groups", "trusted",
                "current_usage_count"}
    for path, values in choices:
        threshold = 0.08 if path[-1] in optional or path == ["context"] else 0.12
        if path in (["context"], ["context", "agent"]):
            threshold = 0.02
        if rng.random() < threshold:
            put(req, path, pick(rng, values))
    if rng.random() < 0.3:
        resources: Any = {}
        for key, limit in limits.items():
            if rng.random() < 0.6:
                resources[key] = pick(rng, [0, limit, limit / 2, limit + 1, -1, str(limit), 0.5])
        if rng.random() < 0.1:
            resources[pick(rng, ["network_bandwidth_mbps", "gpu_count"])] = 1
        if rng.random() < 0.05:
            resources = pick(rng, ["none", [1], ABSENT])
        put(req, ["context", "agent", "requested_resources"], resources)
    return req


def evolution_request(rng: random.Random) -> Any:
    req: dict[str, Any] = {
        "agent_id": pick(rng, ["agent-7", "", 3]),
        "requested_by": "alice@example.com",
        "type": pick(rng, list(CONSTITUTION["evolution"]["base_risk"]) + ["prompt_tuning", 4]),
        "constitutional_hash": pick(rng, [HASH, HASH, HASH, "abc"]),
        "changes": {"lines_changed": pick(rng, [10, 501, -1, "9"])},
        "rollback_plan": pick(rng, [
            {"procedure": "redeploy", "tested": True, "automated": True},
            {"steps": ["a"], "tested": False},
            {"procedure": ""},
            {},
        ]),
        "performance_analysis": {"memory_delta": pick(rng, [0, 0.1, 0.3, -0.2, None])},
        "mitigations": {m: True for m in CONSTITUTION["evolution"]["mitigations"] if rng.random() < 0.2},
    }
    for flag in ["external_dependencies", "privilege_escalation", "network_changes", "experimental_features",
                 "decision_logic_changes", "audit_disabled"]:
        if rng.random() < 0.15:
            req["changes"][flag] = pick(rng, [True, False, ["dep"], "yes"])
    if rng.random() < 0.3:
        req["justification"] = pick(rng, ["needed", ""])
    return req


def sandbox_request(rng: random.Random) -> Any:
    req: dict[str, Any] = {
        "agent_id": "agent-7",
        "agent": {"trust_level": pick(rng, [0.95, 0.8, 0.6, 0.1, 1.5, "high"])},
        "language": pick(rng, ["python", "bash", "cobol"]),
        "runtime": pick(rng, ["auto", "firecracker", "gvisor", "bwrap", "docker", "chroot"]),
        "limits": {k: pick(rng, [1, 60, 100, 600, 4096, 20000, 2.5, "1"]) for k in
                   ["cpu_seconds", "memory_mb", "timeout_s", "pids"] if rng.random() < 0.5},
        "constitutional_hash": HASH,
    }
    if rng.random() < 0.3:
        req["agent"]["class"] = pick(rng, ["standard", "isolated", "untrusted_code", "root"])
    if rng.random() < 0.3:
        req["limits"]["network"] = pick(rng, [True, False])
    return req


def tools_request(rng: random.Random) -> Any:
    """A tool call; tests/test_tools_policy.py generates far more varied ones."""
    tool, arguments = pick(rng, [
        ("read_file", {"path": pick(rng, ["/workspace/a.txt", "/etc/passwd", "/workspace/.env", 3])}),
        ("http_get", {"url": pick(rng, ["https://pypi.org/simple", "https://evil.io/", "https://a@pypi.org/"])}),
        ("payments.transfer", {"amount": pick(rng, [5, 100, 100.5, 20000, "9"]), "currency": "EUR",
                               "to_account": "DE89370400440532013000"}),
        ("db.drop_table", {"table": "users"}),
        (pick(rng, ["mcp:github/create_issue", "Read_File", "read file", 7]), {}),
    ])
    req: dict[str, Any] = {"tool": tool, "arguments": arguments, "agent_id": "agent-7",
                           "constitutional_hash": pick(rng, [HASH, HASH, "abc"])}
    if rng.random() < 0.5:
        req["agent"] = {"trust_level": pick(rng, [0.5, 0.95, 2])}
    if rng.random() < 0.3:
        req["session"] = {"id": "s-1", "history": [
            {"tool": "read_secret", "outcome": pick(rng, ["allow", "deny"]), "labels": ["reads_secrets"]}]}
    return req


GENERATORS = {
    "acgs/main/decision": main_request,
    "acgs/main/allow": main_request,
    "acgs/evolution/decision": evolution_request,
    "acgs/sandbox/decision": sandbox_request,
    "acgs/fast_path/route": main_request,
    "acgs/tools/decision": tools_request,
}


def opa_eval(query_rule: str, inputs: list[Any]) -> list[Any]:
    """Evaluates data.<query_rule> for each input with OPA itself, in one process."""
    opa = pinned_opa()
    proc = subprocess.run(
        [str(opa), "eval", "--format", "json", "--stdin-input", "--ignore", "*_test.rego",
         "-d", "acgs:" + str(ROOT / "policies" / "acgs"),
         f"[d | some x in input; d := data.{query_rule} with input as x]"],
        input=json.dumps(inputs), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result: list[Any] = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    return result


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_wasm_decisions_equal_opa(engine: acgs.Engine, entrypoint: str) -> None:
    rng = random.Random(f"acgs-{entrypoint}")
    inputs = [GENERATORS[entrypoint](rng) for _ in range(600)]
    expected = opa_eval(entrypoint.replace("/", "."), inputs)
    for request, want in zip(inputs, expected, strict=True):
        got = engine.evaluate(request, entrypoint)
        assert got == want, f"Wasm and OPA disagree on {json.dumps(request)}"


# ---------------------------------------------------------------------------
# The fast-path contract


def lookup(doc: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return ABSENT
        doc = doc[key]
    return doc


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), but true is not 1 as it is in Python."""
    if is_number(a) or is_number(b):
        return is_number(a) and is_number(b) and bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and bool(a == b)


ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def leaf_holds(cond: dict[str, Any], doc: Any) -> bool:
    op = cond["op"]
    v = lookup(doc, cond["path"])
    if op == "absent":
        return v is ABSENT
    if v is ABSENT:
        return False
    if op == "eq":
        return json_equal(v, cond["value"])
    if op == "gte":
        return is_number(v) and v >= cond["value"]
    if op == "lte":
        return is_number(v) and v <= cond["value"]
    if op == "nonempty_string":
        return isinstance(v, str) and v != ""
    if op == "in":
        return any(json_equal(v, x) for x in cond["value"])
    if op == "is_number":
        return is_number(v)
    if op == "is_bool":
        return isinstance(v, bool)
    if op == "is_string":
        return isinstance(v, str)
    if op == "keys_subset":
        return isinstance(v, dict) and all(k in cond["value"] for k in v)
    if op == "not_contains_any":
        return isinstance(v, str) and not any(p in v.translate(ASCII_LOWER) for p in cond["value"])
    raise AssertionError(f"undocumented op {op}")


def holds(cond: dict[str, Any], doc: Any) -> bool:
    if cond["op"] == "any_of":
        return any(all(leaf_holds(leaf, doc) for leaf in branch) for branch in cond["value"])
    return leaf_holds(cond, doc)


def fast_path_route(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "full"
    action = doc.get("action")
    if isinstance(action, str) and action in FAST_PATH["deny_actions"]:
        return "deny"
    if isinstance(action, str) and action in FAST_PATH["allow_actions"]:
        if all(holds(cond, doc) for cond in FAST_PATH["allow_conditions"]):
            return "allow"
    return "full"


def test_fast_path_routes_agree_with_the_rego_reference() -> None:
    rng = random.Random("acgs-routes")
    inputs = [main_request(rng) for _ in range(1500)]
    assert opa_eval("acgs.fast_path.route", inputs) == [fast_path_route(x) for x in inputs]


def test_fast_path_decisions_depend_on_the_action_alone(engine: acgs.Engine) -> None:
    rng = random.Random("acgs-fast-path")
    fixed = {}
    for action in FAST_PATH["deny_actions"]:
        fixed[("deny", action)] = engine.evaluate({"action": action}, "acgs/main/decision")
    for action in FAST_PATH["allow_actions"]:
        fixed[("allow", action)] = engine.evaluate({**SEED, "action": action}, "acgs/main/decision")
        assert fixed[("allow", action)]["allow"] is True
    routes = {"allow": 0, "deny": 0, "full": 0}
    for _ in range(SAMPLES):
        request = main_request(rng)
        route = fast_path_route(request)
        routes[route] += 1
        if route != "full":
            got = engine.evaluate(request, "acgs/main/decision")
            assert got == fixed[(route, request["action"])], f"fast path would differ on {json.dumps(request)}"
    # The generator must exercise all three routes, or this test proves nothing.
    assert min(routes.values()) > SAMPLES // 25, routes


def test_every_op_in_the_contract_is_documented() -> None:
    ops = {c["op"] for c in FAST_PATH["allow_conditions"]}
    ops |= {leaf["op"] for c in FAST_PATH["allow_conditions"] if c["op"] == "any_of"
            for branch in c["value"] for leaf in branch}
    assert ops <= set(FAST_PATH["ops"])
    assert fast_path_route(SEED) == "allow"

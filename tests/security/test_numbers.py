"""Numbers decide nothing by their spelling: a differential test at and around every limit and
threshold of the constitution.

Each input is the seed request with one number set to a value at, a hair above or a hair below
a bound of ``policies/acgs/constitution/data.json`` (resource limits, thresholds, the unit
interval of trust and assessments, the rate limit), spelt many ways (``10``, ``10.0``, ``1e1``,
``1E+1``, ``0.1e2``, ``10.000000000000000001``, ``9.999999999999999999``, ``-0``, huge exponents,
fifty-odd digits). The same bytes go to the fast path, the native evaluator, the Wasm, OPA
itself (``opa eval`` on the bundle's own sources and data) and every route of the policy
service (flat decision, Data API POST, batch, GET with ``input``, OPA's default decision), and
all must give the same decision. Before the fix the fast path compared doubles and the Data
API, batch, GET and default routes rounded numbers to doubles: a value a hair past a limit was
allowed there and denied by full evaluation.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import urllib.parse
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import acgs
from acgs.services.policy import PolicySettings, create_app
from tests.test_bundles import pinned_opa

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "python" / "acgs" / "bundles" / "constitution.tar.gz"
CLOCK = ROOT / "tests" / "fixtures" / "clock.tar.gz"
DECISION = "acgs/main/decision"
#: Keys the pipeline adds to a decision; the policy's own keys are compared.
META = {"decision_id", "bundle_digest", "cache_hit", "fast_path", "evaluation_time_ms", "provenance", "warning"}
PLACEHOLDER = '"@@number@@"'


def _constitution() -> dict[str, Any]:
    with tarfile.open(BUNDLE, "r:gz") as tar:
        member = tar.extractfile("/data.json") or tar.extractfile("data.json")
        assert member is not None
        data: dict[str, Any] = json.load(member)
    constitution: dict[str, Any] = data["acgs"]["constitution"]
    return constitution


CONSTITUTION = _constitution()
SEED: dict[str, Any] = {
    "type": "constitutional_evaluation",
    "constitutional_hash": CONSTITUTION["constitutional_hash"],
    "action": "data.read_public",
    "context": {
        "environment": {"sandbox_enabled": True, "audit_enabled": True},
        "agent": {"trust_level": 0.9},
        "responsible_party": "user@example.com",
        "explanation": "Reading public dataset for analysis",
    },
}


def bounds() -> Iterator[tuple[list[str], str, dict[str, Any]]]:
    """(path in the request, bound as JSON text, extra fields the bound needs to matter)."""
    for name, limit in CONSTITUTION["resource_limits"].items():
        yield ["context", "agent", "requested_resources", name], json.dumps(limit), {}
    t = CONSTITUTION["thresholds"]
    for bound in (t["trust"], 0, 1):
        yield ["context", "agent", "trust_level"], json.dumps(bound), {}
    for bound in (t["max_harm_risk"], 0, 1):
        yield ["context", "harm_risk_assessment"], json.dumps(bound), {}
    for bound in (t["min_benefit"], 0, 1):
        yield ["context", "benefit_assessment"], json.dumps(bound), {}
    for bound in (t["min_fairness_protected_groups"], 0, 1):
        yield ["context", "fairness_assessment"], json.dumps(bound), {"affects_protected_groups": True}
    rate = CONSTITUTION["rate_limits"]["per_minute"]["decision"]
    for bound in (rate, 0):
        yield ["trusted", "request_count_1m"], json.dumps(bound), {}


def _below(text: str, places: int) -> str:
    """``text`` (a non-negative decimal) minus one unit in the ``places``-th decimal place."""
    whole, _, frac = text.partition(".")
    digits = list(whole + frac.ljust(places, "0"))
    i = len(digits) - 1
    while digits[i] == "0":
        digits[i] = "9"
        i -= 1
    digits[i] = str(int(digits[i]) - 1)
    out = "".join(digits)
    head = out[: len(whole)].lstrip("0") or "0"
    return f"{head}.{out[len(whole):]}"


def spellings(text: str) -> list[str]:
    """The bound spelt many ways, and numbers a hair either side of it."""
    whole, _, frac = text.partition(".")
    digits = (whole + frac).lstrip("0") or "0"
    decimal = text if frac else f"{whole}.0"
    out = [
        text,
        decimal + "0",
        f"{digits}e-{len(frac)}",
        f"{digits}E-{len(frac)}",
        f"0.{whole}{frac}e+{len(whole)}",
        f"0.{whole}{frac}E{len(whole)}",
        f"{digits}{'0' * 30}e-{len(frac) + 30}" if digits != "0" else "0e-30",
        decimal + "0000000000000000001",  # 10.000000000000000001: a double says 10
        decimal + "0" * 48 + "1",
        f"{digits}{'0' * 399}1e-{len(frac) + 400}" if digits != "0" else "1e-400",
    ]
    if digits == "0":
        out += ["-0", "-0.0", "0E+400", "-0.00000000000000000001", "-1e-400", "1e400"]
    else:
        out += [_below(text, 20), _below(text, 50), f"{digits}e{400 - len(frac)}"]
    return out


def cases() -> list[bytes]:
    raws: list[bytes] = []
    for path, bound, extra in bounds():
        doc = json.loads(json.dumps(SEED))
        doc["context"].update(extra)
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = "@@number@@"
        template = json.dumps(doc)
        assert template.count(PLACEHOLDER) == 1
        for literal in spellings(bound):
            raws.append(template.replace(PLACEHOLDER, literal).encode())
    return raws


CASES = cases()
#: Inputs without a ``trusted`` document: the service fills that one in itself.
CLIENT_CASES = [raw for raw in CASES if b'"trusted"' not in raw]


def policy_keys(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decision.items() if k not in META}


@pytest.fixture(scope="module")
def wasm_decisions() -> list[dict[str, Any]]:
    """The reference inside ACGS: the bundle's Wasm alone."""
    wasm = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False, native=False)
    return [json.loads(wasm.evaluate_json(raw, DECISION))[0]["result"] for raw in CASES]


def test_the_cases_reach_both_sides_of_every_bound(wasm_decisions: list[dict[str, Any]]) -> None:
    allowed = sum(d["allow"] is True for d in wasm_decisions)
    assert len(CASES) > 250 and 50 < allowed < len(CASES) - 50, (len(CASES), allowed)
    # The plainest attack: a hair past the cpu limit, which a double rounds back to the limit.
    hair = next(raw for raw in CASES if b'"cpu_cores": 2.00000000000000000001' in raw)
    assert wasm_decisions[CASES.index(hair)]["allow"] is False


def test_fast_path_native_and_wasm_agree(wasm_decisions: list[dict[str, Any]]) -> None:
    fast = acgs.Engine.load(BUNDLE, cache_size=0, native=False)
    native = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False)
    mismatches = []
    for raw, want in zip(CASES, wasm_decisions, strict=True):
        for name, engine in (("fast path", fast), ("native", native)):
            got = json.loads(engine.evaluate_json(raw, DECISION))[0]["result"]
            if got != want:
                mismatches.append((name, raw, got, want))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"
    # Both stood in for the Wasm on many of these inputs (the rest they left to it).
    assert fast.cache_stats()["fast_path"] > 50, fast.cache_stats()
    assert native.cache_stats()["native"] > len(CASES) // 2, native.cache_stats()


def test_opa_agrees(wasm_decisions: list[dict[str, Any]]) -> None:
    """OPA itself on the constitution's sources (tests/test_bundles.py proves the bundle is built
    from them), reading each input's numbers as spelt: the inputs go to ``opa eval`` as raw
    text, and OPA keeps a JSON number's literal (json.Number)."""
    opa = pinned_opa()
    proc = subprocess.run(
        [str(opa), "eval", "--format", "json", "--stdin-input", "--ignore", "*_test.rego",
         "-d", "acgs:" + str(ROOT / "policies" / "acgs"),
         f"[d | some x in input; d := data.{DECISION.replace('/', '.')} with input as x]"],
        input=b"[" + b",".join(CASES) + b"]", capture_output=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    expected = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    assert len(expected) == len(CASES)
    mismatches = [(raw, got, want) for raw, got, want in zip(CASES, wasm_decisions, expected, strict=True) if got != want]
    assert not mismatches, f"{len(mismatches)} mismatches with OPA, first: {mismatches[0]}"


# -- the policy service's routes --------------------------------------------------------------------


def make_app() -> FastAPI:
    return create_app(PolicySettings(bundle=BUNDLE))


async def _clients(app: FastAPI) -> AsyncGenerator[httpx.AsyncClient, None]:
    """Clients from distinct loopback addresses, a few dozen requests each, so that no rate
    counter the service keeps per client reaches the constitution's limit during the test."""
    n = 0
    while True:
        n += 1
        transport = httpx.ASGITransport(app=app, client=(f"127.0.{n // 250}.{n % 250 + 1}", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


JSON_HEADERS = {"content-type": "application/json"}


async def _post(client: httpx.AsyncClient, url: str, body: bytes) -> Any:
    response = await client.post(url, content=body, headers=JSON_HEADERS)
    assert response.status_code == 200, (url, body, response.text)
    return response.json()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["flat", "data", "get", "default", "batch"])
async def test_every_route_decides_on_the_exact_numbers(route: str, wasm_decisions: list[dict[str, Any]]) -> None:
    expected = [want for raw, want in zip(CASES, wasm_decisions, strict=True) if b'"trusted"' not in raw]
    app = make_app()
    got: list[dict[str, Any]] = []
    clients = _clients(app)
    chunk = 40
    for start in range(0, len(CLIENT_CASES), chunk):
        client = await anext(clients)
        part = CLIENT_CASES[start : start + chunk]
        if route == "batch":
            body = b'{"inputs": [' + b",".join(part) + b"]}"
            out = await _post(client, f"/v1/batch/data/{DECISION}", body)
            got += [entry["result"] for entry in out["results"]]
            continue
        for raw in part:
            if route == "flat":
                got.append(await _post(client, f"/v1/data/{DECISION}", raw))
            elif route == "data":
                got.append((await _post(client, f"/v1/data/{DECISION}", b'{"input": ' + raw + b"}"))["result"])
            elif route == "default":
                got.append(await _post(client, "/", raw))
            else:
                query = urllib.parse.urlencode({"input": raw.decode()})
                response = await client.get(f"/v1/data/{DECISION}?{query}")
                assert response.status_code == 200, response.text
                got.append(response.json()["result"])
    await clients.aclose()
    mismatches = [
        (raw, policy_keys(g), w)
        for raw, g, w in zip(CLIENT_CASES, got, expected, strict=True)
        if policy_keys(g) != policy_keys(w)
    ]
    assert not mismatches, f"{route}: {len(mismatches)} mismatches, first: {mismatches[0]}"


@pytest.mark.anyio
async def test_a_body_that_repeats_a_key_is_refused() -> None:
    """Parsers disagree on which of two equal keys wins, so such a body is never evaluated."""
    app = make_app()
    raw = json.dumps(SEED).encode()
    twice = raw[:-1] + b', "context": {}}'
    clients = _clients(app)
    client = await anext(clients)
    for url, body in (
        (f"/v1/data/{DECISION}", b'{"input": ' + twice + b"}"),
        (f"/v1/batch/data/{DECISION}", b'{"inputs": [' + twice + b"]}"),
    ):
        response = await client.post(url, content=body, headers=JSON_HEADERS)
        assert response.status_code == 400, (url, response.text)
        assert "repeats the key" in response.text
    await clients.aclose()


# -- cache keys -----------------------------------------------------------------------------------


def test_numbers_past_a_double_never_share_a_cache_key() -> None:
    """L1 and L2 keys hash each number's literal text: inputs that differ only past a double's
    precision get different keys (and so do ``2`` and ``2.0``: OPA's sprintf and the Wasm's
    write them differently into reasons, so sharing would be wrong for some policy)."""
    engine = acgs.Engine.load(BUNDLE)
    template = json.dumps(SEED).replace('"trust_level": 0.9', '"trust_level": 0.9, "n": @@')
    literals = ["2", "2.0", "2e0", "2.0000000000000000001", "2.00000000000000000000000000001", "1.99999999999999999999"]
    keys = {engine.cache_key(template.replace("@@", lit).encode(), DECISION) for lit in literals}
    assert len(keys) == len(literals)
    # The decision for a value a hair past the limit is never served from the entry of the
    # value at the limit, in L1 (the same engine, cache on) or anywhere else.
    over = json.dumps(SEED).replace('"trust_level": 0.9', '"trust_level": 0.9, "requested_resources": {"cpu_cores": @@}')
    at = json.loads(engine.decide_json(over.replace("@@", "2").encode()))
    past = json.loads(engine.decide_json(over.replace("@@", "2.0000000000000000001").encode()))
    assert (at["allow"], past["allow"], past["cache_hit"]) == (True, False, False)
    again = json.loads(engine.decide_json(over.replace("@@", "2.0000000000000000001").encode()))
    assert (again["allow"], again["cache_hit"]) == (False, True)


# -- non-deterministic builtins ---------------------------------------------------------------------


def test_the_core_list_holds_every_builtin_opa_marks_nondeterministic() -> None:
    opa = pinned_opa()
    proc = subprocess.run([str(opa), "capabilities", "--current"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    marked = {b["name"] for b in json.loads(proc.stdout)["builtins"] if b.get("nondeterministic")}
    assert marked, "OPA's capabilities mark no builtin nondeterministic"
    assert marked <= acgs._acgs.NONDETERMINISTIC_BUILTINS, marked - acgs._acgs.NONDETERMINISTIC_BUILTINS
    # The clock readers OPA does not mark are in it too.
    assert {"crypto.x509.parse_and_verify_certificates", "io.jwt.decode_verify", "time.now_ns"} <= (
        acgs._acgs.NONDETERMINISTIC_BUILTINS
    )


def test_a_bundle_that_reads_the_clock_is_never_served_from_l1() -> None:
    """tests/fixtures/clock is compiled by OPA and calls time.now_ns."""
    engine = acgs.Engine.load(CLOCK)
    assert engine.nondeterministic_builtins == ["time.now_ns"]
    assert engine.cacheable is False
    first = engine.evaluate({}, "clock/now")
    second = engine.evaluate({}, "clock/now")
    assert second != first
    assert engine.cache_stats()["hits"] == 0 and engine.cache_stats()["size"] == 0


#: Policies whose decision calls a builtin of the list: the clock, and a certificate check that
#: reads the clock (which OPA does not mark, and which the service's old list missed).
CLOCK_POLICIES = {
    "time.now_ns": 'decision := {"allow": true, "at": time.now_ns()}',
    "crypto.x509.parse_and_verify_certificates": (
        'decision := {"allow": false, "verified": crypto.x509.parse_and_verify_certificates(input.chain)}'
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("builtin", sorted(CLOCK_POLICIES))
async def test_a_bundle_that_reads_the_clock_is_never_served_from_l1_or_l2(builtin: str, tmp_path: Path) -> None:
    """A bundle compiled by OPA whose ``acgs/main/decision`` calls the builtin, served by the
    policy service with a real Redis as L2: no decision is cached in either level."""
    from tests.services.conftest import RedisServer

    opa = pinned_opa()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "policy.rego").write_text(f"package acgs.main\n\n{CLOCK_POLICIES[builtin]}\n")
    bundle = tmp_path / "bundle.tar.gz"
    proc = subprocess.run(
        [str(opa), "build", "-t", "wasm", "-e", "acgs/main/decision", "-o", str(bundle), str(tmp_path / "src")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    engine = acgs.Engine.load(bundle)
    assert engine.nondeterministic_builtins == [builtin] and engine.cacheable is False

    redis = RedisServer(tmp_path)
    redis.start()
    try:
        app = create_app(PolicySettings(bundle=bundle, redis_url=redis.url))
        clients = _clients(app)
        client = await anext(clients)
        body = b'{"input": {"chain": "not a certificate"}}'
        answers = [await _post(client, f"/v1/data/{DECISION}?metrics=true", body) for _ in range(3)]
        flat = [await _post(client, f"/v1/data/{DECISION}", b'{"action": "x", "chain": "x"}') for _ in range(2)]
        await clients.aclose()
        pipeline = app.state.policy.pipeline
        assert pipeline.l2 is not None
        await pipeline.l2.flush_writes()
        assert all(a["metrics"]["counter_server_query_cache_hit"] == 0 for a in answers), answers
        assert all(f["cache_hit"] is False for f in flat), flat
        assert pipeline.cache_stats()["hits"] == 0 and pipeline.cache_stats()["size"] == 0
        assert (pipeline.l2_counters.hits, pipeline.l2_counters.misses) == (0, 0)
        import redis as redis_client

        with redis_client.Redis.from_url(redis.url) as r:
            # Only L2 entries count: the service may keep other state (rate counters) there.
            assert list(r.scan_iter(match=b"acgs:l2:*")) == []
        if builtin == "time.now_ns":
            assert len({a["result"]["at"] for a in answers}) == len(answers)
    finally:
        redis.stop()

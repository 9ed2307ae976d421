"""``acgs.Engine.load(..., evaluator=...)``: the bundle's plan evaluated natively gives the result
sets and errors the Wasm gives, on the shipped constitution, the example and the bench bundles; a
bundle without a usable plan is refused under ``"plan"`` and runs on the Wasm under ``"auto"``.

Result sets are compared as values with every number's spelling kept (``3.50`` is not ``3.5``):
OPA's Wasm lists object keys and set members (arrays in JSON) in its hash-table order, the plan
in sorted order, so only that order may differ. The Rust test (crates/acgs-core/tests/
plan_evaluator.rs) also compares the bytes and the Rego value text.
"""

from __future__ import annotations

import io
import itertools
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

import acgs
from acgs.errors import AcgsError, BundleError, EvaluationTimeout, InvalidInputError, ResourceLimitExceeded
from acgs.services.policy.settings import PolicySettings

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "python" / "acgs" / "bundles"
CONSTITUTION = BUNDLES / "constitution.tar.gz"
EXAMPLE = BUNDLES / "example.tar.gz"
STRESS = REPO / "tests" / "fixtures" / "stress.tar.gz"
CORPUS = REPO / "crates" / "acgs-plan" / "tests" / "corpus"

#: Only the full evaluation under test: no cache, fast path or hand-written evaluator.
BARE: dict[str, Any] = {"cache_size": 0, "fast_path": False, "native": False}


def corpus(entrypoint: str, limit: int = 150) -> list[bytes]:
    path = CORPUS / (entrypoint.replace("/", "_") + ".jsonl")
    lines = [line.encode() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[:limit]


def _canonical(node: Any) -> Any:
    if isinstance(node, dict):
        return ("object", tuple(sorted((k, _canonical(v)) for k, v in node.items())))
    if isinstance(node, list):
        # Sets arrive as arrays, in the Wasm's hash order.
        return ("array", tuple(sorted((_canonical(v) for v in node), key=repr)))
    return node


def outcome(engine: acgs.Engine, raw: bytes | None, entrypoint: str) -> tuple[str, Any]:
    """The result set as a value (numbers as spelt), or the error's code and message."""
    try:
        text = engine.evaluate_json(raw, entrypoint)
    except AcgsError as exc:
        return exc.code, str(exc)
    spelt = json.loads(text, parse_float=lambda s: ("number", s), parse_int=lambda s: ("number", s))
    return "ok", _canonical(spelt)


ODD = [b"null", b"1.50", b"1e400", b'"x"', b"[]", b"{}", b"{not json", b'{"action": set()}', b'{"a": {1, 2.0}}']


@pytest.mark.parametrize(
    ("bundle", "pairs"),
    [
        (
            CONSTITUTION,
            [
                ("acgs/main/decision", "acgs/main/decision"),
                ("acgs/main/allow", "acgs/main/decision"),
                ("acgs/evolution/decision", "acgs/evolution/decision"),
                ("acgs/sandbox/decision", "acgs/sandbox/decision"),
                ("acgs/fast_path/route", "acgs/fast_path/route"),
                ("acgs/tools/decision", "acgs/tools/decision"),
            ],
        ),
        (EXAMPLE, [("acgs/example/allow", "acgs/main/decision"), ("acgs/example/decision", "acgs/main/decision")]),
    ],
    ids=["constitution", "example"],
)
def test_plan_gives_the_wasm_bytes(bundle: Path, pairs: list[tuple[str, str]]) -> None:
    wasm = acgs.Engine.load(bundle, evaluator="wasm", **BARE)
    plan = acgs.Engine.load(bundle, evaluator="plan", **BARE)
    assert (wasm.evaluator, plan.evaluator) == ("wasm", "plan")
    info = plan.plan
    assert info is not None and (info["enabled"], info["error"]) == (True, None)
    # The rewrites finished, well inside their budget.
    assert info["rewrites"]["complete"] is True and 0 < info["rewrites"]["steps"] < 10_000_000
    assert wasm.plan is None
    differ = []
    for entrypoint, corpus_of in pairs:
        for raw in [*corpus(corpus_of), *ODD, None]:
            want, got = outcome(wasm, raw, entrypoint), outcome(plan, raw, entrypoint)
            if want != got:
                differ.append((entrypoint, raw, want, got))
    assert not differ, differ[:5]


def test_decisions_through_the_whole_pipeline_agree() -> None:
    """decide() with the cache, fast path and hand-written evaluator in front of the plan."""
    wasm = acgs.Engine.load(CONSTITUTION, evaluator="wasm")
    plan = acgs.Engine.load(CONSTITUTION, evaluator="plan")
    volatile = {"decision_id", "timestamp", "evaluated_at", "evaluation_time_ms", "cache_hit", "duration_us", "elapsed_us"}
    for raw in corpus("acgs/main/decision", 60):
        request = json.loads(raw)
        try:
            want: Any = {k: v for k, v in wasm.decide(request).items() if k not in volatile}
        except AcgsError as exc:
            want = exc.code
        try:
            got: Any = {k: v for k, v in plan.decide(request).items() if k not in volatile}
        except AcgsError as exc:
            got = exc.code
        assert want == got, raw


def _bench_bundles() -> list[Path]:
    found = []
    for path in sorted((REPO / "bench" / "bundles").glob("*.tar.gz")):
        with tarfile.open(path, "r:gz") as t:
            if any(m.name.lstrip("/") == "plan.json" for m in t.getmembers()):
                found.append(path)
    return found


def _inputs_from_data(data: Any) -> list[bytes]:
    """Inputs made of the data's own keys and values (users, roles, routes), so policies reach
    their defined branches, plus the bench inputs and scalars."""
    names: list[str] = []

    def walk(node: Any, depth: int) -> None:
        if depth > 4 or len(names) > 60:
            return
        if isinstance(node, dict):
            for k, v in itertools.islice(node.items(), 8):
                names.append(str(k))
                walk(v, depth + 1)
        elif isinstance(node, list):
            for v in node[:8]:
                walk(v, depth + 1)
        elif isinstance(node, str):
            names.append(node)

    walk(data, 0)
    out = [json.dumps(x).encode() for x in (None, {}, 1, "x")]
    for p in sorted((REPO / "bench" / "inputs").glob("*.json")):
        out.append(p.read_bytes())
    for a, b in itertools.islice(itertools.product(names[:12], names[:12]), 120):
        doc = {
            "user": a,
            "subject": a,
            "action": b,
            "method": "GET",
            "path": f"/{a}/{b}",
            "resource": {"project": b, "type": a, "id": b},
            "token": {"claims": {"sub": a, "scope": b, "roles": [a, b], "exp": 4102444800}},
        }
        out.append(json.dumps(doc).encode())
    return out


@pytest.mark.parametrize("bundle", _bench_bundles(), ids=lambda p: p.name)
def test_bench_bundles_agree(bundle: Path) -> None:
    wasm = acgs.Engine.load(bundle, evaluator="wasm", **BARE)
    plan = acgs.Engine.load(bundle, evaluator="plan", **BARE)
    differ = []
    for entrypoint in wasm.entrypoints:
        for raw in _inputs_from_data(wasm.data):
            want, got = outcome(wasm, raw, entrypoint), outcome(plan, raw, entrypoint)
            if want != got:
                differ.append((entrypoint, raw[:200], want, got))
    assert not differ, differ[:5]


def _without_plan(source: Path, dest: Path, plan_json: bytes | None = None) -> Path:
    raw = io.BytesIO()
    with tarfile.open(source, "r:gz") as src, tarfile.open(fileobj=raw, mode="w:gz") as out:
        for m in src.getmembers():
            f = src.extractfile(m) if m.isfile() and m.name.lstrip("/") != "plan.json" else None
            if f is not None:
                out.addfile(m, f)
        if plan_json is not None:
            info = tarfile.TarInfo("/plan.json")
            info.size = len(plan_json)
            out.addfile(info, io.BytesIO(plan_json))
    dest.write_bytes(raw.getvalue())
    return dest


GOOD = {"action": "data.read_public", "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": 0.9}}}


@pytest.mark.parametrize(
    ("plan_json", "why"),
    [(None, "no /plan.json"), (b"{not json", "not a valid plan"), (b'{"static":{},"plans":{"plans":[]}}', "lacks entrypoint")],
    ids=["absent", "malformed", "entrypoint-missing"],
)
def test_unusable_plan_refused_under_plan_and_wasm_under_auto(tmp_path: Path, plan_json: bytes | None, why: str) -> None:
    bundle = _without_plan(EXAMPLE, tmp_path / "bundle.tar.gz", plan_json)
    with pytest.raises(BundleError, match="plan evaluator cannot run this bundle") as info:
        acgs.Engine.load(bundle, evaluator="plan")
    assert why in str(info.value)
    auto = acgs.Engine.load(bundle, evaluator="auto")
    assert auto.evaluator == "wasm"
    assert auto.plan is not None and auto.plan["enabled"] is False and why in auto.plan["error"]
    assert auto.evaluate(GOOD, "acgs/example/allow") is True
    # The default is auto: the same bundle loads on its Wasm and says why; the Wasm asked for
    # never reads the plan.
    default = acgs.Engine.load(bundle)
    assert default.evaluator == "wasm" and default.plan == auto.plan
    wasm = acgs.Engine.load(bundle, evaluator="wasm")
    assert (wasm.evaluator, wasm.plan) == ("wasm", None)


def test_auto_uses_a_usable_plan() -> None:
    auto = acgs.Engine.load(EXAMPLE, evaluator="auto")
    assert auto.evaluator == "plan"
    assert acgs.Engine.load(EXAMPLE).evaluator == "plan"  # the default
    assert auto.plan is not None and (auto.plan["enabled"], auto.plan["error"]) == (True, None)
    assert auto.evaluate(GOOD, "acgs/example/allow") is True


@pytest.mark.parametrize("name", ["", "PLAN", "native", "wasm ", "opa"])
def test_unknown_evaluator_is_invalid_input(name: str) -> None:
    with pytest.raises(InvalidInputError, match="evaluator must be"):
        acgs.Engine.load(EXAMPLE, evaluator=name)  # type: ignore[arg-type]


def test_runaway_policies_stop_with_the_wasm_errors() -> None:
    items = ",".join(str(i) for i in range(2000))
    spin = f'{{"items":[{items}],"stop":-1}}'.encode()
    for evaluator in ("wasm", "plan"):
        engine = acgs.Engine.load(STRESS, evaluator=evaluator, timeout_ms=50, memory_limit=64 << 20, **BARE)
        with pytest.raises(EvaluationTimeout):
            engine.evaluate_json(spin, "stress/spin")
        assert engine.evaluate({"items": [1, 2], "stop": -1}, "stress/spin") == 2
        # A deadline far away, so only the memory cap can stop it.
        engine = acgs.Engine.load(STRESS, evaluator=evaluator, timeout_ms=60_000, memory_limit=64 << 20, **BARE)
        with pytest.raises(ResourceLimitExceeded):
            engine.evaluate_json(b'{"n": 100000000}', "stress/hog")
        # Recovers afterwards.
        assert engine.evaluate({"n": 2}, "stress/hog") == 2


def test_settings_read_the_evaluator() -> None:
    assert PolicySettings.from_env({}).evaluator == "auto"
    assert PolicySettings.from_env({"ACGS_EVALUATOR": " Plan "}).evaluator == "plan"
    assert PolicySettings.from_env({"ACGS_EVALUATOR": "auto"}).evaluator == "auto"
    with pytest.raises(ValueError, match="ACGS_EVALUATOR"):
        PolicySettings.from_env({"ACGS_EVALUATOR": "fast"})


EDITED = REPO / "tests" / "fixtures" / "constitution-edited.tar.gz"


def test_an_edited_constitution_runs_on_the_plan_with_its_edits() -> None:
    """The constitution edited as an evolution would (tests/fixtures/edited/edit.py): the native
    evaluator refuses it (its rules are pinned), the plan runs it, with the edits in force, and
    gives the Wasm's answer. The differential test (crates/acgs-plan/tests/differential.rs)
    compares the two on 150,000 generated inputs."""
    request = {
        "action": "files.delete",
        "constitutional_hash": "cdd01ef066bc6cf2",
        "context": {
            "environment": {"sandbox_enabled": True, "audit_enabled": True},
            "agent": {"trust_level": 0.9},
            "responsible_party": "user@example.com",
        },
    }
    shipped = acgs.Engine.load(CONSTITUTION)
    edited = acgs.Engine.load(EDITED)
    wasm = acgs.Engine.load(EDITED, evaluator="wasm")
    assert shipped.native is not None and shipped.native["enabled"] is True
    assert edited.native is not None and edited.native["enabled"] is False
    assert "main.rego" in edited.native["error"]
    assert edited.evaluator == "plan"
    new_rule = "files.delete needs a trust level of at least 0.95"
    assert new_rule not in shipped.evaluate(request, "acgs/main/decision")["reasons"]
    got = edited.evaluate(request, "acgs/main/decision")
    assert new_rule in got["reasons"] and got["allow"] is False
    assert got == wasm.evaluate(request, "acgs/main/decision")
    trusted = {**request, "context": {**request["context"], "agent": {"trust_level": 0.97}}}
    assert new_rule not in edited.evaluate(trusted, "acgs/main/decision")["reasons"]

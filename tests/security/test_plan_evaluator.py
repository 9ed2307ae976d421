"""Trying to fool the plan evaluator (``evaluator="plan"``): a hostile ``/plan.json`` is refused
at load with a reason (or, under ``"auto"``, the Wasm runs instead), never a crash or an allow;
hostile inputs get the same error class as on the Wasm."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

import acgs
from acgs.errors import AcgsError, BundleError

EXAMPLE = Path(__file__).resolve().parents[2] / "python" / "acgs" / "bundles" / "example.tar.gz"
GOOD = {"action": "data.read_public", "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": 0.9}}}
BAD = {"action": "data.read_public", "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": 0.1}}}


def _with_plan(tmp_path: Path, plan_json: bytes) -> Path:
    raw = io.BytesIO()
    with tarfile.open(EXAMPLE, "r:gz") as src, tarfile.open(fileobj=raw, mode="w:gz") as out:
        for m in src.getmembers():
            f = src.extractfile(m) if m.isfile() and m.name.lstrip("/") != "plan.json" else None
            if f is not None:
                out.addfile(m, f)
        info = tarfile.TarInfo("/plan.json")
        info.size = len(plan_json)
        out.addfile(info, io.BytesIO(plan_json))
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(raw.getvalue())
    return path


def _plan(stmts: str) -> bytes:
    """A plan whose two entrypoints run ``stmts``."""
    plans = ",".join(
        f'{{"name":"acgs/example/{n}","blocks":[{{"stmts":[{stmts}]}}]}}' for n in ("allow", "decision")
    )
    return f'{{"static":{{"strings":[{{"value":"result"}}]}},"plans":{{"plans":[{plans}]}},"funcs":{{"funcs":[]}}}}'.encode()


HOSTILE = {
    "nested": b"[" * 100_000 + b"]" * 100_000,
    "huge local": _plan('{"type":"MakeObjectStmt","stmt":{"target":4294967295}}'),
    "break out of nothing": _plan('{"type":"BreakStmt","stmt":{"index":7}}'),
    "string out of range": _plan('{"type":"MakeNumberRefStmt","stmt":{"Index":99,"index":99,"target":3}}'),
    "unknown statement": _plan('{"type":"TeleportStmt","stmt":{}}'),
    "call to nothing": _plan('{"type":"CallStmt","stmt":{"func":"g0.data.nowhere","args":[],"result":3}}'),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_plans_are_refused_or_fall_back(tmp_path: Path, name: str) -> None:
    bundle = _with_plan(tmp_path, HOSTILE[name])
    with pytest.raises(BundleError, match="plan evaluator cannot run this bundle"):
        acgs.Engine.load(bundle, evaluator="plan")
    auto = acgs.Engine.load(bundle, evaluator="auto")
    assert auto.evaluator == "wasm" and auto.plan is not None and auto.plan["error"]
    # The Wasm decides, not the refused plan.
    assert auto.evaluate(GOOD, "acgs/example/allow") is True
    assert auto.evaluate(BAD, "acgs/example/allow") is False


def test_a_plan_that_always_allows_cannot_pass_for_one_that_is_checked(tmp_path: Path) -> None:
    """A plan that adds no result is undefined, never an allow; fail closed."""
    bundle = _with_plan(tmp_path, _plan('{"type":"NopStmt","stmt":{}}'))
    engine = acgs.Engine.load(bundle, evaluator="plan", cache_size=0, fast_path=False, native=False)
    assert engine.evaluate(GOOD, "acgs/example/allow") is None


@pytest.mark.parametrize(
    "raw",
    [b"[" * 5000 + b"]" * 5000, b'{"x": "\\udc00"}', b'{"x": 1e999999999}', b'{"x": "\\u0000"}', b"{not json", b"\xff\xfe"],
    ids=["deep", "lone-surrogate", "huge-exponent", "control", "not-json", "not-utf8"],
)
def test_hostile_inputs_get_the_wasm_error_class(raw: bytes) -> None:
    options = {"cache_size": 0, "fast_path": False, "native": False}
    outcomes = []
    for evaluator in ("wasm", "plan"):
        engine = acgs.Engine.load(EXAMPLE, evaluator=evaluator, **options)
        try:
            outcomes.append(("ok", engine.evaluate_json(raw, "acgs/example/allow")))
        except AcgsError as exc:
            outcomes.append((exc.code, b""))
    assert outcomes[0] == outcomes[1]


def test_a_plan_built_to_make_its_rewrites_slow_loads_in_bounded_work(tmp_path: Path) -> None:
    """The load-time rewrites check every write of a local for every read of it: a plan reusing
    one local thousands of times once took minutes to load (cubic in the copies; 4,000 copies,
    a 1.8 MB plan: 48 s). Their budget cuts them short; what was not rewritten runs as written."""
    copy = (
        '{"type":"AssignVarStmt","stmt":{"source":{"type":"local","value":0},"target":3}},'
        '{"type":"BlockStmt","stmt":{"blocks":[{"stmts":[{"type":"EqualStmt","stmt":'
        '{"a":{"type":"local","value":3},"b":{"type":"local","value":0}}}]}]}}'
    )
    # Each plan adds {"result": input} once the copies are done.
    tail = (
        '{"type":"MakeObjectStmt","stmt":{"target":4}},'
        '{"type":"ObjectInsertStmt","stmt":{"key":{"type":"string_index","value":0},'
        '"value":{"type":"local","value":3},"object":4}},'
        '{"type":"ResultSetAddStmt","stmt":{"value":4}}'
    )
    bundle = _with_plan(tmp_path, _plan(",".join([copy] * 4000 + [tail])))
    engine = acgs.Engine.load(bundle, evaluator="plan", cache_size=0, fast_path=False, native=False)
    info = engine.plan
    assert info is not None and info["rewrites"]["complete"] is False, info
    assert engine.evaluate(GOOD, "acgs/example/allow") == GOOD
    assert engine.evaluate({"n": 1}, "acgs/example/decision") == {"n": 1}

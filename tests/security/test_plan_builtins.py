"""Hostile arguments to the builtins the plan evaluator implements itself (JSON, regular
expressions, graphs, arrays), driven through the engine from a real bundle built by OPA: the
plan must answer what the Wasm answers (the same value, the same undefined, or the same error
class), never crash, hang or grow without bound.

Where the two differ, the difference is listed with its reason (``WASM_FAULTS``, input nesting):
the Wasm crashing inside OPA's C library, where the plan gives OPA's own answer (checked with
``opa eval``) or fails closed too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

import acgs
from acgs.cli import cli, find_opa
from acgs.errors import AcgsError

POLICY = """package acgs.builtins

marshal := json.marshal(input.v)

unmarshal := json.unmarshal(input.s)

is_json := json.is_valid(input.s)

removed := json.remove(input.v, input.paths)

filtered := json.filter(input.v, input.paths)

valid_regex := regex.is_valid(input.s)

submatches := regex.find_all_string_submatch_n(input.pattern, input.s, input.n)

reachable := graph.reachable(input.graph, input.start)

flat := array.flatten(input.v)

formatted := format_int(input.x, object.get(input, "base", 10))
"""

ENTRYPOINTS = [
    "marshal", "unmarshal", "is_json", "removed", "filtered", "valid_regex", "submatches", "reachable", "flat",
    "formatted",
]  # fmt: skip


def _doc(**members: Any) -> str:
    return json.dumps(members)


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def _chain(n: int) -> dict[str, list[str]]:
    return {str(i): [str(i + 1)] for i in range(n)} | {str(n): ["0"]}


#: Inputs as JSON text: numbers keep their spelling, nesting is not limited by Python's encoder.
HOSTILE: dict[str, str] = {
    "ordinary": _doc(
        v={"a": [[1, [2]], 3], "b": {"c": "d"}}, s='{"a": [1, 2.50]}', paths=["a", "b/c"], pattern="(a)(b)?",
        n=-1, graph={"a": ["b"], "b": ["c"], "c": []}, start=["a"],
    ),
    "wrong types everywhere": _doc(v=1, s=2, paths="x", pattern=[], n="all", graph=[], start={}),
    "numbers spelt oddly": '{"v": [1.0, 1e2, -0.0, 0.10, 123456789012345678901234567890, 1E-7], "s": "[1.0, 1e2, 0.10]"}',
    "deep JSON text": _doc(s=_deep(5000)),
    "deep value": '{"v": ' + _deep(300) + ', "paths": ["a/b", ["a", "b"]]}',
    "unterminated JSON text": _doc(s='{"a": [1, 2'),
    "duplicate keys in JSON text": _doc(s='{"a": 1, "a": 2}'),
    "control characters": _doc(v={"k\u0000": "\u0001\u001f\u2028"}, s='"\\u0000"'),
    "invalid regex": _doc(pattern="(", s="aaa", n=-1),
    "perl-only regex": _doc(pattern="(?<=a)b", s="ab", n=-1),
    "regex with many matches": _doc(pattern="(a)", s="a" * 20_000, n=-1),
    "regex with n zero": _doc(pattern="a", s="aaa", n=0),
    "regex with a fractional n": '{"pattern": "a", "s": "aaa", "n": 1.5}',
    "graph cycle": _doc(graph=_chain(2000), start=["0"]),
    "graph with non-array edges": _doc(graph={"a": "b", "b": {"c": 1}}, start=["a"]),
    "graph start not in graph": _doc(graph={"a": ["b"]}, start=["zzz", 1, None]),
    "remove and filter odd paths": _doc(v={"a": {"b": 1}, "c": [1, 2]}, paths=["", "/", "a//b", ["c", 0], [1], "c/9"]),
    "flatten mixed": _doc(v=[[1, [2, [3]]], "x", {"a": 1}, []]),
    "flatten deep": '{"v": ' + _deep(1000) + "}",
}


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, acgs.Engine]:
    find_opa()  # the test command installs the pinned OPA: no skip
    root = tmp_path_factory.mktemp("builtins")
    src = root / "src"
    src.mkdir()
    (src / "policy.rego").write_text(POLICY)
    out = root / "builtins.tar.gz"
    args = ["bundle", "build", "--no-test"]
    for ep in ENTRYPOINTS:
        args += ["-e", f"acgs/builtins/{ep}"]
    result = CliRunner().invoke(cli, [*args, str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return {ev: acgs.Engine.load(out, evaluator=ev, cache_size=0) for ev in ("wasm", "plan")}


#: Cases where OPA's Wasm traps inside its C library, and what the plan answers instead.
WASM_FAULTS: dict[tuple[str, str], Any] = {
    # opa_value_hash crashes on a path json.remove / json.filter built from "" or [1]; OPA
    # itself (opa eval) answers these values, and so does the plan.
    ("remove and filter odd paths", "removed"): {"a": {"b": 1}, "c": [1, 2]},
    ("remove and filter odd paths", "filtered"): {"a": {}, "c": []},
    # JSON text 5,000 levels deep: the Wasm's recursive parser runs out of memory; OPA reads it.
    # The plan reads JSON text to 128 levels (serde_json's limit) and fails closed beyond, with
    # a resource error rather than a "false" or an undefined that OPA would not give.
    ("deep JSON text", "unmarshal"): "ResourceLimitExceeded",
    ("deep JSON text", "is_json"): "ResourceLimitExceeded",
}

#: Input nested deeper than this is refused by the plan as the Wasm's parser would trap on it
#: (the Wasm itself still reads a few hundred levels more): an evaluation error, never an answer.
PLAN_INPUT_DEPTH = 512

#: Entrypoints whose value is a set: the Wasm writes its members in hash order, the plan in
#: Rego's order. Compared as sets.
SETS = {"reachable"}


def _answer(engine: acgs.Engine, ep: str, doc: str) -> tuple[str, Any]:
    try:
        raw = engine.evaluate_json(doc.encode(), f"acgs/builtins/{ep}")
    except AcgsError as exc:
        return "error", type(exc).__name__
    if raw == b"[]":
        return "undefined", None
    if _depth(raw.decode()) > 100:
        return "value", raw  # compared as written: deeper than Python's parser goes
    value = json.loads(raw)[0]["result"]  # objects compared as values: the Wasm writes members in hash order
    if ep in SETS and isinstance(value, list):
        value = sorted(value, key=json.dumps)
    if ep == "marshal" and isinstance(value, str) and _depth(value) < 100:
        value = json.loads(value)  # OPA writes object members sorted, its Wasm in hash order
    return "value", value


def _depth(text: str) -> int:
    """Nesting of JSON text, brackets inside strings skipped."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def test_the_plan_runs_the_bundle(engines: dict[str, acgs.Engine]) -> None:
    assert engines["plan"].evaluator == "plan" and engines["wasm"].evaluator == "wasm"


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("ep", ENTRYPOINTS)
def test_hostile_arguments_answer_as_the_wasm(engines: dict[str, acgs.Engine], name: str, ep: str) -> None:
    doc = HOSTILE[name]
    plan, wasm = _answer(engines["plan"], ep, doc), _answer(engines["wasm"], ep, doc)
    if _depth(doc) > PLAN_INPUT_DEPTH:
        assert plan == ("error", "EvaluationError")
    elif (name, ep) in WASM_FAULTS:
        assert wasm == ("error", "EvaluationError")
        expected = WASM_FAULTS[name, ep]
        assert plan == (("error", expected) if isinstance(expected, str) and expected.endswith(("Error", "Exceeded")) else ("value", expected))
    else:
        assert plan == wasm


#: format_int at and past the 32 bits OPA's Wasm handles (it aborts the evaluation past them).
FORMAT_INT = [
    "2147483647", "2147483648", "-2147483649", "4294967295", "9223372036854775807", "1e10", "2.5e9", "-2.5e9",
    "3000000000.7", "1e400", "2147483647.9", "1.5", "-1.5", "0.0000001", "1e-400", "-1e-400",
    "0.99999999999999999999999999999999999999999", "123456789012345678901234567890e-30",
]  # fmt: skip


@pytest.mark.parametrize("base", ["10", "63", "9223372036854775807", "16.5"])
@pytest.mark.parametrize("x", FORMAT_INT)
def test_format_int_fails_where_the_wasm_aborts(engines: dict[str, acgs.Engine], x: str, base: str) -> None:
    doc = '{"x": %s, "base": %s}' % (x, base)
    plan, wasm = _answer(engines["plan"], "formatted", doc), _answer(engines["wasm"], "formatted", doc)
    assert plan == wasm
    if plan[0] == "error":  # never an undefined where the Wasm stops the evaluation
        assert plan == ("error", "EvaluationError")


def test_format_int_of_the_smallest_32_bit_integer(engines: dict[str, acgs.Engine]) -> None:
    """The Wasm's C library negates -2^31 in 32 bits and writes "--2147483648"; the plan writes
    the number, as OPA does."""
    for x in ("-2147483648", "-2147483648.9"):
        doc = '{"x": %s}' % x
        assert _answer(engines["wasm"], "formatted", doc) == ("value", "--2147483648")
        assert _answer(engines["plan"], "formatted", doc) == ("value", "-2147483648")

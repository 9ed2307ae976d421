"""Fast checks of the conformance runner's own parsing and comparison."""

from __future__ import annotations

from tests.conformance import compare, regoterm, yamlcore
from tests.conformance.cases import Case, Exceptions, _glob_to_regex, plan_case


def p(text):
    return regoterm.parse(text)


def test_rego_parser_sets_objects_and_trailing_commas():
    val = p('[{"result": {1, "a", set(), {}}}, {[1]: true, "k": [1, 2,],}]')
    first = val[0].get("result")
    assert isinstance(first, regoterm.RegoSet) and len(first.items) == 4
    assert isinstance(first.items[2], regoterm.RegoSet)
    assert isinstance(first.items[3], regoterm.RegoObject)
    assert val[1].items[0][0] == [1]


def test_rego_parser_rejects_non_ground_terms():
    for text in ("input.x", "[x]", '{"a": f(1)}', "1 2"):
        try:
            p(text)
        except regoterm.RegoParseError:
            continue
        raise AssertionError(f"parsed {text!r}")


def test_sets_compare_as_multisets_arrays_in_order():
    assert compare.equal([3, 1, 2], p("{1, 2, 3}"))
    assert not compare.equal([3, 1, 2], p("[1, 2, 3]"))
    assert not compare.equal([1, 1, 2], p("{1, 2}"))
    assert not compare.equal([1, 2], p("{1, 2, 3}"))
    assert compare.equal({"a": [[2, 1]]}, p('{"a": {{1, 2}}}'))


def test_numbers_compare_by_value_not_type():
    assert compare.equal(1, p("1.0"))
    assert compare.equal(0.1, p("0.1"))
    assert not compare.equal(0.1, p("0.10000001"))
    assert not compare.equal(1, p("true"))
    assert not compare.equal(True, p("1"))
    assert not compare.equal(None, p("false"))


def test_non_string_keys_compare_as_their_json_text():
    assert compare.equal({"1": "a", "[1]": "b"}, p('{1: "a", [1]: "b"}'))
    assert not compare.equal({"1": "a"}, p('{1: "a", "1": "b"}'))


def test_rows_are_sets_and_sort_bindings_ignores_array_order():
    rows = [p('{"x": [2, 1]}')]
    assert compare.rows_equal([{"x": [1, 2]}], rows, sort_bindings=True)
    assert not compare.rows_equal([{"x": [1, 2]}], rows, sort_bindings=False)
    assert compare.rows_equal([{"x": 1}, {"x": 1}], [p('{"x": 1}')], sort_bindings=False)
    assert not compare.rows_equal([], [p('{"x": 1}')], sort_bindings=False)


def test_yaml_uses_core_schema_like_opa():
    doc = yamlcore.load("a: [yes, on, 1e3, 1.0, 0o17, 1:30, 2023-01-01, ~]\nb: {1: x, true: y}")
    assert doc["a"] == ["yes", "on", 1000.0, 1.0, 15, "1:30", "2023-01-01", None]
    assert doc["b"] == {"1": "x", "true": "y"}
    assert yamlcore.to_json([1.0, 1.5e-7, 1e21, 0.000001, "<&>"]) == (
        '[1,1.5e-7,1e+21,0.000001,"\\u003c\\u0026\\u003e"]'
    )


def test_exception_globs_stay_within_a_segment():
    rx = _glob_to_regex("a/*")
    assert rx.fullmatch("a/b c") and not rx.fullmatch("a/b/c")


def _case(**raw):
    raw.setdefault("note", "t/n")
    return Case(note=raw["note"], file="t/x.yaml", index=0, raw=raw)


def test_planning_direct_wrapper_and_skips():
    exc = Exceptions(source=None, exact={"t/skip": "known"})
    direct = _case(query="data.a.b = x", modules=["package a\nb := 1\n"], want_result=[{"x": 1}])
    plan_case(direct, exc)
    assert direct.plan and direct.plan.kind == "direct" and direct.plan.entrypoint == "a/b"

    wrapped = _case(query="data.a.b[k] = v", modules=["package a\nb := [1]\n"],
                    want_result=[{"k": 0, "v": 1}])
    plan_case(wrapped, exc)
    assert wrapped.plan and wrapped.plan.kind == "wrapper"
    assert '{"k": k, "v": v}' in wrapped.plan.modules[-1]

    skipped = _case(note="t/skip", query="data.a = x")
    plan_case(skipped, exc)
    assert skipped.plan is None and skipped.permanent_skip and "known" in skipped.skip_reason

    set_input = _case(query="data.a = x", input_term='{"a": {1}}')
    plan_case(set_input, exc)
    assert set_input.skip_reason is None and set_input.input_json == '{"a": {1}}'

    json_input = _case(query="data.a = x", input_term='{"a": [1, 2,],}')
    plan_case(json_input, exc)
    assert json_input.input_json == '{"a":[1,2]}'


def test_result_rows_accept_set_and_array_forms():
    from tests.conformance.build import CompileResult
    from tests.conformance.runner import _rows_from

    case = _case(query="data.a.b = x", modules=["package a\nb := 1\n"], want_result=[{"x": 1}])
    plan_case(case, Exceptions(source=None))
    res = CompileResult(ok=True, kind="direct", entrypoint="a/b", bundle=None, error=None, cached=True)
    for text in ('{{"result": {1, 2}}}', '[{"result": {1, 2}}]'):
        rows = _rows_from(text, res, case)
        assert len(rows) == 1 and compare.equal([2, 1], rows[0].get("x"))
    assert _rows_from("set()", res, case) == []


def test_builtin_attribution_sees_calls_and_with_mocks():
    from tests.conformance.runner import builtins_used

    case = _case(query="data.t.p = x",
                 modules=["package t\np := x if { x = time.now_ns() with time.now_ns as opa.runtime }\n"])
    assert builtins_used(case, {"time.now_ns", "opa.runtime", "count"}) == ["opa.runtime", "time.now_ns"]


def test_plan_builds_have_their_own_cache_keys_and_carry_the_plan(tmp_path):
    import io
    import tarfile

    from tests.conformance.build import Compiler, _with_plan, plan_key
    from tests.conformance.cases import Plan, SetupError

    plan = Plan(kind="direct", modules=("package p\nx := 1",), data_json=None, entrypoint="p/x", variables=("x",))
    # The Wasm key is what it was before plan builds existed (existing caches keep their hits).
    assert plan_key("1.0", plan) == plan_key("1.0", plan, "wasm") != plan_key("1.0", plan, "plan")

    def tar(files):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w:gz") as t:
            for name, body in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(body)
                t.addfile(info, io.BytesIO(body))
        return raw.getvalue()

    merged = _with_plan(
        tar({"/policy.wasm": b"\0asm", "/plan.json": b"old"}), tar({"/plan.json": b'{"plans": {}}', "/data.json": b"{}"})
    )
    with tarfile.open(fileobj=io.BytesIO(merged), mode="r:gz") as t:
        files = {m.name: t.extractfile(m).read() for m in t.getmembers()}  # type: ignore[union-attr]
    assert files == {"/policy.wasm": b"\0asm", "/plan.json": b'{"plans": {}}'}
    try:
        _with_plan(tar({"/policy.wasm": b"\0asm"}), tar({"/data.json": b"{}"}))
    except ValueError as exc:
        assert "no /plan.json" in str(exc)
    else:
        raise AssertionError("a plan bundle without plan.json was accepted")
    try:
        Compiler("opa", "1.0", tmp_path, target="rego")
    except SetupError as exc:
        assert "unknown build target" in str(exc)
    else:
        raise AssertionError("an unknown target was accepted")

//! The evaluator's statements, limits and load-time checks: on the stress fixture (compiled by
//! OPA) and on small hand-written plans for the statements the constitution does not use.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use acgs_core::Bundle;
use acgs_plan::{EvalError, Limits, Plan, PlanError, Val};
use serde_json::{json, Value as J};

fn v(text: &str) -> Val {
    Val::parse(text.as_bytes()).unwrap()
}

fn stress() -> (Plan, Val) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/stress.tar.gz");
    let bundle = Bundle::from_path(&path).unwrap();
    let plan = Plan::from_json(bundle.plan_json().unwrap()).unwrap();
    let data = v(&serde_json::to_string(&bundle.data).unwrap());
    (plan, data)
}

#[test]
fn a_looping_policy_runs_out_of_steps() {
    let (plan, data) = stress();
    let spin = plan.entrypoint("stress/spin").unwrap();
    let items: Vec<i64> = (0..400).collect();
    let input = v(&json!({"items": items, "stop": -1}).to_string());
    let err = plan
        .eval_value(spin, Some(&input), &data, Limits::default())
        .unwrap_err();
    assert_eq!(err, EvalError::StepBudget(Limits::default().max_steps));
    // A wall-clock deadline stops it too.
    let limits = Limits {
        max_steps: u64::MAX,
        timeout: Some(std::time::Duration::from_millis(50)),
        ..Limits::default()
    };
    let err = plan
        .eval_value(spin, Some(&input), &data, limits)
        .unwrap_err();
    assert!(matches!(err, EvalError::Deadline(_)), "{err}");
    // A small input finishes well inside the budget.
    let small = v(r#"{"items": [1, 2, 3], "stop": -1}"#);
    let got = plan.eval_value(spin, Some(&small), &data, Limits::default());
    assert_eq!(got, Ok(Some(v("3"))));
}

#[test]
fn an_exploding_builtin_is_stopped() {
    let (plan, data) = stress();
    let hog = plan.entrypoint("stress/hog").unwrap();
    let err = plan
        .eval_value(
            hog,
            Some(&v(r#"{"n": 100000000}"#)),
            &data,
            Limits::default(),
        )
        .unwrap_err();
    assert!(matches!(err, EvalError::TooLarge(_)), "{err}");
    let got = plan.eval_value(hog, Some(&v(r#"{"n": 10}"#)), &data, Limits::default());
    assert_eq!(got, Ok(Some(v("10"))));
}

#[test]
fn results_keep_sets_and_absent_input_is_undefined() {
    let (plan, data) = stress();
    let both = plan.entrypoint("stress/both").unwrap();
    let got = plan
        .eval_value(
            both,
            Some(&v(r#"{"name": "ok"}"#)),
            &data,
            Limits::default(),
        )
        .unwrap();
    assert_eq!(got, Some(v(r#"{"set": {1, 2, 3}, "upper": "OK"}"#)));
    let echo = plan.entrypoint("stress/echo").unwrap();
    assert_eq!(
        plan.eval(echo, None, &data, Limits::default()),
        Ok(Default::default())
    );
}

/// A one-plan, hand-written IR: `funcs` plus plan `t/p` that calls `g0.data.t.p(input, data)`
/// and returns its value.
fn plan_with(strings: &[&str], builtins: &[&str], funcs: J) -> Result<Plan, PlanError> {
    let doc = json!({
        "static": {
            "strings": strings.iter().map(|s| json!({"value": s})).collect::<Vec<_>>(),
            "builtin_funcs": builtins.iter().map(|b| json!({"name": b, "decl": {}})).collect::<Vec<_>>(),
            "files": [{"value": "t.rego"}],
        },
        "plans": {"plans": [{"name": "t/p", "blocks": [{"stmts": [
            {"type": "CallStmt", "stmt": {"func": "g0.data.t.p", "args": [
                {"type": "local", "value": 0}, {"type": "local", "value": 1}], "result": 2}},
            {"type": "AssignVarStmt", "stmt": {"source": {"type": "local", "value": 2}, "target": 3}},
            {"type": "MakeObjectStmt", "stmt": {"target": 4}},
            {"type": "ObjectInsertStmt", "stmt": {"key": {"type": "string_index", "value": 0},
                "value": {"type": "local", "value": 3}, "object": 4}},
            {"type": "ResultSetAddStmt", "stmt": {"value": 4}},
        ]}]}]},
        "funcs": {"funcs": funcs},
    });
    Plan::from_json(doc.to_string().as_bytes())
}

fn local(n: u32) -> J {
    json!({"type": "local", "value": n})
}

fn string(n: u32) -> J {
    json!({"type": "string_index", "value": n})
}

fn stmt(kind: &str, body: J) -> J {
    json!({"type": kind, "stmt": body})
}

/// `g0.data.t.p(input, data)` with the given blocks; the value is local 2.
fn rule(blocks: J) -> J {
    let mut blocks = blocks.as_array().unwrap().clone();
    blocks.push(json!({"stmts": [stmt("ReturnLocalStmt", json!({"source": 2}))]}));
    json!([{"name": "g0.data.t.p", "params": [0, 1], "return": 2, "blocks": blocks,
            "path": ["g0", "t", "p"]}])
}

fn eval(plan: &Plan, input: &str) -> Result<Option<Val>, EvalError> {
    plan.eval_value(0, Some(&v(input)), &v("{}"), Limits::default())
}

#[test]
fn a_conflict_is_an_error_with_its_location() {
    let plan = plan_with(
        &["result", "x"],
        &[],
        rule(json!([{"stmts": [
            stmt("DotStmt", json!({"source": local(0), "key": string(1), "target": 3})),
            stmt("AssignVarOnceStmt", json!({"source": local(3), "target": 2})),
            stmt("AssignVarOnceStmt", json!({"source": {"type": "bool", "value": true}, "target": 2,
                "file": 0, "row": 7, "col": 3})),
        ]}])),
    )
    .unwrap();
    assert_eq!(eval(&plan, r#"{"x": true}"#), Ok(Some(v("true"))));
    assert_eq!(
        eval(&plan, r#"{"x": 1}"#),
        Err(EvalError::Conflict {
            what: "var assignment conflict",
            at: "t.rego:7:3".into()
        })
    );
    // An absent x fails the block before either assignment: undefined, no error.
    assert_eq!(eval(&plan, "{}"), Ok(None));
}

#[test]
fn break_leaves_the_enclosing_blocks() {
    // Block { Block { Break 1 } ; assign "inner" } ; assign "after": Break 1 skips "inner".
    let plan = plan_with(
        &["result", "inner", "after"],
        &[],
        rule(json!([{"stmts": [
            stmt("BlockStmt", json!({"blocks": [
                {"stmts": [stmt("BreakStmt", json!({"index": 1})),
                           stmt("AssignVarStmt", json!({"source": string(1), "target": 2}))]},
                {"stmts": [stmt("AssignVarStmt", json!({"source": string(1), "target": 2}))]},
            ]})),
            stmt("AssignVarStmt", json!({"source": string(1), "target": 2})),
        ]}, {"stmts": [
            stmt("IsUndefinedStmt", json!({"source": 2})),
            stmt("AssignVarStmt", json!({"source": string(2), "target": 2})),
        ]}])),
    )
    .unwrap();
    assert_eq!(eval(&plan, "{}"), Ok(Some(v(r#""after""#))));
}

#[test]
fn with_replaces_input_for_its_block_only_and_not_negates() {
    // With input.x as 5 { y := input.x } ; Not { Equal(input.x, 5) } ; value = [y, input]
    let plan = plan_with(
        &["result", "x", "5"],
        &[],
        rule(json!([{"stmts": [
            stmt("MakeNumberRefStmt", json!({"index": 2, "Index": 2, "target": 3})),
            stmt("WithStmt", json!({"local": 0, "path": [1], "value": local(3), "block": {"stmts": [
                stmt("DotStmt", json!({"source": local(0), "key": string(1), "target": 4})),
            ]}})),
            stmt("NotStmt", json!({"block": {"stmts": [
                stmt("DotStmt", json!({"source": local(0), "key": string(1), "target": 5})),
                stmt("EqualStmt", json!({"a": local(5), "b": local(3)})),
            ]}})),
            stmt("MakeArrayStmt", json!({"capacity": 2, "target": 2})),
            stmt("ArrayAppendStmt", json!({"value": local(4), "array": 2})),
            stmt("ArrayAppendStmt", json!({"value": local(0), "array": 2})),
        ]}])),
    )
    .unwrap();
    assert_eq!(eval(&plan, r#"{"x": 1}"#), Ok(Some(v(r#"[5, {"x": 1}]"#))));
    assert_eq!(eval(&plan, r#"{"x": 5}"#), Ok(None));
}

#[test]
fn with_restores_an_undefined_input_and_rego_number_literals_load() {
    // OPA restores the input it replaced with `With(input, [], saved)`, where `saved` is
    // undefined when the query had no input: the body must still run. `.5` and `-.25` are
    // Rego literals (no digit before the point).
    let plan = plan_with(
        &["result", ".5", "-.25"],
        &[],
        rule(json!([{"stmts": [
            stmt("MakeNumberRefStmt", json!({"index": 1, "target": 3})),
            stmt("MakeNumberRefStmt", json!({"index": 2, "target": 4})),
            stmt("AssignVarStmt", json!({"source": local(0), "target": 5})),
            stmt("WithStmt", json!({"local": 0, "path": [], "value": {"type": "bool", "value": true},
                "block": {"stmts": [
                    stmt("WithStmt", json!({"local": 0, "path": null, "value": local(5), "block": {"stmts": [
                        stmt("IsUndefinedStmt", json!({"source": 0})),
                        stmt("MakeArrayStmt", json!({"capacity": 2, "target": 2})),
                        stmt("ArrayAppendStmt", json!({"value": local(3), "array": 2})),
                        stmt("ArrayAppendStmt", json!({"value": local(4), "array": 2})),
                    ]}})),
                ]}})),
        ]}])),
    )
    .unwrap();
    let t = plan.entrypoint("t/p").unwrap();
    let got = plan.eval_value(t, None, &v("{}"), Limits::default());
    assert_eq!(got, Ok(Some(v("[0.5, -0.25]"))));
    // With an input, the restored input is defined: IsUndefined fails, the rule is undefined.
    assert_eq!(eval(&plan, "{}"), Ok(None));
}

#[test]
fn object_merge_and_dynamic_calls() {
    let plan = plan_with(
        &["result", "g0", "t", "p", "a", "b"],
        &[],
        json!([
            {"name": "g0.data.t.p", "params": [0, 1], "return": 2, "blocks": [{"stmts": [
                stmt("MakeObjectStmt", json!({"target": 3})),
                stmt("MakeObjectStmt", json!({"target": 4})),
                stmt("ObjectInsertStmt", json!({"key": string(4), "value": string(4), "object": 3})),
                stmt("ObjectInsertStmt", json!({"key": string(5), "value": local(0), "object": 4})),
                stmt("CallDynamicStmt", json!({"args": [0, 1], "result": 5,
                    "path": [string(1), string(2), {"type": "string_index", "value": 4}]})),
                stmt("ObjectInsertStmt", json!({"key": string(4), "value": local(5), "object": 4})),
            ]}, {"stmts": [
                stmt("ObjectMergeStmt", json!({"a": 3, "b": 4, "target": 2})),
                stmt("ReturnLocalStmt", json!({"source": 2})),
            ]}], "path": ["g0", "t", "p"]},
            {"name": "g0.data.t.a", "params": [0, 1], "return": 2, "blocks": [{"stmts": [
                stmt("AssignVarStmt", json!({"source": {"type": "bool", "value": true}, "target": 2})),
                stmt("ReturnLocalStmt", json!({"source": 2})),
            ]}], "path": ["g0", "t", "a"]},
        ]),
    )
    .unwrap();
    assert_eq!(eval(&plan, "1"), Ok(Some(v(r#"{"a": "a", "b": 1}"#))));
}

#[test]
fn refuses_broken_plans_by_name() {
    let call = |func: &str| {
        rule(
            json!([{"stmts": [stmt("CallStmt", json!({"func": func, "args": [local(0)], "result": 2}))]}]),
        )
    };
    assert_eq!(
        plan_with(&["result"], &["no.such.declared"], call("count")).unwrap_err(),
        PlanError::UnknownBuiltin("no.such.declared".into())
    );
    assert_eq!(
        plan_with(&["result"], &[], call("no.such.builtin")).unwrap_err(),
        PlanError::UnknownBuiltin("no.such.builtin".into())
    );
    let wrong_arity = plan_with(&["result"], &[], call("g0.data.t.p")).unwrap_err();
    assert!(
        wrong_arity.to_string().contains("1 arguments; it takes 2"),
        "{wrong_arity}"
    );
    let deep_break = plan_with(
        &["result"],
        &[],
        rule(json!([{"stmts": [stmt("BreakStmt", json!({"index": 1}))]}])),
    )
    .unwrap_err();
    assert!(deep_break.to_string().contains("break 1"), "{deep_break}");
    let bad_string = plan_with(
        &["result"],
        &[],
        rule(
            json!([{"stmts": [stmt("AssignVarStmt", json!({"source": string(9), "target": 2}))]}]),
        ),
    )
    .unwrap_err();
    assert!(
        bad_string.to_string().contains("string index 9"),
        "{bad_string}"
    );
    let bad_local = plan_with(
        &["result"],
        &[],
        rule(json!([{"stmts": [stmt("MakeNullStmt", json!({"target": 1_000_000}))]}])),
    )
    .unwrap_err();
    assert!(
        bad_local.to_string().contains("local 1000000"),
        "{bad_local}"
    );
    assert!(matches!(
        Plan::from_json(b"{\"plans\": 7}"),
        Err(PlanError::Json(_))
    ));
    assert!(matches!(Plan::from_json(b"\xff"), Err(PlanError::Json(_))));
}

#[test]
fn call_depth_is_capped() {
    // g0.data.t.p calls itself: Rego cannot write this, a hostile plan can.
    let plan = plan_with(
        &["result"],
        &[],
        rule(
            json!([{"stmts": [stmt("CallStmt", json!({"func": "g0.data.t.p",
            "args": [local(0), local(1)], "result": 2}))]}]),
        ),
    )
    .unwrap();
    assert_eq!(
        eval(&plan, "{}"),
        Err(EvalError::CallDepth(Limits::default().max_depth))
    );
}

/// A plan whose value is builtin `name` called with `input[0]`, ..., `input[n - 1]`.
fn builtin_plan(name: &str, n: u32) -> Plan {
    let mut stmts = Vec::new();
    let mut args = Vec::new();
    for i in 0..n {
        let (key, arg) = (10 + 2 * i, 11 + 2 * i);
        stmts.push(stmt(
            "MakeNumberIntStmt",
            json!({"value": i, "target": key}),
        ));
        stmts.push(stmt(
            "DotStmt",
            json!({"source": local(0), "key": local(key), "target": arg}),
        ));
        args.push(local(arg));
    }
    stmts.push(stmt(
        "CallStmt",
        json!({"func": name, "args": args, "result": 2}),
    ));
    plan_with(&["result"], &[name], rule(json!([{ "stmts": stmts }]))).unwrap()
}

/// `name(args...)`, the arguments given as one Rego array.
fn call(name: &str, args: &str) -> Result<Option<Val>, EvalError> {
    let n = match v(args) {
        Val::Arr(a) => u32::try_from(a.len()).unwrap(),
        _ => panic!("arguments must be an array"),
    };
    eval(&builtin_plan(name, n), args)
}

fn ok(text: &str) -> Result<Option<Val>, EvalError> {
    Ok(Some(v(text)))
}

#[test]
fn json_remove_and_filter_follow_paths_as_strings_and_arrays() {
    let doc = r#"{"a": {"b": 1, "c": [10, {"d": 2, "e": 3}, 30]}, "f": {"x", "y"}, "g~/h": 4}"#;
    assert_eq!(
        call(
            "json.remove",
            &format!(r#"[{doc}, ["a/b", "/a/c/1/d", ["f", "x"], "g~0~1h"]]"#)
        ),
        ok(r#"{"a": {"c": [10, {"e": 3}, 30]}, "f": {"y"}}"#)
    );
    // An array index in a path is a string: the number 0 selects nothing in an array.
    assert_eq!(
        call("json.remove", r#"[{"a": [1, 2]}, [["a", 0], "a/1"]]"#),
        ok(r#"{"a": [1]}"#)
    );
    // A shorter path covers a longer one, whichever comes first; the empty path selects nothing.
    assert_eq!(
        call(
            "json.remove",
            r#"[{"a": {"b": 1}, "c": 2}, {"a/b", "a", ""}]"#
        ),
        ok(r#"{"c": 2}"#)
    );
    assert_eq!(
        call(
            "json.filter",
            &format!(r#"[{doc}, ["a/c/1/e", "a/c/2", "f/y"]]"#)
        ),
        ok(r#"{"a": {"c": [{"e": 3}, 30]}, "f": {"y"}}"#)
    );
    assert_eq!(
        call("json.filter", r#"[{"a": {"b": 1, "c": 2}}, {"a", "a/b"}]"#),
        ok(r#"{"a": {"b": 1, "c": 2}}"#)
    );
    assert_eq!(call("json.filter", r#"[{"a": 1}, []]"#), ok("{}"));
}

#[test]
fn json_remove_and_filter_refuse_hostile_arguments() {
    for name in ["json.remove", "json.filter"] {
        // Wrong types: undefined, never a panic.
        for args in [
            r#"[[1], ["a"]]"#,
            r#"[{"a": 1}, "a"]"#,
            r#"[{"a": 1}, [1]]"#,
            r#"[{"a": 1}, [{"a": 1}]]"#,
            r#"[null, null]"#,
        ] {
            assert_eq!(call(name, args), Ok(None), "{name}{args}");
        }
        // A path past the segment limit is refused as too large.
        let long: Vec<String> = (0..5000).map(|i| format!("k{i}")).collect();
        let args = json!([{"k0": {"k1": 1}}, [long.join("/")]]).to_string();
        assert!(
            matches!(call(name, &args), Err(EvalError::TooLarge(_))),
            "{name}"
        );
        // Deep values and deep (allowed) paths are walked without exhausting the stack.
        let deep = format!("{}1{}", "{\"k\": ".repeat(400), "}".repeat(400));
        let path = vec!["k"; 1000].join("/");
        let got = call(name, &format!(r#"[{deep}, ["{path}"]]"#)).unwrap();
        assert!(got.is_some(), "{name}");
    }
}

#[test]
fn json_text_builtins() {
    assert_eq!(
        call(
            "json.marshal",
            r#"[{"b": [1, 2.50], "a": {"<&>"}, "c": {1: 2}}]"#
        ),
        ok(r#""{\"a\":[\"<&>\"],\"b\":[1,2.50],\"c\":{\"1\":2}}""#)
    );
    assert_eq!(
        call("json.unmarshal", r#"["{\"a\": [1, 2.50, null]}"]"#),
        ok(r#"{"a": [1, 2.5, null]}"#)
    );
    // Rego's set syntax and non-string keys are not JSON.
    for text in [
        r#""{1, 2}""#,
        r#""set()""#,
        r#""{1: 2}""#,
        r#""{""#,
        r#""[1,]""#,
        r#""""#,
    ] {
        assert_eq!(
            call("json.unmarshal", &format!("[{text}]")),
            Ok(None),
            "{text}"
        );
        assert_eq!(
            call("json.is_valid", &format!("[{text}]")),
            ok("false"),
            "{text}"
        );
    }
    assert_eq!(call("json.is_valid", r#"["{\"a\": 1}"]"#), ok("true"));
    assert_eq!(call("json.is_valid", "[1]"), ok("false"));
    assert_eq!(call("json.unmarshal", "[1]"), Ok(None));
    // Deep nesting is an error of the evaluation (OPA's Wasm traps on it; OPA reads it), not a
    // stack overflow, nor a "false" or an undefined that OPA would not answer. Brackets inside
    // strings do not count.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let args = json!([deep]).to_string();
    let too_large = Err(EvalError::TooLarge("JSON text nesting"));
    assert_eq!(call("json.unmarshal", &args), too_large);
    assert_eq!(call("json.is_valid", &args), too_large);
    let at_limit = format!("{}{}", "[".repeat(128), "]".repeat(128));
    assert_eq!(
        call("json.is_valid", &json!([at_limit]).to_string()),
        ok("true")
    );
    let past = format!("{}1{}", "[".repeat(129), "]".repeat(129));
    assert_eq!(call("json.is_valid", &json!([past]).to_string()), too_large);
    let quoted = format!("\"{}\"", "[".repeat(1000));
    assert_eq!(
        call("json.unmarshal", &json!([quoted]).to_string()),
        ok(&json!("[".repeat(1000)).to_string())
    );
    let nested = format!("{}1{}", "[".repeat(500), "]".repeat(500));
    assert!(call("json.marshal", &format!("[{nested}]"))
        .unwrap()
        .is_some());
}

#[test]
fn regex_builtins_use_go_syntax() {
    assert_eq!(
        call(
            "regex.find_all_string_submatch_n",
            r#"["a(x*)b(y)?", "-ab-axxb-axby-", -1]"#
        ),
        ok(r#"[["ab", "", ""], ["axxb", "xx", ""], ["axby", "x", "y"]]"#)
    );
    assert_eq!(
        call(
            "regex.find_all_string_submatch_n",
            r#"["a(x*)b", "-ab-axxb-", 1]"#
        ),
        ok(r#"[["ab", ""]]"#)
    );
    assert_eq!(
        call("regex.find_all_string_submatch_n", r#"["a", "aaa", 0]"#),
        ok("[]")
    );
    // Go's `\d` is ASCII only.
    assert_eq!(
        call("regex.find_all_string_submatch_n", r#"["\\d", "1٣2", -1]"#),
        ok(r#"[["1"], ["2"]]"#)
    );
    for (args, want) in [
        (r#"["[a-z]+"]"#, "true"),
        (r#"["(unclosed"]"#, "false"),
        (r#"["a{1001}"]"#, "false"),
        ("[1]", "false"),
        ("[null]", "false"),
    ] {
        assert_eq!(call("regex.is_valid", args), ok(want), "{args}");
    }
    for args in [
        r#"["(", "x", -1]"#,
        r#"[1, "x", -1]"#,
        r#"["x", "x", 1.5]"#,
        r#"["x", ["x"], -1]"#,
    ] {
        assert_eq!(
            call("regex.find_all_string_submatch_n", args),
            Ok(None),
            "{args}"
        );
    }
    // Matches past the size limits stop the evaluation.
    let big = "a".repeat(2_000_000);
    let args = json!(["(a)", big, -1]).to_string();
    assert!(matches!(
        call("regex.find_all_string_submatch_n", &args),
        Err(EvalError::TooLarge(_))
    ));
}

#[test]
fn graph_reachable_and_array_flatten() {
    let graph = r#"{"a": ["b"], "b": {"c", "z"}, "c": ["a"], "d": ["e"], "e": null}"#;
    assert_eq!(
        call("graph.reachable", &format!(r#"[{graph}, ["a"]]"#)),
        ok(r#"{"a", "b", "c"}"#)
    );
    // Only nodes of the graph are reached; a node without a collection of edges still is.
    assert_eq!(
        call("graph.reachable", &format!(r#"[{graph}, {{"d", "q"}}]"#)),
        ok(r#"{"d", "e"}"#)
    );
    assert_eq!(call("graph.reachable", r#"[[1], ["a"]]"#), Ok(None));
    assert_eq!(call("graph.reachable", r#"[{"a": []}, "a"]"#), Ok(None));
    // A long chain is walked without recursion.
    let chain: serde_json::Map<String, J> = (0..50_000)
        .map(|i| (format!("n{i}"), json!([format!("n{}", i + 1)])))
        .collect();
    let got = call("graph.reachable", &json!([chain, ["n0"]]).to_string()).unwrap();
    match got {
        Some(Val::Set(s)) => assert_eq!(s.len(), 50_000),
        other => panic!("{other:?}"),
    }

    assert_eq!(
        call(
            "array.flatten",
            r#"[[1, [2, [3]], [], {"a": [4]}, [5, 6]]]"#
        ),
        ok(r#"[1, 2, [3], {"a": [4]}, 5, 6]"#)
    );
    assert_eq!(call("array.flatten", "[[]]"), ok("[]"));
    assert_eq!(call("array.flatten", r#"[{"a": 1}]"#), Ok(None));
    assert_eq!(call("array.flatten", r#"[{"a"}]"#), Ok(None));
}

#[test]
fn random_builtins_repeat_within_one_evaluation() {
    // [rand.intn("k", 1000000) x 3 with two keys, uuid.rfc4122("k") x 2]
    let mut stmts = vec![stmt("MakeArrayStmt", json!({"capacity": 5, "target": 2}))];
    for (i, (f, seed)) in [
        ("rand.intn", 1),
        ("rand.intn", 1),
        ("rand.intn", 2),
        ("uuid.rfc4122", 1),
        ("uuid.rfc4122", 1),
    ]
    .iter()
    .enumerate()
    {
        let out = 20 + u32::try_from(i).unwrap();
        let mut args = vec![string(*seed)];
        if *f == "rand.intn" {
            args.push(local(9));
        }
        stmts.push(stmt(
            "CallStmt",
            json!({"func": f, "args": args, "result": out}),
        ));
        stmts.push(stmt(
            "ArrayAppendStmt",
            json!({"value": local(out), "array": 2}),
        ));
    }
    stmts.insert(
        0,
        stmt(
            "MakeNumberIntStmt",
            json!({"value": 1_000_000_000, "target": 9}),
        ),
    );
    let plan = plan_with(
        &["result", "k", "other"],
        &["rand.intn", "uuid.rfc4122"],
        rule(json!([{ "stmts": stmts }])),
    )
    .unwrap();
    let first = eval(&plan, "{}").unwrap().unwrap();
    let Val::Arr(a) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(a[0], a[1]);
    assert_eq!(a[3], a[4]);
    // A different seed draws again; a second evaluation draws anew (1 in 10^9 to collide).
    assert_ne!(a[0], a[2]);
    let second = eval(&plan, "{}").unwrap().unwrap();
    let Val::Arr(b) = &second else {
        panic!("{second:?}")
    };
    assert_ne!(a[0], b[0]);
    assert_ne!(a[3], b[3]);
}

#[test]
fn cidr_families_utf8_and_wide_shifts() {
    // Go's IPNet.Contains never matches across IPv4 and IPv6.
    for (net, other, want) in [
        ("::/0", "1.2.3.4", "false"),
        ("::/0", "1.2.3.0/24", "false"),
        ("0.0.0.0/0", "::/80", "false"),
        ("::ffff:0:0/96", "1.2.3.4", "true"),
        ("1.2.3.0/24", "1.2.3.128/25", "true"),
        ("::/79", "::/80", "true"),
    ] {
        let args = json!([net, other]).to_string();
        assert_eq!(call("net.cidr_contains", &args), ok(want), "{net} {other}");
    }
    assert_eq!(
        call("net.cidr_intersects", r#"["::/0", "1.2.3.0/24"]"#),
        ok("false")
    );
    assert_eq!(
        call("net.cidr_intersects", r#"["::/0", "::1/128"]"#),
        ok("true")
    );
    assert_eq!(
        call("net.cidr_contains", r#"["::/0", "not an ip"]"#),
        Ok(None)
    );
    assert_eq!(call("net.cidr_contains", r#"["::/999", "::1"]"#), Ok(None));

    // Invalid UTF-8 from base64.decode: one U+FFFD per stray byte, as Go counts runes.
    let decoded = call("base64.decode", r#"["/+E="]"#).unwrap().unwrap();
    assert_eq!(decoded, Val::str("\u{FFFD}\u{FFFD}"));

    assert_eq!(
        call("bits.lsh", "[9223372036854775807, 1]"),
        ok("18446744073709551614")
    );
    assert_eq!(call("bits.lsh", "[1, 62]"), ok("4611686018427387904"));
    assert_eq!(call("bits.lsh", "[1, 200]"), Ok(None));
    assert_eq!(call("bits.lsh", "[1, -1]"), Ok(None));
    assert_eq!(call("bits.lsh", "[-9223372036854775808, 127]"), Ok(None));
}

/// format_int handles 32-bit integer parts, as OPA's Wasm does; past them the Wasm aborts the
/// evaluation, so the plan stops with the same message instead of answering undefined.
#[test]
fn format_int_aborts_past_32_bits() {
    assert_eq!(
        call("format_int", "[2147483647.9, 10]"),
        ok(r#""2147483647""#)
    );
    assert_eq!(call("format_int", "[-1.5, 16]"), ok(r#""-1""#));
    assert_eq!(call("format_int", "[1e-400, 2]"), ok(r#""0""#));
    // Another base makes the call undefined before the number is looked at.
    assert_eq!(call("format_int", "[1e400, 63]"), Ok(None));
    assert_eq!(
        call("format_int", "[2147483648, 9223372036854775807]"),
        Ok(None)
    );
    for x in ["2147483648", "-2147483649", "1e10", "1e400", "3000000000.7"] {
        assert_eq!(
            call("format_int", &format!("[{x}, 10]")),
            Err(EvalError::Aborted("strings: get uint failed")),
            "{x}"
        );
    }
}

/// `eval` with a step budget: whether the evaluation fits in `steps` statements.
fn eval_in(plan: &Plan, input: &str, steps: u64) -> Result<Option<Val>, EvalError> {
    let limits = Limits {
        max_steps: steps,
        ..Limits::default()
    };
    plan.eval_value(0, Some(&v(input)), &v("{}"), limits)
}

fn assign(source: J, target: u32) -> J {
    stmt("AssignVarStmt", json!({"source": source, "target": target}))
}

/// The value `[local a, local b]` into local 2.
fn pair(a: u32, b: u32) -> Vec<J> {
    vec![
        stmt("MakeArrayStmt", json!({"capacity": 2, "target": 2})),
        stmt("ArrayAppendStmt", json!({"value": local(a), "array": 2})),
        stmt("ArrayAppendStmt", json!({"value": local(b), "array": 2})),
    ]
}

/// Copies whose target can be read as their source, and builtin results only tested against
/// false, are not run (src/opt.rs): the step budget shows how many statements ran.
#[test]
fn copies_and_tested_builtin_results_are_not_run() {
    // x := input.x; y := x; z := y; is_string(z) != false; value := z
    let plan = plan_with(
        &["result", "x"],
        &["is_string"],
        rule(json!([{"stmts": [
            stmt("DotStmt", json!({"source": local(0), "key": string(1), "target": 3})),
            assign(local(3), 4),
            assign(local(4), 5),
            stmt("CallStmt", json!({"func": "is_string", "args": [local(5)], "result": 6})),
            stmt("NotEqualStmt", json!({"a": local(6), "b": {"type": "bool", "value": false}})),
            stmt("AssignVarOnceStmt", json!({"source": local(5), "target": 2})),
        ]}])),
    )
    .unwrap();
    // Run: the plan's call, object, insert and result (its copy dropped); the rule's dot,
    // type test and assignment (its final return names the return local: dropped too).
    // Twelve statements as written.
    assert_eq!(eval_in(&plan, r#"{"x": "a"}"#, 7), ok(r#""a""#));
    assert_eq!(
        eval_in(&plan, r#"{"x": "a"}"#, 6),
        Err(EvalError::StepBudget(6))
    );
    assert_eq!(eval(&plan, r#"{"x": 1}"#), Ok(None));
    assert_eq!(eval(&plan, "{}"), Ok(None));
}

/// Where a copy's target could differ from its source when read, the copy stays.
#[test]
fn copies_stay_where_the_source_changes_or_the_read_is_elsewhere() {
    let s = |text: u32| string(text);
    // The source changed in place after the copy: the copy keeps the old array.
    let mutated = plan_with(
        &["result", "a"],
        &[],
        rule(json!([{"stmts": ([
            stmt("MakeArrayStmt", json!({"capacity": 1, "target": 3})),
            assign(local(3), 4),
            stmt("ArrayAppendStmt", json!({"value": s(1), "array": 3})),
        ].into_iter().chain(pair(4, 3)).collect::<Vec<_>>())}])),
    )
    .unwrap();
    assert_eq!(eval(&mutated, "{}"), ok(r#"[[], ["a"]]"#));
    // The source assigned again after the copy.
    let reassigned = plan_with(
        &["result", "a", "b"],
        &[],
        rule(
            json!([{"stmts": ([assign(s(1), 3), assign(local(3), 4), assign(s(2), 3)]
            .into_iter().chain(pair(4, 3)).collect::<Vec<_>>())}]),
        ),
    )
    .unwrap();
    assert_eq!(eval(&reassigned, "{}"), ok(r#"["a", "b"]"#));
    // The target read in a later block, after the source changed.
    let elsewhere = plan_with(
        &["result", "a", "b"],
        &[],
        rule(json!([
            {"stmts": [assign(s(1), 3), assign(local(3), 4)]},
            {"stmts": ([assign(s(2), 3)].into_iter().chain(pair(4, 3)).collect::<Vec<_>>())},
        ])),
    )
    .unwrap();
    assert_eq!(eval(&elsewhere, "{}"), ok(r#"["a", "b"]"#));
    // A loop's value copied in its body and read after the loop: the last element that
    // passed the body's test, not the loop's last element.
    let after_loop = plan_with(
        &["result", "items", "stop"],
        &[],
        rule(json!([{"stmts": [
            stmt("DotStmt", json!({"source": local(0), "key": s(1), "target": 3})),
            stmt("ScanStmt", json!({"source": 3, "key": 4, "value": 5, "block": {"stmts": [
                stmt("NotEqualStmt", json!({"a": local(5), "b": s(2)})),
                assign(local(5), 6),
            ]}})),
            stmt("AssignVarOnceStmt", json!({"source": local(6), "target": 2})),
        ]}])),
    )
    .unwrap();
    assert_eq!(
        eval(&after_loop, r#"{"items": ["a", "b", "stop"]}"#),
        ok(r#""b""#)
    );
}

/// A builtin result read other than by its test is kept; a fused test passes on any value
/// but false, as `NotEqual(r, false)` does; type tests cover every kind.
#[test]
fn tested_builtins_keep_their_meaning() {
    let kept = plan_with(
        &["result", "x"],
        &["is_string"],
        rule(json!([{"stmts": [
            stmt("DotStmt", json!({"source": local(0), "key": string(1), "target": 3})),
            stmt("CallStmt", json!({"func": "is_string", "args": [local(3)], "result": 4})),
            stmt("NotEqualStmt", json!({"a": local(4), "b": {"type": "bool", "value": false}})),
            stmt("AssignVarOnceStmt", json!({"source": local(4), "target": 2})),
        ]}])),
    )
    .unwrap();
    assert_eq!(eval(&kept, r#"{"x": "a"}"#), ok("true"));
    assert_eq!(eval(&kept, r#"{"x": 1}"#), Ok(None));
    // minus(x, 1) != false: true for 0 as for any number; undefined for a string.
    let number = plan_with(
        &["result", "x", "ok"],
        &["minus"],
        rule(json!([{"stmts": [
            stmt("DotStmt", json!({"source": local(0), "key": string(1), "target": 3})),
            stmt("MakeNumberIntStmt", json!({"value": 1, "target": 4})),
            stmt("CallStmt", json!({"func": "minus", "args": [local(3), local(4)], "result": 5})),
            stmt("NotEqualStmt", json!({"a": local(5), "b": {"type": "bool", "value": false}})),
            stmt("AssignVarOnceStmt", json!({"source": string(2), "target": 2})),
        ]}])),
    )
    .unwrap();
    assert_eq!(eval(&number, r#"{"x": 1}"#), ok(r#""ok""#));
    assert_eq!(eval(&number, r#"{"x": "1"}"#), Ok(None));
    let kinds = [
        ("is_null", "null"),
        ("is_boolean", "false"),
        ("is_number", "1.50"),
        ("is_string", r#""""#),
        ("is_array", "[]"),
        ("is_object", "{}"),
    ];
    for (name, _) in kinds {
        let test = plan_with(
            &["result", "x", "yes"],
            &[name],
            rule(json!([{"stmts": [
                stmt("DotStmt", json!({"source": local(0), "key": string(1), "target": 3})),
                stmt("CallStmt", json!({"func": name, "args": [local(3)], "result": 4})),
                stmt("NotEqualStmt", json!({"a": local(4), "b": {"type": "bool", "value": false}})),
                stmt("AssignVarOnceStmt", json!({"source": string(2), "target": 2})),
            ]}])),
        )
        .unwrap();
        for (other, value) in kinds {
            let want = if other == name {
                ok(r#""yes""#)
            } else {
                Ok(None)
            };
            assert_eq!(
                eval(&test, &format!(r#"{{"x": {value}}}"#)),
                want,
                "{name}({value})"
            );
        }
        assert_eq!(eval(&test, "{}"), Ok(None), "{name} of nothing");
    }
}

/// OPA reuses a local for unrelated values in different rule bodies: a copy is dropped only
/// where no read it reaches could see the difference.
#[test]
fn copies_of_reused_locals_keep_what_later_reads_see() {
    // Body 1: t := s ("a"). Body 2: t := "b" once: a conflict, since t still holds "a".
    let conflict = plan_with(
        &["result", "a", "b"],
        &[],
        rule(json!([
            {"stmts": [assign(string(1), 3), assign(local(3), 4),
                       stmt("AssignVarOnceStmt", json!({"source": local(4), "target": 2}))]},
            {"stmts": [stmt("AssignVarOnceStmt", json!({"source": string(2), "target": 4,
                "file": 0, "row": 9, "col": 1}))]},
        ])),
    )
    .unwrap();
    assert_eq!(
        eval(&conflict, "{}"),
        Err(EvalError::Conflict {
            what: "var assignment conflict",
            at: "t.rego:9:1".into()
        })
    );
    // A loop body reads t before copying the element into it: each run sees the previous
    // element (the first sees "start").
    let carried = plan_with(
        &["result", "items", "start"],
        &[],
        rule(json!([{"stmts": [
            stmt("DotStmt", json!({"source": local(0), "key": string(1), "target": 3})),
            stmt("MakeArrayStmt", json!({"capacity": 3, "target": 2})),
            assign(string(2), 4),
            stmt("ScanStmt", json!({"source": 3, "key": 5, "value": 6, "block": {"stmts": [
                stmt("ArrayAppendStmt", json!({"value": local(4), "array": 2})),
                assign(local(6), 4),
            ]}})),
        ]}])),
    )
    .unwrap();
    assert_eq!(
        eval(&carried, r#"{"items": ["a", "b", "c"]}"#),
        ok(r#"["start", "a", "b"]"#)
    );
    // internal.print names a result local it never writes: t keeps the copy's value.
    let printed = plan_with(
        &["result", "a"],
        &["internal.print"],
        rule(json!([
            {"stmts": [assign(string(1), 3), assign(local(3), 4)]},
            {"stmts": [
                stmt("MakeArrayStmt", json!({"capacity": 0, "target": 5})),
                stmt("CallStmt", json!({"func": "internal.print", "args": [local(5)], "result": 4})),
                stmt("AssignVarOnceStmt", json!({"source": local(4), "target": 2})),
            ]},
        ])),
    )
    .unwrap();
    assert_eq!(eval(&printed, "{}"), ok(r#""a""#));
}

/// Constants: a collection of constants is built once at load, and a later append copies it
/// (the next evaluation starts from the constant again); a constant replaces a local only where
/// a value can stand, not where a local is named (`IsDefined`); writes no read sees are not run.
#[test]
fn constants_fold_and_propagate_and_unseen_writes_are_dropped() {
    let built = plan_with(
        &["result", "x", "a"],
        &[],
        rule(json!([{"stmts": [
            stmt("DotStmt", json!({"source": local(0), "key": string(1), "target": 3})),
            stmt("ResetLocalStmt", json!({"target": 9})),
            stmt("MakeNumberIntStmt", json!({"value": 7, "target": 8})),
            stmt("MakeArrayStmt", json!({"capacity": 3, "target": 4})),
            stmt("ArrayAppendStmt", json!({"value": string(2), "array": 4})),
            stmt("ArrayAppendStmt", json!({"value": local(8), "array": 4})),
            stmt("ArrayAppendStmt", json!({"value": local(3), "array": 4})),
            stmt("AssignVarOnceStmt", json!({"source": local(4), "target": 2})),
        ]}])),
    )
    .unwrap();
    assert_eq!(eval(&built, r#"{"x": 1}"#), ok(r#"["a", 7, 1]"#));
    assert_eq!(eval(&built, r#"{"x": 2}"#), ok(r#"["a", 7, 2]"#));
    // Run: the plan's four; the rule's dot, the folded ["a", 7], the last append and the
    // assignment. The reset of a local nothing reads and the constant 7 are not run.
    assert_eq!(eval_in(&built, r#"{"x": 3}"#, 8), ok(r#"["a", 7, 3]"#));
    assert_eq!(
        eval_in(&built, r#"{"x": 3}"#, 7),
        Err(EvalError::StepBudget(7))
    );
    let named = plan_with(
        &["result", "a"],
        &[],
        rule(json!([
            {"stmts": [assign(string(1), 3)]},
            {"stmts": [
                stmt("IsDefinedStmt", json!({"source": 3})),
                stmt("AssignVarOnceStmt", json!({"source": local(3), "target": 2})),
            ]},
        ])),
    )
    .unwrap();
    assert_eq!(eval(&named, "{}"), ok(r#""a""#));
    let same_block = plan_with(
        &["result", "a"],
        &[],
        rule(json!([{"stmts": [
            assign(string(1), 3),
            stmt("IsDefinedStmt", json!({"source": 3})),
            stmt("AssignVarOnceStmt", json!({"source": local(3), "target": 2})),
        ]}])),
    )
    .unwrap();
    assert_eq!(eval(&same_block, "{}"), ok(r#""a""#));
}

#[test]
fn the_shipped_plans_are_rewritten_well_inside_the_budget() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for path in [
        "python/acgs/bundles/constitution.tar.gz",
        "python/acgs/bundles/example.tar.gz",
        "tests/fixtures/stress.tar.gz",
    ] {
        let bundle = Bundle::from_path(&root.join(path)).unwrap();
        let plan = Plan::from_json(bundle.plan_json().unwrap()).unwrap();
        let (steps, cut) = plan.rewrites();
        assert!(!cut, "{path}: rewrites cut short after {steps} steps");
        assert!(
            steps > 0 && steps < acgs_plan::REWRITE_BUDGET / 20,
            "{path}: {steps} steps"
        );
    }
}

#[test]
fn a_plan_reusing_one_local_thousands_of_times_loads_within_the_budget() {
    // Each copy's check looks at every write of the local for every read of it: written out,
    // 3,000 copies of one local take tens of billions of steps (minutes to hours of load).
    let mut stmts = Vec::new();
    for _ in 0..3000 {
        stmts.push(stmt(
            "AssignVarStmt",
            json!({"source": local(0), "target": 5}),
        ));
        stmts.push(stmt(
            "BlockStmt",
            json!({"blocks": [{"stmts": [stmt("EqualStmt", json!({"a": local(5), "b": local(0)}))]}]}),
        ));
    }
    stmts.push(stmt(
        "AssignVarStmt",
        json!({"source": local(5), "target": 2}),
    ));
    let plan = plan_with(&["result"], &[], rule(json!([{ "stmts": stmts }]))).unwrap();
    let (steps, cut) = plan.rewrites();
    assert!(cut, "{steps} steps");
    assert!(steps <= acgs_plan::REWRITE_BUDGET);
    // What was not rewritten runs as written, and gives the same answer.
    assert_eq!(eval(&plan, "7"), Ok(Some(v("7"))));
    assert_eq!(eval(&plan, r#"{"a": [1]}"#), Ok(Some(v(r#"{"a": [1]}"#))));
}

/// `g0.data.t.h(input, data, x)`: `x` when it is a string. Written as OPA writes a one-body
/// function, except that it assigns its rule local without resetting it first: it relies on
/// starting on an empty frame, as every call does.
fn helper() -> J {
    json!({"name": "g0.data.t.h", "params": [0, 1, 2], "return": 3, "blocks": [
        {"stmts": [
            stmt("CallStmt", json!({"func": "is_string", "args": [local(2)], "result": 5})),
            stmt("NotEqualStmt", json!({"a": local(5), "b": {"type": "bool", "value": false}})),
            stmt("AssignVarOnceStmt", json!({"source": local(2), "target": 4})),
        ]},
        {"stmts": [stmt("AssignVarOnceStmt", json!({"source": local(4), "target": 3}))]},
        {"stmts": [stmt("ReturnLocalStmt", json!({"source": 3}))]},
    ]})
}

/// `g0.data.t.w(input, data, x)`: overwrites its parameter `x` with "w" and returns it.
fn overwriter() -> J {
    json!({"name": "g0.data.t.w", "params": [0, 1, 2], "return": 3, "blocks": [
        {"stmts": [
            assign(string(2), 2),
            stmt("AssignVarOnceStmt", json!({"source": local(2), "target": 3})),
        ]},
    ]})
}

/// Small functions run inside their callers (no call, no frame of their own): every run
/// still starts on an empty frame (in a loop too), an undefined one fails its caller's
/// expression (or passes under `not`), and a function that writes its parameter leaves the
/// caller's argument as it was.
#[test]
fn inlined_functions_behave_as_calls() {
    let s = |text: u32| string(text);
    // [h(x) | some x in input.items], h(7) undefined under not, w(input.keep) beside
    // input.keep.
    let mut funcs = rule(json!([{"stmts": [
        stmt("MakeArrayStmt", json!({"capacity": 4, "target": 6})),
        stmt("DotStmt", json!({"source": local(0), "key": s(1), "target": 3})),
        stmt("ScanStmt", json!({"source": 3, "key": 4, "value": 5, "block": {"stmts": [
            stmt("CallStmt", json!({"func": "g0.data.t.h", "args": [local(0), local(1), local(5)], "result": 7})),
            stmt("ArrayAppendStmt", json!({"value": local(7), "array": 6})),
        ]}})),
        stmt("NotStmt", json!({"block": {"stmts": [
            assign(json!({"type": "string_index", "value": 3}), 8),
            stmt("MakeNumberIntStmt", json!({"value": 7, "target": 8})),
            stmt("CallStmt", json!({"func": "g0.data.t.h", "args": [local(0), local(1), local(8)], "result": 9})),
        ]}})),
        stmt("DotStmt", json!({"source": local(0), "key": s(3), "target": 10})),
        stmt("CallStmt", json!({"func": "g0.data.t.w", "args": [local(0), local(1), local(10)], "result": 11})),
        stmt("MakeArrayStmt", json!({"capacity": 3, "target": 2})),
        stmt("ArrayAppendStmt", json!({"value": local(6), "array": 2})),
        stmt("ArrayAppendStmt", json!({"value": local(10), "array": 2})),
        stmt("ArrayAppendStmt", json!({"value": local(11), "array": 2})),
    ]}]));
    let list = funcs.as_array_mut().unwrap();
    list.push(helper());
    list.push(overwriter());
    let plan = plan_with(&["result", "items", "w", "keep"], &["is_string"], funcs).unwrap();
    assert_eq!(
        eval(&plan, r#"{"items": ["a", 1, "b", null, "c"], "keep": "k"}"#),
        ok(r#"[["a", "b", "c"], "k", "w"]"#)
    );
    // Without `keep` the dot before the call fails: the rule is undefined.
    assert_eq!(eval(&plan, r#"{"items": ["a"]}"#), Ok(None));
    assert_eq!(
        eval(&plan, r#"{"items": [], "keep": 1}"#),
        ok(r#"[[], 1, "w"]"#)
    );
}

/// A write that starts one block of a `Block` statement hides an earlier value from the later
/// blocks; one after a statement that can fail does not: the earlier value stays.
#[test]
fn a_write_after_a_failing_test_does_not_hide_the_earlier_value() {
    let s = |text: u32| string(text);
    let plan = plan_with(
        &["result", "a", "b"],
        &[],
        rule(json!([{"stmts": [
            assign(s(1), 4),
            stmt("BlockStmt", json!({"blocks": [
                {"stmts": [
                    stmt("EqualStmt", json!({"a": s(1), "b": s(2)})),
                    assign(s(2), 4),
                ]},
                {"stmts": [stmt("AssignVarOnceStmt", json!({"source": local(4), "target": 2}))]},
            ]})),
        ]}])),
    )
    .unwrap();
    assert_eq!(eval(&plan, "{}"), ok(r#""a""#));
}

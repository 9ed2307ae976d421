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

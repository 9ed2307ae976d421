//! OPA's plan IR (`opa build -t plan`, carried in ACGS bundles as `/plan.json`), checked at load
//! and evaluated natively with the semantics of OPA's Wasm target.
//!
//! ```text
//! let plan = Plan::from_json(bundle.plan_json().unwrap())?;
//! let ep = plan.entrypoint("acgs/main/decision").unwrap();
//! let results = plan.eval(ep, Some(&input), &data, Limits::default())?;
//! ```
//!
//! Loading refuses, with a named reason, a plan that calls a function or builtin that does not
//! exist, reads a local or string out of range, or breaks out of more blocks than enclose the
//! break. Evaluation errors only on a conflict (as OPA does), a spent step budget or a call
//! chain past the depth cap; everything else that goes wrong is "undefined".

mod builtins;
mod eval;
mod inline;
mod ir;
mod opt;
mod program;
pub mod value;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use value::{Literal, Num, Val};

/// Steps the load-time rewrites of one plan may take; see [`Plan::rewrites`].
pub const REWRITE_BUDGET: u64 = opt::BUDGET;

/// Bounds on one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Statements (and Scan iterations) one evaluation may run.
    pub max_steps: u64,
    /// Nested function calls (Rego has no recursion; the constitution nests 16 deep). Each
    /// level costs native stack, so the cap stays far below what a 2 MiB thread holds.
    pub max_depth: u32,
    /// Wall-clock time one evaluation may take (checked every few thousand steps).
    pub timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_steps: 10_000_000,
            max_depth: 128,
            timeout: None,
        }
    }
}

/// Why a plan was refused at load.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("plan.json is not a valid plan: {0}")]
    Json(String),
    #[error("plan refused: {0}")]
    Invalid(String),
    #[error("plan refused: builtin {0} is not implemented natively")]
    UnknownBuiltin(String),
}

/// Why an evaluation stopped without a result set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// A complete rule or object key with two values (OPA's `eval_conflict_error`).
    #[error("{what} at {at}")]
    Conflict { what: &'static str, at: String },
    #[error("evaluation exceeded its budget of {0} steps")]
    StepBudget(u64),
    #[error("evaluation exceeded its deadline of {0:?}")]
    Deadline(Duration),
    #[error("evaluation exceeded the call depth of {0}")]
    CallDepth(u32),
    /// A builtin's result would pass the size limits (the memory cap of the Wasm path).
    #[error("evaluation stopped: a builtin's {0} result is too large")]
    TooLarge(&'static str),
    /// A builtin where OPA's Wasm C library aborts the evaluation (the Wasm's message).
    #[error("{0}")]
    Aborted(&'static str),
    #[error("internal evaluator error: {0}")]
    Internal(String),
}

/// A checked plan, ready to evaluate any of its entrypoints. `Send + Sync`: share one per bundle.
#[derive(Debug)]
pub struct Plan {
    prog: program::Program,
    /// Values of the data-only rules for the data document last evaluated against.
    cache: Mutex<Option<Arc<eval::DataCache>>>,
}

impl Plan {
    /// Parses and checks `plan.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Plan, PlanError> {
        let file: ir::PlanFile =
            serde_json::from_slice(bytes).map_err(|e| PlanError::Json(e.to_string()))?;
        Ok(Plan {
            prog: program::Program::lower(file)?,
            cache: Mutex::new(None),
        })
    }

    /// Entrypoint names (`acgs/main/decision`), in the plan's order (the Wasm's ids).
    pub fn entrypoints(&self) -> Vec<&str> {
        self.prog.plans.iter().map(|(n, _)| n.as_str()).collect()
    }

    pub fn entrypoint(&self, name: &str) -> Option<usize> {
        self.prog.plans.iter().position(|(n, _)| n == name)
    }

    /// The builtins the plan declares.
    pub fn builtins(&self) -> &[String] {
        &self.prog.builtin_names
    }

    /// Steps the load-time rewrites took, and whether they were cut short by their budget
    /// (a plan whose locals are reused past reason; its remaining bodies run as written).
    pub fn rewrites(&self) -> (u64, bool) {
        (self.prog.rewrite_steps, self.prog.rewrites_cut)
    }

    /// Evaluates entrypoint `entrypoint` and returns its result set (each member
    /// `{"result": value}`; empty when undefined). `input` is `None` when there is none.
    pub fn eval(
        &self,
        entrypoint: usize,
        input: Option<&Val>,
        data: &Val,
        limits: Limits,
    ) -> Result<BTreeSet<Val>, EvalError> {
        eval::Eval::new(&self.prog, limits, self.data_cache(data)).run_plan(
            entrypoint,
            input.cloned(),
            data.clone(),
        )
    }

    /// The cache for `data`: the current one when it was made for this document, else a new
    /// one that replaces it (so evaluations alternating between documents only lose the cache).
    fn data_cache(&self, data: &Val) -> Arc<eval::DataCache> {
        let mut current = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match &*current {
            Some(c) if c.holds(data) => Arc::clone(c),
            _ => {
                let c = Arc::new(eval::DataCache::new(data, self.prog.funcs.len()));
                *current = Some(Arc::clone(&c));
                c
            }
        }
    }

    /// The value of entrypoint `entrypoint` (its single result), `None` when undefined.
    pub fn eval_value(
        &self,
        entrypoint: usize,
        input: Option<&Val>,
        data: &Val,
        limits: Limits,
    ) -> Result<Option<Val>, EvalError> {
        let results = self.eval(entrypoint, input, data, limits)?;
        let key = Val::str("result");
        Ok(results.iter().find_map(|r| eval::dot(r, &key)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use serde_json::{json, Value as J};

    use super::*;

    fn v(text: &str) -> Val {
        Val::parse(text.as_bytes()).unwrap()
    }

    fn local(n: u32) -> J {
        json!({"type": "local", "value": n})
    }

    fn stmt(kind: &str, body: J) -> J {
        json!({"type": kind, "stmt": body})
    }

    /// Plan `t/p` returns `g0.data.t.q(input, data)`; `funcs` defines q and whatever it calls.
    /// Strings: 0 "result", 1 "k", 2 "d".
    fn plan_of(funcs: J, builtins: &[&str]) -> Plan {
        let doc = json!({
            "static": {
                "strings": [{"value": "result"}, {"value": "k"}, {"value": "d"}],
                "builtin_funcs": builtins.iter().map(|b| json!({"name": b, "decl": {}})).collect::<Vec<_>>(),
            },
            "plans": {"plans": [{"name": "t/p", "blocks": [{"stmts": [
                stmt("CallStmt", json!({"func": "g0.data.t.q", "args": [local(0), local(1)], "result": 2})),
                stmt("MakeObjectStmt", json!({"target": 4})),
                stmt("ObjectInsertStmt", json!({"key": {"type": "string_index", "value": 0},
                    "value": local(2), "object": 4})),
                stmt("ResultSetAddStmt", json!({"value": 4})),
            ]}]}]},
            "funcs": {"funcs": funcs},
        });
        Plan::from_json(doc.to_string().as_bytes()).unwrap()
    }

    /// A function of (input, data) whose value is local 2, with one block of `stmts`.
    fn func(name: &str, stmts: J) -> J {
        json!({"name": name, "params": [0, 1], "return": 2, "blocks": [
            {"stmts": stmts},
            {"stmts": [stmt("ReturnLocalStmt", json!({"source": 2}))]},
        ]})
    }

    /// `q := data.k`.
    fn data_k(name: &str) -> J {
        func(
            name,
            json!([stmt(
                "DotStmt",
                json!({"source": local(1),
            "key": {"type": "string_index", "value": 1}, "target": 2})
            )]),
        )
    }

    fn data_only(plan: &Plan, name: &str) -> bool {
        plan.prog
            .funcs
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .data_only
    }

    #[test]
    fn a_data_rule_is_kept_per_data_document() {
        let plan = plan_of(json!([data_k("g0.data.t.q")]), &[]);
        assert!(data_only(&plan, "g0.data.t.q"));
        let (one, two) = (v(r#"{"k": 1}"#), v(r#"{"k": 2}"#));
        let lim = Limits::default();
        assert_eq!(plan.eval_value(0, None, &one, lim), Ok(Some(v("1"))));
        assert_eq!(plan.eval_value(0, None, &one, lim), Ok(Some(v("1"))));
        // Another document, even one equal in value, is another cache.
        assert_eq!(plan.eval_value(0, None, &two, lim), Ok(Some(v("2"))));
        assert_eq!(
            plan.eval_value(0, None, &v(r#"{"k": 1}"#), lim),
            Ok(Some(v("1")))
        );
        assert_eq!(plan.eval_value(0, None, &two, lim), Ok(Some(v("2"))));
        assert_eq!(plan.eval_value(0, None, &v("null"), lim), Ok(None));
    }

    #[test]
    fn rules_that_read_input_or_the_clock_are_not_kept() {
        // q := input.k
        let plan = plan_of(
            json!([func(
                "g0.data.t.q",
                json!([stmt(
                    "DotStmt",
                    json!({"source": local(0),
                "key": {"type": "string_index", "value": 1}, "target": 2})
                )])
            )]),
            &[],
        );
        assert!(!data_only(&plan, "g0.data.t.q"));
        let data = v("{}");
        let lim = Limits::default();
        assert_eq!(
            plan.eval_value(0, Some(&v(r#"{"k": 1}"#)), &data, lim),
            Ok(Some(v("1")))
        );
        assert_eq!(
            plan.eval_value(0, Some(&v(r#"{"k": 2}"#)), &data, lim),
            Ok(Some(v("2")))
        );
        // q := time.now_ns()
        let plan = plan_of(
            json!([func(
                "g0.data.t.q",
                json!([stmt(
                    "CallStmt",
                    json!({"func": "time.now_ns",
                "args": null, "result": 2})
                )])
            )]),
            &["time.now_ns"],
        );
        assert!(!data_only(&plan, "g0.data.t.q"));
        // q := r, where r := input.k: settled only if everything it calls is.
        let plan = plan_of(
            json!([
                func(
                    "g0.data.t.q",
                    json!([stmt(
                        "CallStmt",
                        json!({"func": "g0.data.t.r",
                    "args": [local(0), local(1)], "result": 2})
                    )])
                ),
                func(
                    "g0.data.t.r",
                    json!([stmt(
                        "DotStmt",
                        json!({"source": local(0),
                    "key": {"type": "string_index", "value": 1}, "target": 2})
                    )])
                ),
            ]),
            &[],
        );
        assert!(!data_only(&plan, "g0.data.t.q"));
        assert_eq!(
            plan.eval_value(0, Some(&v(r#"{"k": 1}"#)), &data, lim),
            Ok(Some(v("1")))
        );
        assert_eq!(
            plan.eval_value(0, Some(&v(r#"{"k": 2}"#)), &data, lim),
            Ok(Some(v("2")))
        );
    }

    /// A plan that hands a data-only function something other than the evaluation's data (here
    /// `input.d`) must not get a value computed for another evaluation, nor leave one behind.
    #[test]
    fn a_data_rule_handed_other_data_is_not_served_from_the_cache() {
        let plan = plan_of(
            json!([
                func(
                    "g0.data.t.q",
                    json!([
                        stmt(
                            "DotStmt",
                            json!({"source": local(0),
                        "key": {"type": "string_index", "value": 2}, "target": 3})
                        ),
                        stmt(
                            "CallStmt",
                            json!({"func": "g0.data.t.p", "args": [local(0), local(3)],
                        "result": 2})
                        ),
                    ])
                ),
                data_k("g0.data.t.p"),
            ]),
            &[],
        );
        assert!(data_only(&plan, "g0.data.t.p"));
        assert!(!data_only(&plan, "g0.data.t.q"));
        let data = v(r#"{"k": 0}"#);
        let lim = Limits::default();
        for k in [1, 2, 1, 3] {
            let input = v(&format!(r#"{{"d": {{"k": {k}}}}}"#));
            assert_eq!(
                plan.eval_value(0, Some(&input), &data, lim),
                Ok(Some(Val::int(k)))
            );
        }
    }
}

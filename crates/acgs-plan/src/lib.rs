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
mod ir;
mod program;
pub mod value;

use std::collections::BTreeSet;
use std::time::Duration;

pub use value::{Literal, Num, Val};

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
    #[error("internal evaluator error: {0}")]
    Internal(String),
}

/// A checked plan, ready to evaluate any of its entrypoints. `Send + Sync`: share one per bundle.
#[derive(Debug)]
pub struct Plan {
    prog: program::Program,
}

impl Plan {
    /// Parses and checks `plan.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Plan, PlanError> {
        let file: ir::PlanFile =
            serde_json::from_slice(bytes).map_err(|e| PlanError::Json(e.to_string()))?;
        Ok(Plan {
            prog: program::Program::lower(file)?,
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

    /// Evaluates entrypoint `entrypoint` and returns its result set (each member
    /// `{"result": value}`; empty when undefined). `input` is `None` when there is none.
    pub fn eval(
        &self,
        entrypoint: usize,
        input: Option<&Val>,
        data: &Val,
        limits: Limits,
    ) -> Result<BTreeSet<Val>, EvalError> {
        eval::Eval::new(&self.prog, limits).run_plan(entrypoint, input.cloned(), data.clone())
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

//! The builtins whose result depends on more than their arguments: the one list lives in
//! [`acgs_rego::nondeterministic`] (the plan evaluator reads it too).

pub use acgs_rego::nondeterministic::*;

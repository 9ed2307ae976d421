//! ACGS core: the OPA Wasm host, bundle loading and the decision pipeline's hot path.

pub mod bundle;
pub mod cache;
pub mod canon;
pub mod decision;
pub mod engine;
pub mod error;
pub mod fastpath;
pub mod native;
pub mod nondeterministic;
pub mod trusted;
pub mod wasm;

pub use acgs_rego::{builtins, value, Number, Value};
pub use bundle::Bundle;
pub use decision::Decision;
pub use engine::{Engine, EngineOptions, InputCheck, PipelineStats};
pub use error::{Error, Result};
pub use wasm::{Format, Limits};

//! ACGS core: the OPA Wasm host, bundle loading and the decision pipeline's hot path.

pub mod bundle;
pub mod engine;
pub mod error;
pub mod wasm;

pub use acgs_rego::{builtins, value, Number, Value};
pub use bundle::Bundle;
pub use engine::{Engine, EngineOptions, InputCheck};
pub use error::{Error, Result};
pub use wasm::{Format, Limits};

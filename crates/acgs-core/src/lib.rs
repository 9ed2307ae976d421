//! ACGS core: the OPA Wasm host, bundle loading and the decision pipeline's hot path.

pub mod error;

pub use acgs_rego::{builtins, Number, Value};
pub use error::{Error, Result};

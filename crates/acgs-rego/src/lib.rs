//! Rego values and the builtins that OPA's Wasm compiler leaves to the host.
//!
//! Pure Rust with no Wasm or Python dependency, so it builds and tests quickly on its own.

pub mod builtins;
pub mod decimal;
pub mod nondeterministic;
pub mod value;

pub use value::{Number, Value};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    #[error("cannot parse value: {0}")]
    ValueParse(String),
}

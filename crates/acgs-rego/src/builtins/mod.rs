//! Builtins that OPA's Wasm compiler leaves to the host, implemented with OPA's semantics.
//!
//! The Wasm module lists the builtins it needs (`builtins()` export). At load, each name is
//! resolved here to a function pointer; a name with no implementation fails the load.
//! Arguments arrive as Rego values (sets intact). A builtin returns `Ok(Some(v))`, `Ok(None)` for
//! undefined, or `Err` — which, as in OPA's non-strict mode, makes the calling expression
//! undefined rather than aborting the whole evaluation.

use crate::value::Value;

mod crypto;
mod encoding;
mod net;
mod strings;
mod time;

pub use strings::compiled_regex;

/// Per-evaluation facts a builtin may read. `time.now_ns` is fixed for one evaluation, as in OPA.
#[derive(Debug, Clone)]
pub struct Context {
    pub now_ns: i64,
}

impl Context {
    pub fn now() -> Context {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Context { now_ns }
    }
}

/// Why a builtin produced no value; the message mirrors OPA's where practical.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltinError(pub String);

pub type BuiltinResult = Result<Option<Value>, BuiltinError>;
pub type BuiltinFn = fn(&[Value], &Context) -> BuiltinResult;

/// Resolves a builtin by its OPA name (`"sprintf"`, `"time.parse_rfc3339_ns"`, ...).
pub fn lookup(name: &str) -> Option<BuiltinFn> {
    strings::lookup(name)
        .or_else(|| encoding::lookup(name))
        .or_else(|| time::lookup(name))
        .or_else(|| crypto::lookup(name))
        .or_else(|| net::lookup(name))
}

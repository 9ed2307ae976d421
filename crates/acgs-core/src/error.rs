//! The core's errors. Each variant has a stable code; the Python bindings map each to its own
//! exception class under `acgs.errors.AcgsError`.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// The bundle is malformed or incomplete; the message names what is wrong.
    #[error("bundle error: {0}")]
    Bundle(String),
    /// The module needs a builtin that the host does not implement.
    #[error("bundle error: policy requires builtin(s) the host does not implement: {0}")]
    UnknownBuiltin(String),
    /// The Wasm module does not follow the OPA ABI (missing export, wrong version).
    #[error("bundle error: invalid OPA Wasm module: {0}")]
    Abi(String),
    #[error("unknown entrypoint {0:?}")]
    UnknownEntrypoint(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The request names a constitution other than the loaded one; it is never evaluated.
    #[error("constitutional hash mismatch: the request names {got:?}, the loaded constitution is {expected:?}")]
    ConstitutionalHashMismatch { expected: String, got: String },
    /// The policy aborted (conflict errors, failed `with`, ...) or trapped.
    #[error("evaluation error: {0}")]
    Evaluation(String),
    #[error("evaluation exceeded its deadline of {0} ms")]
    Timeout(u64),
    #[error("evaluation exceeded its memory limit of {0} bytes")]
    MemoryLimit(u64),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Bundle(_) => "bundle_error",
            Error::UnknownBuiltin(_) => "unknown_builtin",
            Error::Abi(_) => "abi_error",
            Error::UnknownEntrypoint(_) => "unknown_entrypoint",
            Error::InvalidInput(_) => "invalid_input",
            Error::ConstitutionalHashMismatch { .. } => "constitutional_hash_mismatch",
            Error::Evaluation(_) => "evaluation_error",
            Error::Timeout(_) => "evaluation_timeout",
            Error::MemoryLimit(_) => "resource_limit_exceeded",
            Error::Internal(_) => "internal_error",
        }
    }
}

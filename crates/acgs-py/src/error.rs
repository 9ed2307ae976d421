//! Maps each core (and audit core) error to its own Python exception class, defined in
//! `acgs.errors`.

use acgs_core::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class_name(e: &Error) -> &'static str {
    match e {
        Error::Bundle(_) | Error::Abi(_) => "BundleError",
        Error::UnknownBuiltin(_) => "UnknownBuiltinError",
        Error::UnknownEntrypoint(_) => "UnknownEntrypointError",
        Error::InvalidInput(_) => "InvalidInputError",
        Error::ConstitutionalHashMismatch { .. } => "ConstitutionalHashMismatch",
        Error::Evaluation(_) => "EvaluationError",
        Error::Timeout(_) => "EvaluationTimeout",
        Error::MemoryLimit(_) => "ResourceLimitExceeded",
        Error::Internal(_) => "InternalError",
    }
}

fn audit_class_name(e: &acgs_audit::Error) -> &'static str {
    use acgs_audit::Error as A;
    match e {
        A::InvalidJson { .. }
        | A::InvalidValue(_)
        | A::DuplicateKey(_)
        | A::NumberOutOfRange(_)
        | A::InvalidString(_)
        | A::NotCanonical { .. } => "CanonicalJsonError",
        A::InvalidHash(_) | A::InvalidProofRequest(_) | A::InvalidArgument(_) => {
            "AuditArgumentError"
        }
        A::ProofFailed(_) => "ProofError",
        A::InvalidKey(_) => "SigningKeyError",
        A::MalformedNote(_) | A::MalformedCheckpoint(_) => "CheckpointFormatError",
        A::UnknownKey(_) | A::BadSignature(_) => "CheckpointSignatureError",
        A::InconsistentCheckpoint(_) => "InconsistentCheckpointError",
        A::Randomness(_) => "AuditError",
    }
}

/// Instantiates `acgs.errors.<class>(message, code)`.
fn raise(py: Python<'_>, class: &str, message: String, code: &str) -> PyErr {
    let module = match ERRORS.get_or_try_init(py, || py.import("acgs.errors").map(Bound::unbind)) {
        Ok(m) => m.bind(py),
        Err(err) => return err,
    };
    match module.getattr(class) {
        Ok(cls) => match cls.call1((message, code)) {
            Ok(inst) => PyErr::from_value(inst),
            Err(err) => err,
        },
        Err(err) => err,
    }
}

/// Builds the Python exception for a core error.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    raise(py, class_name(&e), e.to_string(), e.code())
}

/// Builds the Python exception for an audit core error.
pub fn audit_to_py(py: Python<'_>, e: acgs_audit::Error) -> PyErr {
    raise(py, audit_class_name(&e), e.to_string(), e.code())
}

/// An `InvalidInputError` with a message, for conversion failures on the Python side.
pub fn invalid_input(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    to_py(py, Error::InvalidInput(msg.into()))
}
